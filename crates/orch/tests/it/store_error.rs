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

/// Makes the analysis agent wait for `marker` (an absolute path) before it writes and ends.
fn wait_in_analysis(orch: &Orch, marker: &std::path::Path) {
    let path = orch.repo().join(".orch/scenario.toml");
    let scenario = std::fs::read_to_string(&path).expect("scenario");
    let waiting = scenario.replacen(
        "stage = \"analysis\"\n",
        &format!(
            "stage = \"analysis\"\nwait_for = \"{}\"\n",
            marker.display()
        ),
        1,
    );
    assert_ne!(waiting, scenario, "the scenario has an analysis step");
    std::fs::write(&path, waiting).expect("scenario");
    crate::harness::git(&orch.repo(), &["commit", "-qam", "analysis waits"]);
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

/// The lease lasts 5 s and is renewed every 1.7 s, and every renewal is refused. The analysis
/// agent ends on an event, not a duration: it waits until orch has said that a renewal failed
/// and the run goes on (the test watches orch's stderr and then writes the file the agent waits
/// for), so at least one renewal failed while the lease still held. The run must go on and pass.
#[test]
fn a_failed_lease_renewal_does_not_stop_a_run_that_holds_its_lease() {
    let orch = Orch::new(None);
    let released = orch.path().join("renewal-refused");
    wait_in_analysis(&orch, &released);
    orch.ok(&["item", "add", "--title", "renewals fail"]);
    install_trigger(&orch, REFUSE_RENEWALS);

    let err_path = orch.path().join("run.err");
    let mut child = orch
        .command(&["run"])
        .env("ORCH_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("orch runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&err_path)
        .is_ok_and(|e| e.contains("injected: the store refused this renewal"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no renewal was refused: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        assert!(
            child.try_wait().expect("poll").is_none(),
            "orch run ended before a renewal was refused: {}",
            std::fs::read_to_string(&err_path).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::fs::write(&released, "").expect("let the agent end");
    let out = child.wait_with_output().expect("orch run ends");
    assert!(out.status.success(), "orch run: {out:?}");
    let stderr = std::fs::read_to_string(&err_path).expect("stderr");
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
