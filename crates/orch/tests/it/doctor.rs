//! `orch doctor` through the binary: each check passing and failing on a real installation
//! (a missing agent CLI through PATH, a taken port, an unreachable store, a fake forge answering
//! 401, a missing webhook secret), the exit codes and the JSON shape.

use std::path::Path;
use std::process::Output;

use orch_integrations::fake::FakeServer;
use orch_integrations::fake::gitea::FakeGitea;
use serde_json::Value;

use crate::harness::{BIN, Orch, free_port};

const GITEA_TOKEN: &str = "gitea_doctor_token_5d5d";
const HOOK_SECRET: &str = "doctor-hook-secret-6e6e";

/// Runs `orch doctor --json` with `env` set (and orch's own variables cleared); returns the exit
/// code and the report. No secret may appear in what it printed.
fn doctor(orch: &Orch, env: &[(&str, &str)]) -> (Option<i32>, Value) {
    let mut command = orch.command(&["doctor", "--json"]);
    for name in [
        "ORCH_PLANE_WEBHOOK_SECRET",
        "ORCH_GITEA_WEBHOOK_SECRET",
        "ORCH_GITHUB_WEBHOOK_SECRET",
        "ORCH_PROJECTS_JSON",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let out: Output = command.output().expect("orch doctor runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for secret in [GITEA_TOKEN, HOOK_SECRET, "wrong-token-7f7f"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret was printed:\n{stdout}\n{stderr}"
        );
    }
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}\n{stderr}"));
    (out.status.code(), report)
}

/// The findings of `check` whose subject contains `subject`.
fn findings<'a>(report: &'a Value, check: &str, subject: &str) -> Vec<&'a Value> {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|f| {
            f["check"] == check && f["subject"].as_str().is_some_and(|s| s.contains(subject))
        })
        .collect()
}

/// The one finding of `check` about `subject`, with its status required.
fn one<'a>(report: &'a Value, check: &str, subject: &str, status: &str) -> &'a Value {
    let found = findings(report, check, subject);
    assert_eq!(found.len(), 1, "{check} {subject}: {report:#}");
    assert_eq!(found[0]["status"], status, "{check} {subject}: {report:#}");
    found[0]
}

fn ports(orch: &Orch) -> (u16, u16) {
    let toml = std::fs::read_to_string(orch.path().join("orch.toml")).expect("orch.toml");
    let port = |key: &str| -> u16 {
        toml.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_start_matches('=').trim().parse().ok())
            .expect("port")
    };
    (port("staging_port"), port("prod_port"))
}

#[test]
fn a_working_installation_passes_with_the_pinned_json_shape() {
    let orch = Orch::new(None);
    let (code, report) = doctor(&orch, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    let keys: Vec<&str> = report
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["checks", "config", "counts", "ok"]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["counts"]["fail"], 0);
    for finding in report["checks"].as_array().expect("checks") {
        let mut keys: Vec<&str> = finding
            .as_object()
            .expect("finding")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["cause", "check", "fix", "status", "subject"],
            "{finding}"
        );
    }
    one(&report, "git", "", "ok");
    one(&report, "config", "project quick", "ok");
    one(&report, "sandbox", "bwrap", "ok");
    let (staging, prod) = ports(&orch);
    one(&report, "port", &format!("staging port {staging}"), "ok");
    one(&report, "port", &format!("prod port {prod}"), "ok");
    let store = one(&report, "store", "orch.db", "ok");
    assert!(
        store["cause"]
            .as_str()
            .is_some_and(|c| c.contains("not created yet")),
        "{store}"
    );
    assert!(
        !orch.path().join("orch.db").exists(),
        "the doctor created the store"
    );
    // The scripted agent runs no CLI: nothing to look for.
    assert!(findings(&report, "agent", "").is_empty(), "{report:#}");

    // After a deploy, the ports are held by the project's own instances, and the store is
    // migrated: still all ok.
    orch.ok(&["item", "add", "--title", "t"]);
    let item = orch.drive_to_end("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    let (code, report) = doctor(&orch, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    for port in [staging, prod] {
        let held = one(&report, "port", &format!("port {port}"), "ok");
        assert!(
            held["cause"]
                .as_str()
                .is_some_and(|c| c.contains("held by this project's")),
            "{held}"
        );
    }
    let store = one(&report, "store", "orch.db", "ok");
    assert!(
        store["cause"]
            .as_str()
            .is_some_and(|c| c.contains("(current)")),
        "{store}"
    );

    let human = orch.run(&["doctor"]);
    assert_eq!(human.status.code(), Some(0));
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("ok    git: git "), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn a_taken_port_fails_naming_the_port_and_the_fix() {
    let orch = Orch::new(None);
    let (staging, _) = ports(&orch);
    let _taken = std::net::TcpListener::bind(("127.0.0.1", staging)).expect("bind");
    let (code, report) = doctor(&orch, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["ok"], false);
    let port = one(&report, "port", &format!("staging port {staging}"), "fail");
    assert!(
        port["cause"]
            .as_str()
            .is_some_and(|c| c.contains("another program")),
        "{port}"
    );
    assert!(
        port["fix"]
            .as_str()
            .is_some_and(|f| f.contains("staging_port")),
        "{port}"
    );
}

