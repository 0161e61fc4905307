//! Suites: one command (or exec) check whose output carries one result per check id, so a team's
//! existing staging script (the seeds' `staging_check.py` with its C9a, C9b, B6...) is judged id
//! by id, each classified and waived by orch's own configuration.
//!
//! The line format, on the suite's stdout (anything else it prints is ignored):
//!
//! ```text
//! CHECK <id> PASS [detail]
//! CHECK <id> FAIL [detail]
//! ```
//!
//! It must never trust the suite's own verdict, nor let an id pass that the suite did not report
//! as PASS. Fail-closed: the suite's own result (id = the check's id, always REAL) FAILS when its
//! output cannot be trusted: a malformed `CHECK` line, an id not listed in `reports`, an id
//! reported twice, an id missing, or an exit that contradicts what it reported (anything but 0,
//! or 1 with at least one FAIL). An id not reported, or reported twice, FAILS too.

use std::collections::BTreeMap;
use std::time::Instant;

use orch_core::staging::{CheckCategory, CheckResult};
use orch_process::{ExitOutcome, Observer, Stream};
use tokio_util::sync::CancellationToken;

use super::{CheckRun, Measurement, Place, TryOutcome, process_of, sleep_unless_cancelled};
use crate::config::{CheckSpec, ReportedCheck};

/// The first word of a result line.
pub const CHECK_LINE_PREFIX: &str = "CHECK";

/// A suite printing more result lines than this is not trusted (it reports a bounded list).
const MAX_CHECK_LINES: usize = 1000;
/// Details and quoted lines are cut here: they go into the staging log and the events.
const MAX_SHOWN_CHARS: usize = 300;
/// At most this many problems are spelled out in the suite's detail.
const MAX_PROBLEMS_SHOWN: usize = 5;

/// Runs the suite within its tries and returns the suite's own run, then one run per reported
/// id, in the configured order.
pub(super) async fn run_suite(
    place: &Place<'_>,
    check: &CheckSpec,
    cancel: &CancellationToken,
) -> Vec<CheckRun> {
    let mut tries: Vec<(SuiteTry, u64)> = Vec::new();
    let mut consecutive = 0;
    for try_no in 1..=check.tries {
        let wait = if try_no == 1 {
            check.initial_delay
        } else {
            check.interval
        };
        if !sleep_unless_cancelled(wait, cancel).await {
            break;
        }
        let started = Instant::now();
        let outcome = run_once(place, check, cancel).await;
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        consecutive = if outcome.ok() { consecutive + 1 } else { 0 };
        tries.push((outcome, elapsed));
        if consecutive >= check.successes {
            break;
        }
        if check.tries - try_no < check.successes - consecutive || cancel.is_cancelled() {
            break;
        }
    }
    runs_of(check, &tries, cancel.is_cancelled())
}

/// What one run of the suite measured.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SuiteTry {
    /// Whether the suite's output can be trusted, and why not.
    suite: TryOutcome,
    /// One outcome per configured id, in the configured order.
    ids: Vec<TryOutcome>,
}

impl SuiteTry {
    fn ok(&self) -> bool {
        self.suite.ok && self.ids.iter().all(|id| id.ok)
    }

    /// Nothing was measured: the suite and every id say why.
    fn unmeasured(check: &CheckSpec, outcome: &TryOutcome) -> SuiteTry {
        SuiteTry {
            suite: outcome.clone(),
            ids: check.reports.iter().map(|_| outcome.clone()).collect(),
        }
    }
}

