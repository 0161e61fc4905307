//! A writer of the Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE`
//! lines once per metric family, then one sample per line with escaped label values.

use std::fmt::Write as _;

/// The kind of a metric family, as the `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The text being written.
#[derive(Debug, Default)]
pub(crate) struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts a metric family.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample of the current family.
    pub(crate) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
    }

    pub(crate) fn push_raw(&mut self, text: &str) {
        self.out.push_str(text);
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// A label value with `\`, `"` and line feeds escaped, as the format requires.
pub(crate) fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escapes `\` and line feeds.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Integers without a fraction, `+Inf` for infinity.
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn samples_render_in_the_text_format() {
        let mut e = Exposition::default();
        e.family("orch_x_total", Kind::Counter, "Things.\nMore.");
        e.sample("orch_x_total", &[("stage", "qa"), ("gate", "a\"b")], 3.0);
        e.sample("orch_x_total", &[], 0.25);
        assert_eq!(
            e.finish(),
            "# HELP orch_x_total Things.\\nMore.\n# TYPE orch_x_total counter\n\
             orch_x_total{stage=\"qa\",gate=\"a\\\"b\"} 3\norch_x_total 0.25\n"
        );
    }
}
