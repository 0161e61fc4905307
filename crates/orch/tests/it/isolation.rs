//! What an agent may touch, end to end: writes outside its role's allowlist fail the stage and
//! are thrown away, every run starts from its stage's base commit, and no secret of orch's
//! environment reaches an agent or a command gate.

use serde_json::Value;

use crate::budget::{runs, write_committed};
use crate::harness::{Orch, assert_clean_history, git, quick_pipeline};

/// The bench scenario with `first` put ahead of its steps (steps for an exact attempt win).
fn scenario_with(first: &str) -> String {
    format!(
        "{first}\n{}",
        include_str!("../../kit/bench/scenario.toml").replace(
            "content = \"change of {item}\\n\"",
            "content = \"change of {item}, attempt {attempt}\\n\""
        )
    )
}

fn run_of<'a>(item: &'a Value, stage: &str, attempt: i64) -> &'a Value {
    item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["stage"] == stage && r["attempt"] == attempt)
        .unwrap_or_else(|| panic!("no run {stage}#{attempt}: {item:#}"))
}

fn event_of<'a>(item: &'a Value, kind: &str, run: &Value) -> Option<&'a Value> {
    item["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == kind && e["run_id"] == run["id"])
}

/// Every path any commit of the item's branch touched.
fn branch_paths(orch: &Orch) -> String {
    git(
        &orch.repo(),
        &["log", "--name-only", "--format=", "main..orch/QUICK-1"],
    )
}

