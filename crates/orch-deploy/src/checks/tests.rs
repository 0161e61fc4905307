use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch_core::staging::{CheckCategory, fold};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A loopback server answering each request with the next scripted `(status, body)`; the last
/// answer repeats. Returns its base URL.
async fn scripted_server(answers: &[(u16, &str)]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base_url = format!("http://{}", listener.local_addr().expect("addr"));
    let answers: Vec<(u16, String)> = answers.iter().map(|(s, b)| (*s, (*b).to_owned())).collect();
    let served = Arc::new(Mutex::new(0usize));
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buffer[..n]),
                }
            }
            let index = {
                let mut served = served.lock().expect("lock");
                *served += 1;
                (*served - 1).min(answers.len() - 1)
            };
            let (status, body) = &answers[index];
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    base_url
}

fn http_check(id: &str, expect_body: Option<&str>) -> CheckSpec {
    CheckSpec {
        id: id.to_owned(),
        category: CheckCategory::Real,
        probe: Probe::Http {
            path: "/".into(),
            expect_status: 200,
            body_contains: expect_body.map(str::to_owned),
            json: None,
        },
        tries: 3,
        interval: Duration::from_millis(10),
        initial_delay: Duration::ZERO,
        timeout: Duration::from_secs(2),
        successes: 1,
        shadow: false,
        modes: Mode::ALL.to_vec(),
        reports: Vec::new(),
    }
}

fn command_check(id: &str, run: &str) -> CheckSpec {
    CheckSpec {
        probe: Probe::Command {
            run: run.to_owned(),
            expect_exit: 0,
        },
        ..http_check(id, None)
    }
}

async fn run_one(base_url: &str, check: CheckSpec) -> CheckRun {
    let spec = StagingSpec {
        infra_allowlist: Vec::new(),
        checks: vec![check],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut runs = run_checks(
        base_url,
        &spec,
        Mode::Stub,
        dir.path(),
        &CancellationToken::new(),
    )
    .await;
    assert_eq!(runs.len(), 1);
    runs.remove(0)
}

fn tries(run: &CheckRun) -> Vec<(bool, bool)> {
    run.measurements
        .iter()
        .map(|m| (m.ok, m.measured))
        .collect()
}

#[tokio::test]
async fn a_warming_instance_passes_on_a_later_try() {
    let base = scripted_server(&[(503, "warming"), (200, "Hello, world")]).await;
    let run = run_one(&base, http_check("greeting", Some("Hello"))).await;
    assert!(run.result.passed, "{run:?}");
    assert_eq!(run.result.detail, "GET / 200");
    assert_eq!(tries(&run), vec![(false, true), (true, true)]);
    assert_eq!(
        run.measurements[0].detail,
        "GET / answered 503, expected 200"
    );
}

#[tokio::test]
async fn a_persistent_mismatch_fails_with_a_one_line_reason_after_all_tries() {
    let base = scripted_server(&[(500, "boom")]).await;
    let run = run_one(&base, http_check("greeting", None)).await;
    assert!(!run.result.passed);
    assert_eq!(run.result.detail, "GET / answered 500, expected 200");
    assert_eq!(run.measurements.len(), 3);

    let base = scripted_server(&[(200, "Goodbye")]).await;
    let run = run_one(&base, http_check("greeting", Some("Hello"))).await;
    assert_eq!(
        run.result.detail,
        "GET / answered 200 without `Hello` in the body"
    );
}

#[tokio::test]
async fn nothing_listening_is_could_not_be_measured_never_a_pass() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let run = run_one(
        &format!("http://127.0.0.1:{port}"),
        http_check("greeting", None),
    )
    .await;
    assert!(!run.result.passed);
    assert!(
        run.result
            .detail
            .starts_with("could not be measured: GET /: connect to"),
        "{}",
        run.result.detail
    );
    assert_eq!(tries(&run), vec![(false, false); 3]);
}

