//! `orch demo` end to end: the item reaches done through one rollback, prod answers the new
//! greeting, and the history is clean.

use std::process::Command;

use crate::harness::{BIN, assert_clean_history, free_port};

#[test]
fn demo_drives_one_item_to_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The README runs the demo from orch's own checkout: inside another Cargo workspace.
    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n")
        .expect("outer workspace");
    let demo = dir.path().join("demo");
    let (staging, prod) = (free_port(), free_port());
    let out = Command::new(BIN)
        .args(["demo", "--yes", "--dir"])
        .arg(&demo)
        .args([
            "--staging-port",
            &staging.to_string(),
            "--prod-port",
            &prod.to_string(),
        ])
        .env_remove("ORCH_CRASHPOINT")
        .output()
        .expect("orch demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "prod http://127.0.0.1:{prod}/ answers 200: Hello from orch!"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("with DEMO-1 done"), "{stdout}");

    let show = Command::new(BIN)
        .arg("--config")
        .arg(demo.join("orch.toml"))
        .args(["item", "show", "DEMO-1", "--json"])
        .output()
        .expect("show");
    let item: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(item["status"], "done");
    assert_clean_history(&item);
    let runs: Vec<(String, i64, String)> = item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap_or("").to_owned(),
                r["attempt"].as_i64().unwrap_or(0),
                r["state"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let expect = [
        ("analysis", 1, "passed"),
        ("architecture", 1, "passed"),
        ("development", 1, "passed"),
        ("review", 1, "failed"),
        ("development", 2, "passed"),
        ("review", 2, "passed"),
        ("qa", 1, "passed"),
        ("deploy-staging", 1, "passed"),
        ("confirm-deploy", 1, "passed"),
        ("deploy", 1, "passed"),
    ];
    let expect: Vec<(String, i64, String)> = expect
        .iter()
        .map(|(s, a, st)| (s.to_string(), *a, st.to_string()))
        .collect();
    assert_eq!(runs, expect);

    // The second development attempt was told why the review failed.
    let prompt = std::fs::read_to_string(demo.join("logs/demo/DEMO-1/development-2.prompt.md"))
        .expect("prompt");
    assert!(
        prompt.contains("review_verdict is REQUEST_CHANGES"),
        "{prompt}"
    );
    assert!(prompt.contains("CHANGELOG.md has no entry"), "{prompt}");

    // The change reached main through a merge, with the artifacts; the worktree is gone.
    let repo = demo.join("repo");
    let main = std::fs::read_to_string(repo.join("src/main.rs")).expect("main.rs");
    assert!(main.contains("Hello from orch!"));
    let log = crate::harness::git(&repo, &["log", "--oneline", "main"]);
    assert!(log.contains("Merge DEMO-1: Change the greeting"), "{log}");
    assert!(
        repo.join("docs/work-items/DEMO-1/05-test-report.md")
            .exists()
    );
    // orch's own stage logs live beside the run logs, not on main: main holds exactly what prod
    // runs, and prod runs main's tip.
    assert!(
        !repo
            .join("docs/work-items/DEMO-1/14-deploy-log.md")
            .exists()
    );
    let deploy_log = std::fs::read_to_string(demo.join("logs/demo/DEMO-1/14-deploy-log.md"))
        .expect("the deploy log");
    assert!(
        deploy_log.contains("deploy_status: SUCCESS"),
        "{deploy_log}"
    );
    let tip = crate::harness::git(&repo, &["rev-parse", "main"]);
    let events = item["events"].as_array().expect("events");
    let promoted = events
        .iter()
        .find(|e| e["kind"] == "deploy.prod")
        .expect("a prod deploy");
    let advanced = events
        .iter()
        .find(|e| e["kind"] == "git.main-advanced")
        .expect("main moved with prod");
    assert_eq!(
        promoted["data"]["sha"].as_str(),
        Some(tip.trim()),
        "prod ran main's tip"
    );
    assert_eq!(advanced["data"]["to"].as_str(), Some(tip.trim()));
    assert!(!demo.join("worktrees/demo/DEMO-1").exists());

    // Without --keep-running, the instances are stopped.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", prod)).is_err(),
        "prod must be stopped after the demo"
    );

    // A second demo in the same directory is refused, with exit code 2.
    let again = Command::new(BIN)
        .args(["demo", "--yes", "--dir"])
        .arg(&demo)
        .output()
        .expect("runs");
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a demo"));
}

