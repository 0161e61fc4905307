//! What an item's agent runs spent, per stage and in total: the one reading of stored usage
//! records that budgets, `orch status`, `orch item show` and the dashboard share.

use std::collections::BTreeMap;

use orch_agent::Usage;
use orch_core::spend::Spend;
use orch_store::RunRecord;

/// An item's spend, in total and by stage name (all attempts of a stage together).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ItemSpend {
    pub total: Spend,
    pub by_stage: BTreeMap<String, Spend>,
}

impl ItemSpend {
    /// Sums the usage records of `runs`. Runs without a usage record (actions, approvals, runs
    /// still going) are not counted; a record that does not read is a run of unknown spend.
    pub fn of_runs<'a>(runs: impl IntoIterator<Item = &'a RunRecord>) -> Self {
        let mut out = Self::default();
        for run in runs {
            let Some(record) = run.usage.as_ref() else {
                continue;
            };
            let spent = Usage::run_spend_of_json(Some(record));
            out.total.add(spent);
            out.by_stage
                .entry(run.stage.to_string())
                .or_default()
                .add(spent);
        }
        out
    }

    pub fn stage(&self, stage: &str) -> Spend {
        self.by_stage.get(stage).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_core::{ItemId, ProjectId, StageName};
    use orch_store::RunState;
    use serde_json::json;

    fn run(stage: &str, usage: Option<serde_json::Value>) -> RunRecord {
        RunRecord {
            id: 1,
            item: ItemId::parse("A-1").expect("id"),
            project: ProjectId::parse("p").expect("id"),
            stage: StageName::parse(stage).expect("stage"),
            attempt: 1,
            state: RunState::Passed,
            epoch: 1,
            lease: None,
            feedback: vec![],
            checkpoint: json!({}),
            verdict: None,
            usage,
            created_at: 0,
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn sums_agent_runs_by_stage_and_skips_runs_without_a_record() {
        let usage = |i: u64, o: u64, usd: f64| {
            json!({ "input_tokens": i, "output_tokens": o, "cache_read_tokens": null,
                    "cache_write_tokens": null, "cost_usd": usd, "turns": 1, "duration_ms": 5 })
        };
        let runs = [
            run("development", Some(usage(100, 20, 0.01))),
            run("development", Some(usage(50, 10, 0.02))),
            run("review", Some(json!("garbage"))),
            run("deploy", None),
        ];
        let spend = ItemSpend::of_runs(&runs);
        assert_eq!(spend.stage("development").tokens, 180);
        assert_eq!(spend.stage("development").cost, 30_000);
        assert_eq!(spend.stage("review").runs_without_tokens, 1);
        assert_eq!(spend.stage("deploy"), Spend::default());
        assert_eq!(spend.total.runs, 3);
        assert_eq!(spend.total.tokens, 180);
        assert_eq!(spend.total.runs_without_cost, 1);
    }
}