#[tokio::test]
async fn consecutive_successes_restart_after_a_failure_and_stop_early_when_out_of_reach() {
    let base = scripted_server(&[(200, ""), (500, ""), (200, ""), (200, "")]).await;
    let check = CheckSpec {
        tries: 4,
        successes: 2,
        ..http_check("steady", None)
    };
    let run = run_one(&base, check).await;
    assert!(run.result.passed);
    assert_eq!(run.measurements.len(), 4);

    // Two failures out of three tries: two consecutive successes can no longer happen.
    let base = scripted_server(&[(500, ""), (500, ""), (200, "")]).await;
    let check = CheckSpec {
        tries: 3,
        successes: 2,
        ..http_check("steady", None)
    };
    let run = run_one(&base, check).await;
    assert!(!run.result.passed);
    assert_eq!(
        run.measurements.len(),
        2,
        "the third try could not reach 2 in a row"
    );

    assert_eq!(
        run.result.detail,
        "needed 2 consecutive successes in 3 tries; last: GET / answered 500, expected 200"
    );
}

#[tokio::test]
async fn json_fields_are_compared_by_path() {
    let body = r#"{"app":{"version":"1.2","ready":true,"workers":[{"id":7}]}}"#;
    let cases = [
        ("app.version", "1.2", Ok(())),
        ("app.ready", "true", Ok(())),
        ("app.workers.0.id", "7", Ok(())),
        (
            "app.version",
            "1.3",
            Err("GET / answered 200 but `app.version` is `1.2`, expected `1.3`"),
        ),
        (
            "app.missing",
            "x",
            Err("GET / answered 200 but `app.missing` is missing"),
        ),
    ];
    for (field, equals, expected) in cases {
        let json = Some(JsonExpectation {
            field: field.into(),
            equals: equals.into(),
        });
        let outcome = judge_answer(
            "/",
            200,
            None,
            json.as_ref(),
            &http::Answer {
                status: 200,
                body: body.into(),
            },
        );
        match expected {
            Ok(()) => assert!(outcome.ok, "{field}: {}", outcome.detail),
            Err(detail) => assert_eq!((outcome.ok, outcome.detail.as_str()), (false, detail)),
        }
    }
    let not_json = judge_answer(
        "/",
        200,
        None,
        Some(&JsonExpectation {
            field: "a".into(),
            equals: "b".into(),
        }),
        &http::Answer {
            status: 200,
            body: "<html>".into(),
        },
    );
    assert_eq!(
        not_json.detail,
        "GET / answered 200 but the body is not JSON"
    );
}

#[tokio::test]
async fn command_checks_get_the_base_url_and_judge_the_exit_code() {
    let base = "http://127.0.0.1:1";
    let run = run_one(
        base,
        command_check(
            "smoke",
            "test \"{base_url}\" = \"$STAGING_BASE_URL\" && test \"$STAGING_MODE\" = stub",
        ),
    )
    .await;
    assert!(run.result.passed, "{run:?}");

    let run = run_one(base, command_check("smoke", "echo nope; exit 3")).await;
    assert_eq!(
        run.result.detail,
        "`echo nope; exit 3` exited 3, expected 0: nope"
    );
    assert_eq!(tries(&run), vec![(false, true); 3]);

    let slow = CheckSpec {
        tries: 1,
        timeout: Duration::from_millis(200),
        ..command_check("slow", "sleep 5")
    };
    let run = run_one(base, slow).await;
    assert!(
        run.result
            .detail
            .starts_with("could not be measured: `sleep 5` timed out"),
        "{}",
        run.result.detail
    );
}

