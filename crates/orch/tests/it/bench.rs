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
