//! Handing an item's branch from one machine to the next through the project's forge.
//!
//! A stage may run on another machine than the one before it. With a forge, the worker that ran
//! a stage pushes the item's branch (forced: a retry resets the branch to the stage's base, so it
//! can move backwards) before the stage's result is recorded, and the verdict records the commit
//! the branch was left at ([`HEAD_FACT`]). The worker that claims the next run starts from exactly
//! that commit: when its repository lacks it, it fetches the branch from the forge first.
//!
//! Both ends fail closed, as infrastructure (the item blocks without spending a fail budget, and
//! `orch retry` runs the stage again once the forge is fixed): a push that fails turns the
//! stage's verdict into a block, so no stage passes with work that exists on one machine only;
//! a commit that is still missing after the fetch blocks the run before anything runs, so no
//! stage runs on another base than the one recorded.
//!
//! Without a forge nothing moves between machines: every worker shares one data directory and
//! starts from the branch it finds there, as before.

use std::time::Duration;

use orch_core::gate::{GateVerdict, VerdictClass};
use orch_core::pipeline::GateKind;
use orch_store::{ItemRecord, NewEvent, RunRecord, RunState};
use serde_json::{Value, json};

use crate::execute::{Measured, StageError};
use crate::project::{Project, branch};
use crate::{Engine, events};

/// The verdict fact naming the commit a run left the item's branch at.
pub(crate) const HEAD_FACT: &str = "head";

/// How often a push or a fetch is tried before the item blocks, and the pause after the first
/// failure (doubled after each): a forge restarting for a few seconds does not stop an item.
const FORGE_TRIES: u32 = 3;
const FORGE_BACKOFF: Duration = Duration::from_millis(500);