#[tokio::test]
async fn modes_skip_checks_and_shadow_checks_never_decide() {
    let base = scripted_server(&[(500, "")]).await;
    let live_only = CheckSpec {
        modes: vec![Mode::Live],
        ..http_check("live-only", None)
    };
    let shadow = CheckSpec {
        shadow: true,
        tries: 1,
        ..http_check("flaky", None)
    };
    let passing = command_check("smoke", "true");
    let spec = StagingSpec {
        infra_allowlist: Vec::new(),
        checks: vec![live_only, shadow, passing],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = run_checks(
        &base,
        &spec,
        Mode::Stub,
        dir.path(),
        &CancellationToken::new(),
    )
    .await;
    let ids: Vec<&str> = runs.iter().map(|r| r.result.id.as_str()).collect();
    assert_eq!(
        ids,
        ["flaky", "smoke"],
        "the live-only check is not run in stub mode"
    );
    let results: Vec<_> = runs.iter().map(|r| r.result.clone()).collect();
    let verdict = fold(&results, false, None);
    assert_eq!(
        report_lines(&runs, &verdict),
        [
            "SHADOW flaky (REAL): FAIL: GET / answered 500, expected 200",
            "PASS smoke (REAL): `true` exited 0",
            "VERDICT: SUCCESS",
        ]
    );
}

#[tokio::test]
async fn cancelling_fails_the_remaining_checks_without_measuring() {
    let cancel = CancellationToken::new();
    cancel.cancel();
    let spec = StagingSpec {
        infra_allowlist: Vec::new(),
        checks: vec![http_check("greeting", None)],
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let runs = run_checks("http://127.0.0.1:1", &spec, Mode::Stub, dir.path(), &cancel).await;
    assert!(!runs[0].result.passed);
    assert!(runs[0].measurements.is_empty());
    assert_eq!(
        runs[0].result.detail,
        "could not be measured: cancelled before the first try"
    );
}

#[test]
fn report_lines_put_the_waiver_before_the_verdict() {
    let run = |id: &str, category, passed| CheckRun {
        result: CheckResult {
            id: id.into(),
            category,
            passed,
            shadow: false,
            detail: "d".into(),
        },
        measurements: Vec::new(),
    };
    let runs = [
        run("greeting", CheckCategory::Real, true),
        run("C9a", CheckCategory::Infra, false),
    ];
    let results: Vec<_> = runs.iter().map(|r| r.result.clone()).collect();
    assert_eq!(
        report_lines(&runs, &fold(&results, true, None)),
        [
            "PASS greeting (REAL): d",
            "FAIL C9a (INFRA): d",
            "INFRA-WAIVED: C9a (sandbox infrastructure, not the change)",
            "VERDICT: SUCCESS (waived INFRA: C9a)",
        ]
    );
}

fn exec_check(id: &str, argv: &[&str]) -> CheckSpec {
    CheckSpec {
        probe: Probe::Exec {
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            expect_exit: 0,
        },
        tries: 1,
        ..http_check(id, None)
    }
}

#[tokio::test]
async fn an_exec_check_without_a_container_is_never_a_pass() {
    let run = run_one("http://127.0.0.1:1", exec_check("self", &["/app", "check"])).await;
    assert!(!run.result.passed);
    assert_eq!(tries(&run), vec![(false, false)]);
    assert!(
        run.result.detail.contains("no staging container"),
        "{}",
        run.result.detail
    );
}

/// A stand-in for the docker CLI: it records its argv and exits with the code in its first
/// program argument, following `docker exec`'s documented contract (the command's own exit code;
/// 125 when docker itself failed, 126/127 when the command could not be run or found).
fn fake_docker(dir: &std::path::Path) -> crate::docker::DockerCli {
    let script = dir.join("docker");
    let argv_log = dir.join("argv");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n# docker exec [--env X]... CONTAINER PROGRAM CODE\nfor last; do :; done\nexit \"$last\"\n",
            argv_log.display()
        ),
    )
    .expect("write fake docker");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let text = format!(
        "kind = \"docker\"\n[docker]\nbinary = \"{}\"\n",
        script.display()
    );
    let Ok(crate::config::DeployConfig::Docker(spec)) =
        crate::config::DeployConfig::from_toml(&text)
    else {
        panic!("a docker config");
    };
    crate::docker::DockerCli::new(&spec)
}

#[tokio::test]
async fn an_exec_check_runs_its_argv_in_the_container_and_docker_failures_are_unmeasured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cli = fake_docker(dir.path());
    let target = ExecTarget {
        cli: &cli,
        container: "orch-shop-staging",
    };
    let base = "http://127.0.0.1:8511";
    for (code, ok, measured) in [("0", true, true), ("4", false, true), ("125", false, false)] {
        let spec = StagingSpec {
            infra_allowlist: Vec::new(),
            checks: vec![exec_check("self", &["/app", "{base_url}", code])],
        };
        let runs = run_checks_in(
            base,
            &spec,
            Mode::Stub,
            dir.path(),
            Some(target),
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(
            tries(&runs[0]),
            vec![(ok, measured)],
            "exit {code}: {runs:?}"
        );
    }
    let argv = std::fs::read_to_string(dir.path().join("argv")).expect("argv");
    assert_eq!(
        argv.lines().collect::<Vec<_>>(),
        [
            "exec",
            "--env",
            "STAGING_BASE_URL=http://127.0.0.1:8511",
            "--env",
            "STAGING_MODE=stub",
            "orch-shop-staging",
            "/app",
            "http://127.0.0.1:8511",
            "125"
        ]
    );
}
