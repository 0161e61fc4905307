//! The benchmark command stays runnable: two items through orch and through the baseline. No
//! timing is asserted here; the figures are for people (see `orch bench --help`).

use crate::harness::BIN;

/// The stdout of a run that must have succeeded (both its outputs shown when it did not).
pub(crate) fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn bench_runs_both_sides_and_reports_a_ratio() {
    let out = std::process::Command::new(BIN)
        .args(["bench", "--items", "2"])
        .output()
        .expect("bench runs");
    let stdout = succeeded(&out);
    // By default orch runs twice, without and with the sandbox, next to the baseline.
    assert!(
        stdout.contains("orch orch+sandbox     baseline"),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("items done                                    2            2            2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ratio orch / baseline wall time:") && stdout.contains("(sandbox off)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sandbox cost per stage transition:"),
        "{stdout}"
    );
    let cpu = stdout
        .lines()
        .find(|l| l.starts_with("CPU ms per transition, processes"))
        .unwrap_or_else(|| panic!("no CPU row:\n{stdout}"));
    assert!(
        cpu.split_whitespace()
            .rev()
            .take(3)
            .all(|c| c.parse::<f64>().is_ok_and(|ms| ms > 0.0)),
        "every side's processes used CPU: {cpu}"
    );
    assert!(stdout.contains("orch peak memory (VmHWM):"), "{stdout}");
    // The baseline does the same file work: the sides end with as many files on main.
    let files: Vec<&str> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("files on main at the end"))
        .unwrap_or_else(|| panic!("no files row:\n{stdout}"))
        .split_whitespace()
        .collect();
    assert_eq!(files.len(), 3, "{stdout}");
    assert!(files.iter().all(|f| *f == files[0]), "{stdout}");
}

#[test]
fn bench_without_the_sandbox_row_compares_one_orch_run_and_refuses_unknown_modes() {
    let out = std::process::Command::new(BIN)
        .args(["bench", "--items", "1", "--sandbox", "off"])
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("items done                                    1            1"),
        "{stdout}"
    );
    assert!(!stdout.contains("orch+sandbox"), "{stdout}");
    assert!(!stdout.contains("sandbox cost"), "{stdout}");
    // Said once, not once per run.
    assert!(
        stdout.contains("the comparison run is NOT sandboxed"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("WITHOUT a sandbox"), "{stderr}");
    for bad in [
        &["--sandbox", "maybe"][..],
        &["--items", "0"],
        &["--items=-3"],
        &["--items", "99999999999"],
        &["--items", "100001"],
    ] {
        let out = std::process::Command::new(BIN)
            .arg("bench")
            .args(bad)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(
            stderr.contains("--sandbox") || stderr.contains("--items"),
            "{bad:?}: the error names the flag: {stderr}"
        );
    }
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
    let stdout = succeeded(&out);
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
    let stdout = succeeded(&out);
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("3 "))
        .unwrap_or_else(|| panic!("no row for N=3:\n{stdout}"));
    assert!(
        row.ends_with("3/3 ok"),
        "every deploy kept prod on main: {row}"
    );
    // The queue's cost per item and the share of re-validations among the staging runs.
    assert!(
        stdout.contains("re-validation %") && stdout.contains("queue ms per item"),
        "{stdout}"
    );
    let cells: Vec<&str> = row.split_whitespace().collect();
    let share: f64 = cells[6].parse().expect("a share");
    assert!((0.0..100.0).contains(&share), "{row}");
    let revalidations: f64 = cells[5].parse().expect("per item");
    // With 3 items, a share above zero goes with re-validations above zero, and back.
    assert_eq!(share > 0.0, revalidations > 0.0, "{row}");
    assert!(cells[7].parse::<f64>().is_ok(), "queue ms per item: {row}");
    for bad in ["0", "1001", "3,0"] {
        let out = std::process::Command::new(crate::harness::BIN)
            .args(["bench", "--queue", bad])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--queue"), "{bad}: {stderr}");
    }
}

/// The size mode generates a repository (files and history), runs both sides on copies of it
/// and prints one row per size; sizes it cannot generate are refused before anything runs.
#[test]
fn the_size_bench_runs_both_sides_on_a_generated_repository_and_refuses_bad_sizes() {
    let out = std::process::Command::new(BIN)
        .args([
            "bench",
            "--repo-files",
            "30",
            "--history",
            "40",
            "--items",
            "1",
            "--keep",
        ])
        .output()
        .expect("bench runs");
    let stdout = succeeded(&out);
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("30 "))
        .unwrap_or_else(|| panic!("no row for 30 files:\n{stdout}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[1], "1", "one item: {row}");
    for ms in &cells[3..5] {
        assert!(
            ms.parse::<f64>().is_ok_and(|v| v > 0.0),
            "orch and baseline ms per transition: {row}"
        );
    }
    assert!(!stdout.contains("finished"), "every item done: {stdout}");
    let kept = stdout
        .lines()
        .find_map(|l| l.strip_prefix("kept "))
        .expect("kept dir");
    let kept = std::path::Path::new(kept.trim());
    // The generated repository is gone after its row (it can be large); the directory stays.
    assert!(kept.is_dir());
    std::fs::remove_dir_all(kept).ok();

    for (bad, names) in [
        (&["--repo-files", "0"][..], "--repo-files"),
        (&["--repo-files", "1000001"], "--repo-files"),
        (&["--repo-files", "10,-5"], "--repo-files"),
        (&["--repo-files", "10", "--history", "1000001"], "--history"),
        (&["--history", "10"], "--repo-files"),
        (&["--repo-files", "10", "--queue", "2"], "--queue"),
    ] {
        let out = std::process::Command::new(BIN)
            .arg("bench")
            .args(bad)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(names), "{bad:?} names {names}: {stderr}");
    }
}
