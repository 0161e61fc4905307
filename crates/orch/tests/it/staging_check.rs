//! `orch staging-check` through the binary: every row of the contract-4 fold table, tolerant and
//! strict (`--strict` and the kill-switch in the environment), unreachable targets, no checks,
//! the prod-port refusal, and a project that has nothing of `.orch/` but `deploy.toml`.
//!
//! Exit codes pinned: 0 SUCCESS, 1 FAILED, 2 a usage or configuration error.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

use crate::harness::{BIN, free_port};

const KILL_SWITCH: &str = "ORCH_STAGING_INFRA_TOLERANCE_ENABLED";

/// An orch.toml with one project whose repository holds only `.orch/deploy.toml`.
struct Fixture {
    dir: tempfile::TempDir,
    staging_port: u16,
    prod_port: u16,
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Fixture {
    fn new(deploy_toml: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let (staging_port, prod_port) = (free_port(), free_port());
        std::fs::create_dir_all(dir.path().join("repo/.orch")).expect("mkdir");
        std::fs::write(dir.path().join("repo/.orch/deploy.toml"), deploy_toml).expect("deploy");
        std::fs::write(
            dir.path().join("orch.toml"),
            format!(
                "[[projects]]\nname = \"shop\"\nrepo = \"repo\"\nstaging_port = {staging_port}\nprod_port = {prod_port}\n"
            ),
        )
        .expect("orch.toml");
        Fixture {
            dir,
            staging_port,
            prod_port,
        }
    }

    fn staging_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.staging_port)
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(self.dir.path().join("orch.toml"))
            .arg("staging-check")
            .args(args)
            .env_remove(KILL_SWITCH)
            .env_remove("ORCH_CONFIG")
            .env_remove("ORCH_PROJECTS_JSON");
        for (name, value) in env {
            command.env(name, value);
        }
        let out = command.output().expect("orch runs");
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs against the staging URL with `extra` arguments.
    fn check(&self, extra: &[&str], env: &[(&str, &str)]) -> Ran {
        let url = self.staging_url();
        let mut args = vec!["--base-url", url.as_str()];
        args.extend_from_slice(extra);
        self.run(&args, env)
    }
}

fn command_check(id: &str, category: &str, passes: bool) -> String {
    let run = if passes { "true" } else { "false" };
    format!(
        "[[staging.checks]]\nid = \"{id}\"\ncategory = \"{category}\"\nkind = \"command\"\nrun = \"{run}\"\ntries = 1\n"
    )
}

/// A deploy.toml of the hook kind (no [build] or [run] needed) with these checks.
fn deploy_with(allowlist: &[&str], checks: &[String]) -> String {
    let allow: Vec<String> = allowlist.iter().map(|id| format!("\"{id}\"")).collect();
    format!(
        "kind = \"hook\"\n[hook]\ncommand = [\"./deploy.sh\"]\n\n[staging]\ninfra_allowlist = [{}]\n\n{}",
        allow.join(", "),
        checks.join("\n")
    )
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or_default()
}