/// Without `--yes` the demo waits at confirm-deploy until `orch approve` comes from elsewhere.
#[test]
fn demo_waits_for_an_approval_from_another_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = dir.path().join("demo");
    let (staging, prod) = (free_port(), free_port());
    let child = Command::new(BIN)
        .args(["demo", "--dir"])
        .arg(&demo)
        .args([
            "--staging-port",
            &staging.to_string(),
            "--prod-port",
            &prod.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("demo starts");
    let config = demo.join("orch.toml");
    let status = || -> Option<String> {
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .args(["item", "show", "DEMO-1", "--json"])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v["status"].as_str().map(str::to_owned)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while status().as_deref() != Some("awaiting-approval") {
        assert!(
            std::time::Instant::now() < deadline,
            "the demo never reached confirm-deploy"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let approve = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["approve", "DEMO-1", "--by", "alice"])
        .output()
        .expect("approve");
    assert!(
        approve.status.success(),
        "{}",
        String::from_utf8_lossy(&approve.stderr)
    );
    let approved = String::from_utf8_lossy(&approve.stdout);
    assert!(
        approved.contains("build SHA: "),
        "the approver sees the evidence first: {approved}"
    );
    let out = child.wait_with_output().expect("demo ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("waits for approval"), "{stdout}");
    assert!(stdout.contains("answers 200: Hello from orch!"), "{stdout}");
    let show = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .args(["item", "show", "DEMO-1", "--json"])
        .output()
        .expect("show");
    let item: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    let approval = item["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "approval.granted"))
        .cloned();
    assert_eq!(
        approval.as_ref().map(|a| a["data"]["by"].clone()),
        Some(serde_json::json!("alice")),
        "{approval:?}"
    );
}

#[test]
fn demo_refuses_a_busy_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = busy.local_addr().expect("addr").port();
    let out = Command::new(BIN)
        .args(["demo", "--yes", "--dir"])
        .arg(dir.path().join("demo"))
        .args([
            "--staging-port",
            &port.to_string(),
            "--prod-port",
            &free_port().to_string(),
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("port {port} is in use")), "{err}");
    assert!(
        err.contains("fix: ") && err.contains("--staging-port"),
        "{err}"
    );
    assert!(
        !dir.path().join("demo").exists(),
        "nothing is created when the demo cannot start"
    );
}

#[test]
fn demo_without_bubblewrap_stops_before_anything_with_the_fix_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A PATH with git but without bwrap: the sandbox of the demo's command gates is missing.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let git = ["/usr/bin/git", "/bin/git", "/usr/local/bin/git"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("git is installed");
    std::os::unix::fs::symlink(git, bin.join("git")).expect("link git");
    let out = Command::new(BIN)
        .args(["demo", "--yes", "--dir"])
        .arg(dir.path().join("demo"))
        .args([
            "--staging-port",
            &free_port().to_string(),
            "--prod-port",
            &free_port().to_string(),
        ])
        .env("PATH", &bin)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FAIL  sandbox bwrap"), "{err}");
    assert!(err.contains("fix: install bubblewrap"), "{err}");
    assert!(err.contains("orch demo cannot start"), "{err}");
    assert!(!dir.path().join("demo").exists(), "nothing is created");
}

#[test]
fn demo_with_three_items_ends_with_prod_serving_all_three_on_mains_tip() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\nmembers = []\n")
        .expect("outer workspace");
    let demo = dir.path().join("demo");
    let (staging, prod) = (free_port(), free_port());
    let out = Command::new(BIN)
        .args(["demo", "--yes", "--items", "3", "--keep-running", "--dir"])
        .arg(&demo)
        .args([
            "--staging-port",
            &staging.to_string(),
            "--prod-port",
            &prod.to_string(),
            "--dashboard",
            "127.0.0.1:0",
        ])
        .env_remove("ORCH_CRASHPOINT")
        .env_remove("ORCH_API_TOKEN")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("orch demo runs");
    // --keep-running keeps serving until interrupted: read until the demo says it finished.
    let mut child = out;
    let stdout = child.stdout.take().expect("stdout");
    let mut text = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.expect("line");
        text.push_str(&line);
        text.push('\n');
        if line.starts_with("Demo finished") {
            break;
        }
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = child.wait();
    assert!(text.contains("with 3 items done"), "{text}");
    for k in 1..=3 {
        assert!(
            text.contains(&format!(
                "prod http://127.0.0.1:{prod}/DEMO-{k} answers 200: DEMO-{k} was delivered"
            )),
            "{text}"
        );
    }
    // Prod still runs (--keep-running): its build is main's tip.
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(demo.join("deploy/demo/prod/current.json")).expect("prod"),
    )
    .expect("json");
    let tip = crate::harness::git(&demo.join("repo"), &["rev-parse", "main"]);
    assert_eq!(record["sha"].as_str(), Some(tip.trim()));
    crate::harness::stop_deployed(&demo, "demo");
    // The later items met conflicts and were delivered anyway, nobody merging by hand.
    assert!(text.contains("conflict in"), "{text}");

    // Out-of-range counts are usage errors.
    for bad in ["0", "5"] {
        let out = Command::new(BIN)
            .args(["demo", "--items", bad, "--dir"])
            .arg(dir.path().join("never"))
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "--items {bad}");
    }
}
