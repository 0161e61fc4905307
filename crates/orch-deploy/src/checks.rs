//! Staging checks: measure a running staging instance, check by check, and fold the results.
//!
//! A check that could not be measured (nothing listening, a timeout, a command that would not
//! start) is never a pass: it is retried within its tries and then FAILED with "could not be
//! measured". A measured mismatch is retried too, because a fresh deploy may still be warming up.
//! Whether a failed INFRA check is waived is decided by `orch_core::staging::fold`, not here.

use std::path::Path;
use std::time::{Duration, Instant};

use orch_core::staging::{CheckResult, StagingVerdict};
use orch_process::{ExitOutcome, Spec};
use tokio_util::sync::CancellationToken;

use crate::config::{CheckSpec, JsonExpectation, Mode, Probe, StagingSpec};
use crate::docker::DockerCli;
use crate::{http, template};

mod suite;

pub use suite::CHECK_LINE_PREFIX;

/// One try of one check, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    pub check_id: String,
    /// 1-based.
    pub try_no: u32,
    pub ok: bool,
    /// `false` when nothing could be measured (no answer, a timeout, a command that did not start).
    pub measured: bool,
    pub detail: String,
    pub elapsed_ms: u64,
}

/// A check's result with every try that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    pub result: CheckResult,
    pub measurements: Vec<Measurement>,
}

/// Runs every check whose `modes` include `mode`, in the configured order, against `base_url`.
///
/// Command checks run in `workdir` with `STAGING_BASE_URL` and `STAGING_MODE` set. Checks left
/// when `cancel` fires are FAILED as cancelled; the caller should also treat the run as an
/// internal error, so that a cancelled run can never be waived into a success.
///
/// `kind = "exec"` checks need a container to run in: here they are never measured (FAILED);
/// the docker deployer runs them through [`run_checks_in`].
pub async fn run_checks(
    base_url: &str,
    spec: &StagingSpec,
    mode: Mode,
    workdir: &Path,
    cancel: &CancellationToken,
) -> Vec<CheckRun> {
    run_checks_in(base_url, spec, mode, workdir, None, cancel).await
}

/// Where `kind = "exec"` checks run: a container, reached through the docker CLI.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExecTarget<'a> {
    pub cli: &'a DockerCli,
    pub container: &'a str,
}

/// [`run_checks`], with `exec` checks run in `container` when one is given.
pub(crate) async fn run_checks_in(
    base_url: &str,
    spec: &StagingSpec,
    mode: Mode,
    workdir: &Path,
    container: Option<ExecTarget<'_>>,
    cancel: &CancellationToken,
) -> Vec<CheckRun> {
    let place = Place {
        base_url,
        mode,
        workdir,
        container,
    };
    let mut runs = Vec::new();
    for check in spec.checks.iter().filter(|c| c.modes.contains(&mode)) {
        if check.reports.is_empty() {
            runs.push(run_check(&place, check, cancel).await);
        } else {
            runs.extend(suite::run_suite(&place, check, cancel).await);
        }
    }
    runs
}

/// Where and how the checks of one staging run measure.
struct Place<'a> {
    base_url: &'a str,
    mode: Mode,
    workdir: &'a Path,
    container: Option<ExecTarget<'a>>,
}