/// Runs `step` until it succeeds, at most [`FORGE_TRIES`] times; the last error otherwise.
async fn tried<T, F, Fut>(mut step: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut last = String::new();
    for attempt in 0..FORGE_TRIES {
        if attempt > 0 {
            tokio::time::sleep(FORGE_BACKOFF * 2u32.pow(attempt - 1)).await;
        }
        match step().await {
            Ok(value) => return Ok(value),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The commit the item's branch must be at for its next run: the [`HEAD_FACT`] of its latest
/// finished run that recorded one (a run that blocked before it ran, or whose push failed,
/// records none, so the one before it counts).
pub(crate) fn recorded_head(runs: &[RunRecord]) -> Option<String> {
    runs.iter()
        .rev()
        .filter(|r| matches!(r.state, RunState::Passed | RunState::Failed))
        .find_map(|r| run_head(r).map(str::to_owned))
}

/// The commit `run` recorded as where it left the item's branch, if it did.
pub(crate) fn run_head(run: &RunRecord) -> Option<&str> {
    run.verdict.as_ref()?.get(HEAD_FACT)?.as_str()
}

/// Where a run starts on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartingPoint {
    /// No commit is prescribed (no forge, or the item's first run): the local branch as it is.
    Local,
    /// This exact commit, now in the local repository; `fetched` when it came from the forge.
    Commit { sha: String, fetched: bool },
    /// The prescribed commit cannot be had here: the run must not start. The reason names the
    /// commit, the branch and what failed.
    Unavailable(String),
}

impl Engine {
    /// The commit a run of `item` must start from, made present in `repo`. `pinned` is the base
    /// the run checkpointed at its first execution; otherwise the head the item's last run
    /// recorded. Only a project with a forge prescribes a commit.
    pub(crate) async fn starting_point(
        &self,
        project: &Project,
        repo: &orch_git::Repo,
        item: &ItemRecord,
        runs: &[RunRecord],
        pinned: Option<&str>,
    ) -> Result<StartingPoint, StageError> {
        let Some(link) = &project.settings.remotes.forge else {
            return Ok(StartingPoint::Local);
        };
        let Some(sha) = pinned.map(str::to_owned).or_else(|| recorded_head(runs)) else {
            return Ok(StartingPoint::Local);
        };
        if repo.has_commit(&sha).await? {
            return Ok(StartingPoint::Commit {
                sha,
                fetched: false,
            });
        }
        let branch = branch(&item.id);
        let fetched = tried(|| async {
            link.forge
                .fetch_branch(repo, &branch)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        if repo.has_commit(&sha).await? {
            return Ok(StartingPoint::Commit { sha, fetched: true });
        }
        let found = match fetched {
            Ok(at) => format!("the forge's `{branch}` is at {at}, which does not contain it"),
            Err(e) => format!(
                "fetching `{branch}` from the {} forge failed {FORGE_TRIES} times: {e}",
                link.forge.kind()
            ),
        };
        Ok(StartingPoint::Unavailable(format!(
            "the run must start from commit {sha}, which this worker's repository lacks, and {found} \
             (infrastructure, not the change: restore the branch on the forge, then `orch retry`)"
        )))
    }

    /// Pushes the item's branch to the project's forge when the run recorded where it left it,
    /// before the result is recorded. A push that fails [`FORGE_TRIES`] times blocks the stage
    /// (see the module doc) and drops the recorded head, so the next run starts from the last
    /// commit the forge did take.
    pub(crate) async fn publish_branch(
        &self,
        project: &Project,
        item: &ItemRecord,
        run: &RunRecord,
        m: &mut Measured,
    ) {
        let Some(link) = &project.settings.remotes.forge else {
            return;
        };
        let Some(head) = m.facts.get(HEAD_FACT).and_then(Value::as_str) else {
            return;
        };
        let head = head.to_owned();
        let branch = branch(&item.id);
        let pushed = tried(|| async {
            let repo = project.repo().await.map_err(|e| e.to_string())?;
            link.forge
                .push_branch(repo, &branch)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        let last_error = match pushed {
            Ok(()) => {
                m.events.push(NewEvent::for_run(
                    events::BRANCH_PUSHED,
                    run.id,
                    json!({ "branch": branch, "sha": head }),
                ));
                return;
            }
            Err(e) => e,
        };
        let reason = format!(
            "the {} forge did not take branch `{branch}` at {head} after {FORGE_TRIES} tries: \
             {last_error} (infrastructure, not the change: the commit stays in this worker's \
             repository; fix the forge, then `orch retry` runs the stage again)",
            link.forge.kind()
        );
        m.events.push(NewEvent::for_run(
            events::BRANCH_PUSH_FAILED,
            run.id,
            json!({ "branch": branch, "sha": head, "error": last_error }),
        ));
        if let Value::Object(facts) = &mut m.facts {
            facts.remove(HEAD_FACT);
        }
        m.fingerprint = format!("handoff|{reason}");
        m.verdict = blocked(reason);
    }
}

/// A FAILED verdict that blocks the item: orch's own step (gate `action`) could not be done.
pub(crate) fn blocked(reason: String) -> GateVerdict {
    let mut verdict = GateVerdict::failed(GateKind::Action, reason.clone());
    verdict.class = VerdictClass::Block(reason);
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: i64, state: RunState, verdict: Option<Value>) -> RunRecord {
        RunRecord {
            id,
            item: orch_core::ItemId::parse("X-1").expect("id"),
            project: orch_core::ProjectId::parse("x").expect("project"),
            stage: orch_core::StageName::parse("analysis").expect("stage"),
            attempt: 1,
            state,
            epoch: 1,
            lease: None,
            feedback: Vec::new(),
            checkpoint: Value::Null,
            verdict,
            usage: None,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn the_recorded_head_is_the_latest_finished_run_that_recorded_one() {
        let runs = [
            run(1, RunState::Passed, Some(json!({ "head": "aaa" }))),
            run(2, RunState::Failed, Some(json!({ "head": "bbb" }))),
            // Blocked by a failed push: no head, so `bbb` still counts.
            run(3, RunState::Failed, Some(json!({ "class": "block" }))),
            run(4, RunState::Running, None),
        ];
        assert_eq!(recorded_head(&runs).as_deref(), Some("bbb"));
        assert_eq!(recorded_head(&runs[..1]).as_deref(), Some("aaa"));
        assert_eq!(recorded_head(&[]), None);
        assert_eq!(
            recorded_head(&[run(1, RunState::Cancelled, Some(json!({ "head": "ccc" })))]),
            None,
            "a cancelled run left nothing to continue from"
        );
    }

    #[tokio::test]
    async fn a_forge_step_is_tried_until_it_succeeds_and_at_most_three_times() {
        let calls = std::cell::Cell::new(0);
        let second = tried(|| async {
            calls.set(calls.get() + 1);
            if calls.get() < 2 {
                Err(format!("down {}", calls.get()))
            } else {
                Ok(calls.get())
            }
        })
        .await;
        assert_eq!(second, Ok(2));
        calls.set(0);
        let never: Result<(), String> = tried(|| async {
            calls.set(calls.get() + 1);
            Err(format!("down {}", calls.get()))
        })
        .await;
        assert_eq!(never, Err("down 3".to_owned()), "the last error is kept");
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_blocked_verdict_fails_and_blocks_with_its_reason() {
        let v = blocked("forge down".into());
        assert!(!v.is_pass());
        assert_eq!(v.class, VerdictClass::Block("forge down".into()));
        assert_eq!(v.reasons(), ["action: forge down"]);
    }
}
