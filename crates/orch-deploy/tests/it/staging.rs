use orch_core::staging::StagingVerdict;
use orch_deploy::{Env, Mode, run_checks};
use tokio_util::sync::CancellationToken;

use crate::support::{GREETING_CHECK, Project, free_ports};

#[tokio::test]
async fn a_healthy_build_passes_staging_and_is_built_only_once() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let sha = project.head();

    let report = project.stage(&sha, true).await;
    assert_eq!(
        report.verdict,
        StagingVerdict::Success { waived: vec![] },
        "{:#?}",
        report.lines
    );
    assert_eq!(
        report.lines,
        ["PASS greeting (REAL): GET / 200", "VERDICT: SUCCESS"]
    );
    assert_eq!(
        report.base_url,
        format!("http://127.0.0.1:{}", project.ports.staging)
    );
    assert_eq!(
        project.greeting_on(Env::Staging).await.as_deref(),
        Ok("Hello v1")
    );
    let build = report.build.expect("a build");
    assert_eq!((build.sha.as_str(), build.reused), (sha.as_str(), false));
    assert!(
        project
            .root()
            .join("builds")
            .join(&sha)
            .join("build.json")
            .is_file()
    );
    let first = project.current(Env::Staging).expect("staging recorded");
    assert!(first.healthy && first.sha == sha && first.port == project.ports.staging);

    let again = project.stage(&sha, true).await;
    assert!(again.verdict.is_success());
    assert!(
        again.build.as_ref().expect("a build").reused,
        "the second deploy of one SHA reuses its build"
    );
    assert_eq!(project.builds_run(), 1, "the build command ran once");
    let second = project.current(Env::Staging).expect("staging recorded");
    assert_ne!(second.pid, first.pid, "the instance was restarted");
    assert!(!first.is_running(), "the old instance was stopped");

    let log = again.log_markdown("2026-06-07T12:39:00Z");
    assert!(log.starts_with("---\nstaging_status: SUCCESS\n"), "{log}");
    assert!(log.contains(&format!("sha: \"{sha}\"")), "{log}");
}

#[tokio::test]
async fn a_real_check_failure_is_failed_whether_tolerant_or_strict() {
    let checks = GREETING_CHECK.replace("body_contains = \"Hello\"", "body_contains = \"Bonjour\"");
    let project = Project::new("Hello v1", &checks);
    let sha = project.head();
    for tolerance in [true, false] {
        let report = project.stage(&sha, tolerance).await;
        assert!(!report.verdict.is_success(), "tolerance={tolerance}");
        assert_eq!(
            report.lines,
            [
                "FAIL greeting (REAL): GET / answered 200 without `Bonjour` in the body",
                "VERDICT: FAILED (greeting: GET / answered 200 without `Bonjour` in the body)",
            ]
        );
        assert_eq!(
            report.checks[0].measurements.len(),
            2,
            "retried within its tries"
        );
    }
}

const WITH_INFRA_CHECK: &str = r#"
[[staging.checks]]
id = "greeting"
kind = "http"
path = "/"
body_contains = "Hello"

[[staging.checks]]
id = "C9a"
category = "INFRA"
kind = "http"
path = "/sandbox"
tries = 2
interval_ms = 20
"#;

#[tokio::test]
async fn an_infra_only_failure_is_waived_when_tolerant_and_failed_when_strict() {
    let project = Project::new("Hello v1", WITH_INFRA_CHECK);
    let sha = project.head();

    let tolerant = project.stage(&sha, true).await;
    assert_eq!(
        tolerant.verdict,
        StagingVerdict::Success {
            waived: vec!["C9a".into()]
        }
    );
    assert_eq!(
        tolerant.lines,
        [
            "PASS greeting (REAL): GET / 200",
            "FAIL C9a (INFRA): GET /sandbox answered 503, expected 200",
            "INFRA-WAIVED: C9a (sandbox infrastructure, not the change)",
            "VERDICT: SUCCESS (waived INFRA: C9a)",
        ]
    );
    let log = tolerant.log_markdown("2026-06-07T12:39:00Z");
    assert!(
        log.contains("staging_status: SUCCESS") && log.contains("waived: [\"C9a\"]"),
        "{log}"
    );
    assert!(
        log.contains("\nINFRA-WAIVED: C9a (sandbox infrastructure, not the change)\n"),
        "{log}"
    );

    let strict = project.stage(&sha, false).await;
    assert!(
        matches!(
            strict.verdict,
            StagingVerdict::Failed {
                infra_only: true,
                ..
            }
        ),
        "{:?}",
        strict.verdict
    );
    assert!(strict.log_markdown("t").contains("staging_status: FAILED"));
}