/// The fold table, row by row, through the command: (checks, args, env) -> (exit, VERDICT line,
/// whether an INFRA-WAIVED line is printed).
#[test]
fn every_row_of_the_fold_table_through_the_command() {
    let real_ok = command_check("A", "REAL", true);
    let real_bad = command_check("A", "REAL", false);
    let infra_ok = command_check("C9a", "INFRA", true);
    let infra_bad = command_check("C9a", "INFRA", false);
    let infra_bad_b = command_check("C9b", "INFRA", false);
    let strict_env: &[(&str, &str)] = &[(KILL_SWITCH, "false")];
    let tolerant_env: &[(&str, &str)] = &[(KILL_SWITCH, "true")];
    type Row<'a> = (
        Vec<String>,
        &'a [&'a str],
        &'a [(&'a str, &'a str)],
        i32,
        &'a str,
        bool,
    );
    let rows: Vec<Row<'_>> = vec![
        // Everything passes: SUCCESS whatever the setting.
        (
            vec![real_ok.clone(), infra_ok.clone()],
            &[],
            &[],
            0,
            "VERDICT: SUCCESS",
            false,
        ),
        (
            vec![real_ok.clone(), infra_ok.clone()],
            &["--strict"],
            &[],
            0,
            "VERDICT: SUCCESS",
            false,
        ),
        (
            vec![real_ok.clone(), infra_ok.clone()],
            &[],
            strict_env,
            0,
            "VERDICT: SUCCESS",
            false,
        ),
        // A REAL failure: FAILED under every setting.
        (
            vec![real_bad.clone(), infra_ok.clone()],
            &[],
            &[],
            1,
            "VERDICT: FAILED (A: ",
            false,
        ),
        (
            vec![real_bad.clone(), infra_ok.clone()],
            &[],
            tolerant_env,
            1,
            "VERDICT: FAILED (A: ",
            false,
        ),
        (
            vec![real_bad.clone(), infra_ok.clone()],
            &["--strict"],
            &[],
            1,
            "VERDICT: FAILED (A: ",
            false,
        ),
        (
            vec![real_bad.clone(), infra_ok.clone()],
            &[],
            strict_env,
            1,
            "VERDICT: FAILED (A: ",
            false,
        ),
        // REAL and INFRA failures: FAILED, nothing waived.
        (
            vec![real_bad.clone(), infra_bad.clone()],
            &[],
            &[],
            1,
            "VERDICT: FAILED (A: ",
            false,
        ),
        // INFRA only, tolerant (the default, and the switch said true): waived.
        (
            vec![real_ok.clone(), infra_bad.clone(), infra_bad_b.clone()],
            &[],
            &[],
            0,
            "VERDICT: SUCCESS (waived INFRA: C9a, C9b)",
            true,
        ),
        (
            vec![real_ok.clone(), infra_bad.clone()],
            &[],
            tolerant_env,
            0,
            "VERDICT: SUCCESS (waived INFRA: C9a)",
            true,
        ),
        // INFRA only, strict per run or by the kill-switch: FAILED.
        (
            vec![real_ok.clone(), infra_bad.clone()],
            &["--strict"],
            &[],
            1,
            "VERDICT: FAILED (C9a (INFRA, strict): ",
            false,
        ),
        (
            vec![real_ok.clone(), infra_bad.clone()],
            &[],
            strict_env,
            1,
            "VERDICT: FAILED (C9a (INFRA, strict): ",
            false,
        ),
        // --strict wins over a switch saying tolerant.
        (
            vec![real_ok.clone(), infra_bad.clone()],
            &["--strict"],
            tolerant_env,
            1,
            "VERDICT: FAILED (C9a (INFRA, strict): ",
            false,
        ),
    ];
    for (index, (checks, args, env, code, verdict, waived)) in rows.into_iter().enumerate() {
        let allow: Vec<&str> = ["C9a", "C9b"]
            .into_iter()
            .filter(|id| checks.iter().any(|c| c.contains(&format!("\"{id}\""))))
            .collect();
        let fixture = Fixture::new(&deploy_with(&allow, &checks));
        let ran = fixture.check(args, env);
        let what = format!(
            "row {index} {args:?} {env:?}:\n{}\n{}",
            ran.stdout, ran.stderr
        );
        assert_eq!(ran.code, code, "{what}");
        assert!(last_line(&ran.stdout).starts_with(verdict), "{what}");
        assert_eq!(
            ran.stdout.lines().any(|l| l.starts_with("INFRA-WAIVED: ")),
            waived,
            "{what}"
        );
        // One line per check, before the verdict.
        for check in &checks {
            let id = check.split('"').nth(1).unwrap_or_default();
            assert!(
                ran.stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("PASS {id} "))
                        || l.starts_with(&format!("FAIL {id} "))),
                "{what}"
            );
        }
    }
}