async fn run_once(place: &Place<'_>, check: &CheckSpec, cancel: &CancellationToken) -> SuiteTry {
    let process = match process_of(place, check) {
        Ok(process) => process,
        Err(unmeasured) => return SuiteTry::unmeasured(check, &unmeasured),
    };
    let mut lines = CheckLines::default();
    let finished = orch_process::run(&process.spec, cancel, &mut lines).await;
    let shown = &process.shown;
    let exit = match finished.outcome {
        ExitOutcome::Exited(code @ 125..=127) if process.via_docker_exec => {
            let outcome = TryOutcome::unmeasured(format!(
                "`docker exec {shown}` exited {code}, docker's own failure"
            ));
            return SuiteTry::unmeasured(check, &outcome);
        }
        ExitOutcome::FailedToStart(ref e) => {
            let outcome = TryOutcome::unmeasured(format!("`{shown}` could not be started: {e}"));
            return SuiteTry::unmeasured(check, &outcome);
        }
        ref other => other.clone(),
    };
    let mut reading = read_lines(&lines, &check.reports);
    judge_exit(&exit, &mut reading);
    let ids = check
        .reports
        .iter()
        .map(|reported| match reading.results.get(&reported.id) {
            Some(Reported::Once { passed, detail }) => {
                TryOutcome::measured(*passed, detail.clone())
            }
            Some(Reported::Twice) => {
                TryOutcome::measured(false, "reported more than once by the suite".to_owned())
            }
            None => TryOutcome::measured(false, format!("not reported by `{shown}`")),
        })
        .collect();
    let suite = if reading.problems.is_empty() {
        TryOutcome::measured(
            true,
            format!(
                "`{shown}` {} and reported all {} ids",
                exit_words(&exit),
                check.reports.len()
            ),
        )
    } else {
        TryOutcome::measured(false, format!("`{shown}`: {}", problems_text(&reading)))
    };
    SuiteTry { suite, ids }
}

/// Keeps the suite's `CHECK` lines from stdout, numbered by their place in stdout.
#[derive(Debug, Default)]
struct CheckLines {
    seen: usize,
    lines: Vec<(usize, String)>,
    overflow: bool,
}