#[tokio::test]
async fn a_check_that_cannot_be_measured_fails_and_is_never_a_pass() {
    let checks = r#"
[[staging.checks]]
id = "slow"
kind = "http"
path = "/slow"
tries = 2
interval_ms = 10
timeout_ms = 150
"#;
    let project = Project::new("Hello v1", checks);
    let report = project.stage(&project.head(), true).await;
    assert!(!report.verdict.is_success());
    assert_eq!(
        report.lines[0],
        "FAIL slow (REAL): could not be measured: GET /slow: no answer within 150 ms"
    );
    assert!(report.checks[0].measurements.iter().all(|m| !m.measured));

    // Nothing listening at all, through the public check runner.
    let spec = orch_deploy::DeploySpec::from_toml(&format!(
        "[build]\ncommand = \"true\"\nartifact = \"x\"\n[run]\ncommand = [\"x\"]\n{}",
        crate::support::GREETING_CHECK
    ))
    .expect("valid")
    .staging;
    let idle = free_ports().staging;
    let runs = run_checks(
        &format!("http://127.0.0.1:{idle}"),
        &spec,
        Mode::Stub,
        &project.repo(),
        &CancellationToken::new(),
    )
    .await;
    assert!(!runs[0].result.passed);
    assert!(
        runs[0]
            .result
            .detail
            .starts_with("could not be measured: GET /: connect to"),
        "{}",
        runs[0].result.detail
    );
}

#[tokio::test]
async fn a_build_that_never_gets_healthy_fails_staging_and_is_stopped() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let sha = project.commit("Hello sick", Some(500));
    let report = project.stage(&sha, true).await;
    assert!(!report.verdict.is_success());
    let error = report.error.as_deref().expect("an error");
    assert!(
        error.contains(
            "the staging instance never became healthy: GET /healthz after 25 tries: answered 500"
        ),
        "{error}"
    );
    assert!(
        report.checks.is_empty(),
        "no checks run against an unhealthy instance"
    );
    assert!(
        report
            .verdict
            .verdict_line()
            .starts_with("VERDICT: FAILED (internal error: the staging instance never")
    );
    assert_eq!(
        project.current(Env::Staging),
        None,
        "nothing unhealthy stays recorded"
    );
    assert!(
        project.greeting_on(Env::Staging).await.is_err(),
        "and nothing answers"
    );
}

#[tokio::test]
async fn a_staging_port_taken_by_another_program_is_a_clear_failure() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let squatter =
        std::net::TcpListener::bind(("127.0.0.1", project.ports.staging)).expect("take the port");
    let report = project.stage(&project.head(), true).await;
    assert_eq!(
        report.error.as_deref(),
        Some(
            format!(
                "port {} is in use by another program; free it or set a different staging port",
                project.ports.staging
            )
            .as_str()
        )
    );
    assert!(!report.verdict.is_success());
    assert_eq!(project.current(Env::Staging), None);
    drop(squatter);
}

#[tokio::test]
async fn the_build_must_come_from_the_validated_sha() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let first = project.head();
    project.commit("Hello v2", None);
    let report = project.stage(&first, true).await;
    let error = report.error.expect("refused");
    assert!(
        error.contains(&format!(
            "is at {}, not at the validated SHA {first}",
            project.head()
        )),
        "{error}"
    );
    assert_eq!(project.builds_run(), 0);

    let report = project.stage("main", true).await;
    assert!(
        report
            .error
            .expect("refused")
            .contains("is not a full git commit SHA")
    );
}

#[tokio::test]
async fn a_failing_build_fails_staging_with_its_output_and_starts_nothing() {
    let project = Project::new("Hello v1", GREETING_CHECK);
    let sha = project.commit_broken_build();
    let report = project.stage(&sha, true).await;
    assert!(!report.verdict.is_success());
    assert!(report.build.is_none());
    let error = report.error.expect("an error");
    assert!(
        error.contains("exited with code 1; fix the build and deploy again"),
        "{error}"
    );
    assert!(error.ends_with("[stderr] compile error"), "{error}");
    assert_eq!(project.current(Env::Staging), None);
    assert!(
        !project.root().join("builds").join(&sha).exists(),
        "a failed build is not kept"
    );
}
