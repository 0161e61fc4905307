//! An approval belongs to one artifact: the build a passed staging run validated (its SHA and
//! digest). These rules decide who may approve, whether there is anything to approve, and whether
//! the recorded approval covers the SHA a deploy is about to promote. Pure functions over the
//! item's runs and events, so each rule is testable without a store.

use orch_core::pipeline::{Action, Pipeline, StageKind};
use orch_store::{EventRecord, RunRecord, RunState};

use crate::events;
use crate::people::Actor;

/// Agent kinds orch runs; an approval in one of these names is an agent approving itself.
const AGENT_KINDS: [&str; 4] = ["scripted", "command", "claude", "codex"];

/// Why `actor` may not approve, if so: an agent never approves; automation (the global API
/// token) only when the project's approvers name it; when the project names its approvers, only
/// those people do; a tracker account linked to no person only when no approvers are named.
pub(crate) fn refuse_approver(actor: &Actor, approvers: &[String]) -> Option<String> {
    let by = actor.name().trim();
    if by.is_empty() {
        return Some("an approval needs the approver's name (--by NAME)".to_owned());
    }
    let lowered = by.to_ascii_lowercase();
    if AGENT_KINDS.contains(&lowered.as_str()) || lowered.starts_with("agent:") {
        return Some(format!(
            "`{by}` names an agent; an agent can never approve a change, a person must"
        ));
    }
    let listed = approvers.iter().any(|a| a == by);
    match actor {
        Actor::Service(_) if !listed => Some(format!(
            "`{by}` is the server's automation token, not a person; approve with your own token (`orch user add NAME`), or list `{by}` in the project's approvers"
        )),
        Actor::TrackerAccount { account, login } if !approvers.is_empty() => Some(format!(
            "the tracker account {account} ({login}) is linked to no person, and only {} may approve; link it with `orch user add NAME --tracker-id {account}`",
            approvers.join(", ")
        )),
        Actor::Person(_) if !approvers.is_empty() && !listed => Some(format!(
            "`{by}` may not approve items of this project; its approvers are: {}",
            approvers.join(", ")
        )),
        _ => None,
    }
}

fn is_deploy_staging(pipeline: &Pipeline, run: &RunRecord) -> bool {
    pipeline.stage(&run.stage).is_some_and(|stage| {
        stage.kind
            == StageKind::Action {
                action: Action::DeployStaging,
            }
    })
}

fn is_approval(pipeline: &Pipeline, run: &RunRecord) -> bool {
    pipeline
        .stage(&run.stage)
        .is_some_and(|stage| stage.kind == StageKind::Approval)
}

/// The staging run an approval now would be bound to: the item's latest deploy-staging run, which
/// must have passed, with nothing but approval runs after it. Any later agent or action run means
/// the item moved on (a rollback, a new build), so that old validation proves nothing now.
pub(crate) fn validated_staging<'a>(
    pipeline: &Pipeline,
    runs: &'a [RunRecord],
) -> Result<&'a RunRecord, String> {
    let Some(position) = runs.iter().rposition(|r| is_deploy_staging(pipeline, r)) else {
        return Err(
            "no deploy-staging run exists yet; nothing was validated to approve".to_owned(),
        );
    };
    let staging = &runs[position];
    if staging.state != RunState::Passed {
        return Err(format!(
            "its latest deploy-staging run (attempt {}) is {}, not passed; nothing is validated to approve",
            staging.attempt,
            staging.state.as_str()
        ));
    }
    // A promotion that only found its approval expired, or that blocked on something that is
    // not the change (a port, the daemon, paused promotions), changed nothing: the build stands.
    if let Some(later) = runs[position + 1..]
        .iter()
        .find(|r| !is_approval(pipeline, r) && !left_the_build_standing(r))
    {
        return Err(format!(
            "a {} run followed its last passed deploy-staging run; stage it again before approving",
            later.stage
        ));
    }
    Ok(staging)
}

/// Whether the latest approval of the item was given for `sha`. A pipeline without an approval
/// stage has nothing to check.
pub(crate) fn approval_covers(
    pipeline: &Pipeline,
    events_so_far: &[EventRecord],
    sha: &str,
) -> Result<(), String> {
    let needs_approval = pipeline
        .stages()
        .iter()
        .any(|stage| stage.kind == StageKind::Approval);
    if !needs_approval {
        return Ok(());
    }
    let Some(approval) = events_so_far
        .iter()
        .rev()
        .find(|e| e.kind == events::APPROVED)
    else {
        return Err(format!(
            "no approval is recorded for {sha}; approve it before it is promoted"
        ));
    };
    match approval.data.get("sha").and_then(|v| v.as_str()) {
        Some(approved) if approved == sha => Ok(()),
        Some(approved) => Err(format!(
            "the approval was given for {approved}, but {sha} is to be promoted; a new build needs a new approval"
        )),
        None => Err(format!(
            "the latest approval names no SHA, so it covers nothing; approve {sha} again"
        )),
    }
}

/// Whether `run` ended without touching the validated build: it sent the item back for a new
/// approval, or blocked it for a person (its verdict class).
fn left_the_build_standing(run: &RunRecord) -> bool {
    let class = run
        .verdict
        .as_ref()
        .and_then(|v| v.get("class"))
        .and_then(|c| c.as_str());
    class == Some(crate::execute::REAPPROVE_CLASS) || class == Some("block")
}

/// Why the latest approval no longer holds at `now_ms` under `ttl`, if it expired. The approval
/// event's time is the store's clock; `now_ms` should come from the same clock family (UTC ms).
pub(crate) fn approval_expired(
    events_so_far: &[EventRecord],
    ttl: Option<std::time::Duration>,
    now_ms: i64,
) -> Option<String> {
    let ttl = ttl?;
    let approval = events_so_far
        .iter()
        .rev()
        .find(|e| e.kind == events::APPROVED)?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    // An approval carried over a re-integration keeps the age of the person's approval.
    let given_at = approval
        .data
        .get(GIVEN_AT)
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(approval.at);
    let age_ms = now_ms.saturating_sub(given_at);
    (age_ms > ttl_ms).then(|| {
        let by = approval
            .data
            .get("by")
            .and_then(|b| b.as_str())
            .unwrap_or("someone");
        format!(
            "the approval by {by} expired: it was given {} s ago and approvals of this project last {} s; approve again",
            age_ms / 1000,
            ttl.as_secs()
        )
    })
}

/// The field of a carried approval that keeps when the person gave it (UTC ms).
pub(crate) const GIVEN_AT: &str = "given_at";

/// An approval that holds for a new candidate without asking the person again: the latest
/// approval was given for the same change (its `change_id`) on another candidate, and the
/// project does not ask for a new approval on every re-integration. `staging` is the verdict of
/// the passed deploy-staging run the item now waits with.
pub(crate) fn carried_approval<'a>(
    events_so_far: &'a [EventRecord],
    staging: &serde_json::Value,
    reapprove_on_reintegration: bool,
) -> Option<&'a EventRecord> {
    if reapprove_on_reintegration {
        return None;
    }
    let approval = events_so_far
        .iter()
        .rev()
        .find(|e| e.kind == events::APPROVED)?;
    fn field<'v>(v: &'v serde_json::Value, k: &str) -> Option<&'v str> {
        v.get(k).and_then(|x| x.as_str())
    }
    let change = field(staging, "change_id")?;
    let candidate = field(staging, "sha")?;
    (field(&approval.data, "change_id") == Some(change)
        && field(&approval.data, "sha") != Some(candidate))
    .then_some(approval)
}

#[cfg(test)]
mod tests;
