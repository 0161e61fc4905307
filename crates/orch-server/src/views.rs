//! The JSON shape of items, runs and events: one mapping, used by the API and by the CLI's
//! `--json` output, so both always say the same thing.

use orch_core::spend::Spend;
use orch_engine::spend::ItemSpend;
use orch_store::{EventRecord, ItemRecord, RunRecord};
use serde_json::{Value, json};

pub fn item_json(i: &ItemRecord) -> Value {
    json!({
        "id": i.id.as_str(), "project": i.project.as_str(), "title": i.title, "body": i.body,
        "stage": i.progress.stage.as_str(), "status": i.progress.status.as_str(),
        "attempts": i.progress.attempts, "blocked_reason": i.blocked_reason,
        "created_at": i.created_at, "updated_at": i.updated_at,
    })
}

pub fn run_json(r: &RunRecord) -> Value {
    json!({
        "id": r.id, "stage": r.stage.as_str(), "attempt": r.attempt, "state": r.state.as_str(),
        "epoch": r.epoch, "verdict": r.verdict, "usage": r.usage, "feedback": r.feedback,
        "checkpoint": r.checkpoint, "created_at": r.created_at, "started_at": r.started_at,
        "finished_at": r.finished_at,
    })
}

pub fn event_json(e: &EventRecord) -> Value {
    json!({ "seq": e.seq, "at": e.at, "kind": e.kind, "run_id": e.run_id, "data": e.data })
}

/// What some runs spent: exact micro-dollars, the counts of runs that reported no tokens or
/// no cost, and the same as one line for people.
pub fn spend_json(s: &Spend) -> Value {
    json!({
        "tokens": s.tokens, "cost_micro_usd": s.cost, "runs": s.runs,
        "runs_without_tokens": s.runs_without_tokens, "runs_without_cost": s.runs_without_cost,
        "runs_not_reporting": s.runs_not_reporting,
        "described": s.describe(),
    })
}

/// An item's spend in total and per stage.
pub fn item_spend_json(s: &ItemSpend) -> Value {
    let by_stage: serde_json::Map<String, Value> = s
        .by_stage
        .iter()
        .map(|(stage, spent)| (stage.clone(), spend_json(spent)))
        .collect();
    json!({ "total": spend_json(&s.total), "by_stage": by_stage })
}

/// An item with its runs, its spend and its whole history (`orch item show --json`,
/// `GET /items/{id}`).
pub fn item_detail_json(item: &ItemRecord, runs: &[RunRecord], events: &[EventRecord]) -> Value {
    let mut out = item_json(item);
    out["runs"] = runs.iter().map(run_json).collect();
    out["spend"] = item_spend_json(&ItemSpend::of_runs(runs));
    out["events"] = events.iter().map(event_json).collect();
    out
}
