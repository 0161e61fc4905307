//! Crash safety: SIGKILL orch at several points of a run, start it again, and the item still
//! reaches done with every stage recorded once and no event lost.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use crate::harness::{Orch, assert_clean_history, git, passed_stages};

const ALL_STAGES: [&str; 7] = [
    "analysis",
    "architecture",
    "development",
    "review",
    "qa",
    "deploy-staging",
    "deploy",
];

fn finish_and_check(orch: &Orch) {
    let item = orch.drive_to_end("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    assert_clean_history(&item);
    assert_eq!(passed_stages(&item), ALL_STAGES);
    let merges = git(&orch.repo(), &["log", "--merges", "--oneline", "main"]);
    assert_eq!(merges.lines().count(), 1, "exactly one merge: {merges}");
}

/// Kills orch with the named crashpoint, then checks that a restart finishes cleanly.
fn crash_at(point: &str, approve_first: bool) {
    let orch = Orch::new(None);
    orch.ok(&["item", "add", "--title", "crash me"]);
    if approve_first {
        orch.ok(&["run"]);
        orch.ok(&["approve", "QUICK-1"]);
    }
    let out = orch
        .command(&["run"])
        .env("ORCH_CRASHPOINT", point)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.signal(),
        Some(9),
        "orch must die at {point}: {out:?}"
    );
    finish_and_check(&orch);
}

#[test]
fn crash_between_gates_and_transition() {
    crash_at("after-gates", false);
}

#[test]
fn crash_just_before_the_transition_write() {
    crash_at("before-transition", false);
}

#[test]
fn crash_during_deploy() {
    crash_at("during-deploy", false);
}

#[test]
fn crash_after_merge_before_done() {
    crash_at("after-merge", true);
}

/// A real agent process is running when orch is killed: the restart kills the orphaned agent's
/// process group, resets the worktree and runs the stage again.
#[test]
fn crash_during_an_agent_run() {
    let agents = r##"
[default]
kind = "scripted"
scenario = ".orch/scenario.toml"

[roles.developer]
kind = "command"
command = ["sh", "-c", """
mkdir -p "$ORCH_ARTIFACT_DIR" docs
echo "change" > "changes-$ORCH_ITEM_ID.txt"
echo "# change" > "docs/$ORCH_ITEM_ID.md"
printf -- '---\ndev_status: DONE\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT"
echo "developer working"
if [ ! -e second-run ]; then sleep 60; fi
"""]
"##;
    let orch = Orch::new(Some(agents));
    // The agent runs sandboxed and sees only its work tree: the marker of the second execution
    // is put there, ignored by git so that the reset to the base commit keeps it.
    std::fs::write(orch.repo().join(".git/info/exclude"), "second-run\n").expect("exclude");
    orch.ok(&["item", "add", "--title", "crash me"]);
    let mut child = orch.command(&["run"]).spawn().expect("spawn");
    // Wait until the developer agent runs (its log says so), then kill orch.
    let log = orch.path().join("logs/quick/QUICK-1/development-1.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log).is_ok_and(|l| l.contains("developer working")) {
        assert!(
            Instant::now() < deadline,
            "the developer agent never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The checkpoint must record the agent's process group: it is how the next orch finds the
    // orphan. Waited for (it is saved right after the spawn), never optional.
    let pgid = loop {
        let item = orch.item("QUICK-1");
        let recorded = item["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["stage"] == "development"))
            .and_then(|r| r["checkpoint"]["pgid"].as_i64());
        if let Some(pgid) = recorded {
            break u32::try_from(pgid).expect("a pgid fits in u32");
        }
        assert!(
            Instant::now() < deadline,
            "the checkpoint never recorded the agent's process group: {item}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        orch_process::group_is_alive(pgid),
        "the recorded group {pgid} is the running agent's"
    );
    child.kill().expect("kill");
    let _ = child.wait();
    std::fs::write(orch.path().join("worktrees/quick/QUICK-1/second-run"), "").expect("marker");
    finish_and_check(&orch);
    // Zombies do not count: the orphan's new parent may not have reaped it yet.
    assert!(
        !orch_process::group_is_alive(pgid),
        "the orphaned agent group {pgid} must have been killed"
    );
    let item = orch.item("QUICK-1");
    let claims = item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "run.claimed" && e["data"]["stage"] == "development")
        .count();
    assert_eq!(
        claims, 2,
        "the development run was claimed again after the crash"
    );
}
