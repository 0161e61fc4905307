//! A store error in the middle of a pass (PostgreSQL restarting, say, when a claim is made)
//! ends the pass, but not the runs already in flight: they finish their stage and record their
//! verdict under their own lease before the error is reported.
//!
//! The error is real, not mocked: a trigger in the SQLite store refuses any claim made while
//! another run is running, so the second claim of a pass with two ready items fails.

use std::process::Command;

use crate::harness::Orch;
use crate::pgrestart::slow_agents;

/// Installs the failing trigger in the installation's `orch.db` (with Python's sqlite3 module:
/// Python is already needed for the test project's app).
fn refuse_a_second_running_claim(orch: &Orch) {
    let sql = "CREATE TRIGGER test_refuse_second_claim BEFORE UPDATE OF state ON stage_runs \
               WHEN NEW.state = 'running' AND OLD.state <> 'running' \
               AND (SELECT count(*) FROM stage_runs WHERE state = 'running') >= 1 \
               BEGIN SELECT RAISE(ABORT, 'injected: the store refused this claim'); END";
    let out = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
        ])
        .arg(orch.path().join("orch.db"))
        .arg(sql)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "installing the trigger: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_failed_claim_lets_the_runs_in_flight_finish() {
    let orch = Orch::new(None);
    slow_agents(&orch);
    orch.ok(&["item", "add", "--title", "in flight"]);
    orch.ok(&["item", "add", "--title", "its claim fails"]);
    refuse_a_second_running_claim(&orch);

    let out = orch.run(&["run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("injected: the store refused this claim"),
        "the pass reports the store's error: {out:?}"
    );
    let first = orch.item("QUICK-1");
    let runs = first["runs"].as_array().expect("runs");
    assert_eq!(runs[0]["stage"], "analysis");
    assert_eq!(
        runs[0]["state"], "passed",
        "the run in flight when the claim failed finished and recorded its verdict: {first:#}"
    );
    crate::harness::assert_clean_history(&first);
    let second = orch.item("QUICK-2");
    assert_eq!(
        second["runs"][0]["state"], "queued",
        "the refused claim changed nothing: {second:#}"
    );
}
