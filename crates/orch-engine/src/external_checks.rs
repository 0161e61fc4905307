//! The team's own CI as a gate: the checks a project requires (commit statuses and check runs,
//! by name or pattern, or every one reported) must have passed on the exact commit being judged
//! before a promotion (the candidate), and before the agent of a stage such as review starts
//! (the branch head the previous stage left), read from the forge at that moment.
//!
//! [`judge`] is the decision, pure: a required check that failed is FAILED with its name,
//! description, link and log tail (back to development, where the identical-failure rule and the
//! edge's budget bound the loop); one not reported yet, still running, cancelled or reported for
//! another commit is no verdict: the stage waits, and blocks once the project's timeout has run
//! out since it first waited on that commit. Never a pass without an explicit success on that
//! very commit.

use std::time::Duration;

use orch_integrations::{CheckState, ExternalCheck};
use orch_store::{EventRecord, ItemRecord, NewEvent, RunRecord};
use serde_json::json;

use crate::action_stage::ActionOutcome;
use crate::execute::{Measured, StageError, fingerprint};
use crate::project::Project;
use crate::{Engine, events};

/// What the checks gate lets the promotion do.
pub(crate) enum ChecksGate {
    /// Go on; lines for the deploy log.
    Proceed(Vec<String>),
    /// Decided here: back to development, or blocked.
    Stop(Box<ActionOutcome>),
}

impl Engine {
    /// A forge of `kind` (`gitea`, `github`) said something about checks or reviews (a
    /// webhook): the runs of its projects that wait for either (they gave way) look again now
    /// instead of at the end of their pause. The news itself decides nothing: the woken runs
    /// read the forge again. Returns how many runs were woken.
    pub async fn wake_for_forge_news(&self, kind: &str) -> u64 {
        let mut woken = 0;
        for project in self.projects() {
            let Some(link) = &project.settings.remotes.forge else {
                continue;
            };
            if link.forge.kind() != kind {
                continue;
            }
            match self.store.wake_given_way(project.id()).await {
                Ok(n) => woken += n,
                Err(e) => tracing::warn!("{}: waking runs for forge news: {e}", project.id()),
            }
        }
        if woken > 0 {
            self.wake();
        }
        woken
    }

    /// Before an agent stage named in `before_stages` runs its agent: the required checks on
    /// the branch head the item's last stage recorded. `None`: nothing to wait for, run.
    pub(crate) async fn checks_before_agent(
        &self,
        project: &Project,
        item: &ItemRecord,
        run: &RunRecord,
        runs: &[RunRecord],
    ) -> Result<Option<Measured>, StageError> {
        let Some(policy) = project
            .settings
            .remotes
            .forge
            .as_ref()
            .and_then(|l| l.checks.as_ref())
        else {
            return Ok(None);
        };
        if !policy.before_stages.iter().any(|s| s == run.stage.as_str()) {
            return Ok(None);
        }
        let Some(head) = crate::handoff::recorded_head(runs) else {
            return Ok(None);
        };
        let history = self.store.list_events(&item.id, 0).await?;
        match self
            .checks_gate(project, item, run, &history, &head)
            .await?
        {
            ChecksGate::Proceed(_) => Ok(None),
            ChecksGate::Stop(outcome) => match *outcome {
                ActionOutcome::Decided { measured, .. } => Ok(Some(measured)),
                ActionOutcome::Acted(_) => Ok(None),
            },
        }
    }