#[test]
fn an_unreachable_store_fails() {
    let orch = Orch::new(None);
    let closed = free_port();
    let url = format!("postgres://orch@127.0.0.1:{closed}/orch?connect_timeout=3");
    let (code, report) = doctor(&orch, &[("ORCH_STORE_URL", &url)]);
    assert_eq!(code, Some(1), "{report:#}");
    let store = one(&report, "store", &format!("127.0.0.1:{closed}"), "fail");
    assert!(
        store["cause"]
            .as_str()
            .is_some_and(|c| c.contains("unreachable")),
        "{store}"
    );
}

#[test]
fn a_postgres_store_is_reported_unmigrated_then_current() {
    let Some(db) = crate::pg::TestDatabase::create("doctor_pg") else {
        return;
    };
    let orch = Orch::new(None);
    let env = [("ORCH_STORE_URL", db.url.as_str())];
    let (code, report) = doctor(&orch, &env);
    assert_eq!(code, Some(0), "a store to migrate is a warning: {report:#}");
    let store = one(&report, "store", &db.name, "warn");
    assert!(
        store["cause"]
            .as_str()
            .is_some_and(|c| c.contains("not migrated")),
        "{store}"
    );
    let status = orch
        .command(&["status"])
        .envs(env)
        .output()
        .expect("status");
    assert!(status.status.success(), "{status:?}");
    let (code, report) = doctor(&orch, &env);
    assert_eq!(code, Some(0), "{report:#}");
    one(&report, "store", &db.name, "ok");
}