#[test]
fn a_write_outside_the_allowlist_fails_the_stage_and_is_thrown_away() {
    // The reviewer approves, but also edits the code it reviews.
    let orch = Orch::new(None);
    write_committed(
        &orch,
        ".orch/scenario.toml",
        &scenario_with(
            r#"[[steps]]
stage = "review"
attempt = 1
files = [
  { path = "docs/work-items/{item}/04-review.md", content = "---\nreview_verdict: APPROVE\n---\n" },
  { path = "app.py", content = "print('owned')\n" },
]"#,
        ),
    );
    orch.ok(&["item", "add", "--title", "sneaky review"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    let review = run_of(&item, "review", 1);
    assert_eq!(review["state"], "failed", "{item:#}");
    let reasons = review["verdict"]["reasons"].to_string();
    assert!(
        reasons.contains("write-allowlist: wrote outside the role's allowlist: app.py"),
        "{reasons}"
    );
    let discarded = event_of(&item, "git.discarded", review).expect("the attempt was discarded");
    assert!(
        discarded["data"]["paths"].to_string().contains("app.py"),
        "{discarded}"
    );
    // Nothing of the attempt survives: not in the worktree, not in the branch's history.
    let wt = orch.path().join("worktrees/quick/QUICK-1");
    let app = std::fs::read_to_string(wt.join("app.py")).expect("app.py");
    assert!(!app.contains("owned"), "{app}");
    assert!(!branch_paths(&orch).contains("app.py"));
    // The item went back to development and on: the second review behaved.
    assert_eq!(run_of(&item, "development", 2)["state"], "passed");
    assert_eq!(run_of(&item, "review", 2)["state"], "passed");
}

#[test]
fn the_deployer_may_write_its_two_logs_and_nothing_else() {
    // A pipeline that hands staging to the deployer role (an agent). No fail edge: a failure
    // blocks the item, so what the failed attempt left can be looked at.
    let orch = Orch::new(None);
    let pipeline = r#"
[[stages]]
name = "deploy-staging"
kind = "agent"
role = "deployer"
artifact = "15-staging-log.md"
verdict = { field = "staging_status", pass = ["SUCCESS"], fail = ["FAILED"] }
on_pass = "done"
"#;
    let logs = r#"
  { path = "docs/work-items/{item}/15-staging-log.md", content = "---\nstaging_status: SUCCESS\n---\n" },
  { path = "docs/work-items/{item}/14-deploy-log.md", content = "---\ndeploy_status: SUCCESS\n---\n" },"#;
    let scenario = format!(
        r#"[[steps]]
stage = "deploy-staging"
attempt = 1
files = [{logs}
  {{ path = "app.py", content = "print('hotfix')\n" }},
  {{ path = "docs/work-items/{{item}}/01-analysis.md", content = "---\nanalysis_status: READY\n---\n" }},
]

[[steps]]
stage = "deploy-staging"
files = [{logs}
]
"#
    );
    write_committed(&orch, ".orch/pipeline.toml", pipeline);
    write_committed(&orch, ".orch/scenario.toml", &scenario);
    let app = std::fs::read_to_string(orch.repo().join("app.py")).expect("app.py");
    orch.ok(&["item", "add", "--title", "deployer"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    let first = run_of(&item, "deploy-staging", 1);
    assert_eq!(first["state"], "failed", "{item:#}");
    // The two logs are allowed; the code and another role's artifact are not.
    let reasons = first["verdict"]["reasons"].to_string();
    assert!(
        reasons.contains(
            "wrote outside the role's allowlist: app.py, docs/work-items/QUICK-1/01-analysis.md"
        ),
        "{reasons}"
    );
    // The failed attempt was reset away at once, logs included.
    let wt = orch.path().join("worktrees/quick/QUICK-1");
    assert_eq!(
        std::fs::read_to_string(wt.join("app.py")).expect("app.py"),
        app
    );
    assert!(!wt.join("docs/work-items/QUICK-1").exists());
    assert!(event_of(&item, "git.discarded", first).is_some());

    orch.ok(&["retry", "QUICK-1"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    assert_clean_history(&item);
    assert_eq!(run_of(&item, "deploy-staging", 2)["state"], "passed");
    // What reached the default branch: both logs, nothing else of the attempts.
    let changed = git(
        &orch.repo(),
        &["diff", "--name-only", "HEAD~1", "HEAD", "--"],
    );
    assert_eq!(
        changed.lines().collect::<Vec<_>>(),
        [
            "docs/work-items/QUICK-1/14-deploy-log.md",
            "docs/work-items/QUICK-1/15-staging-log.md"
        ]
    );
}

#[test]
fn a_retry_starts_from_the_stages_base_commit() {
    // The analyst asks a question; while the item waits, someone leaves changes in its worktree.
    let orch = Orch::new(None);
    write_committed(
        &orch,
        ".orch/scenario.toml",
        &scenario_with(
            r#"[[steps]]
stage = "analysis"
attempt = 1
files = [{ path = "docs/work-items/{item}/01-analysis.md", content = "---\nanalysis_status: NEEDS_INFO\n---\n" }]"#,
        ),
    );
    orch.ok(&["item", "add", "--title", "question"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "needs-info", "{item:#}");
    let wt = orch.path().join("worktrees/quick/QUICK-1");
    let base = git(&wt, &["rev-parse", "HEAD"]);
    std::fs::write(wt.join("stray.txt"), "left behind\n").expect("write");
    std::fs::write(wt.join("app.py"), "print('tampered')\n").expect("write");

    orch.ok(&["retry", "QUICK-1", "--answer", "go ahead"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    let second = run_of(&item, "analysis", 2);
    assert_eq!(second["state"], "passed", "{item:#}");
    assert_eq!(second["verdict"]["base"].as_str(), Some(base.trim()));
    // The leftovers were reset away before the agent ran: not committed, not in the worktree.
    assert!(!wt.join("stray.txt").exists());
    let app = std::fs::read_to_string(wt.join("app.py")).expect("app.py");
    assert!(!app.contains("tampered"), "{app}");
    let paths = branch_paths(&orch);
    assert!(
        !paths.contains("stray.txt") && !paths.contains("app.py"),
        "{paths}"
    );
    assert!(
        runs(&item).len() > 2,
        "the item went on after analysis: {item:#}"
    );
}

/// Tracker, forge and server secrets as orch's own environment would hold them.
const SECRETS: [(&str, &str); 6] = [
    ("ORCH_PLANE_API_KEY", "plane-key-0001"),
    ("GITEA_TOKEN", "gitea-token-0002"),
    ("GITHUB_TOKEN", "github-token-0003"),
    ("ORCH_API_TOKEN", "api-token-0004"),
    ("ORCH_WEBHOOK_SECRET", "webhook-secret-0005"),
    ("ORCH_GITEA_WEBHOOK_SECRET", "gitea-hook-secret-0006"),
];

#[test]
fn no_secret_of_orchs_environment_reaches_an_agent_or_a_gate() {
    let orch = Orch::new(None);
    // Agents and gates run sandboxed and can write nothing outside the work tree: they print
    // their environment, which lands in their run logs.
    let agent_env = orch.path().join("logs/quick/QUICK-1/analysis-1.log");
    let gate_env = orch.path().join("logs/quick/QUICK-1/development-1.log");
    // The analyst is a program that dumps its environment, then writes its artifact.
    let script = "env && mkdir -p \"$ORCH_ARTIFACT_DIR\" && \
         printf -- '---\\nanalysis_status: READY\\n---\\n' > \"$ORCH_ARTIFACT_DIR$ORCH_ARTIFACT\"";
    let agents = format!(
        "{}\n[roles.analyst]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {}]\n",
        include_str!("../../kit/bench/agents.toml"),
        toml_string(script)
    );
    write_committed(&orch, ".orch/agents.toml", &agents);
    // The development stage's test gate dumps its environment too.
    let pipeline = quick_pipeline().replace(
        "run = \"true\"",
        &format!("run = {}", toml_string("echo GATE-ENV && env")),
    );
    write_committed(&orch, ".orch/pipeline.toml", &pipeline);
    orch.ok(&["item", "add", "--title", "secrets"]);
    let mut run = orch.command(&["run"]);
    for (name, value) in SECRETS {
        run.env(name, value);
    }
    let out = run.output().expect("orch runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dump in [&agent_env, &gate_env] {
        let env = std::fs::read_to_string(dump)
            .unwrap_or_else(|e| panic!("{} was not written: {e}", dump.display()));
        // The dump is real: it holds what an agent is given.
        assert!(env.contains("PATH="), "{env}");
        for (name, value) in SECRETS {
            assert!(
                !env.contains(name) && !env.contains(value),
                "{name} reached {}:\n{env}",
                dump.display()
            );
        }
    }
    let gate = std::fs::read_to_string(&gate_env).expect("gate env");
    assert!(
        gate.contains("GATE-ENV"),
        "the gate's dump is not in its log:\n{gate}"
    );
    let agent = std::fs::read_to_string(&agent_env).expect("agent env");
    assert!(agent.contains("ORCH_ITEM_ID=QUICK-1"), "{agent}");
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn opting_out_of_the_sandbox_shows_in_status_and_item_show() {
    let orch = Orch::new(None);
    orch.ok(&["item", "add", "--title", "unconfined"]);
    // Sandboxed (the default): no warning anywhere.
    assert!(!orch.ok(&["status"]).contains("NOT sandboxed"));
    assert!(
        !orch
            .ok(&["item", "show", "QUICK-1"])
            .contains("NOT sandboxed")
    );
    let status: Value = serde_json::from_str(&orch.ok(&["status", "--json"])).expect("json");
    assert_eq!(status["sandbox"]["quick"], "bubblewrap", "{status:#}");

    // The project's table is the last one of orch.toml: the opt-out goes there.
    let config = orch.path().join("orch.toml");
    let mut text = std::fs::read_to_string(&config).expect("orch.toml");
    text.push_str("sandbox = { mode = \"none\" }\n");
    std::fs::write(&config, text).expect("write orch.toml");
    let status = orch.ok(&["status"]);
    assert!(
        status.contains("WARNING: project quick runs NOT sandboxed"),
        "{status}"
    );
    let show = orch.ok(&["item", "show", "QUICK-1"]);
    assert!(show.contains("WARNING: NOT sandboxed"), "{show}");
    let status: Value = serde_json::from_str(&orch.ok(&["status", "--json"])).expect("json");
    assert_eq!(status["sandbox"]["quick"], "NONE", "{status:#}");
    let item = orch.item("QUICK-1");
    assert_eq!(item["sandbox"], "NONE", "{item:#}");
}