    /// The project's required checks on commit `sha`, read from the forge now (see the module
    /// doc). `history` is the item's events so far.
    pub(crate) async fn checks_gate(
        &self,
        project: &Project,
        item: &ItemRecord,
        run: &RunRecord,
        history: &[EventRecord],
        sha: &str,
    ) -> Result<ChecksGate, StageError> {
        let Some(link) = &project.settings.remotes.forge else {
            return Ok(ChecksGate::Proceed(Vec::new()));
        };
        let Some(policy) = &link.checks else {
            return Ok(ChecksGate::Proceed(Vec::new()));
        };
        let verdict = match link.forge.commit_checks(sha).await {
            Ok(reported) => {
                let verdict = judge(policy, sha, &reported);
                let mut data = as_event(sha, &reported);
                data["verdict"] = json!(match &verdict {
                    ChecksVerdict::Passed(_) => "passed",
                    ChecksVerdict::Waiting(_) => "waiting",
                    ChecksVerdict::Failed(..) => "failed",
                });
                // One event per change of what the forge says, not one per look.
                let last = history
                    .iter()
                    .rev()
                    .find(|e| e.kind == events::CHECKS_READ && e.run_id == Some(run.id))
                    .map(|e| &e.data);
                if last != Some(&data) {
                    self.store
                        .append_events(
                            &item.id,
                            vec![NewEvent::for_run(events::CHECKS_READ, run.id, data)],
                        )
                        .await?;
                }
                verdict
            }
            Err(e) if e.is_transient() => ChecksVerdict::Waiting(vec![format!(
                "the {} forge could not be asked: {e}",
                link.forge.kind()
            )]),
            Err(e) => {
                return Ok(ChecksGate::Stop(Box::new(ActionOutcome::Decided {
                    measured: Measured::blocked(format!(
                        "the required checks on {} could not be read from the {} forge: {e} \
                         (prod was not touched; fix it, then `orch retry`)",
                        short(sha),
                        link.forge.kind()
                    )),
                    lines: Vec::new(),
                })));
            }
        };
        match verdict {
            ChecksVerdict::Passed(lines) => Ok(ChecksGate::Proceed(
                lines
                    .into_iter()
                    .map(|l| format!("required check {l}"))
                    .collect(),
            )),
            ChecksVerdict::Failed(reasons, key) => {
                // The same checks failing with the same output: identical, whatever commit.
                let measured = Measured::action_failed(
                    &reasons,
                    fingerprint(run.stage.as_str(), &key, "external-checks"),
                    json!({ crate::handoff::HEAD_FACT: sha }),
                    Vec::new(),
                );
                let lines = reasons.iter().map(|r| format!("FAILED: {r}")).collect();
                Ok(ChecksGate::Stop(Box::new(ActionOutcome::Decided {
                    measured,
                    lines,
                })))
            }
            ChecksVerdict::Waiting(why) => {
                let now = chrono::Utc::now().timestamp_millis();
                let since = first_wait(history, run.id, sha).unwrap_or(now);
                let waited = Duration::from_millis(u64::try_from(now - since).unwrap_or(0));
                if waited >= policy.timeout {
                    return Ok(ChecksGate::Stop(Box::new(ActionOutcome::Decided {
                        measured: Measured::blocked(format!(
                            "the required checks on {} have no verdict after {}s: {} (prod was \
                             not touched; once they report, `orch retry`)",
                            short(sha),
                            policy.timeout.as_secs(),
                            why.join("; ")
                        )),
                        lines: Vec::new(),
                    })));
                }
                Err(StageError::Waiting {
                    reason: format!("required checks on {}: {}", short(sha), why.join("; ")),
                    pause: policy.poll,
                })
            }
        }
    }
}

/// When this run first waited for checks on `sha` (its first `checks.read` for that commit
/// without a verdict); a retried run waits afresh.
fn first_wait(history: &[EventRecord], run: i64, sha: &str) -> Option<i64> {
    history
        .iter()
        .find(|e| {
            e.kind == events::CHECKS_READ
                && e.run_id == Some(run)
                && e.data["sha"] == sha
                && e.data["verdict"] == "waiting"
        })
        .map(|e| e.at)
}

/// `[projects.forge.checks]`: what must pass, how long to wait, how often to look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckPolicy {
    /// Names or `*` patterns of checks; `["*"]` means every check reported on the commit (and at
    /// least one).
    pub required: Vec<String>,
    pub timeout: Duration,
    pub poll: Duration,
    /// Agent stages whose agent starts only once the required checks passed on the branch head
    /// the previous stage left (default: `review`). The deploy always judges the candidate.
    pub before_stages: Vec<String>,
}

impl CheckPolicy {
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
    pub const DEFAULT_POLL: Duration = Duration::from_secs(15);
}

/// What the checks on one commit say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ChecksVerdict {
    /// Every required check passed on this commit; a line each, for the log.
    Passed(Vec<String>),
    /// Some required check has no verdict yet; why, one line each.
    Waiting(Vec<String>),
    /// Required checks failed: one reason each (name, description, link, log tail), and what
    /// identifies the failure across commits and runs (name, state, description, output).
    Failed(Vec<String>, Vec<String>),
}

/// Judges the `reported` checks of commit `sha` against `policy` (see the module doc).
pub(crate) fn judge(policy: &CheckPolicy, sha: &str, reported: &[ExternalCheck]) -> ChecksVerdict {
    let on_this: Vec<&ExternalCheck> = reported.iter().filter(|c| c.sha == sha).collect();
    let every = policy.required.iter().any(|p| p == "*");
    let mut waiting = Vec::new();
    // The reported checks each required name or pattern selects (each check once).
    let mut considered: Vec<&ExternalCheck> = Vec::new();
    if every {
        if on_this.is_empty() {
            waiting.push(format!("no check is reported on {} yet", short(sha)));
        }
        considered.extend(on_this.iter().copied());
    } else {
        for pattern in &policy.required {
            let matching: Vec<&ExternalCheck> = on_this
                .iter()
                .copied()
                .filter(|c| orch_core::glob::matches(pattern, &c.name))
                .collect();
            if matching.is_empty() {
                let elsewhere = reported.iter().any(|c| c.sha != sha && c.name == *pattern);
                waiting.push(if elsewhere {
                    format!(
                        "{pattern} is reported only for another commit, not {}",
                        short(sha)
                    )
                } else {
                    format!("{pattern} is not reported on {} yet", short(sha))
                });
            }
            for check in matching {
                if !considered.iter().any(|c| std::ptr::eq(*c, check)) {
                    considered.push(check);
                }
            }
        }
    }
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut key = Vec::new();
    for check in considered {
        match check.state {
            CheckState::Success => passed.push(format!("{}: success", check.name)),
            CheckState::Failure => {
                failed.push(failure_reason(check));
                key.push(format!(
                    "{}|{}|{}|{}",
                    check.name,
                    check.forge_state,
                    check.description,
                    check.log_tail.as_deref().unwrap_or_default()
                ));
            }
            CheckState::Pending => {
                waiting.push(format!("{} is {}", check.name, check.forge_state));
            }
            CheckState::NoVerdict => waiting.push(format!(
                "{} ended `{}`, which is no verdict: run it again",
                check.name, check.forge_state
            )),
        }
    }
    if !failed.is_empty() {
        ChecksVerdict::Failed(failed, key)
    } else if !waiting.is_empty() {
        ChecksVerdict::Waiting(waiting)
    } else {
        ChecksVerdict::Passed(passed)
    }
}

