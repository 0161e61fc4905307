//! What an item's agent runs spent, per stage and in total: the one reading of stored usage
//! records that budgets, `orch status`, `orch item show` and the dashboard share; and
//! [`RunBudget`], the spend limits one agent run is checked against before, during and after it.

use std::collections::BTreeMap;

use orch_agent::Usage;
use orch_core::StageName;
use orch_core::pipeline::Pipeline;
use orch_core::spend::{Overrun, Spend, first_overrun};
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

/// The limits one run of a stage is checked against, with what the item spent before the run.
/// The checks themselves are the core's ([`first_overrun`]); this only feeds them the sums.
#[derive(Debug)]
pub(crate) struct RunBudget<'a> {
    pipeline: &'a Pipeline,
    stage: &'a StageName,
    before: ItemSpend,
}

impl<'a> RunBudget<'a> {
    /// `runs` are the item's runs; the one being executed (`this_run`) is left out, so a run
    /// executed again after a crash is not counted against itself.
    pub(crate) fn new(
        pipeline: &'a Pipeline,
        stage: &'a StageName,
        runs: &[RunRecord],
        this_run: i64,
    ) -> Self {
        Self {
            pipeline,
            stage,
            before: ItemSpend::of_runs(runs.iter().filter(|r| r.id != this_run)),
        }
    }

    /// A limit already reached: the run must not start.
    pub(crate) fn before_run(&self) -> Option<Overrun> {
        self.check(self.before.total, self.before.stage(self.stage.as_str()))
    }

    /// A limit the run reached with what it reported so far: it must be stopped.
    pub(crate) fn during_run(&self, so_far: &Usage) -> Option<Overrun> {
        let run = so_far.run_spend();
        self.check(
            self.before.total.with_running(run),
            self.before.stage(self.stage.as_str()).with_running(run),
        )
    }

    /// A limit the finished run reached: the item must not go on to another run.
    pub(crate) fn after_run(&self, usage: &Usage) -> Option<Overrun> {
        let run = usage.run_spend();
        self.check(
            self.before.total.with(run),
            self.before.stage(self.stage.as_str()).with(run),
        )
    }

    fn check(&self, item: Spend, stage: Spend) -> Option<Overrun> {
        first_overrun(self.pipeline, self.stage, &item, &stage)
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

    #[test]
    fn a_run_budget_checks_before_during_and_after_the_run() {
        let pipeline = Pipeline::from_toml(
            "[[stages]]\nname = \"development\"\nkind = \"agent\"\nrole = \"dev\"\n\
             artifact = \"a.md\"\nverdict = { field = \"s\", pass = [\"OK\"] }\non_pass = \"done\"\n\
             spend = { max_tokens = 100 }\n",
        )
        .expect("valid");
        let stage = StageName::parse("development").expect("stage");
        let tokens = |n: u64| json!({ "input_tokens": n, "output_tokens": 0, "duration_ms": 1 });
        let mut earlier = run("development", Some(tokens(60)));
        earlier.id = 7;
        // The run being executed again after a crash has no usage yet, and is left out anyway.
        let mut this = run("development", Some(tokens(1_000)));
        this.id = 8;
        let budget = RunBudget::new(&pipeline, &stage, &[earlier, this], 8);
        assert_eq!(budget.before_run(), None);
        let usage = |n: u64| Usage {
            input_tokens: Some(n),
            output_tokens: Some(0),
            ..Usage::default()
        };
        assert_eq!(budget.during_run(&usage(39)), None);
        let live = budget.during_run(&usage(40)).map(|o| o.to_string());
        assert_eq!(
            live.as_deref(),
            Some("stage development's token budget of 100 is spent (100 tokens used)")
        );
        assert_eq!(budget.after_run(&usage(39)), None);
        assert!(budget.after_run(&usage(41)).is_some());
        // Spent before: the next run does not start.
        let mut spent = run("development", Some(tokens(100)));
        spent.id = 9;
        let budget = RunBudget::new(&pipeline, &stage, &[spent], 10);
        assert!(budget.before_run().is_some());
    }
}