/// A directory holding a fake `claude` that prints `version`, for PATH.
fn fake_claude(dir: &Path, version: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("bin dir");
    let path = dir.join("claude");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho '{version} (Claude Code)'\n"),
    )
    .expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn an_agent_cli_is_found_through_path_and_its_version_compared() {
    let agents = format!(
        "{}\n[roles.reviewer]\nkind = \"claude\"\n",
        include_str!("../../kit/bench/agents.toml")
    );
    let orch = Orch::new(Some(&agents));
    let tested = orch_agent::tested::tested(orch_agent::AgentKind::Claude).expect("tested");
    let bin = orch.path().join("bin");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    std::fs::create_dir_all(&bin).expect("bin");

    let (code, report) = doctor(&orch, &[("PATH", &path)]);
    assert_eq!(code, Some(1), "{report:#}");
    let missing = one(&report, "agent", "claude", "fail");
    assert!(
        missing["cause"]
            .as_str()
            .is_some_and(|c| c.contains("not installed")),
        "{missing}"
    );
    assert_eq!(
        missing["fix"]
            .as_str()
            .map(|f| f.starts_with(&tested.install_command())),
        Some(true),
        "{missing}"
    );

    fake_claude(&bin, "0.0.1");
    let (code, report) = doctor(&orch, &[("PATH", &path)]);
    assert_eq!(code, Some(0), "another version is a warning: {report:#}");
    let other = one(&report, "agent", "claude", "warn");
    assert!(
        other["cause"]
            .as_str()
            .is_some_and(|c| c.contains("0.0.1") && c.contains(tested.version)),
        "{other}"
    );

    fake_claude(&bin, tested.version);
    let (code, report) = doctor(&orch, &[("PATH", &path)]);
    assert_eq!(code, Some(0), "{report:#}");
    one(&report, "agent", "claude", "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_refusing_the_token_and_a_missing_webhook_secret_fail() {
    let orch = Orch::new(None);
    let bare = orch.path().join("remote.git");
    let gitea = FakeServer::start(
        FakeGitea::new(GITEA_TOKEN, "acme", "web", &bare)
            .await
            .expect("fake gitea"),
    )
    .await
    .expect("serve gitea");
    let config = orch.path().join("orch.toml");
    let mut toml = std::fs::read_to_string(&config).expect("orch.toml");
    for table in ["tracker", "forge"] {
        toml.push_str(&format!(
            "\n[projects.{table}]\nkind = \"gitea\"\nbase_url = \"{}\"\nowner = \"acme\"\n\
             repo = \"web\"\ntoken_env = \"DOCTOR_GITEA_TOKEN\"\n",
            gitea.base_url()
        ));
    }
    std::fs::write(&config, toml).expect("write orch.toml");

    let refused = doctor(&orch, &[("DOCTOR_GITEA_TOKEN", "wrong-token-7f7f")]);
    let (code, report) = refused;
    assert_eq!(code, Some(1), "{report:#}");
    for check in ["tracker", "forge"] {
        let finding = one(&report, check, "gitea", "fail");
        assert!(
            finding["cause"]
                .as_str()
                .is_some_and(|c| c.contains("DOCTOR_GITEA_TOKEN") && c.contains("refused")),
            "{finding}"
        );
    }
    let secret = one(&report, "webhook", "/hooks/gitea", "fail");
    assert!(
        secret["cause"]
            .as_str()
            .is_some_and(|c| c.contains("ORCH_GITEA_WEBHOOK_SECRET")),
        "{secret}"
    );

    let (code, report) = doctor(
        &orch,
        &[
            ("DOCTOR_GITEA_TOKEN", GITEA_TOKEN),
            ("ORCH_GITEA_WEBHOOK_SECRET", HOOK_SECRET),
        ],
    );
    assert_eq!(code, Some(0), "{report:#}");
    one(&report, "forge", "gitea", "ok");
    one(&report, "webhook", "/hooks/gitea", "ok");
    // A token without the repository write scope: it answers, but cannot push.
    gitea
        .with(|g| g.missing_scope = Some("write:repository".into()))
        .await;
    let (code, report) = doctor(
        &orch,
        &[
            ("DOCTOR_GITEA_TOKEN", GITEA_TOKEN),
            ("ORCH_GITEA_WEBHOOK_SECRET", HOOK_SECRET),
        ],
    );
    assert_eq!(code, Some(1), "{report:#}");
    let forge = one(&report, "forge", "gitea", "fail");
    assert!(
        forge["cause"]
            .as_str()
            .is_some_and(|c| c.contains("cannot push")),
        "{forge}"
    );
    assert!(
        forge["fix"]
            .as_str()
            .is_some_and(|f| f.contains("DOCTOR_GITEA_TOKEN")),
        "{forge}"
    );
    gitea.with(|g| g.missing_scope = None).await;

    // The repository has none of orch's state labels yet: reachable, with a step to take.
    let tracker = one(&report, "tracker", "gitea", "warn");
    assert!(
        tracker["fix"]
            .as_str()
            .is_some_and(|f| f.contains("orch onboard apply")),
        "{tracker}"
    );
}

#[test]
fn without_a_configuration_the_machine_is_checked_and_bad_usage_is_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("orch.toml"))
        .args(["doctor", "--json"])
        .env_remove("ORCH_CONFIG")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    one(&report, "config", "orch.toml", "warn");
    one(&report, "git", "", "ok");

    std::fs::write(dir.path().join("orch.toml"), "[engine]\nmax_paralel = 2\n").expect("write");
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(dir.path().join("orch.toml"))
        .args(["doctor", "--json"])
        .env_remove("ORCH_CONFIG")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let config = one(&report, "config", "orch.toml", "fail");
    assert!(
        config["cause"]
            .as_str()
            .is_some_and(|c| c.contains("max_paralel")),
        "{config}"
    );

    let out = std::process::Command::new(BIN)
        .args(["doctor", "--jsn"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_missing_bwrap_fails_the_sandbox_check() {
    let orch = Orch::new(None);
    // A PATH with git but without bwrap.
    let bin = orch.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let git = ["/usr/bin/git", "/bin/git", "/usr/local/bin/git"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("git is installed");
    std::os::unix::fs::symlink(git, bin.join("git")).expect("link git");
    let (code, report) = doctor(&orch, &[("PATH", &bin.display().to_string())]);
    assert_eq!(code, Some(1), "{report:#}");
    one(&report, "git", "", "ok");
    let bwrap = one(&report, "sandbox", "bwrap", "fail");
    assert!(
        bwrap["fix"]
            .as_str()
            .is_some_and(|f| f.contains("apt-get install bubblewrap")),
        "{bwrap}"
    );
    assert!(
        bwrap["cause"]
            .as_str()
            .is_some_and(|c| c.contains("project(s) quick")),
        "{bwrap}"
    );
}

#[test]
fn a_project_sandboxed_in_docker_has_docker_checked_instead_of_bubblewrap() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let mut text = std::fs::read_to_string(&config).expect("orch.toml");
    text.push_str("sandbox = { runtime = \"docker\" }\n");
    std::fs::write(&config, text).expect("write orch.toml");
    // A PATH with git but without docker.
    let bin = orch.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let git = ["/usr/bin/git", "/bin/git", "/usr/local/bin/git"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("git is installed");
    std::os::unix::fs::symlink(git, bin.join("git")).expect("link git");
    let (code, report) = doctor(&orch, &[("PATH", &bin.display().to_string())]);
    assert_eq!(code, Some(1), "{report:#}");
    let docker = one(&report, "sandbox", "docker CLI", "fail");
    assert!(
        docker["fix"]
            .as_str()
            .is_some_and(|f| f.contains("apt-get install docker.io")),
        "{docker}"
    );
    assert!(
        docker["cause"]
            .as_str()
            .is_some_and(|c| c.contains("project(s) quick")),
        "{docker}"
    );
    // bubblewrap is not what this project needs: it is not checked.
    assert!(
        findings(&report, "sandbox", "bwrap").is_empty(),
        "{report:#}"
    );
    // A daemon that does not answer names how to start it.
    let (_, report) = doctor(
        &orch,
        &[(
            "DOCKER_HOST",
            "unix:///nonexistent/orch-doctor-sandbox.sock",
        )],
    );
    if findings(&report, "sandbox", "docker daemon").is_empty() {
        // No docker CLI on this machine's PATH: the CLI's finding stands for both.
        crate::skip::skip("no docker CLI here; run .ci/install-docker.sh");
        return;
    }
    let daemon = one(&report, "sandbox", "docker daemon", "fail");
    assert!(
        daemon["fix"]
            .as_str()
            .is_some_and(|f| f.contains("start the docker daemon")),
        "{daemon}"
    );
}

#[test]
fn the_docker_daemon_is_checked_for_a_docker_project() {
    let orch = Orch::new(None);
    let deploy = |docker_table: &str| {
        std::fs::write(
            orch.repo().join(".orch/deploy.toml"),
            format!("kind = \"docker\"\n\n[docker]\n{docker_table}\n"),
        )
        .expect("deploy.toml");
    };
    deploy("host = \"unix:///nonexistent/orch-doctor-docker.sock\"");
    let (code, report) = doctor(&orch, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    let docker = one(&report, "docker", "project quick", "fail");
    assert!(
        docker["fix"]
            .as_str()
            .is_some_and(|f| f.contains("docker daemon")),
        "{docker}"
    );

    let usable = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        crate::skip::skip("docker is not usable here; run .ci/install-docker.sh");
        return;
    }
    deploy("");
    let (code, report) = doctor(&orch, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    one(&report, "docker", "project quick", "ok");
}