/// The reason a failed check gives the developer: what, why, where to look, the output's end.
fn failure_reason(check: &ExternalCheck) -> String {
    let mut reason = format!(
        "the required check `{}` failed ({}) on this commit",
        check.name, check.forge_state
    );
    if !check.description.is_empty() {
        reason.push_str(&format!(": {}", check.description));
    }
    if let Some(url) = &check.target_url {
        reason.push_str(&format!(" ({url})"));
    }
    if let Some(tail) = &check.log_tail {
        reason.push_str(&format!("\nthe end of its output:\n{tail}"));
    }
    reason
}

/// The checks as the item's events record them: name, state, link.
pub(crate) fn as_event(sha: &str, checks: &[ExternalCheck]) -> serde_json::Value {
    json!({
        "sha": sha,
        "checks": checks.iter().filter(|c| c.sha == sha).map(|c| json!({
            "name": c.name, "state": c.state.as_str(), "forge_state": c.forge_state,
            "description": c.description, "url": c.target_url,
        })).collect::<Vec<_>>(),
    })
}

fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "1111111111111111111111111111111111111111";
    const OTHER: &str = "2222222222222222222222222222222222222222";

    fn check(name: &str, state: CheckState, sha: &str) -> ExternalCheck {
        ExternalCheck {
            name: name.into(),
            state,
            forge_state: match state {
                CheckState::Success => "success",
                CheckState::Failure => "failure",
                CheckState::Pending => "in_progress",
                CheckState::NoVerdict => "cancelled",
            }
            .into(),
            sha: sha.into(),
            description: "d".into(),
            target_url: Some("https://ci/1".into()),
            log_tail: Some("error: boom".into()),
        }
    }

    fn policy(required: &[&str]) -> CheckPolicy {
        CheckPolicy {
            required: required.iter().map(|s| (*s).to_owned()).collect(),
            timeout: CheckPolicy::DEFAULT_TIMEOUT,
            poll: CheckPolicy::DEFAULT_POLL,
            before_stages: Vec::new(),
        }
    }

    #[test]
    fn only_explicit_successes_on_this_commit_pass() {
        let p = policy(&["build", "test*"]);
        let ok = [
            check("build", CheckState::Success, SHA),
            check("test-unit", CheckState::Success, SHA),
        ];
        assert!(matches!(judge(&p, SHA, &ok), ChecksVerdict::Passed(_)));
        // Missing, or on another commit: waiting, never a pass.
        let elsewhere = [
            check("build", CheckState::Success, OTHER),
            check("test-unit", CheckState::Success, SHA),
        ];
        match judge(&p, SHA, &elsewhere) {
            ChecksVerdict::Waiting(why) => assert!(why[0].contains("another commit"), "{why:?}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(&p, SHA, &[check("build", CheckState::Success, SHA)]),
            ChecksVerdict::Waiting(_)
        ));
    }

    #[test]
    fn cancelled_and_running_are_no_verdict_and_a_failure_wins() {
        let p = policy(&["build"]);
        for state in [CheckState::Pending, CheckState::NoVerdict] {
            assert!(matches!(
                judge(&p, SHA, &[check("build", state, SHA)]),
                ChecksVerdict::Waiting(_)
            ));
        }
        let failed = judge(
            &policy(&["*"]),
            SHA,
            &[
                check("build", CheckState::Pending, SHA),
                check("test", CheckState::Failure, SHA),
            ],
        );
        match failed {
            ChecksVerdict::Failed(reasons, _) => {
                assert!(reasons[0].contains("`test` failed"), "{reasons:?}");
                assert!(reasons[0].contains("https://ci/1"));
                assert!(reasons[0].ends_with("error: boom"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_reported_needs_at_least_one() {
        let p = policy(&["*"]);
        assert!(matches!(judge(&p, SHA, &[]), ChecksVerdict::Waiting(_)));
        assert!(matches!(
            judge(&p, SHA, &[check("x", CheckState::Success, SHA)]),
            ChecksVerdict::Passed(_)
        ));
    }
}
