//! What a forge says about a commit: its commit statuses and, on GitHub, its check runs, read as
//! one list of [`ExternalCheck`]s in the forge's own words, mapped to four states.
//!
//! The mapping is fail-closed: only an explicit success is [`CheckState::Success`]; a state orch
//! does not know, a cancelled, skipped, neutral or stale run is [`CheckState::NoVerdict`] (never a
//! pass, never a failure that costs a retry). Every item carries the commit it was reported for,
//! so a check on another commit can be told apart by the caller. Nothing here decides a gate.

use serde_json::Value;

/// A check's state, as orch reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckState {
    Success,
    Failure,
    /// Queued or running: no result yet.
    Pending,
    /// Ended without a result that counts (cancelled, skipped, neutral, stale, unknown).
    NoVerdict,
}

impl CheckState {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Pending => "pending",
            CheckState::NoVerdict => "no-verdict",
        }
    }
}

/// One commit status or check run on a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalCheck {
    /// The status's context or the check run's name.
    pub name: String,
    pub state: CheckState,
    /// The forge's own word for the state (`failure`, `timed_out`, `cancelled`...).
    pub forge_state: String,
    /// The commit this was reported for.
    pub sha: String,
    pub description: String,
    pub target_url: Option<String>,
    /// The end of the check's output, where the forge's API gives it (GitHub check runs).
    pub log_tail: Option<String>,
}

/// The lines of a check's output orch keeps: enough to see the failure, bounded for prompts.
const TAIL_LINES: usize = 40;
const TAIL_BYTES: usize = 4000;

/// The statuses of a combined-status answer (`GET commits/{ref}/status`), whose entries name
/// their state `state` (GitHub) or `status` (Gitea). Gitea's `warning` is not a success.
pub(crate) fn from_combined_status(answer: &Value, sha: &str) -> Vec<ExternalCheck> {
    let reported_for = text(answer, "sha").unwrap_or_else(|| sha.to_owned());
    answer
        .get("statuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|s| {
            let forge_state = text(s, "state")
                .or_else(|| text(s, "status"))
                .unwrap_or_default();
            ExternalCheck {
                name: text(s, "context").unwrap_or_default(),
                state: match forge_state.as_str() {
                    "success" => CheckState::Success,
                    "failure" | "error" => CheckState::Failure,
                    "pending" => CheckState::Pending,
                    _ => CheckState::NoVerdict,
                },
                forge_state,
                sha: reported_for.clone(),
                description: text(s, "description").unwrap_or_default(),
                target_url: text(s, "target_url").filter(|u| !u.is_empty()),
                log_tail: None,
            }
        })
        .collect()
}

/// GitHub's check runs (`GET commits/{ref}/check-runs`): `status` until `completed`, then its
/// `conclusion`; the output's text (else summary) is the log tail.
pub(crate) fn from_check_runs(answer: &Value) -> Vec<ExternalCheck> {
    answer
        .get("check_runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|run| {
            let status = text(run, "status").unwrap_or_default();
            let conclusion = text(run, "conclusion").unwrap_or_default();
            let (state, forge_state) = if status == "completed" {
                let state = match conclusion.as_str() {
                    "success" => CheckState::Success,
                    "failure" | "timed_out" | "action_required" => CheckState::Failure,
                    _ => CheckState::NoVerdict,
                };
                (state, conclusion)
            } else {
                (CheckState::Pending, status)
            };
            let output = run.get("output").cloned().unwrap_or(Value::Null);
            let log = text(&output, "text")
                .filter(|t| !t.trim().is_empty())
                .or_else(|| text(&output, "summary"))
                .filter(|t| !t.trim().is_empty());
            ExternalCheck {
                name: text(run, "name").unwrap_or_default(),
                state,
                forge_state,
                sha: text(run, "head_sha").unwrap_or_default(),
                description: text(&output, "title").unwrap_or_default(),
                target_url: text(run, "details_url")
                    .or_else(|| text(run, "html_url"))
                    .filter(|u| !u.is_empty()),
                log_tail: log.map(|l| tail(&l)),
            }
        })
        .collect()
}

/// The last lines of `text`, at most [`TAIL_LINES`] and about [`TAIL_BYTES`].
pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for line in lines.iter().rev().take(TAIL_LINES) {
        bytes += line.len() + 1;
        if bytes > TAIL_BYTES {
            if kept.is_empty() {
                // One line longer than the bound: its end.
                let mut from = line.len().saturating_sub(TAIL_BYTES);
                while !line.is_char_boundary(from) {
                    from += 1;
                }
                kept.push(&line[from..]);
            }
            break;
        }
        kept.push(line);
    }
    kept.reverse();
    kept.join("\n")
}

fn text(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn statuses_map_only_success_to_success_in_both_forges_words() {
        let gitea = json!({ "sha": "abc", "statuses": [
            { "status": "success", "context": "ci/build", "target_url": "" },
            { "status": "warning", "context": "lint" },
            { "status": "error", "context": "ci/test", "description": "3 failed" },
            { "status": "pending", "context": "deploy-preview" },
        ]});
        let states: Vec<(String, CheckState)> = from_combined_status(&gitea, "abc")
            .into_iter()
            .map(|c| (c.name, c.state))
            .collect();
        assert_eq!(
            states,
            [
                ("ci/build".to_owned(), CheckState::Success),
                ("lint".to_owned(), CheckState::NoVerdict),
                ("ci/test".to_owned(), CheckState::Failure),
                ("deploy-preview".to_owned(), CheckState::Pending),
            ]
        );
        let github = json!({ "sha": "abc", "statuses": [{ "state": "failure", "context": "x" }] });
        assert_eq!(
            from_combined_status(&github, "abc")[0].state,
            CheckState::Failure
        );
    }

    #[test]
    fn check_runs_count_only_a_completed_success_and_keep_the_output_tail() {
        let answer = json!({ "check_runs": [
            { "name": "build", "head_sha": "abc", "status": "completed", "conclusion": "success" },
            { "name": "test", "head_sha": "abc", "status": "completed", "conclusion": "timed_out",
              "details_url": "https://ci/1", "output": { "title": "timed out", "text": "a\nb\nc" } },
            { "name": "e2e", "head_sha": "abc", "status": "in_progress", "conclusion": null },
            { "name": "old", "head_sha": "abc", "status": "completed", "conclusion": "cancelled" },
            { "name": "odd", "head_sha": "abc", "status": "completed", "conclusion": "neutral" },
        ]});
        let checks = from_check_runs(&answer);
        let states: Vec<CheckState> = checks.iter().map(|c| c.state).collect();
        assert_eq!(
            states,
            [
                CheckState::Success,
                CheckState::Failure,
                CheckState::Pending,
                CheckState::NoVerdict,
                CheckState::NoVerdict
            ]
        );
        assert_eq!(checks[1].log_tail.as_deref(), Some("a\nb\nc"));
        assert_eq!(checks[1].target_url.as_deref(), Some("https://ci/1"));
    }

    #[test]
    fn the_tail_keeps_the_last_lines_within_its_bounds() {
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let kept = tail(&long);
        assert!(
            kept.starts_with("line 60") && kept.ends_with("line 99"),
            "{kept}"
        );
        let wide = "x".repeat(10_000);
        assert_eq!(
            tail(&wide).len(),
            TAIL_BYTES,
            "one long line is cut to its end"
        );
        let accents = "é".repeat(3000);
        assert!(
            tail(&accents).chars().all(|c| c == 'é'),
            "cut on a character"
        );
    }
}
