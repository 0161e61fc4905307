//! `[docker.staging]`: an env file and bind mounts reach the staging container, read-only by
//! default, so a check run inside it with `docker exec` (the seeds' B6) sees staging's own
//! configuration: here a suite (`reports`) compiled into the image reads the registry from the
//! env file and finds the mount read-only from inside. Real dockerd, a `FROM scratch` image;
//! skipped (and counted) without docker.

use std::process::Command;

use orch_deploy::{DeployConfig, Deployer, DockerDeployer, Env};
use tokio_util::sync::CancellationToken;

use crate::docker::{docker_usable, inspect, server_binary};
use crate::support::{free_ports, get, git};

/// No greeting.txt in the image: it comes from the host, by a bind mount.
const DOCKERFILE: &str = "FROM scratch
COPY server /server
COPY suite /suite
COPY health.txt /health.txt
ENTRYPOINT [\"/server\"]
";

/// A staging suite in the seeds' style, run inside the container: B6 reads the registry from
/// the container's own environment (the env file), `mount` checks the bind mount is readable
/// and read-only from inside, C9a fails as the sandbox's fault. Exits 1 on a failure.
const SUITE_C: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(void) {
    const char *registry = getenv("ORCH_PROJECTS_JSON");
    int b6 = registry && strstr(registry, "\"orchestrator\"");
    printf("CHECK B6 %s registry %s\n", b6 ? "PASS" : "FAIL", registry ? registry : "unset");
    int fd = open("/greeting.txt", O_RDONLY);
    int readable = fd >= 0;
    if (fd >= 0) close(fd);
    int w = open("/greeting.txt", O_WRONLY | O_APPEND);
    int read_only = w < 0;
    if (w >= 0) close(w);
    printf("CHECK mount %s readable=%d read_only=%d\n", readable && read_only ? "PASS" : "FAIL",
           readable, read_only);
    printf("CHECK C9a FAIL sandbox bot is not a member\n");
    return 1;
}
"#;

/// Compiles the suite statically into `dir/suite`.
fn build_suite(dir: &std::path::Path) {
    let source = dir.join("suite.c");
    std::fs::write(&source, SUITE_C).expect("suite.c");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(dir.join("suite"))
        .arg(&source)
        .output()
        .expect("gcc runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&source).expect("rm suite.c");
}

#[tokio::test]
async fn the_staging_container_gets_its_env_file_and_read_only_mounts() {
    if !docker_usable() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("Dockerfile"), DOCKERFILE).expect("Dockerfile");
    std::fs::copy(server_binary(), repo.join("server")).expect("server");
    build_suite(&repo);
    // Healthy only where STAGING_PORT equals PORT: only the env file sets STAGING_PORT.
    std::fs::write(repo.join("health.txt"), "staging-only").expect("health");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "app"]);
    let sha = git(&repo, &["rev-parse", "HEAD"]);

    let ports = free_ports();
    let host = dir.path().join("host");
    std::fs::create_dir_all(&host).expect("mkdir host");
    let env_file = host.join(".env.staging");
    std::fs::write(
        &env_file,
        format!(
            "STAGING_PORT={}\nORCH_PROJECTS_JSON=[{{\"name\":\"orchestrator\"}}]\n",
            ports.staging
        ),
    )
    .expect("env file");
    let greeting = host.join("greeting.txt");
    std::fs::write(&greeting, "Hello from staging's own config\n").expect("greeting");
    let toml = format!(
        r#"
kind = "docker"

[staging]
infra_allowlist = ["C9a"]

[docker.staging]
env_file = "{env_file}"
mounts = [{{ source = "{greeting}", target = "/greeting.txt" }}]

[health]
tries = 40
interval_ms = 100

[[staging.checks]]
id = "selfcheck"
kind = "exec"
exec = ["/server", "selfcheck"]
tries = 1

[[staging.checks]]
id = "suite"
kind = "exec"
exec = ["/suite"]
reports = ["B6", "mount", "C9a"]
tries = 1

[[staging.checks]]
id = "greeting"
kind = "http"
path = "/"
body_contains = "staging's own config"
tries = 3
interval_ms = 100
"#,
        env_file = env_file.display(),
        greeting = greeting.display(),
    );
    let DeployConfig::Docker(spec) = DeployConfig::from_toml(&toml).expect("valid config") else {
        panic!("a docker config");
    };
    let project = format!("orchtest-envfile-{}", std::process::id());
    let deployer =
        DockerDeployer::new(dir.path().join("deploy"), &project, spec, ports).expect("deployer");
    let cancel = CancellationToken::new();

    let staged = deployer.deploy_staging(&repo, &sha, true, &cancel).await;
    let container = deployer.container(Env::Staging);
    let mounts = inspect(&[
        "container",
        "inspect",
        "--format",
        "{{range .Mounts}}{{.Destination}} rw={{.RW}};{{end}}",
        &container,
    ]);
    let answer = get(ports.staging, "/").await;
    // The env file is gone: the next staging run is blocked naming the field, not the change.
    std::fs::remove_file(&env_file).expect("rm env file");
    let again = deployer.deploy_staging(&repo, &sha, true, &cancel).await;
    let _ = Command::new("docker")
        .args(["rm", "-f", &container])
        .output();
    let _ = Command::new("docker")
        .args(["rmi", "-f", &format!("orch-{project}:{sha}")])
        .output();

    assert!(staged.verdict.is_success(), "{staged:#?}");
    for line in [
        "PASS selfcheck (REAL)",
        "PASS suite (REAL)",
        "PASS B6 (REAL): registry [{\"name\":\"orchestrator\"}]",
        "PASS mount (REAL): readable=1 read_only=1",
        "FAIL C9a (INFRA): sandbox bot is not a member",
        "INFRA-WAIVED: C9a",
    ] {
        assert!(
            staged.lines.iter().any(|l| l.starts_with(line)),
            "{line}: {:#?}",
            staged.lines
        );
    }
    assert_eq!(mounts.as_deref(), Some("/greeting.txt rw=false;"));
    assert!(
        answer
            .as_ref()
            .is_ok_and(|body| body.contains("staging's own config")),
        "{answer:?}"
    );
    assert!(!again.verdict.is_success());
    assert!(again.infra_error, "{again:#?}");
    let error = again.error.unwrap_or_default();
    assert!(error.contains("docker.staging.env_file"), "{error}");
}
