//! The project registry: `ORCH_PROJECTS_JSON` read by the same parser as `orch.toml`, and two
//! projects side by side whose items, branches, deploys, logs and events never touch each other.

use serde_json::{Value, json};

use crate::harness::{Orch, free_port, git};

const VAR: &str = "ORCH_PROJECTS_JSON";

/// The harness's `quick` project as a registry entry, read back from its `orch.toml`.
fn quick_entry(orch: &Orch) -> Value {
    let text = std::fs::read_to_string(orch.path().join("orch.toml")).expect("orch.toml");
    let file: toml::Table = toml::from_str(&text).expect("toml");
    let quick = &file["projects"].as_array().expect("projects")[0];
    serde_json::to_value(quick).expect("entry as json")
}

/// Kills the deployed instances of `project` when the test ends, however it ends.
struct Instances<'a>(&'a Orch, &'static str);

impl Drop for Instances<'_> {
    fn drop(&mut self) {
        for env in ["staging", "prod"] {
            let record = self
                .0
                .path()
                .join(format!("deploy/{}/{env}/current.json", self.1));
            let pid = std::fs::read_to_string(record)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .and_then(|v| v["pid"].as_i64());
            // Never 0 or 1: killpg(0) is our own group, kill(-1) is every process.
            if let Some(pid) = pid.filter(|p| *p > 1).and_then(|p| i32::try_from(p).ok()) {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

fn with_registry(orch: &Orch, registry: &str, args: &[&str]) -> std::process::Output {
    orch.command(args)
        .env(VAR, registry)
        .output()
        .expect("orch runs")
}

fn ok(orch: &Orch, registry: &str, args: &[&str]) -> String {
    let out = with_registry(orch, registry, args);
    assert!(
        out.status.success(),
        "orch {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn item(orch: &Orch, registry: &str, id: &str) -> Value {
    serde_json::from_str(&ok(orch, registry, &["item", "show", id, "--json"])).expect("json")
}

#[test]
fn two_projects_side_by_side_never_touch_each_other() {
    let orch = Orch::new(None);
    git(orch.path(), &["clone", "-q", "repo", "repo-beta"]);
    let beta_prod = free_port();
    let registry = json!([
        quick_entry(&orch),
        {
            "name": "beta", "repo": "repo-beta", "staging_port": free_port(),
            "prod_port": beta_prod, "health_tries": 200, "health_interval_ms": 20
        }
    ])
    .to_string();
    let _beta = Instances(&orch, "beta");

    ok(
        &orch,
        &registry,
        &["item", "add", "--project", "quick", "--title", "q one"],
    );
    ok(
        &orch,
        &registry,
        &["item", "add", "--project", "beta", "--title", "b one"],
    );
    ok(
        &orch,
        &registry,
        &["item", "add", "--project", "quick", "--title", "q two"],
    );
    ok(
        &orch,
        &registry,
        &["item", "add", "--project", "beta", "--title", "b two"],
    );
    // A STOP in one project leaves the other's items alone.
    ok(&orch, &registry, &["stop", "QUICK-2"]);
    ok(&orch, &registry, &["stop", "BETA-2"]);
    for _ in 0..4 {
        ok(&orch, &registry, &["run"]);
        for id in ["QUICK-1", "BETA-1"] {
            if item(&orch, &registry, id)["status"] == "awaiting-approval" {
                ok(&orch, &registry, &["approve", id, "--by", "tester"]);
            }
        }
    }
    for (id, project) in [("QUICK-1", "quick"), ("BETA-1", "beta")] {
        let it = item(&orch, &registry, id);
        assert_eq!(it["status"], "done", "{id}: {it}");
        assert_eq!(it["project"], project);
        crate::harness::assert_clean_history(&it);
        let other = if project == "quick" { "BETA" } else { "QUICK" };
        assert!(
            !it["events"].to_string().contains(other),
            "{id}'s history mentions the other project: {}",
            it["events"]
        );
    }
    for id in ["QUICK-2", "BETA-2"] {
        assert_eq!(item(&orch, &registry, id)["status"], "cancelled");
    }

    // Each repository got exactly its own item's merge and files.
    let quick_repo = orch.path().join("repo");
    let beta_repo = orch.path().join("repo-beta");
    assert_eq!(
        git(&quick_repo, &["log", "--merges", "--format=%s", "main"]).trim(),
        "Merge QUICK-1: q one"
    );
    assert_eq!(
        git(&beta_repo, &["log", "--merges", "--format=%s", "main"]).trim(),
        "Merge BETA-1: b one"
    );
    assert!(quick_repo.join("changes/QUICK-1.txt").exists());
    assert!(!quick_repo.join("changes/BETA-1.txt").exists());
    assert!(beta_repo.join("changes/BETA-1.txt").exists());
    assert!(!beta_repo.join("changes/QUICK-1.txt").exists());

    // Each prod runs a build of its own repository, on its own port.
    for (project, repo, foreign) in [
        ("quick", &quick_repo, &beta_repo),
        ("beta", &beta_repo, &quick_repo),
    ] {
        let text = std::fs::read_to_string(
            orch.path()
                .join(format!("deploy/{project}/prod/current.json")),
        )
        .expect("prod record");
        let record: Value = serde_json::from_str(&text).expect("json");
        let sha = record["sha"].as_str().expect("sha");
        git(repo, &["cat-file", "-e", &format!("{sha}^{{commit}}")]);
        let in_foreign = std::process::Command::new("git")
            .arg("-C")
            .arg(foreign)
            .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
            .output()
            .expect("git");
        assert!(
            !in_foreign.status.success(),
            "{project}'s prod build {sha} must not be a commit of the other repository"
        );
        if project == "beta" {
            assert_eq!(record["port"].as_u64(), Some(u64::from(beta_prod)));
        }
    }
    // Logs and worktrees live under each project's own directory.
    assert!(orch.path().join("logs/quick/QUICK-1").is_dir());
    assert!(orch.path().join("logs/beta/BETA-1").is_dir());
    assert!(!orch.path().join("logs/quick/BETA-1").exists());
    assert!(!orch.path().join("logs/beta/QUICK-1").exists());
}

#[test]
fn a_registry_in_the_environment_is_checked_like_the_file() {
    let orch = Orch::new(None);
    let cases = [
        (
            "{\"name\": 1}",
            "ORCH_PROJECTS_JSON: not a JSON array of project entries",
        ),
        (
            "[{\"name\": \"a\", \"repo\": \"r\", \"staging_port\": 9001}]",
            "ORCH_PROJECTS_JSON: entry 0: missing field `prod_port`",
        ),
        (
            "[{\"name\": \"a\", \"repo\": \"r\", \"staging_port\": 9001, \"prod_port\": 9001}]",
            "ORCH_PROJECTS_JSON: project `a`, fields `staging_port`/`prod_port`",
        ),
        (
            "[{\"name\": \"a\", \"repo\": \"r\", \"staging_port\": 9001, \"prod_port\": 9002, \"colour\": 1}]",
            "ORCH_PROJECTS_JSON: entry 0: unknown field `colour`",
        ),
    ];
    for (registry, expected) in cases {
        let out = with_registry(&orch, registry, &["status"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{registry}: {stderr}");
        assert!(stderr.contains(expected), "{registry}: {stderr}");
    }
}

#[test]
fn zero_limits_and_ttls_are_refused_naming_the_field() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let original = std::fs::read_to_string(&config).expect("orch.toml");
    let cases = [
        (
            original.replace("max_parallel = 2\n", "max_parallel = 2\nmax_running = 0\n"),
            "[engine] max_running must be at least 1",
        ),
        (
            original.replace(
                "max_parallel = 2\n",
                "max_parallel = 2\nmax_running_per_project = 0\n",
            ),
            "[engine] max_running_per_project must be at least 1",
        ),
        (
            format!("{original}approval_ttl_secs = 0\n"),
            "project `quick`, field `approval_ttl_secs`: must be at least 1",
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&config, &text).expect("orch.toml");
        let out = orch.run(&["status"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expected}: {stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
