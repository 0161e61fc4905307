//! `orch bench --launch` and `--held` stay runnable with tiny sizes: the tables have their rows,
//! every item's agent started, and nothing is left running (the serve process and every agent
//! are gone). No timing is asserted: the figures are for people (BENCHMARKS.md).

use std::process::Command;

use crate::harness::BIN;

fn bench(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .env_remove("ORCH_STORE_URL")
        .output()
        .expect("orch bench runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The serve the bench started (`orch serve: pid N, ...`) is gone.
fn assert_serve_gone(stdout: &str) {
    let pid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("orch serve: pid "))
        .and_then(|rest| rest.split(',').next())
        .and_then(|p| p.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("no serve pid line:\n{stdout}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        !status.contains("orch"),
        "orch serve (pid {pid}) outlived the bench:\n{status}"
    );
}

/// The cells of the table row starting with `| {name} |`.
fn row(stdout: &str, name: &str) -> Vec<String> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))
        .unwrap_or_else(|| panic!("no row `{name}`:\n{stdout}"));
    line.split('|').map(|c| c.trim().to_owned()).collect()
}

#[test]
fn the_launch_bench_measures_the_api_the_webhook_and_the_floor() {
    let (ok, stdout, stderr) = bench(&["--launch", "3"]);
    assert!(ok, "{stdout}\n{stderr}");
    for name in [
        "JSON API",
        "signed webhook (Gitea)",
        "floor: git worktree add + spawn",
    ] {
        let cells = row(&stdout, name);
        assert_eq!(cells[2], "3", "every item started its agent: {cells:?}");
        for cell in &cells[3..6] {
            let ms: f64 = cell.parse().unwrap_or_else(|_| panic!("{cells:?}"));
            assert!(ms > 0.0, "a launch takes time: {cells:?}");
        }
    }
    assert!(
        stdout.contains("ratio p99 / floor p99 (the worse path): "),
        "{stdout}"
    );
    assert_serve_gone(&stdout);
}

#[test]
fn the_held_bench_holds_every_item_at_once_and_leaves_nothing_running() {
    let (ok, stdout, stderr) = bench(&["--held", "5"]);
    assert!(ok, "{stdout}\n{stderr}");
    for name in ["idle, 0 held", "1 held", "5 held"] {
        let cells = row(&stdout, name);
        let rss: f64 = cells[2].parse().unwrap_or_else(|_| panic!("{cells:?}"));
        // Open fds need root (orch is not dumpable); a number whenever shown.
        let fds_ok = cells[3] == "-" || cells[3].parse::<u32>().is_ok_and(|n| n > 3);
        assert!(rss > 1.0 && fds_ok, "{cells:?}");
    }
    // All five agents were asleep at once: the fifth started while four slept (600 s each).
    let held = row(&stdout, "5 held");
    assert!(held[4].parse::<f64>().is_ok(), "{held:?}");
    assert!(
        stdout.contains("agents left running after orch stopped: 0 of 5"),
        "{stdout}"
    );
    assert_serve_gone(&stdout);
}

#[test]
fn bench_sizes_out_of_range_are_refused_with_the_flag_named() {
    for (flag, value) in [
        ("--launch", "0"),
        ("--launch", "1000000"),
        ("--held", "0"),
        ("--held", "99999"),
        ("--held", "many"),
    ] {
        let (ok, stdout, stderr) = bench(&[flag, value]);
        assert!(!ok, "{flag} {value} must be refused:\n{stdout}");
        assert!(
            stderr.contains(flag) && stderr.contains(value),
            "{flag} {value}: the error names the flag and the value:\n{stderr}"
        );
        assert!(
            !stdout.contains("orch serve: pid"),
            "nothing started: {stdout}"
        );
    }
    let (ok, _, stderr) = bench(&["--launch", "2", "--held", "2"]);
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
}

/// orch raises its soft open-files limit to the hard one: with a soft limit of 40, five runs
/// held at once (a few descriptors each, beside the server's own) would not fit otherwise.
#[test]
fn a_low_soft_open_files_limit_does_not_cap_the_runs_held() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        crate::skip::skip("prlimit (util-linux) is not installed");
        return;
    }
    let out = Command::new("prlimit")
        .args(["--nofile=40:", "--", BIN, "bench", "--held", "5"])
        .env_remove("ORCH_STORE_URL")
        .output()
        .expect("prlimit runs orch bench");
    let stdout = crate::bench::succeeded(&out);
    assert!(
        stdout.contains("agents left running after orch stopped: 0 of 5"),
        "{stdout}"
    );
}
