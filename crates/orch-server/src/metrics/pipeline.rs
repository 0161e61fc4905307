//! Metrics read from the store at each scrape: items by stage and status, stage run durations,
//! gate failures, agent spend and lease reaps. The store is the truth (it survives restarts and
//! is shared by every worker), so these are computed from it rather than counted in memory.
//! A scrape reads every item's runs and events: fine for the hundreds of items one orch holds,
//! worth a summary table when that grows.

use std::collections::BTreeMap;

use orch_core::spend::Spend;
use orch_engine::spend::ItemSpend;
use orch_store::{EventRecord, RunRecord, Store, StoreError};

use super::exposition::{Exposition, Kind};

/// Upper bounds (seconds) of the stage duration histogram's buckets.
pub(crate) const DURATION_BUCKETS: [f64; 9] =
    [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0];

/// Whether `event` is a reap: a claim that took a run over from an owner whose lease ran out
/// (it died, or stopped renewing). Both the reaper of dead local owners and plain expiry end in
/// such a claim, so each reap is counted once.
fn is_reap(event: &EventRecord) -> bool {
    event.kind == orch_engine::events::RUN_CLAIMED && event.data["reclaimed"] == true
}

type ProjectStage = (String, String);

/// What one scrape gathered.
#[derive(Debug, Default)]
struct Gathered {
    items: BTreeMap<(String, String, &'static str), u64>,
    durations: BTreeMap<ProjectStage, Histogram>,
    gate_failures: BTreeMap<(String, String, String), u64>,
    spend: BTreeMap<ProjectStage, Spend>,
    lease_reaps: BTreeMap<String, u64>,
}

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(DURATION_BUCKETS) {
            if secs <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Appends the store-derived metric families to `out`. `projects` are the configured ones, so a
/// project with no items yet still shows its zeros.
pub(crate) async fn render(
    store: &dyn Store,
    projects: &[String],
    out: &mut Exposition,
) -> Result<(), StoreError> {
    let mut g = Gathered::default();
    let mut runs_by_project: BTreeMap<String, Vec<RunRecord>> = BTreeMap::new();
    for p in projects {
        g.lease_reaps.entry(p.clone()).or_default();
    }
    for item in store.list_items(None).await? {
        let project = item.project.to_string();
        *g.items
            .entry((
                project.clone(),
                item.progress.stage.to_string(),
                item.progress.status.as_str(),
            ))
            .or_default() += 1;
        let runs = store.list_runs(&item.id).await?;
        for run in &runs {
            gather_run(&mut g, &project, run);
        }
        let reaps = store
            .list_events(&item.id, 0)
            .await?
            .iter()
            .filter(|e| is_reap(e))
            .count();
        *g.lease_reaps.entry(project.clone()).or_default() += reaps as u64;
        runs_by_project.entry(project).or_default().extend(runs);
    }
    for (project, runs) in &runs_by_project {
        for (stage, spent) in ItemSpend::of_runs(runs).by_stage {
            g.spend.insert((project.clone(), stage), spent);
        }
    }
    write(&g, out);
    Ok(())
}

fn gather_run(g: &mut Gathered, project: &str, run: &RunRecord) {
    let stage = run.stage.to_string();
    if let (Some(start), Some(end)) = (run.started_at, run.finished_at) {
        let secs = (end - start).max(0) as f64 / 1000.0;
        g.durations
            .entry((project.to_owned(), stage.clone()))
            .or_default()
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
        *g.gate_failures
            .entry((project.to_owned(), stage.clone(), gate.to_owned()))
            .or_default() += 1;
    }
}

fn write(g: &Gathered, out: &mut Exposition) {
    out.family(
        "orch_items",
        Kind::Gauge,
        "Work items by project, current stage and status.",
    );
    for ((project, stage, status), n) in &g.items {
        out.sample(
            "orch_items",
            &[("project", project), ("stage", stage), ("status", status)],
            *n as f64,
        );
    }

    out.family(
        "orch_stage_run_duration_seconds",
        Kind::Histogram,
        "Duration of finished stage runs, from start to verdict.",
    );
    for ((project, stage), h) in &g.durations {
        let (project, stage) = (project.as_str(), stage.as_str());
        let bounds = DURATION_BUCKETS.iter().map(f64::to_string);
        let cumulative = h.buckets.iter().copied().chain([h.count]);
        for (le, count) in bounds.chain(["+Inf".to_owned()]).zip(cumulative) {
            out.sample(
                "orch_stage_run_duration_seconds_bucket",
                &[("project", project), ("stage", stage), ("le", &le)],
                count as f64,
            );
        }
        let labels = [("project", project), ("stage", stage)];
        out.sample("orch_stage_run_duration_seconds_sum", &labels, h.sum);
        out.sample(
            "orch_stage_run_duration_seconds_count",
            &labels,
            h.count as f64,
        );
    }

    out.family(
        "orch_gate_failures_total",
        Kind::Counter,
        "Gates that failed in stage verdicts, by project, stage and gate.",
    );
    for ((project, stage, gate), n) in &g.gate_failures {
        out.sample(
            "orch_gate_failures_total",
            &[("project", project), ("stage", stage), ("gate", gate)],
            *n as f64,
        );
    }

    out.family(
        "orch_agent_tokens_total",
        Kind::Counter,
        "Tokens agents reported, by project and stage (runs that reported none add nothing).",
    );
    for ((project, stage), s) in &g.spend {
        out.sample(
            "orch_agent_tokens_total",
            &[("project", project), ("stage", stage)],
            s.tokens as f64,
        );
    }
    out.family(
        "orch_agent_cost_usd_total",
        Kind::Counter,
        "Cost in USD agents reported, by project and stage.",
    );
    for ((project, stage), s) in &g.spend {
        out.sample(
            "orch_agent_cost_usd_total",
            &[("project", project), ("stage", stage)],
            s.cost as f64 / 1_000_000.0,
        );
    }
    out.family(
        "orch_agent_runs_total",
        Kind::Counter,
        "Agent runs with a usage record, by project and stage; `cost_known` says whether their cost was reported.",
    );
    for ((project, stage), s) in &g.spend {
        let unknown = f64::from(s.runs_without_cost);
        let labels = |known| {
            [
                ("project", project.as_str()),
                ("stage", stage.as_str()),
                ("cost_known", known),
            ]
        };
        out.sample(
            "orch_agent_runs_total",
            &labels("true"),
            f64::from(s.runs) - unknown,
        );
        out.sample("orch_agent_runs_total", &labels("false"), unknown);
    }

    out.family(
        "orch_lease_reaps_total",
        Kind::Counter,
        "Runs taken over after their owner's lease expired (it died or stalled), by project.",
    );
    for (project, n) in &g.lease_reaps {
        out.sample("orch_lease_reaps_total", &[("project", project)], *n as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        for secs in [0.5, 4.0, 4.0, 10_000.0] {
            h.observe(secs);
        }
        assert_eq!(h.buckets[0], 1, "<= 1 s");
        assert_eq!(h.buckets[1], 3, "<= 5 s");
        assert_eq!(h.buckets[DURATION_BUCKETS.len() - 1], 3, "<= 7200 s");
        assert_eq!(h.count, 4, "+Inf holds all");
        assert!((h.sum - 10_008.5).abs() < 1e-9);
    }
}
