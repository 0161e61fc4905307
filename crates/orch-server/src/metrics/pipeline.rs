//! Metrics read from the store at each scrape: items by stage and status, stage run durations,
//! gate failures, agent spend and lease reaps. The store is the truth (it survives restarts and
//! is shared by every worker), so these are computed from it rather than counted in memory.
//! A scrape reads every item's runs and events: fine for the hundreds of items one orch holds,
//! worth a summary table when that grows.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;

use orch_engine::spend::ItemSpend;
use orch_store::{EventRecord, RunRecord, Store, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Upper bounds (seconds) of the stage duration histogram's buckets.
pub(crate) const DURATION_BUCKETS: [f64; 9] =
    [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0];

/// Whether `event` is a reap: a claim that took a run over from an owner whose lease ran out
/// (it died, or stopped renewing). Both the reaper of dead local owners and plain expiry end in
/// such a claim, so each reap is counted once.
fn is_reap(event: &EventRecord) -> bool {
    event.kind == orch_engine::events::RUN_CLAIMED && event.data["reclaimed"] == true
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ItemLabels {
    pub project: String,
    pub stage: String,
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StageLabels {
    pub project: String,
    pub stage: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GateLabels {
    pub project: String,
    pub stage: String,
    pub gate: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AgentRunLabels {
    pub project: String,
    pub stage: String,
    pub cost_known: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProjectLabels {
    pub project: String,
}

/// The stage duration histogram's constructor (a `fn`, so the family's type can be named).
pub(crate) type DurationFamily = Family<StageLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// What one scrape gathered from the store, as metric families (registered in `families`).
#[derive(Debug)]
pub(crate) struct Families {
    pub items: Family<ItemLabels, Gauge>,
    pub durations: DurationFamily,
    pub gate_failures: Family<GateLabels, Counter>,
    pub tokens: Family<StageLabels, Counter>,
    pub cost_usd: Family<StageLabels, Counter<f64, AtomicU64>>,
    pub agent_runs: Family<AgentRunLabels, Counter>,
    pub lease_reaps: Family<ProjectLabels, Counter>,
    /// Items sent back to development by something outside the agent's own gates.
    pub returns: Family<ReturnLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReturnLabels {
    pub project: String,
    pub cause: String,
}

/// The causes `orch_returns_total` counts, and the event that records each return: a required
/// CI check that failed (`checks.read` with verdict `failed`), a person's review
/// (`review.returned`), a conflict with the default branch (`git.conflict`).
const RETURN_CAUSES: [&str; 3] = ["external-check", "review", "conflict"];

fn return_cause(e: &EventRecord) -> Option<&'static str> {
    match e.kind.as_str() {
        orch_engine::events::CHECKS_READ if e.data["verdict"] == "failed" => Some("external-check"),
        orch_engine::events::REVIEW_RETURNED => Some("review"),
        orch_engine::events::CONFLICT => Some("conflict"),
        _ => None,
    }
}

impl Default for Families {
    fn default() -> Self {
        Self {
            items: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
            gate_failures: Family::default(),
            tokens: Family::default(),
            cost_usd: Family::default(),
            agent_runs: Family::default(),
            lease_reaps: Family::default(),
            returns: Family::default(),
        }
    }
}

fn stage_labels(project: &str, stage: &str) -> StageLabels {
    StageLabels {
        project: project.to_owned(),
        stage: stage.to_owned(),
    }
}

/// Reads the store-derived metrics. `projects` are the configured ones, so a project with no
/// items yet still shows its zeros.
pub(crate) async fn gather(store: &dyn Store, projects: &[String]) -> Result<Families, StoreError> {
    let g = Families::default();
    let mut runs_by_project: BTreeMap<String, Vec<RunRecord>> = BTreeMap::new();
    for project in projects {
        let _ = g.lease_reaps.get_or_create(&ProjectLabels {
            project: project.clone(),
        });
        for cause in RETURN_CAUSES {
            let _ = g.returns.get_or_create(&ReturnLabels {
                project: project.clone(),
                cause: cause.to_owned(),
            });
        }
    }
    for item in store.list_items(None).await? {
        let project = item.project.to_string();
        g.items
            .get_or_create(&ItemLabels {
                project: project.clone(),
                stage: item.progress.stage.to_string(),
                status: item.progress.status.as_str().to_owned(),
            })
            .inc();
        let runs = store.list_runs(&item.id).await?;
        for run in &runs {
            gather_run(&g, &project, run);
        }
        let events = store.list_events(&item.id, 0).await?;
        let reaps = events.iter().filter(|e| is_reap(e)).count();
        for cause in events.iter().filter_map(return_cause) {
            g.returns
                .get_or_create(&ReturnLabels {
                    project: project.clone(),
                    cause: cause.to_owned(),
                })
                .inc();
        }
        g.lease_reaps
            .get_or_create(&ProjectLabels {
                project: project.clone(),
            })
            .inc_by(reaps as u64);
        runs_by_project.entry(project).or_default().extend(runs);
    }
    for (project, runs) in &runs_by_project {
        for (stage, spent) in ItemSpend::of_runs(runs).by_stage {
            let labels = stage_labels(project, &stage);
            g.tokens.get_or_create(&labels).inc_by(spent.tokens);
            g.cost_usd
                .get_or_create(&labels)
                .inc_by(spent.cost as f64 / 1_000_000.0);
            let unknown = u64::from(spent.runs_without_cost);
            let runs = |cost_known| AgentRunLabels {
                project: project.clone(),
                stage: stage.clone(),
                cost_known,
            };
            g.agent_runs
                .get_or_create(&runs("true"))
                .inc_by(u64::from(spent.runs).saturating_sub(unknown));
            g.agent_runs.get_or_create(&runs("false")).inc_by(unknown);
        }
    }
    Ok(g)
}

fn gather_run(g: &Families, project: &str, run: &RunRecord) {
    let stage = run.stage.to_string();
    if let (Some(start), Some(end)) = (run.started_at, run.finished_at) {
        let secs = (end - start).max(0) as f64 / 1000.0;
        g.durations
            .get_or_create(&stage_labels(project, &stage))
            .observe(secs);
    }
    let failed_gates = run
        .verdict
        .as_ref()
        .and_then(|v| v.get("gates"))
        .and_then(|v| v.as_array());
    for gate in failed_gates
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str())
    {
        g.gate_failures
            .get_or_create(&GateLabels {
                project: project.to_owned(),
                stage: stage.clone(),
                gate: gate.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn returns_are_counted_by_their_cause_only() {
        let event = |kind: &str, data| EventRecord {
            item: orch_core::ItemId::parse("A-1").expect("id"),
            seq: 1,
            at: 0,
            kind: kind.to_owned(),
            run_id: Some(1),
            data,
        };
        let causes: Vec<Option<&str>> = [
            event("checks.read", json!({ "verdict": "failed" })),
            event("checks.read", json!({ "verdict": "waiting" })),
            event("review.returned", json!({})),
            event("git.conflict", json!({})),
            event("gate.verdict", json!({ "class": "fail" })),
        ]
        .iter()
        .map(return_cause)
        .collect();
        assert_eq!(
            causes,
            [
                Some("external-check"),
                None,
                Some("review"),
                Some("conflict"),
                None
            ]
        );
    }

    #[test]
    fn only_claims_that_took_a_run_over_are_reaps() {
        let event = |kind: &str, data| EventRecord {
            item: orch_core::ItemId::parse("A-1").expect("id"),
            seq: 1,
            at: 0,
            kind: kind.to_owned(),
            run_id: Some(1),
            data,
        };
        assert!(is_reap(&event("run.claimed", json!({ "reclaimed": true }))));
        assert!(!is_reap(&event(
            "run.claimed",
            json!({ "reclaimed": false })
        )));
        assert!(!is_reap(&event(
            "run.lease_expired",
            json!({ "owner": "x" })
        )));
        assert!(!is_reap(&event("run.claimed", json!({}))));
    }
}