/// The kill-switch fails closed on a value it does not know: nothing runs, exit 2.
#[test]
fn a_misspelled_kill_switch_is_a_usage_error() {
    let fixture = Fixture::new(&deploy_with(
        &["C9a"],
        &[
            command_check("A", "REAL", true),
            command_check("C9a", "INFRA", false),
        ],
    ));
    let ran = fixture.check(&[], &[(KILL_SWITCH, "flase")]);
    assert_eq!(ran.code, 2, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.is_empty(), "{}", ran.stdout);
    assert!(ran.stderr.contains(KILL_SWITCH), "{}", ran.stderr);
}

#[test]
fn shadow_checks_never_decide_and_only_shadow_checks_is_failed() {
    let shadow_bad = format!("{}shadow = true\n", command_check("S1", "REAL", false));
    let only_shadow = Fixture::new(&deploy_with(&[], std::slice::from_ref(&shadow_bad)));
    let ran = only_shadow.check(&[], &[]);
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert_eq!(
        last_line(&ran.stdout),
        "VERDICT: FAILED (no staging checks are configured)"
    );
    assert!(
        ran.stdout.contains("SHADOW S1 (REAL): FAIL"),
        "{}",
        ran.stdout
    );
    let with_real = Fixture::new(&deploy_with(
        &[],
        &[shadow_bad, command_check("A", "REAL", true)],
    ));
    let ran = with_real.check(&[], &[]);
    assert_eq!(
        (ran.code, last_line(&ran.stdout)),
        (0, "VERDICT: SUCCESS"),
        "{}",
        ran.stdout
    );
}

#[test]
fn no_checks_configured_is_failed() {
    let fixture = Fixture::new(&deploy_with(&[], &[]));
    let ran = fixture.check(&[], &[]);
    assert_eq!(ran.code, 1, "{}{}", ran.stdout, ran.stderr);
    assert_eq!(
        last_line(&ran.stdout),
        "VERDICT: FAILED (no staging checks are configured)"
    );
    // A mode no check runs in is the same: nothing measured, nothing passes.
    let live_only = format!("{}modes = [\"live\"]\n", command_check("A", "REAL", true));
    let fixture = Fixture::new(&deploy_with(&[], &[live_only]));
    let ran = fixture.check(&["--mode", "stub"], &[]);
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    let ran = fixture.check(&["--mode", "live"], &[]);
    assert_eq!(ran.code, 0, "{}", ran.stdout);
}

/// Serves `200 Hello` to every request on `port` until the test process ends.
fn serve_hello(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nHello",
            );
        }
    });
}

fn http_check(id: &str, category: &str) -> String {
    format!(
        "[[staging.checks]]\nid = \"{id}\"\ncategory = \"{category}\"\nkind = \"http\"\npath = \"/\"\nbody_contains = \"Hello\"\ntries = 2\ninterval_ms = 50\ntimeout_ms = 500\n"
    )
}

#[test]
fn an_unreachable_target_is_never_a_pass() {
    // Nothing listens on the staging port: the REAL check could not be measured, FAILED.
    let fixture = Fixture::new(&deploy_with(&[], &[http_check("greeting", "REAL")]));
    let ran = fixture.check(&[], &[]);
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(
        ran.stdout
            .contains("FAIL greeting (REAL): could not be measured"),
        "{}",
        ran.stdout
    );
    // An unreachable INFRA check is an INFRA failure: waived when tolerant, FAILED when strict.
    let checks = [command_check("A", "REAL", true), http_check("C9a", "INFRA")];
    let fixture = Fixture::new(&deploy_with(&["C9a"], &checks));
    let tolerant = fixture.check(&[], &[]);
    assert_eq!(tolerant.code, 0, "{}", tolerant.stdout);
    assert!(
        tolerant.stdout.contains("INFRA-WAIVED: C9a"),
        "{}",
        tolerant.stdout
    );
    let strict = fixture.check(&[], &[(KILL_SWITCH, "false")]);
    assert_eq!(strict.code, 1, "{}", strict.stdout);
    // The same check passes once something answers there.
    let fixture = Fixture::new(&deploy_with(&[], &[http_check("greeting", "REAL")]));
    serve_hello(fixture.staging_port);
    let ran = fixture.check(&[], &[]);
    assert_eq!(
        (ran.code, last_line(&ran.stdout)),
        (0, "VERDICT: SUCCESS"),
        "{}",
        ran.stdout
    );
}

