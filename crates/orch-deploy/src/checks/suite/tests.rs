//! Suites against honest and hostile output: each case is a shell script printing what a suite
//! might print, and the verdict orch folds from it.

use std::time::Duration;

use orch_core::staging::{CheckCategory, StagingVerdict, fold};

use crate::checks::{CheckRun, run_checks};
use crate::config::{CheckSpec, Mode, Probe, ReportedCheck, StagingSpec};

const IDS: [&str; 4] = ["A1", "B6", "C9a", "C9b"];
const INFRA: [&str; 2] = ["C9a", "C9b"];

fn suite(script: &str) -> CheckSpec {
    CheckSpec {
        id: "suite".to_owned(),
        category: CheckCategory::Real,
        probe: Probe::Command {
            run: script.to_owned(),
            expect_exit: 0,
        },
        tries: 1,
        interval: Duration::from_millis(10),
        initial_delay: Duration::ZERO,
        timeout: Duration::from_secs(5),
        successes: 1,
        shadow: false,
        modes: Mode::ALL.to_vec(),
        reports: IDS
            .iter()
            .map(|id| ReportedCheck {
                id: (*id).to_owned(),
                category: if INFRA.contains(id) {
                    CheckCategory::Infra
                } else {
                    CheckCategory::Real
                },
            })
            .collect(),
    }
}

async fn run(script: &str) -> Vec<CheckRun> {
    run_spec(suite(script)).await
}

async fn run_spec(check: CheckSpec) -> Vec<CheckRun> {
    let spec = StagingSpec {
        infra_allowlist: INFRA.iter().map(|id| (*id).to_owned()).collect(),
        checks: vec![check],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    run_checks(
        "http://127.0.0.1:1",
        &spec,
        Mode::Stub,
        dir.path(),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await
}

fn verdict(runs: &[CheckRun], tolerance: bool) -> StagingVerdict {
    let results: Vec<_> = runs.iter().map(|r| r.result.clone()).collect();
    fold(&results, tolerance, None)
}

fn of<'a>(runs: &'a [CheckRun], id: &str) -> &'a CheckRun {
    runs.iter()
        .find(|r| r.result.id == id)
        .unwrap_or_else(|| panic!("no run for {id}: {runs:#?}"))
}

const ALL_PASS: &str = "echo 'CHECK A1 PASS registry ok'; echo 'CHECK B6 PASS'; \
                        echo 'CHECK C9a PASS'; echo 'CHECK C9b PASS'";

#[tokio::test]
async fn every_id_becomes_a_check_of_its_own_classified_by_orch() {
    let runs = run(ALL_PASS).await;
    let ids: Vec<&str> = runs.iter().map(|r| r.result.id.as_str()).collect();
    assert_eq!(ids, ["suite", "A1", "B6", "C9a", "C9b"]);
    assert!(runs.iter().all(|r| r.result.passed), "{runs:#?}");
    assert_eq!(of(&runs, "A1").result.detail, "registry ok");
    assert_eq!(of(&runs, "B6").result.detail, "the suite reported PASS");
    assert_eq!(of(&runs, "C9a").result.category, CheckCategory::Infra);
    assert_eq!(of(&runs, "B6").result.category, CheckCategory::Real);
    assert_eq!(of(&runs, "suite").result.category, CheckCategory::Real);
    assert_eq!(
        verdict(&runs, false),
        StagingVerdict::Success { waived: vec![] }
    );
}

#[tokio::test]
async fn infra_ids_are_waived_by_orch_and_real_ids_never() {
    // The seeds' suite exits 1 on a failure; orch waives C9a/C9b by its own allowlist.
    let infra_only = "echo 'CHECK A1 PASS'; echo 'CHECK B6 PASS'; echo 'CHECK C9a FAIL no member'; \
                      echo 'CHECK C9b FAIL no member'; exit 1";
    let runs = run(infra_only).await;
    assert!(of(&runs, "suite").result.passed, "{runs:#?}");
    assert_eq!(
        verdict(&runs, true),
        StagingVerdict::Success {
            waived: vec!["C9a".into(), "C9b".into()]
        }
    );
    assert!(!verdict(&runs, false).is_success());
    // A suite that waived by itself (exit 0) does not decide either: a REAL FAIL is FAILED.
    let self_waived = "echo 'CHECK A1 PASS'; echo 'CHECK B6 FAIL registry has 2 projects'; \
                       echo 'CHECK C9a PASS'; echo 'CHECK C9b PASS'; echo 'VERDICT: SUCCESS'";
    let runs = run(self_waived).await;
    let v = verdict(&runs, true);
    assert!(!v.is_success());
    assert_eq!(
        v.verdict_line(),
        "VERDICT: FAILED (B6: registry has 2 projects)"
    );
}

