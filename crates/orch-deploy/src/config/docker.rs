//! `kind = "docker"`: orch builds one image per validated SHA with the docker CLI, runs it as a
//! container on the host network, and promotes that same image to prod by retagging it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::docker_env::{DockerEnvSpec, docker_env_from_raw};
use super::raw::{RawDeploy, RawDocker};
use super::{
    DEFAULT_BUILD_TIMEOUT, HealthSpec, StagingSpec, check_env_name, check_placeholders, checks,
    config_err, health_from_raw, positive_secs, relative_inside,
};
use crate::error::DeployError;

/// The CLI orch runs when `docker.binary` is not set (found on `PATH`).
pub const DEFAULT_DOCKER_BINARY: &str = "docker";
/// The variable that carries the env's port into the container unless `docker.port_env` says
/// otherwise.
pub const DEFAULT_PORT_ENV: &str = "PORT";
/// The OCI annotation every image orch builds carries: the commit it was built from.
pub const REVISION_LABEL: &str = "org.opencontainers.image.revision";

/// The settings of a docker deployer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerSpec {
    /// The docker CLI: a program on `PATH` or a path.
    pub binary: String,
    /// `DOCKER_HOST` for the CLI; `None` leaves the CLI's own default (the local socket).
    pub host: Option<String>,
    /// The Dockerfile, relative to the worktree.
    pub dockerfile: PathBuf,
    /// The build context, relative to the worktree.
    pub context: PathBuf,
    /// `--build-arg NAME=value` for each entry.
    pub build_args: BTreeMap<String, String>,
    pub build_timeout: Duration,
    /// The variable that tells the container which port to listen on.
    pub port_env: String,
    /// Arguments after the image in `docker run`; may use `{port}`.
    pub args: Vec<String>,
    /// Extra environment of the container; values may use `{port}`.
    pub env: BTreeMap<String, String>,
    /// `[docker.staging]`: the staging container's env file and bind mounts.
    pub on_staging: DockerEnvSpec,
    /// `[docker.prod]`: the prod container's.
    pub on_prod: DockerEnvSpec,
    pub health: HealthSpec,
    pub staging: StagingSpec,
}

/// Placeholders `docker.args` and `docker.env` may use: only the port, there is no artifact path.
const DOCKER_PLACEHOLDERS: [&str; 1] = ["port"];

pub(super) fn docker_from_raw(raw: RawDeploy) -> Result<DockerSpec, DeployError> {
    // The image builds and runs the app: the process deployer's sections would be ignored.
    let foreign = [
        ("build", raw.build.is_some()),
        ("run", raw.run.is_some()),
        ("hook", raw.hook.is_some()),
    ];
    if let Some((field, _)) = foreign.iter().find(|(_, present)| *present) {
        return Err(config_err(
            *field,
            format!(
                "does not apply to kind = \"docker\"; remove [{field}] (the Dockerfile builds the image, [docker] runs it)"
            ),
        ));
    }
    if raw.soak.is_some() {
        return Err(config_err(
            "soak",
            "is not supported by kind = \"docker\" yet (only \"process\" and a self-deploying \"hook\"); remove [soak]",
        ));
    }
    let docker = raw.docker.unwrap_or_default();
    let binary = docker
        .binary
        .clone()
        .unwrap_or_else(|| DEFAULT_DOCKER_BINARY.to_owned());
    if binary.trim().is_empty() {
        return Err(config_err(
            "docker.binary",
            "is empty; give the docker CLI's name or path",
        ));
    }
    if let Some(host) = &docker.host
        && (host.is_empty() || host.chars().any(char::is_whitespace))
    {
        return Err(config_err(
            "docker.host",
            format!("`{host}` is not a DOCKER_HOST address, e.g. \"unix:///run/docker.sock\""),
        ));
    }
    let port_env = docker
        .port_env
        .clone()
        .unwrap_or_else(|| DEFAULT_PORT_ENV.to_owned());
    check_env_name("docker.port_env", &port_env)?;
    Ok(DockerSpec {
        binary,
        host: docker.host.clone(),
        dockerfile: relative_inside(
            "docker.dockerfile",
            docker.dockerfile.as_deref().unwrap_or("Dockerfile"),
        )?,
        context: relative_inside("docker.context", docker.context.as_deref().unwrap_or("."))?,
        build_args: build_args(&docker)?,
        build_timeout: positive_secs(
            "docker.build_timeout_secs",
            docker.build_timeout_secs,
            DEFAULT_BUILD_TIMEOUT,
        )?,
        port_env,
        args: run_args(&docker)?,
        env: run_env(&docker)?,
        on_staging: docker_env_from_raw("docker.staging", docker.staging.as_ref())?,
        on_prod: docker_env_from_raw("docker.prod", docker.prod.as_ref())?,
        health: health_from_raw(raw.health.unwrap_or_default())?,
        staging: checks::staging_from_raw(raw.staging)?,
    })
}

