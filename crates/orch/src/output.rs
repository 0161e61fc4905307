//! Printing for people: aligned tables, durations, and the live progress of a run.

use std::io::Write;
use std::time::Instant;

/// Prints rows as columns aligned on the widest cell; the first row is the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == row.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub fn millis(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    }
}

/// Prints engine progress as it happens: elapsed time, item, stage and attempt, what happened.
#[derive(Debug)]
pub struct ProgressPrinter {
    start: Instant,
}

impl ProgressPrinter {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl orch_engine::Reporter for ProgressPrinter {
    fn report(&self, p: orch_engine::Progress) {
        let elapsed = self.start.elapsed().as_secs_f64();
        let what = p
            .what
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(160)
            .collect::<String>();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "[{elapsed:>6.1}s] {:<10} {:<16} {}",
            p.item,
            format!("{}#{}", p.stage, p.attempt),
            what
        );
    }
}

/// `text` with control characters (terminal escapes among them) made spaces: for words that
/// come from outside (a forge, a CI system) on their way to a terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align() {
        let t = super::table(&[
            vec!["ID".into(), "STAGE".into(), "STATUS".into()],
            vec!["DEMO-10".into(), "qa".into(), "running".into()],
        ]);
        assert_eq!(t, "ID       STAGE  STATUS\nDEMO-10  qa     running\n");
        assert_eq!(super::millis(1500), "1.5s");
        assert_eq!(super::millis(61_000), "1m01s");
    }

    #[test]
    fn printable_blanks_terminal_escapes() {
        assert_eq!(super::printable("ok\u{1b}[2Jgone\n"), "ok [2Jgone ");
    }
}
