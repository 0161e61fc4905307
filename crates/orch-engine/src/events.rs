//! The kinds of events the engine appends. The event log is the history of an item; these names
//! are a storage format that readers (CLI, dashboard, tests) rely on.

pub const ITEM_CREATED: &str = "item.created";
pub const STAGE_ENTERED: &str = "stage.entered";
pub const RUN_CLAIMED: &str = "run.claimed";
pub const RUN_STARTED: &str = "run.started";
pub const AGENT_FINISHED: &str = "agent.finished";
pub const GATE_VERDICT: &str = "gate.verdict";
pub const STAGE_PASSED: &str = "stage.passed";
pub const STAGE_FAILED: &str = "stage.failed";
pub const COMMITTED: &str = "git.committed";
pub const NO_CHANGES: &str = "git.no-changes";
pub const DISCARDED: &str = "git.discarded";
/// Ignored files the agent left (no diff shows them) were removed before the gates: `paths`.
pub const IGNORED_REMOVED: &str = "git.ignored-removed";
/// The agent had told git to look away from these files (`assume-unchanged`, `skip-worktree`):
/// `paths`. They were measured as they are on disk, so the gates judged what the agent changed.
pub const UNHIDDEN: &str = "git.unhidden";
/// The agent had moved HEAD (committed itself, switched branches): it was put back on the item's
/// branch at the stage's `base`, the files kept, and the stage measured against the base.
pub const HEAD_RESTORED: &str = "git.head-restored";
/// The kept change modifies the pipeline (protected paths: `.orch/`, `.git*`, CI): `paths`.
/// Approval evidence shows it as "this change modifies the pipeline".
pub const PIPELINE_MODIFIED: &str = "git.pipeline-modified";
/// The item's branch was pushed to the project's forge before the run's result was recorded.
pub const BRANCH_PUSHED: &str = "git.pushed";
/// The forge did not take the push; the stage is blocked (see `handoff`).
pub const BRANCH_PUSH_FAILED: &str = "git.push-failed";
pub const CHECK_MEASURED: &str = "check.measured";
pub const DEPLOY_STAGING: &str = "deploy.staging";
/// deploy-staging integrated the default branch's tip into the item's branch: the candidate.
pub const INTEGRATED: &str = "git.integrated";
/// Integrating the tip conflicted; the merge was committed with markers for the developer.
pub const CONFLICT: &str = "git.conflict";
/// After a promotion, the default branch moved to exactly what prod runs.
pub const MAIN_ADVANCED: &str = "git.main-advanced";
/// What the forge reported on a commit's required checks, when it changed (`sha`, `checks`,
/// `verdict`: passed, waiting, failed).
pub const CHECKS_READ: &str = "checks.read";
/// The reviews of the item's pull request as the deploy read them, when they changed (`pull`,
/// `reviews`: id, by, state, commit, comments).
pub const REVIEWS_READ: &str = "reviews.read";
/// A person's review sent the item back to development (`review`, `by`, `pull`, `state`).
pub const REVIEW_RETURNED: &str = "review.returned";
/// The deploy waits for reviewers who requested changes to review the new change.
pub const REVIEW_AWAITED: &str = "review.awaited";
pub const DEPLOY_PROD: &str = "deploy.prod";
/// A self-deploy started prod's hook detached (its id, pid and exit file).
pub const DEPLOY_DETACHED: &str = "deploy.detached";
pub const APPROVAL_REQUESTED: &str = "approval.requested";
pub const APPROVED: &str = "approval.granted";
pub const NEEDS_INFO: &str = "item.needs-info";
pub const BLOCKED: &str = "item.blocked";
pub const RETRIED: &str = "item.retried";
pub const STOPPED: &str = "item.stopped";
pub const MERGED: &str = "item.merged";
pub const DONE: &str = "item.done";
/// A spend limit was reached: `when` is `before-run` (the run did not start), `during-run` (the
/// agent was stopped) or `after-run`; `reason` names the limit.
pub const SPEND_LIMIT_REACHED: &str = "spend.limit-reached";

/// The [`SPEND_LIMIT_REACHED`] event of `run`.
pub(crate) fn spend_limit_reached(
    run: &orch_store::RunRecord,
    reason: &str,
    when: &str,
) -> orch_store::NewEvent {
    orch_store::NewEvent::for_run(
        SPEND_LIMIT_REACHED,
        run.id,
        serde_json::json!({
            "stage": run.stage.as_str(),
            "attempt": run.attempt,
            "reason": reason,
            "when": when,
        }),
    )
}
/// The sandbox's egress proxy refused connections of a run's agent, command gate or deploy
/// build: `by` (`agent`, `gate:<name>`, or `build`), `host`, `port` and `count` (how many times), or, for the
/// refusals past the destinations kept per run, `unlisted: true` and `count` without a host.
pub const EGRESS_REFUSED: &str = "sandbox.egress-refused";

/// The [`EGRESS_REFUSED`] events of what `by` tried during `run`.
pub(crate) fn egress_refused(
    run_id: i64,
    by: &str,
    refused: &orch_process::EgressRefusals,
) -> Vec<orch_store::NewEvent> {
    let mut events: Vec<_> = refused
        .destinations
        .iter()
        .map(|(to, count)| {
            orch_store::NewEvent::for_run(
                EGRESS_REFUSED,
                run_id,
                serde_json::json!({ "by": by, "host": to.host, "port": to.port, "count": count }),
            )
        })
        .collect();
    if refused.unlisted > 0 {
        events.push(orch_store::NewEvent::for_run(
            EGRESS_REFUSED,
            run_id,
            serde_json::json!({ "by": by, "unlisted": true, "count": refused.unlisted }),
        ));
    }
    events
}
/// The tracker or forge could not be reached; the item keeps its place and it is tried again.
pub const REMOTE_UNREACHABLE: &str = "remote.unreachable";
/// The tracker or forge refused for good (a missing token scope, a deleted issue).
pub const REMOTE_FAILED: &str = "remote.failed";
/// A notification was not delivered after its receiver's `max_attempts`: `receiver`, `event`,
/// `attempts`, `error` (never the receiver's URL path or secret).
pub const NOTIFY_GIVEN_UP: &str = "notify.given-up";