async fn run_check(place: &Place<'_>, check: &CheckSpec, cancel: &CancellationToken) -> CheckRun {
    let mut measurements: Vec<Measurement> = Vec::new();
    let mut consecutive = 0;
    let mut passed = false;
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
        let outcome = measure(place, check, cancel).await;
        measurements.push(Measurement {
            check_id: check.id.clone(),
            try_no,
            ok: outcome.ok,
            measured: outcome.measured,
            detail: outcome.detail,
            elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
        consecutive = if outcome.ok { consecutive + 1 } else { 0 };
        if consecutive >= check.successes {
            passed = true;
            break;
        }
        // Stop early once the remaining tries cannot make up the consecutive successes needed.
        if check.tries - try_no < check.successes - consecutive || cancel.is_cancelled() {
            break;
        }
    }
    let detail = summarize(check, passed, &measurements, cancel.is_cancelled());
    CheckRun {
        result: CheckResult {
            id: check.id.clone(),
            category: check.category,
            passed,
            shadow: check.shadow,
            detail,
        },
        measurements,
    }
}

/// The one-line reason shown for a check: the last try's detail, qualified when that alone
/// would mislead. A check never measured keeps its "could not be measured" reason up front.
fn summarize(
    check: &CheckSpec,
    passed: bool,
    measurements: &[Measurement],
    cancelled: bool,
) -> String {
    let Some(last) = measurements.last() else {
        return "could not be measured: cancelled before the first try".to_owned();
    };
    let never_measured = measurements.iter().all(|m| !m.measured);
    if passed || (never_measured && !cancelled) {
        last.detail.clone()
    } else if cancelled {
        format!(
            "cancelled after {} of {} tries; last: {}",
            measurements.len(),
            check.tries,
            last.detail
        )
    } else if check.successes > 1 {
        format!(
            "needed {} consecutive successes in {} tries; last: {}",
            check.successes, check.tries, last.detail
        )
    } else {
        last.detail.clone()
    }
}

/// Sleeps `wait`; `false` when cancelled first.
async fn sleep_unless_cancelled(wait: Duration, cancel: &CancellationToken) -> bool {
    if cancel.is_cancelled() {
        return false;
    }
    if wait.is_zero() {
        return true;
    }
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TryOutcome {
    ok: bool,
    measured: bool,
    detail: String,
}

impl TryOutcome {
    fn unmeasured(reason: impl std::fmt::Display) -> TryOutcome {
        TryOutcome {
            ok: false,
            measured: false,
            detail: format!("could not be measured: {reason}"),
        }
    }

    fn measured(ok: bool, detail: String) -> TryOutcome {
        TryOutcome {
            ok,
            measured: true,
            detail,
        }
    }
}

async fn measure(place: &Place<'_>, check: &CheckSpec, cancel: &CancellationToken) -> TryOutcome {
    let base_url = place.base_url;
    match &check.probe {
        Probe::Http {
            path,
            expect_status,
            body_contains,
            json,
        } => {
            let url = format!("{}{path}", base_url.trim_end_matches('/'));
            match http::get(&url, check.timeout).await {
                Err(reason) => TryOutcome::unmeasured(format!("GET {path}: {reason}")),
                Ok(answer) => judge_answer(
                    path,
                    *expect_status,
                    body_contains.as_deref(),
                    json.as_ref(),
                    &answer,
                ),
            }
        }
        Probe::Command { expect_exit, .. } | Probe::Exec { expect_exit, .. } => {
            let process = match process_of(place, check) {
                Ok(process) => process,
                Err(unmeasured) => return unmeasured,
            };
            let finished = orch_process::run(&process.spec, cancel, &mut ()).await;
            judge_exit(
                &process.shown,
                &finished,
                *expect_exit,
                process.via_docker_exec,
            )
        }
    }
}

/// The process a command or exec check starts for one try.
struct CheckProcess {
    spec: Spec,
    /// The command as people read it, for the details.
    shown: String,
    /// Run through `docker exec`, whose own failures are exits 125 to 127.
    via_docker_exec: bool,
}

/// The process of a command or exec check, or why it cannot be started (never measured).
fn process_of(place: &Place<'_>, check: &CheckSpec) -> Result<CheckProcess, TryOutcome> {
    let Place {
        base_url,
        mode,
        workdir,
        container,
    } = *place;
    match &check.probe {
        Probe::Http { path, .. } => Err(TryOutcome::unmeasured(format!(
            "GET {path} is an http check, not a process"
        ))),
        Probe::Command { run, .. } => {
            let command = match template::fill(run, &[("base_url", base_url)]) {
                Ok(command) => command,
                // Validation rejects unknown placeholders; this guards a hand-built spec.
                Err(name) => {
                    return Err(TryOutcome::unmeasured(format!(
                        "unknown placeholder `{{{name}}}` in `{run}`"
                    )));
                }
            };
            let spec = Spec::shell(&command, workdir)
                .env("STAGING_BASE_URL", base_url)
                .env("STAGING_MODE", mode.as_str())
                .timeout(check.timeout);
            Ok(CheckProcess {
                spec,
                shown: run.clone(),
                via_docker_exec: false,
            })
        }
        Probe::Exec { argv, .. } => {
            let shown = argv.join(" ");
            let Some(target) = container else {
                return Err(TryOutcome::unmeasured(format!(
                    "`{shown}` is an exec check and there is no staging container to run it in"
                )));
            };
            let mut filled = Vec::with_capacity(argv.len());
            for arg in argv {
                match template::fill(arg, &[("base_url", base_url)]) {
                    Ok(arg) => filled.push(arg),
                    Err(name) => {
                        return Err(TryOutcome::unmeasured(format!(
                            "unknown placeholder `{{{name}}}` in `{shown}`"
                        )));
                    }
                }
            }
            let spec = target
                .cli
                .command(workdir, check.timeout)
                .args([
                    "exec".to_owned(),
                    "--env".to_owned(),
                    format!("STAGING_BASE_URL={base_url}"),
                    "--env".to_owned(),
                    format!("STAGING_MODE={}", mode.as_str()),
                    target.container.to_owned(),
                ])
                .args(filled);
            Ok(CheckProcess {
                spec,
                shown,
                via_docker_exec: true,
            })
        }
    }
}

/// The verdict of one command try from how it ended. Through `docker exec`, exits 125 to 127
/// are docker's own (the daemon, or a program that would not start): nothing was measured.
fn judge_exit(
    shown: &str,
    finished: &orch_process::Finished,
    expect_exit: i32,
    via_docker_exec: bool,
) -> TryOutcome {
    let last_line = finished
        .tail
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let said = if last_line.is_empty() {
        String::new()
    } else {
        format!(": {last_line}")
    };
    match finished.outcome {
        ExitOutcome::Exited(code) if code == expect_exit => {
            TryOutcome::measured(true, format!("`{shown}` exited {code}"))
        }
        ExitOutcome::Exited(code @ 125..=127) if via_docker_exec => TryOutcome::unmeasured(
            format!("`docker exec {shown}` exited {code}, docker's own failure{said}"),
        ),
        ExitOutcome::Exited(code) => TryOutcome::measured(
            false,
            format!("`{shown}` exited {code}, expected {expect_exit}{said}"),
        ),
        ref other => TryOutcome::unmeasured(format!("`{shown}` {}{said}", other.describe())),
    }
}

fn judge_answer(
    path: &str,
    expect_status: u16,
    body_contains: Option<&str>,
    json: Option<&JsonExpectation>,
    answer: &http::Answer,
) -> TryOutcome {
    let status = answer.status;
    if status != expect_status {
        return TryOutcome::measured(
            false,
            format!("GET {path} answered {status}, expected {expect_status}"),
        );
    }
    if let Some(text) = body_contains
        && !answer.body.contains(text)
    {
        let detail = format!("GET {path} answered {status} without `{text}` in the body");
        return TryOutcome::measured(false, detail);
    }
    if let Some(expected) = json
        && let Err(mismatch) = json_field_matches(&answer.body, expected)
    {
        let detail = format!("GET {path} answered {status} but {mismatch}");
        return TryOutcome::measured(false, detail);
    }
    TryOutcome::measured(true, format!("GET {path} {status}"))
}

/// Follows the dotted path (object keys, array indexes) and compares: a JSON string by its text,
/// anything else by its JSON form (`true`, `3`, `null`).
fn json_field_matches(body: &str, expected: &JsonExpectation) -> Result<(), String> {
    let document: serde_json::Value =
        serde_json::from_str(body).map_err(|_| "the body is not JSON".to_owned())?;
    let mut value = &document;
    for key in expected.field.split('.') {
        let next = match value {
            serde_json::Value::Object(map) => map.get(key),
            serde_json::Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        value = next.ok_or_else(|| format!("`{}` is missing", expected.field))?;
    }
    let actual = match value {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if actual == expected.equals {
        Ok(())
    } else {
        Err(format!(
            "`{}` is `{actual}`, expected `{}`",
            expected.field, expected.equals
        ))
    }
}

/// One line per check that ran, then the `INFRA-WAIVED:` line if anything was waived, then the
/// `VERDICT:` line.
pub fn report_lines(runs: &[CheckRun], verdict: &StagingVerdict) -> Vec<String> {
    let mut lines: Vec<String> = runs
        .iter()
        .map(|run| {
            let r = &run.result;
            let outcome = if r.passed { "PASS" } else { "FAIL" };
            let category = r.category.as_str();
            if r.shadow {
                format!("SHADOW {} ({category}): {outcome}: {}", r.id, r.detail)
            } else {
                format!("{outcome} {} ({category}): {}", r.id, r.detail)
            }
        })
        .collect();
    lines.extend(verdict.waived_line());
    lines.push(verdict.verdict_line());
    lines
}

#[cfg(test)]
mod tests;
