//! A project that runs its agents in docker (`[projects.sandbox] runtime = "docker"`), end to
//! end: a scripted command agent and a command gate run in containers, see nothing of orch's,
//! the stages pass, and no container is left once `orch run` returned.

use serde_json::Value;

use crate::budget::write_committed;
use crate::harness::{Orch, quick_pipeline};

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn docker_answers() -> bool {
    std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_docker_project_runs_its_agent_and_gates_in_containers() {
    if !docker_answers() {
        crate::skip::skip("no docker daemon answers; run `bash .ci/install-docker.sh`");
        return;
    }
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    // The project's table is the last one of orch.toml: its sandbox goes there.
    let mut text = std::fs::read_to_string(&config).expect("orch.toml");
    text.push_str("sandbox = { runtime = \"docker\" }\n");
    std::fs::write(&config, text).expect("write orch.toml");
    // The analyst says where it runs, tries orch's files and processes, then does its work.
    let script = format!(
        r#"[ -f /.dockerenv ] && echo "agent in docker as $(id -u)"
cat {config} >/dev/null 2>&1 && echo "ESCAPED read orch.toml"
ls {data}/orch.db >/dev/null 2>&1 && echo "ESCAPED sees orch.db"
[ -S /var/run/docker.sock ] || [ -S /run/docker.sock ] && echo "ESCAPED docker socket"
mkdir -p "$ORCH_ARTIFACT_DIR"
printf -- '---\nanalysis_status: READY\n---\n' > "$ORCH_ARTIFACT_DIR$ORCH_ARTIFACT"
"#,
        config = config.display(),
        data = orch.path().display(),
    );
    let agents = format!(
        "{}\n[roles.analyst]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {}]\n",
        include_str!("../../kit/bench/agents.toml"),
        toml_string(&script)
    );
    write_committed(&orch, ".orch/agents.toml", &agents);
    let gate = "[ -f /.dockerenv ] && echo GATE-IN-DOCKER";
    let pipeline =
        quick_pipeline().replace("run = \"true\"", &format!("run = {}", toml_string(gate)));
    write_committed(&orch, ".orch/pipeline.toml", &pipeline);
    let status: Value = serde_json::from_str(&orch.ok(&["status", "--json"])).expect("json");
    assert_eq!(status["sandbox"]["quick"], "docker", "{status:#}");

    orch.ok(&["item", "add", "--title", "in a container"]);
    let child = orch
        .command(&["run"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("orch run");
    let pid = child.id();
    let out = child.wait_with_output().expect("orch run ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = orch.path().join("logs/quick/QUICK-1");
    let agent = std::fs::read_to_string(logs.join("analysis-1.log")).unwrap_or_default();
    assert!(agent.contains("agent in docker as 1000"), "{agent}");
    assert!(!agent.contains("ESCAPED"), "{agent}");
    let gate = std::fs::read_to_string(logs.join("development-1.log")).unwrap_or_default();
    assert!(gate.contains("GATE-IN-DOCKER"), "{gate}");
    let item = orch.item("QUICK-1");
    let passed = |stage: &str| {
        item["events"].as_array().is_some_and(|events| {
            events
                .iter()
                .any(|e| e["kind"] == "stage.passed" && e["data"]["stage"] == stage)
        })
    };
    assert!(passed("analysis") && passed("development"), "{item:#}");
    // Every container that `orch run` started is gone.
    let names = std::process::Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    let left: Vec<String> = String::from_utf8_lossy(&names.stdout)
        .lines()
        .filter(|n| n.starts_with(&format!("orch-sandbox-{pid}-")))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "containers left: {left:?}");
}
