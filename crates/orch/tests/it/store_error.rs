//! Store errors in the middle of work (PostgreSQL restarting, say):
//!
//! - a claim that fails ends the pass, but not the runs already in flight: they finish their
//!   stage and record their verdict under their own lease before the error is reported;
//! - a lease renewal that fails while the lease still holds does not stop the run.
//!
//! The errors are real, not mocked: triggers in the SQLite store refuse the statements.

use std::process::Command;

use crate::harness::{Orch, slow_agents};

/// Refuses any claim made while another run is running.
const REFUSE_A_SECOND_CLAIM: &str = "CREATE TRIGGER test_refuse_second_claim \
    BEFORE UPDATE OF state ON stage_runs \
    WHEN NEW.state = 'running' AND OLD.state <> 'running' \
    AND (SELECT count(*) FROM stage_runs WHERE state = 'running') >= 1 \
    BEGIN SELECT RAISE(ABORT, 'injected: the store refused this claim'); END";

/// Refuses every lease renewal (a later expiry for a running run under the same epoch); claims
/// (a new epoch) and finishing (no expiry) still work.
const REFUSE_RENEWALS: &str = "CREATE TRIGGER test_refuse_renewal \
    BEFORE UPDATE OF lease_expires_at ON stage_runs \
    WHEN OLD.state = 'running' AND NEW.state = 'running' AND NEW.epoch = OLD.epoch \
    AND NEW.lease_expires_at > OLD.lease_expires_at \
    BEGIN SELECT RAISE(ABORT, 'injected: the store refused this renewal'); END";

/// Installs a trigger in the installation's `orch.db` (with Python's sqlite3 module: Python is
/// already needed for the test project's app).
fn install_trigger(orch: &Orch, sql: &str) {
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
    slow_agents(&orch, 1500);
    orch.ok(&["item", "add", "--title", "in flight"]);
    orch.ok(&["item", "add", "--title", "its claim fails"]);
    install_trigger(&orch, REFUSE_A_SECOND_CLAIM);

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

/// The lease lasts 5 s and is renewed every 1.7 s; the agent takes 2.5 s, so at least one renewal
/// fails while the lease still holds. The run must go on and pass.
#[test]
fn a_failed_lease_renewal_does_not_stop_a_run_that_holds_its_lease() {
    let orch = Orch::new(None);
    slow_agents(&orch, 2500);
    orch.ok(&["item", "add", "--title", "renewals fail"]);
    install_trigger(&orch, REFUSE_RENEWALS);

    let out = orch
        .command(&["run"])
        .env("ORCH_LOG", "warn")
        .output()
        .expect("orch runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("injected: the store refused this renewal")
            && stderr.contains("the run goes on"),
        "renewals failed and said so: {stderr}"
    );
    let item = orch.item("QUICK-1");
    let first = &item["runs"][0];
    assert_eq!(first["stage"], "analysis");
    assert_eq!(
        first["state"], "passed",
        "the run passed despite its failed renewals: {item:#}"
    );
    let claims = item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "run.claimed" && e["run_id"] == first["id"])
        .count();
    assert_eq!(claims, 1, "the run was never given up and claimed again");
}