fn build_args(docker: &RawDocker) -> Result<BTreeMap<String, String>, DeployError> {
    for name in docker.build_args.keys() {
        check_env_name(&format!("docker.build_args.{name}"), name)?;
    }
    Ok(docker.build_args.clone())
}

fn run_args(docker: &RawDocker) -> Result<Vec<String>, DeployError> {
    let dummy = [("port", "")];
    for (index, arg) in docker.args.iter().enumerate() {
        let field = format!("docker.args[{index}]");
        check_placeholders(&field, arg, &dummy, &DOCKER_PLACEHOLDERS)?;
    }
    Ok(docker.args.clone())
}

fn run_env(docker: &RawDocker) -> Result<BTreeMap<String, String>, DeployError> {
    let dummy = [("port", "")];
    for (name, value) in &docker.env {
        let field = format!("docker.env.{name}");
        check_env_name(&field, name)?;
        check_placeholders(&field, value, &dummy, &DOCKER_PLACEHOLDERS)?;
    }
    Ok(docker.env.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeployConfig, Probe};

    fn docker_of(text: &str) -> DockerSpec {
        match DeployConfig::from_toml(text) {
            Ok(DeployConfig::Docker(spec)) => spec,
            other => panic!("expected a docker config, got {other:?}"),
        }
    }

    fn error_of(text: &str) -> String {
        match DeployConfig::from_toml(text) {
            Err(e @ (DeployError::Config { .. } | DeployError::ConfigSyntax { .. })) => {
                e.to_string()
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_need_nothing_but_the_kind() {
        let spec = docker_of("kind = \"docker\"\n");
        assert_eq!(spec.binary, "docker");
        assert_eq!(spec.host, None);
        assert_eq!(spec.dockerfile, PathBuf::from("Dockerfile"));
        assert_eq!(spec.context, PathBuf::from("."));
        assert_eq!(spec.port_env, "PORT");
        assert_eq!(spec.build_timeout, DEFAULT_BUILD_TIMEOUT);
        assert!(spec.args.is_empty() && spec.env.is_empty() && spec.build_args.is_empty());
        assert_eq!(spec.health.tries, super::super::DEFAULT_HEALTH_TRIES);
    }

    #[test]
    fn reads_every_documented_key_and_exec_checks() {
        let spec = docker_of(
            r#"
kind = "docker"

[docker]
binary = "/usr/local/bin/docker"
host = "unix:///run/docker.sock"
dockerfile = "deploy/Dockerfile"
context = "app"
build_args = { PROFILE = "release" }
build_timeout_secs = 30
port_env = "APP_PORT"
args = ["--listen", "127.0.0.1:{port}"]
env = { MODE = "stub", SELF = "http://127.0.0.1:{port}" }

[health]
path = "/ready"

[[staging.checks]]
id = "self"
kind = "exec"
exec = ["/app", "selfcheck", "{base_url}"]
expect_exit = 0
"#,
        );
        assert_eq!(spec.binary, "/usr/local/bin/docker");
        assert_eq!(spec.host.as_deref(), Some("unix:///run/docker.sock"));
        assert_eq!(spec.dockerfile, PathBuf::from("deploy/Dockerfile"));
        assert_eq!(spec.context, PathBuf::from("app"));
        assert_eq!(spec.build_args["PROFILE"], "release");
        assert_eq!(spec.build_timeout, Duration::from_secs(30));
        assert_eq!(spec.port_env, "APP_PORT");
        assert_eq!(spec.args, ["--listen", "127.0.0.1:{port}"]);
        assert_eq!(spec.env["SELF"], "http://127.0.0.1:{port}");
        assert_eq!(spec.health.path, "/ready");
        assert_eq!(
            spec.staging.checks[0].probe,
            Probe::Exec {
                argv: vec!["/app".into(), "selfcheck".into(), "{base_url}".into()],
                expect_exit: 0
            }
        );
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            ("[docker]\nimage = \"x\"", "unknown field `image`"),
            ("[docker]\nbinary = \" \"", "docker.binary: is empty"),
            (
                "[docker]\nhost = \"\"",
                "docker.host: `` is not a DOCKER_HOST",
            ),
            (
                "[docker]\ndockerfile = \"../Dockerfile\"",
                "docker.dockerfile: `../Dockerfile` must be a relative path",
            ),
            ("[docker]\ncontext = \"/\"", "docker.context: `/` must be"),
            (
                "[docker]\nbuild_args = { \"A B\" = \"1\" }",
                "docker.build_args.A B: is not a valid environment variable name",
            ),
            (
                "[docker]\nport_env = \"\"",
                "docker.port_env: is not a valid",
            ),
            (
                "[docker]\nargs = [\"{artifact}\"]",
                "docker.args[0]: unknown placeholder `{artifact}`; known: {port}",
            ),
            (
                "[docker]\nenv = { X = \"{prot}\" }",
                "docker.env.X: unknown placeholder `{prot}`",
            ),
            (
                "[docker]\nbuild_timeout_secs = 0",
                "docker.build_timeout_secs: must be more than 0",
            ),
            (
                "[build]\ncommand = \"make\"\nartifact = \"app\"",
                "build: does not apply to kind = \"docker\"",
            ),
            (
                "[hook]\ncommand = [\"./d.sh\"]",
                "hook: does not apply to kind = \"docker\"",
            ),
            (
                "[[staging.checks]]\nid = \"x\"\nkind = \"exec\"",
                "(id `x`): an exec check needs `exec`",
            ),
            (
                "[[staging.checks]]\nid = \"x\"\nkind = \"exec\"\nexec = [\"/a\"]\nrun = \"true\"",
                "`run` does not apply to a exec check",
            ),
        ];
        for (extra, expected) in cases {
            let message = error_of(&format!("kind = \"docker\"\n{extra}\n"));
            assert!(message.contains(expected), "{message} lacks {expected}");
        }
    }

    #[test]
    fn other_kinds_refuse_docker_settings_and_exec_checks() {
        let exec_check = "[[staging.checks]]\nid = \"x\"\nkind = \"exec\"\nexec = [\"/a\"]\n";
        let hook = format!("kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\n{exec_check}");
        assert!(
            error_of(&hook).contains("staging.checks[0] (id `x`): kind \"exec\" runs in the docker deployer's staging container"),
            "{}",
            error_of(&hook)
        );
        let process = format!(
            "[build]\ncommand = \"make\"\nartifact = \"app\"\n[run]\ncommand = [\"{{artifact}}\"]\n{exec_check}"
        );
        assert!(error_of(&process).contains("but kind = \"process\""));
        let hook_with_docker = "kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\n[docker]\n";
        assert!(error_of(hook_with_docker).starts_with(".orch/deploy.toml: docker:"));
        let process_with_docker = "[build]\ncommand = \"make\"\nartifact = \"app\"\n[run]\ncommand = [\"{artifact}\"]\n[docker]\n";
        assert!(error_of(process_with_docker).contains("docker: is set, but kind is \"process\""));
    }
}
