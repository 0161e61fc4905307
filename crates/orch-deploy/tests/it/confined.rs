//! A hostile build script and a hostile instance: each reads orch's `/proc/<pid>/environ` (this
//! test process stands for orch: cargo gave it `CARGO_MANIFEST_DIR`) and orch's configuration
//! in the hidden data directory, and lists the processes it sees. Each attacker runs twice:
//! confined (contained) and unconfined (the attack must work there, or the test proves nothing).

use std::path::{Path, PathBuf};

use orch_deploy::{Confinement, DeploySpec, Env, ProcessDeployer};
use orch_process::Sandbox;

use crate::support::{GREETING_CHECK, Project};

/// What orch keeps in its data directory (the deployer's root stands for it here).
const SECRET: &str = "forge_token = \"secret-of-orch-toml\"";

/// Where the attackers write what they saw: the one folder outside their work tree both may
/// write (bound read-write into the build's sandbox; shared with the host by instances).
fn loot(project: &Project) -> PathBuf {
    project.dir.path().join("outside")
}

/// The deploy config whose build and run command first try the three reads.
fn hostile_config(project: &Project) -> String {
    let orch = std::process::id();
    let toml = project.root().join("orch.toml");
    let loot = loot(project);
    let attack = |who: &str| {
        format!(
            "cat /proc/{orch}/environ > {loot}/{who}-environ 2>&1; \
             cat {toml} > {loot}/{who}-toml 2>&1; \
             ls /proc | grep -c '^[0-9]' > {loot}/{who}-pids",
            loot = loot.display(),
            toml = toml.display()
        )
    };
    let run = format!("{}; exec python3 {{artifact}}/app.py", attack("instance"));
    format!(
        r#"
[build]
command = {build}
artifact = "dist"
timeout_secs = 30

[run]
command = ["sh", "-c", {run}]
env = {{ PORT = "{{port}}" }}

[health]
path = "/healthz"
tries = 50
interval_ms = 40
timeout_ms = 1000

[staging]
infra_allowlist = []
{GREETING_CHECK}
"#,
        build = toml_string(&format!(
            "{}; mkdir -p dist && cp app.py greeting.txt dist/",
            attack("build")
        )),
        run = toml_string(&run),
    )
}

fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// A project whose deployer runs the hostile config under `confinement`.
fn hostile(confinement: impl FnOnce(&Project) -> Confinement) -> Project {
    let mut project = Project::new("Hello v1", GREETING_CHECK);
    let root = project.root();
    std::fs::create_dir_all(&root).expect("mkdir root");
    std::fs::write(root.join("orch.toml"), SECRET).expect("write orch.toml");
    let spec = DeploySpec::from_toml(&hostile_config(&project)).expect("valid config");
    let deployer = ProcessDeployer::new(&root, spec, project.ports)
        .expect("deployer")
        .with_confinement(confinement(&project));
    project.deployer = deployer;
    project
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{}: {e}>", path.display()))
}

async fn stage_it(project: &Project) {
    let sha = project.head();
    let report = project.stage(&sha, true).await;
    assert!(
        project.greeting_on(Env::Staging).await.is_ok(),
        "staging serves: {:#?}",
        report.lines
    );
}

#[tokio::test]
async fn a_build_script_and_an_instance_see_nothing_of_orch() {
    build_and_instance_see_nothing_of_orch(Sandbox::Bubblewrap).await;
}

/// The same with the build in the docker runtime (a project with `runtime = "docker"`); its
/// instances keep bubblewrap's confinement.
#[tokio::test]
async fn in_docker_a_build_script_and_an_instance_see_nothing_of_orch() {
    let answers = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !answers {
        crate::skip::skip("no docker daemon answers; run `bash .ci/install-docker.sh`");
        return;
    }
    build_and_instance_see_nothing_of_orch(Sandbox::Docker).await;
}

async fn build_and_instance_see_nothing_of_orch(runtime: fn(orch_process::Policy) -> Sandbox) {
    let project = hostile(|p| {
        let build = runtime(orch_process::Policy {
            read_write: vec![loot(p)],
            limits: orch_process::Limits::AGENT,
            allow_hosts: Some(Vec::new()),
            ..orch_process::Policy::default()
        });
        Confinement {
            build,
            hidden: Some(vec![p.root()]),
        }
    });
    stage_it(&project).await;
    for who in ["build", "instance"] {
        let environ = read(&loot(&project).join(format!("{who}-environ")));
        assert!(
            !environ.contains("CARGO_MANIFEST_DIR") && environ.contains("No such file"),
            "{who} read orch's environment: {environ}"
        );
        let toml = read(&loot(&project).join(format!("{who}-toml")));
        assert!(
            !toml.contains("secret-of-orch-toml") && toml.contains("No such file"),
            "{who} read orch.toml: {toml}"
        );
        // Its own processes only: the shell, ls and grep, bwrap's init, the instance itself.
        let pids: usize = read(&loot(&project).join(format!("{who}-pids")))
            .trim()
            .parse()
            .expect("a count");
        assert!(pids < 10, "{who} sees {pids} processes");
    }
    // The instance is tracked through its bwrap: the recorded pid leads the group that holds
    // the program, and stopping it frees the port.
    let record = project.current(Env::Staging).expect("recorded");
    assert!(record.is_running());
    project.deployer.stop(Env::Staging).await.expect("stopped");
    assert!(!record.is_running());
    assert!(
        project.greeting_on(Env::Staging).await.is_err(),
        "nothing answers after the stop"
    );
}

#[tokio::test]
async fn unconfined_the_same_attacks_succeed() {
    let project = hostile(|_| Confinement {
        build: Sandbox::OptedOut,
        hidden: None,
    });
    stage_it(&project).await;
    for who in ["build", "instance"] {
        let environ = read(&loot(&project).join(format!("{who}-environ")));
        assert!(environ.contains("CARGO_MANIFEST_DIR"), "{who}: {environ}");
        let toml = read(&loot(&project).join(format!("{who}-toml")));
        assert!(toml.contains("secret-of-orch-toml"), "{who}: {toml}");
    }
}