impl Observer for CheckLines {
    fn line(&mut self, stream: Stream, line: &str) {
        if stream != Stream::Stdout {
            return;
        }
        self.seen += 1;
        if line.split_whitespace().next() != Some(CHECK_LINE_PREFIX) {
            return;
        }
        if self.lines.len() < MAX_CHECK_LINES {
            self.lines.push((self.seen, line.to_owned()));
        } else {
            self.overflow = true;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reported {
    Once {
        passed: bool,
        detail: String,
    },
    /// Reported more than once: whichever it said, it FAILS.
    Twice,
}

/// What the suite's lines say, and every reason not to trust them.
#[derive(Debug, Default, PartialEq, Eq)]
struct Reading {
    results: BTreeMap<String, Reported>,
    problems: Vec<String>,
}

fn read_lines(lines: &CheckLines, expected: &[ReportedCheck]) -> Reading {
    let mut reading = Reading::default();
    if lines.overflow {
        reading
            .problems
            .push(format!("printed more than {MAX_CHECK_LINES} `CHECK` lines"));
    }
    for (number, line) in &lines.lines {
        let rest = line
            .trim_start()
            .strip_prefix(CHECK_LINE_PREFIX)
            .unwrap_or_default();
        let mut words = rest.split_whitespace();
        let (Some(id), Some(status)) = (words.next(), words.next()) else {
            reading.problems.push(malformed(*number, line));
            continue;
        };
        let passed = match status {
            "PASS" => true,
            "FAIL" => false,
            _ => {
                reading.problems.push(malformed(*number, line));
                continue;
            }
        };
        if !expected.iter().any(|reported| reported.id == id) {
            reading.problems.push(format!(
                "line {number} reports `{}`, which is not listed in `reports`",
                shown(id)
            ));
            continue;
        }
        let detail = detail_after(rest, id, status);
        if reading.results.contains_key(id) {
            reading
                .problems
                .push(format!("line {number} reports `{id}` again"));
            reading.results.insert(id.to_owned(), Reported::Twice);
        } else {
            reading
                .results
                .insert(id.to_owned(), Reported::Once { passed, detail });
        }
    }
    let missing: Vec<&str> = expected
        .iter()
        .filter(|reported| !reading.results.contains_key(&reported.id))
        .map(|reported| reported.id.as_str())
        .collect();
    if !missing.is_empty() {
        reading
            .problems
            .push(format!("did not report {}", missing.join(", ")));
    }
    reading
}

/// The text after `<id> <status>`, cut and without control characters; "PASS"/"FAIL" alone when
/// the suite said nothing more.
fn detail_after(rest: &str, id: &str, status: &str) -> String {
    let after_id = rest.trim_start().strip_prefix(id).unwrap_or_default();
    let after_status = after_id
        .trim_start()
        .strip_prefix(status)
        .unwrap_or_default();
    let detail = shown(after_status.trim());
    if detail.is_empty() {
        format!("the suite reported {status}")
    } else {
        detail
    }
}

fn malformed(number: usize, line: &str) -> String {
    format!(
        "line {number} `{}` is not `CHECK <id> PASS|FAIL <detail>`",
        shown(line)
    )
}

/// Text from the suite as it may appear in a log line: printable, at most [`MAX_SHOWN_CHARS`].
fn shown(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(MAX_SHOWN_CHARS)
        .collect();
    if text.chars().count() > MAX_SHOWN_CHARS {
        out.push('…');
    }
    out
}

/// A suite exits 0, or 1 when it reported at least one FAIL (the seeds' `staging_check.py` exits 1
/// on a failure it does not waive). Anything else contradicts its lines or is contract 3's misuse.
fn judge_exit(exit: &ExitOutcome, reading: &mut Reading) {
    let reported_a_fail = reading
        .results
        .values()
        .any(|r| !matches!(r, Reported::Once { passed: true, .. }));
    match exit {
        ExitOutcome::Exited(0) => {}
        ExitOutcome::Exited(1) if reported_a_fail => {}
        ExitOutcome::Exited(1) => reading
            .problems
            .push("exited 1 but reported no FAIL".to_owned()),
        ExitOutcome::Exited(code) => reading.problems.push(format!(
            "exited {code}; a suite exits 0, or 1 when it reports a FAIL"
        )),
        other => reading.problems.push(other.describe()),
    }
}

fn exit_words(exit: &ExitOutcome) -> String {
    match exit {
        ExitOutcome::Exited(code) => format!("exited {code}"),
        other => other.describe(),
    }
}

fn problems_text(reading: &Reading) -> String {
    let mut text = reading
        .problems
        .iter()
        .take(MAX_PROBLEMS_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    let more = reading.problems.len().saturating_sub(MAX_PROBLEMS_SHOWN);
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    text
}

/// The suite's own run (REAL), then one per id, from every try; results from the last try.
fn runs_of(check: &CheckSpec, tries: &[(SuiteTry, u64)], cancelled: bool) -> Vec<CheckRun> {
    let measurement = |id: &str, try_no: usize, outcome: &TryOutcome, elapsed: u64| Measurement {
        check_id: id.to_owned(),
        try_no: u32::try_from(try_no + 1).unwrap_or(u32::MAX),
        ok: outcome.ok,
        measured: outcome.measured,
        detail: outcome.detail.clone(),
        elapsed_ms: elapsed,
    };
    let last = tries.last().map(|(last, _)| last);
    let cut_short = |detail: &str| {
        if cancelled {
            format!(
                "cancelled after {} of {} tries; last: {detail}",
                tries.len(),
                check.tries
            )
        } else {
            detail.to_owned()
        }
    };
    let never_ran = "could not be measured: cancelled before the first try".to_owned();
    let suite_detail = last.map_or(never_ran.clone(), |t| cut_short(&t.suite.detail));
    let mut runs = vec![CheckRun {
        result: CheckResult {
            id: check.id.clone(),
            category: CheckCategory::Real,
            // Only whether its output could be trusted: a failed INFRA id must stay waivable.
            passed: last.is_some_and(|t| t.suite.ok) && !cancelled,
            shadow: check.shadow,
            detail: suite_detail,
        },
        measurements: tries
            .iter()
            .enumerate()
            .map(|(n, (t, elapsed))| measurement(&check.id, n, &t.suite, *elapsed))
            .collect(),
    }];
    for (index, reported) in check.reports.iter().enumerate() {
        let of_last = last.and_then(|t| t.ids.get(index));
        runs.push(CheckRun {
            result: CheckResult {
                id: reported.id.clone(),
                category: reported.category,
                passed: of_last.is_some_and(|o| o.ok) && !cancelled,
                shadow: check.shadow,
                detail: of_last.map_or(never_ran.clone(), |o| cut_short(&o.detail)),
            },
            measurements: tries
                .iter()
                .enumerate()
                .filter_map(|(n, (t, elapsed))| {
                    t.ids
                        .get(index)
                        .map(|o| measurement(&reported.id, n, o, *elapsed))
                })
                .collect(),
        });
    }
    runs
}

#[cfg(test)]
mod tests;