#[test]
fn prods_port_is_refused_unless_allow_prod() {
    let fixture = Fixture::new(&deploy_with(&[], &[command_check("A", "REAL", true)]));
    for host in ["127.0.0.1", "localhost", "[::1]"] {
        let prod = format!("http://{host}:{}/", fixture.prod_port);
        let ran = fixture.run(&["--base-url", &prod], &[]);
        assert_eq!(ran.code, 2, "{host}: {}{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.is_empty(), "nothing ran: {}", ran.stdout);
        assert!(ran.stderr.contains("prod port"), "{}", ran.stderr);
        assert!(ran.stderr.contains("--allow-prod"), "{}", ran.stderr);
    }
    let prod = format!("http://127.0.0.1:{}", fixture.prod_port);
    let ran = fixture.run(&["--base-url", &prod, "--allow-prod"], &[]);
    assert_eq!(
        (ran.code, last_line(&ran.stdout)),
        (0, "VERDICT: SUCCESS"),
        "{}",
        ran.stderr
    );
}

#[test]
fn a_url_orch_would_not_probe_is_a_usage_error() {
    let fixture = Fixture::new(&deploy_with(&[], &[command_check("A", "REAL", true)]));
    for url in [
        "http://192.0.2.1:8511",
        "https://127.0.0.1:8511",
        "http://127.0.0.1",
        "nonsense",
    ] {
        let ran = fixture.run(&["--base-url", url], &[]);
        assert_eq!(ran.code, 2, "{url}: {}{}", ran.stdout, ran.stderr);
        assert!(ran.stderr.contains("--base-url"), "{}", ran.stderr);
    }
}

#[test]
fn only_deploy_toml_is_needed_and_its_errors_are_exit_2() {
    // The fixture's repository has no pipeline.toml, roles, agents.toml, not even .git.
    let fixture = Fixture::new(&deploy_with(&[], &[command_check("A", "REAL", true)]));
    assert!(!fixture.dir.path().join("repo/.orch/pipeline.toml").exists());
    let ran = fixture.check(&[], &[]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert!(
        !fixture.dir.path().join("orch.db").exists(),
        "no store was opened"
    );
    let broken =
        Fixture::new("kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\n[staging]\nbogus = 1\n");
    let ran = broken.check(&[], &[]);
    assert_eq!(ran.code, 2, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("deploy.toml"), "{}", ran.stderr);
    std::fs::remove_file(broken.dir.path().join("repo/.orch/deploy.toml")).expect("rm");
    let ran = broken.check(&[], &[]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
    assert!(ran.stderr.contains("deploy.toml"), "{}", ran.stderr);
    let ran = broken.check(&["--project", "nope"], &[]);
    assert_eq!(ran.code, 2, "{}", ran.stderr);
}

/// A suite in the seeds' style: one command, one `CHECK` line per id, exit 1 on a failure.
fn suite_check(c9a: &str) -> String {
    format!(
        "[[staging.checks]]\nid = \"suite\"\nkind = \"command\"\ntries = 1\nreports = [\"A1\", \"B6\", \"C9a\"]\n\
         run = \"echo 'CHECK A1 PASS'; echo 'CHECK B6 PASS registry ok'; echo 'CHECK C9a {c9a}'; echo 'INFRA-WAIVED: everything'; test '{c9a}' = PASS\"\n"
    )
}

#[test]
fn a_suite_is_judged_id_by_id_with_orchs_own_waivers() {
    let fixture = Fixture::new(&deploy_with(&["C9a"], &[suite_check("FAIL sandbox bot")]));
    let ran = fixture.check(&[], &[]);
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    for line in [
        "PASS suite (REAL): ",
        "PASS A1 (REAL): the suite reported PASS",
        "PASS B6 (REAL): registry ok",
        "FAIL C9a (INFRA): sandbox bot",
        "INFRA-WAIVED: C9a (sandbox infrastructure, not the change)",
        "VERDICT: SUCCESS (waived INFRA: C9a)",
    ] {
        assert!(
            ran.stdout.lines().any(|l| l.starts_with(line)),
            "{line}\n{}",
            ran.stdout
        );
    }
    assert!(
        !ran.stdout
            .lines()
            .any(|l| l.starts_with("INFRA-WAIVED: everything")),
        "the suite's own waiver line is not copied: {}",
        ran.stdout
    );
    let strict = fixture.check(&["--strict"], &[]);
    assert_eq!(strict.code, 1, "{}", strict.stdout);
    // C9a not on orch's allowlist: REAL, whatever the suite thinks.
    let fixture = Fixture::new(&deploy_with(&[], &[suite_check("FAIL sandbox bot")]));
    let ran = fixture.check(&[], &[]);
    assert_eq!(ran.code, 1, "{}", ran.stdout);
    assert!(
        ran.stdout.contains("FAIL C9a (REAL): sandbox bot"),
        "{}",
        ran.stdout
    );
}

/// `--repo DIR`: no orch.toml at all, only `.orch/deploy.toml`; the prod port must then be
/// given (`--prod-port`), or prod allowed on purpose.
#[test]
fn with_repo_only_the_deploy_file_is_needed_and_the_prod_port_must_be_named() {
    let fixture = Fixture::new(&deploy_with(
        &["C9a"],
        &[
            command_check("A", "REAL", true),
            command_check("C9a", "INFRA", false),
        ],
    ));
    std::fs::remove_file(fixture.dir.path().join("orch.toml")).expect("rm orch.toml");
    let repo = fixture.dir.path().join("repo").display().to_string();
    let staging = fixture.staging_url();
    let prod = format!("http://127.0.0.1:{}", fixture.prod_port);
    let prod_port = fixture.prod_port.to_string();
    let ran = fixture.run(
        &[
            "--repo",
            &repo,
            "--prod-port",
            &prod_port,
            "--base-url",
            &staging,
        ],
        &[],
    );
    assert_eq!(ran.code, 0, "{}{}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("INFRA-WAIVED: C9a"), "{}", ran.stdout);
    let strict = fixture.run(
        &[
            "--repo",
            &repo,
            "--prod-port",
            &prod_port,
            "--base-url",
            &staging,
        ],
        &[(KILL_SWITCH, "false")],
    );
    assert_eq!(
        strict.code, 1,
        "the kill-switch holds here too: {}",
        strict.stdout
    );
    for (args, expected) in [
        (vec!["--repo", &repo, "--base-url", &staging], "--prod-port"),
        (
            vec![
                "--repo",
                &repo,
                "--prod-port",
                &prod_port,
                "--base-url",
                &prod,
            ],
            "prod port",
        ),
        (
            vec!["--repo", &repo, "--project", "shop", "--base-url", &staging],
            "--project",
        ),
        (
            vec!["--prod-port", &prod_port, "--base-url", &staging],
            "--repo",
        ),
    ] {
        let ran = fixture.run(&args, &[]);
        assert_eq!(ran.code, 2, "{args:?}: {}{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout.is_empty(),
            "{args:?}: nothing ran: {}",
            ran.stdout
        );
        assert!(ran.stderr.contains(expected), "{args:?}: {}", ran.stderr);
    }
    let on_purpose = fixture.run(&["--repo", &repo, "--allow-prod", "--base-url", &prod], &[]);
    assert_eq!(
        on_purpose.code, 0,
        "{}{}",
        on_purpose.stdout, on_purpose.stderr
    );
}
