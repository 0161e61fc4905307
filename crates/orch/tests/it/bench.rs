//! The benchmark command stays runnable: two items through orch and through the baseline. No
//! timing is asserted here; the figures are for people (see `orch bench --help`).

use crate::harness::BIN;

#[test]
fn bench_runs_both_sides_and_reports_a_ratio() {
    let out = std::process::Command::new(BIN)
        .args(["bench", "--items", "2"])
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("items done                                    2            2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ratio orch / baseline wall time:"),
        "{stdout}"
    );
    assert!(stdout.contains("orch peak memory (VmHWM):"), "{stdout}");
}

/// The scaling mode runs real worker processes: on SQLite always, and on PostgreSQL when the test
/// server is configured (always in CI). Every row must have finished every item.
#[test]
fn bench_scaling_mode_runs_worker_processes_and_prints_the_table() {
    let postgres = std::env::var("ORCH_TEST_POSTGRES_URL").ok();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["bench", "--items", "4", "--workers", "1,2"]);
    cmd.env_remove("ORCH_BENCH_POSTGRES_URL");
    if let Some(url) = &postgres {
        cmd.args(["--postgres", url]);
    } else {
        // The SQLite rows still run; the PostgreSQL rows are what is skipped (and counted).
        crate::skip::skip(
            "the PostgreSQL rows need ORCH_TEST_POSTGRES_URL (.ci/install-postgres.sh)",
        );
    }
    let out = cmd.output().expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("| sqlite | 1 | 4/4 |"), "{stdout}");
    if postgres.is_some() {
        assert!(stdout.contains("| postgres | 1 | 4/4 |"), "{stdout}");
        assert!(stdout.contains("| postgres | 2 | 4/4 |"), "{stdout}");
    }
    // Claim latency was measured inside the workers, not left blank.
    let sqlite_row = stdout
        .lines()
        .find(|l| l.starts_with("| sqlite |"))
        .expect("sqlite row");
    let cells: Vec<&str> = sqlite_row.split('|').map(str::trim).collect();
    assert!(
        cells[7].parse::<f64>().is_ok() && cells[9].parse::<u64>().is_ok_and(|m| m > 0),
        "claim p50 and peak memory are numbers: {sqlite_row}"
    );
}

#[test]
fn the_queue_bench_runs_items_together_and_one_by_one_and_checks_the_invariant() {
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["bench", "--queue", "3"])
        .output()
        .expect("orch bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("3 "))
        .unwrap_or_else(|| panic!("no row for N=3:\n{stdout}"));
    assert!(
        row.ends_with("3/3 ok"),
        "every deploy kept prod on main: {row}"
    );
    let bad = std::process::Command::new(crate::harness::BIN)
        .args(["bench", "--queue", "0"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(2));
}