/// Every hostile or broken output: the verdict is FAILED under tolerance, and the suite's own
/// (REAL) result names the problem.
#[tokio::test]
async fn output_that_cannot_be_trusted_fails_the_suite() {
    let cases = [
        // An id missing (even an INFRA one: fewer ids than configured).
        (
            "echo 'CHECK A1 PASS'; echo 'CHECK B6 PASS'; echo 'CHECK C9a PASS'",
            "did not report C9b",
        ),
        // An id not configured.
        (
            &format!("{ALL_PASS}; echo 'CHECK Z9 PASS'"),
            "reports `Z9`, which is not listed in `reports`",
        ),
        // A duplicate, even with the same result.
        (
            &format!("{ALL_PASS}; echo 'CHECK B6 PASS'"),
            "reports `B6` again",
        ),
        // Malformed lines.
        (
            &format!("{ALL_PASS}; echo 'CHECK A1 OK'"),
            "is not `CHECK <id> PASS|FAIL",
        ),
        (
            &format!("{ALL_PASS}; echo 'CHECK A1'"),
            "is not `CHECK <id> PASS|FAIL",
        ),
        (
            &format!("{ALL_PASS}; echo 'CHECK'"),
            "is not `CHECK <id> PASS|FAIL",
        ),
        (
            &format!("{ALL_PASS}; echo 'CHECK A1 pass'"),
            "is not `CHECK <id> PASS|FAIL",
        ),
        // An exit that contradicts the lines, or is no suite's exit at all.
        (
            &format!("{ALL_PASS}; exit 1"),
            "exited 1 but reported no FAIL",
        ),
        (
            &format!("{ALL_PASS}; exit 2"),
            "exited 2; a suite exits 0, or 1",
        ),
        (&format!("{ALL_PASS}; kill -9 $$"), "killed by signal 9"),
        // Results on stderr do not count.
        (
            "echo 'CHECK A1 PASS' >&2; echo 'CHECK B6 PASS' >&2",
            "did not report A1, B6, C9a, C9b",
        ),
        // Prose and the suite's own verdict lines are not results.
        (
            "echo 'VERDICT: SUCCESS'; echo 'INFRA-WAIVED: C9a'; echo 'CHECKING A1 PASS'",
            "did not report",
        ),
        // Nothing at all.
        ("true", "did not report A1, B6, C9a, C9b"),
        // A flood of result lines.
        (
            "i=0; while [ $i -lt 1100 ]; do echo 'CHECK A1 PASS'; i=$((i+1)); done",
            "more than 1000",
        ),
    ];
    for (script, problem) in cases {
        let runs = run(script).await;
        let own = &of(&runs, "suite").result;
        assert!(!own.passed, "{script}: {runs:#?}");
        assert!(own.detail.contains(problem), "{script}: {}", own.detail);
        assert!(!verdict(&runs, true).is_success(), "{script}");
    }
}

#[tokio::test]
async fn an_id_not_reported_or_reported_twice_fails_itself() {
    let runs = run(&format!("{ALL_PASS}; echo 'CHECK C9a FAIL'")).await;
    assert!(!of(&runs, "C9a").result.passed);
    assert_eq!(
        of(&runs, "C9a").result.detail,
        "reported more than once by the suite"
    );
    let runs = run("echo 'CHECK A1 PASS'").await;
    assert!(!of(&runs, "B6").result.passed);
    assert!(of(&runs, "B6").result.detail.starts_with("not reported by"));
    assert!(of(&runs, "A1").result.passed);
}

#[tokio::test]
async fn what_the_suite_says_reaches_the_log_printable_and_cut() {
    let script = "printf 'CHECK A1 FAIL bad\\033[31m red\\n'; \
                  printf 'CHECK B6 PASS %0500d\\n' 0; echo 'CHECK C9a PASS'; echo 'CHECK C9b PASS'; exit 1";
    let runs = run(script).await;
    assert_eq!(of(&runs, "A1").result.detail, "bad?[31m red");
    let long = &of(&runs, "B6").result.detail;
    assert_eq!(long.chars().count(), 301, "{long}");
    assert!(long.ends_with('…'));
}

#[tokio::test]
async fn a_suite_that_cannot_run_is_never_measured() {
    let mut check = suite(ALL_PASS);
    check.probe = Probe::Exec {
        argv: vec!["/app".into(), "suite".into()],
        expect_exit: 0,
    };
    let runs = run_spec(check).await;
    assert_eq!(runs.len(), 5);
    for run in &runs {
        assert!(!run.result.passed);
        assert!(
            run.result.detail.starts_with("could not be measured"),
            "{run:#?}"
        );
        assert!(run.measurements.iter().all(|m| !m.measured));
    }
}

#[tokio::test]
async fn a_suite_is_tried_again_as_a_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("second");
    // First run: C9a FAILS; second run: everything passes.
    let script = format!(
        "if [ -e {m} ]; then {ALL_PASS}; else touch {m}; echo 'CHECK A1 PASS'; echo 'CHECK B6 PASS'; \
         echo 'CHECK C9a FAIL'; echo 'CHECK C9b PASS'; exit 1; fi",
        m = marker.display()
    );
    let mut check = suite(&script);
    check.tries = 3;
    let runs = run_spec(check).await;
    assert!(runs.iter().all(|r| r.result.passed), "{runs:#?}");
    let c9a = of(&runs, "C9a");
    let tries: Vec<(u32, bool)> = c9a.measurements.iter().map(|m| (m.try_no, m.ok)).collect();
    assert_eq!(tries, [(1, false), (2, true)]);
}
