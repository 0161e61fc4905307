//! Spend limits end to end: a run that reaches a stage's or the item's limit blocks the item with
//! the limit named, a run that would start over a limit does not start, a run that crosses a
//! limit while it runs is stopped, and `orch retry` after raising the limit resumes the item.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Orch, assert_clean_history, git, quick_pipeline};

/// The bench scenario's steps with what each reports as spent, `extra` TOML after it.
fn scenario(development: &str, others: &str, extra: &str) -> String {
    format!(
        r##"
[[steps]]
stage = "analysis"
{others}
files = [{{ path = "docs/work-items/{{item}}/01-analysis.md", content = "---\nanalysis_status: READY\n---\n" }}]

[[steps]]
stage = "architecture"
{others}
files = [{{ path = "docs/work-items/{{item}}/02-design.md", content = "---\ndesign_status: READY\n---\n" }}]

{extra}

[[steps]]
stage = "development"
{development}
files = [
  {{ path = "changes/{{item}}.txt", content = "change of {{item}}, attempt {{attempt}}\n" }},
  {{ path = "docs/changes/{{item}}.md", content = "# {{item}}\n" }},
  {{ path = "docs/work-items/{{item}}/03-dev-notes.md", content = "---\ndev_status: DONE\n---\n" }},
]

[[steps]]
stage = "review"
{others}
files = [{{ path = "docs/work-items/{{item}}/04-review.md", content = "---\nreview_verdict: APPROVE\n---\n" }}]

[[steps]]
stage = "qa"
{others}
files = [{{ path = "docs/work-items/{{item}}/05-test-report.md", content = "---\nqa_status: PASS\n---\n" }}]
"##
    )
}

/// The quick pipeline with `top` (such as `[spend]`) above it and `development_spend` on the
/// development stage.
fn pipeline(top: &str, development_spend: &str) -> String {
    let development = "on_pass = \"review\"\n";
    assert!(quick_pipeline().contains(development));
    format!(
        "{top}\n{}",
        quick_pipeline().replace(development, &format!("{development}{development_spend}\n"))
    )
}

/// The quick project with this pipeline and scenario, committed, and one item filed.
fn project(pipeline: &str, scenario: &str) -> Orch {
    let orch = Orch::new(None);
    write_committed(&orch, ".orch/pipeline.toml", pipeline);
    write_committed(&orch, ".orch/scenario.toml", scenario);
    orch.ok(&["item", "add", "--title", "spend"]);
    orch
}

/// Writes `rel` in the project repository and commits it.
pub(crate) fn write_committed(orch: &Orch, rel: &str, text: &str) {
    std::fs::write(orch.repo().join(rel), text).expect("write");
    git(&orch.repo(), &["commit", "-qam", &format!("test: {rel}")]);
}

fn events<'a>(item: &'a Value, kind: &str) -> Vec<&'a Value> {
    item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// (stage, attempt, state) of every run.
pub(crate) fn runs(item: &Value) -> Vec<(String, i64, String)> {
    item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap_or("").to_owned(),
                r["attempt"].as_i64().unwrap_or(0),
                r["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn run(stage: &str, attempt: i64, state: &str) -> (String, i64, String) {
    (stage.to_owned(), attempt, state.to_owned())
}

#[test]
fn a_stage_token_limit_stops_the_attempt_that_reaches_it_and_refuses_the_next() {
    // 1000 tokens per development attempt, a limit of 1500: the second attempt reaches it.
    let review_once = r#"
[[steps]]
stage = "review"
attempt = 1
files = [{ path = "docs/work-items/{item}/04-review.md", content = "---\nreview_verdict: REQUEST_CHANGES\n---\n" }]
"#;
    let scenario = scenario("tokens = [800, 200]", "", review_once);
    let orch = project(&pipeline("", "spend = { max_tokens = 1500 }"), &scenario);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    let reason = "stage development's token budget of 1500 is spent (2000 tokens used)";
    assert_eq!(item["status"], "blocked", "{item:#}");
    assert_eq!(item["blocked_reason"], reason, "{item:#}");
    assert_eq!(
        runs(&item)[2..],
        [
            run("development", 1, "passed"),
            run("review", 1, "failed"),
            run("development", 2, "failed"),
        ]
    );
    let reached = events(&item, "spend.limit-reached");
    assert_eq!(reached.len(), 1, "{item:#}");
    assert_eq!(reached[0]["data"]["when"], "during-run");
    assert_eq!(reached[0]["data"]["reason"], reason);

    // Retried with the same limit: the third attempt does not start.
    orch.ok(&["retry", "QUICK-1"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    assert_eq!(item["blocked_reason"], reason, "{item:#}");
    assert_eq!(
        runs(&item).last(),
        Some(&run("development", 3, "cancelled"))
    );

    // Raised: the retry resumes the item, which goes on to the end.
    write_committed(
        &orch,
        ".orch/pipeline.toml",
        &pipeline("", "spend = { max_tokens = 5000 }"),
    );
    orch.ok(&["retry", "QUICK-1"]);
    let done = orch.drive_to_end("QUICK-1");
    assert_eq!(done["status"], "done", "{done:#}");
    assert_clean_history(&done);
}

#[test]
fn an_item_usd_limit_holds_the_item_after_the_run_that_reached_it() {
    // Each agent reports $0.02 only as it ends: the check after the run catches the limit.
    let spends = "cost_usd = 0.02\nusage_at_end = true";
    let orch = project(
        &pipeline("[spend]\nmax_usd = 0.05\n", ""),
        &scenario(spends, spends, ""),
    );
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    // analysis, architecture and development spent $0.06: development passed, and the item
    // waits before review.
    let reason = "the item's cost budget of $0.05 is spent ($0.06 used)";
    assert_eq!(item["status"], "blocked", "{item:#}");
    assert_eq!(item["blocked_reason"], reason);
    assert_eq!(item["stage"], "review", "{item:#}");
    assert_eq!(runs(&item).last(), Some(&run("development", 1, "passed")));
    let reached = events(&item, "spend.limit-reached");
    assert_eq!(reached.len(), 1, "{item:#}");
    assert_eq!(reached[0]["data"]["when"], "after-run");

    // A retry with the same limit: the review run is refused before it starts.
    orch.ok(&["retry", "QUICK-1"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    assert_eq!(item["blocked_reason"], reason);
    let review = item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["stage"] == "review")
        .expect("a review run");
    assert_eq!(review["state"], "cancelled", "{review:#}");
    assert_eq!(review["usage"], Value::Null, "the agent never ran");
    let review_id = review["id"].as_i64();
    assert!(
        events(&item, "agent.finished")
            .iter()
            .all(|e| e["run_id"].as_i64() != review_id),
        "{item:#}"
    );
    let refused = events(&item, "spend.limit-reached");
    assert_eq!(
        refused.last().map(|e| &e["data"]["when"]),
        Some(&Value::from("before-run"))
    );

    // Raised: the retry resumes the item where it stopped.
    write_committed(
        &orch,
        ".orch/pipeline.toml",
        &pipeline("[spend]\nmax_usd = 1.0\n", ""),
    );
    orch.ok(&["retry", "QUICK-1"]);
    let done = orch.drive_to_end("QUICK-1");
    assert_eq!(done["status"], "done", "{done:#}");
    assert_clean_history(&done);
}

#[test]
fn an_agent_that_crosses_a_limit_while_it_runs_is_stopped() {
    // The agent reports 5000 tokens, then would work for a minute.
    let orch = project(
        &pipeline("", "spend = { max_tokens = 1000 }"),
        &scenario("tokens = [4000, 1000]\nsleep_ms = 60000", "", ""),
    );
    let started = Instant::now();
    orch.ok(&["run"]);
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "the agent was not stopped: {:?}",
        started.elapsed()
    );
    let item = orch.item("QUICK-1");
    let reason = "stage development's token budget of 1000 is spent (5000 tokens used)";
    assert_eq!(item["status"], "blocked", "{item:#}");
    assert_eq!(item["blocked_reason"], reason, "{item:#}");
    let reached = events(&item, "spend.limit-reached");
    assert_eq!(reached.len(), 1, "{item:#}");
    assert_eq!(reached[0]["data"]["when"], "during-run");
    let finished = events(&item, "agent.finished");
    let last = finished.last().expect("the development agent finished");
    assert_eq!(last["data"]["outcome"], "was killed by signal 15");
    assert_eq!(last["data"]["usage"]["input_tokens"], 4000);
    assert_eq!(
        runs(&item).last(),
        Some(&run("development", 1, "failed")),
        "{item:#}"
    );
    // The stopped attempt's work is gone.
    let wt = orch.path().join("worktrees/quick/QUICK-1");
    assert!(!wt.join("changes/QUICK-1.txt").exists());
}
