//! The `docker` deployer (`kind = "docker"`): one image per validated SHA, built with the docker
//! CLI, run as a container on the host network, promoted to prod by retagging that same image.
//!
//! ```text
//! image orch-<project>:<sha>         built once from the worktree at <sha>, labelled
//!                                    org.opencontainers.image.revision=<sha>
//! image orch-<project>:prod          what prod runs (a retag, never a build)
//! image orch-<project>:previous      what prod ran before: the restore target
//! container orch-<project>-staging   --network host, the staging port in $PORT (docker.port_env)
//! container orch-<project>-prod      the same for prod
//! <root>/docker/<sha>.build.log      the output of `docker build`
//! <root>/docker/<sha>.validated.json the proof that <sha> passed staging: its image id
//! <root>/docker/prod.json            the image prod last ran healthily
//! <root>/docker/<env>.container.log  the output of a container that never became healthy
//! <root>/prod/FROZEN                 present after a failed restore; blocks promotion
//! <root>/prod/PAUSED                 present after a restore; blocks promotion until resumed
//! ```
//!
//! An unreachable docker daemon fails the step before anything is touched, and is never the
//! change's fault ([`DeployError::caused_by_change`]).

mod cli;
mod promote;
mod staging;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::config::{DockerSpec, Mode};
use crate::deployer::{Deployer, PortHolder};
use crate::error::DeployError;
use crate::health::probe_health;
use crate::instance::{self, Env, Ports};
use crate::layout::Layout;
use crate::report::{DeployReport, StagingReport};
use crate::template;

pub(crate) use cli::DockerCli;
use cli::ImageInfo;

#[derive(Debug, Clone)]
pub struct DockerDeployer {
    root: PathBuf,
    project: String,
    spec: DockerSpec,
    ports: Ports,
    mode: Mode,
    cli: DockerCli,
}

/// `<root>/docker/prod.json`: the image prod last ran and found healthy, the only image that
/// may become `:previous` (an image a crash left unconfirmed on prod never does).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct ProdRecord {
    sha: String,
    image_id: String,
}

impl DockerDeployer {
    /// A docker deployer for `project`, keeping its logs and proofs under `root`. The project
    /// name becomes part of image and container names, so it must be a valid docker name.
    pub fn new(
        root: impl Into<PathBuf>,
        project: &str,
        spec: DockerSpec,
        ports: Ports,
    ) -> Result<DockerDeployer, DeployError> {
        if ports.staging == 0 || ports.prod == 0 || ports.staging == ports.prod {
            return Err(DeployError::Config {
                field: "ports".to_owned(),
                problem: format!(
                    "staging ({}) and prod ({}) need two different, non-zero ports",
                    ports.staging, ports.prod
                ),
            });
        }
        let valid_name = project
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && project
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !valid_name {
            return Err(DeployError::Config {
                field: "project".to_owned(),
                problem: format!(
                    "`{project}` cannot name a docker image: use lowercase letters, digits, `.`, `_` and `-`"
                ),
            });
        }
        Ok(DockerDeployer {
            root: root.into(),
            project: project.to_owned(),
            cli: DockerCli::new(&spec),
            spec,
            ports,
            mode: Mode::Stub,
        })
    }

    pub fn with_mode(mut self, mode: Mode) -> DockerDeployer {
        self.mode = mode;
        self
    }

    /// `orch-<project>`: the repository of every image of this project.
    pub fn repository(&self) -> String {
        format!("orch-{}", self.project)
    }

    /// `orch-<project>:<tag>`, e.g. the SHA, `prod` or `previous`.
    pub fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.repository())
    }

    /// `orch-<project>-<env>`.
    pub fn container(&self, env: Env) -> String {
        format!("orch-{}-{env}", self.project)
    }

    /// `http://127.0.0.1:<port>` of an env: the only address its probes and checks use.
    pub fn base_url(&self, env: Env) -> String {
        format!("http://127.0.0.1:{}", self.ports.of(env))
    }

    /// Where `docker build` of `sha` writes its output.
    pub fn build_log(&self, sha: &str) -> PathBuf {
        self.dir().join(format!("{sha}.build.log"))
    }

    fn dir(&self) -> PathBuf {
        self.root.join("docker")
    }

    fn proof_path(&self, sha: &str) -> PathBuf {
        self.dir().join(format!("{sha}.validated.json"))
    }

    fn prod_record(&self) -> PathBuf {
        self.dir().join("prod.json")
    }

    fn container_log(&self, env: Env) -> PathBuf {
        self.dir().join(format!("{env}.container.log"))
    }

    /// The shared prod markers (FROZEN, PAUSED) live where the process deployer keeps them.
    fn layout(&self) -> Layout {
        Layout::new(&self.root)
    }

    /// Replaces `env`'s container with one running `image` and waits for its health probe. On
    /// failure the new container is removed again (its output kept in the env's container log),
    /// so nothing unhealthy is left running.
    async fn start_healthy(
        &self,
        env: Env,
        image: &ImageInfo,
        cancel: &CancellationToken,
        lines: &mut Vec<String>,
    ) -> Result<(), DeployError> {
        let port = self.ports.of(env);
        let name = self.container(env);
        let removed = self.cli.remove_container(&name, cancel).await?;
        if removed {
            lines.push(format!("{env}: removed the container {name}"));
        }
        // Only wait for the port when our own container just let go of it.
        let free = if removed {
            instance::wait_for_free_port(port).await
        } else {
            instance::port_is_free(port)
        };
        if !free {
            return Err(DeployError::PortInUse { port, env });
        }
        self.run_container(env, image, cancel).await?;
        lines.push(format!(
            "{env}: started {name} from {} on port {port}",
            short_id(&image.id)
        ));
        match self.wait_healthy(env, cancel).await? {
            Ok(detail) => {
                lines.push(format!("{env}: healthy ({detail})"));
                Ok(())
            }
            Err(detail) => {
                let log = self.container_log(env);
                self.cli.save_logs(&name, &log, cancel).await;
                self.cli.remove_container(&name, cancel).await?;
                // Leave the port free for whatever runs next on it (a restore).
                instance::wait_for_free_port(port).await;
                lines.push(format!("{env}: unhealthy, removed: {detail}"));
                Err(DeployError::Unhealthy { env, detail, log })
            }
        }
    }

    /// `docker run --detach` of `image` as `env`'s container on the host network.
    async fn run_container(
        &self,
        env: Env,
        image: &ImageInfo,
        cancel: &CancellationToken,
    ) -> Result<(), DeployError> {
        let port = self.ports.of(env).to_string();
        let values = [("port", port.as_str())];
        // Validation refused unknown placeholders; a hand-built spec still cannot reach docker.
        let fill = |text: &str| {
            template::fill(text, &values).map_err(|name| DeployError::Config {
                field: "docker".to_owned(),
                problem: format!("unknown placeholder `{{{name}}}` in `{text}`"),
            })
        };
        let mut args = vec![
            "run".to_owned(),
            "--detach".to_owned(),
            "--name".to_owned(),
            self.container(env),
            "--network".to_owned(),
            "host".to_owned(),
            "--label".to_owned(),
            format!("orch.project={}", self.project),
            "--label".to_owned(),
            format!("orch.env={env}"),
            "--env".to_owned(),
            format!("{}={port}", self.spec.port_env),
        ];
        for (name, value) in &self.spec.env {
            args.push("--env".to_owned());
            args.push(format!("{name}={}", fill(value)?));
        }
        args.extend(self.host_files(env)?);
        args.push(image.id.clone());
        for arg in &self.spec.args {
            args.push(fill(arg)?);
        }
        let spec = self
            .cli
            .command(&std::env::temp_dir(), cli::CLI_TIMEOUT)
            .args(args);
        match self.cli.run_spec(&spec, cancel).await? {
            Ok(_) => Ok(()),
            // 126 and 127: the image's command cannot be run or does not exist, the image's fault.
            Err(failure) if matches!(failure.exit_code(), Some(126 | 127)) => {
                Err(DeployError::Unhealthy {
                    env,
                    detail: format!("the container would not start: {}", failure.detail()),
                    log: self.container_log(env),
                })
            }
            Err(failure) => Err(self
                .cli
                .failed(&format!("start the {env} container"), &failure)),
        }
    }

    /// `--env-file` and `--mount` arguments of `env`'s container. A file or folder the
    /// configuration names but the host lacks is a configuration error (not the change's):
    /// docker would refuse it less clearly, or create an empty folder in its place.
    fn host_files(&self, env: Env) -> Result<Vec<String>, DeployError> {
        let (table, spec) = match env {
            Env::Staging => ("docker.staging", &self.spec.on_staging),
            Env::Prod => ("docker.prod", &self.spec.on_prod),
        };
        let missing = |field: String, path: &Path| DeployError::Config {
            field,
            problem: format!("`{}` does not exist on this host", path.display()),
        };
        let mut args = Vec::new();
        if let Some(file) = &spec.env_file {
            if !file.is_file() {
                return Err(missing(format!("{table}.env_file"), file));
            }
            args.extend(["--env-file".to_owned(), file.display().to_string()]);
        }
        for (index, mount) in spec.mounts.iter().enumerate() {
            if !mount.source.exists() {
                return Err(missing(
                    format!("{table}.mounts[{index}].source"),
                    &mount.source,
                ));
            }
            args.extend(["--mount".to_owned(), mount.mount_arg()]);
        }
        Ok(args)
    }

    /// Probes `env`'s health the configured number of times; stops early when the container
    /// exited. `Ok(Err(detail))` is unhealthy; a healthy answer counts only while the container
    /// runs (otherwise another program answered on the port).
    async fn wait_healthy(
        &self,
        env: Env,
        cancel: &CancellationToken,
    ) -> Result<Result<String, String>, DeployError> {
        let health = &self.spec.health;
        let url = format!("{}{}", self.base_url(env), health.path);
        let name = self.container(env);
        let mut last = "not probed".to_owned();
        for try_no in 1..=health.tries {
            if try_no > 1 {
                tokio::select! {
                    () = cancel.cancelled() => return Err(DeployError::Cancelled),
                    () = tokio::time::sleep(health.interval) => {}
                }
            }
            let outcome = probe_health(&url, 1, health.interval, health.timeout, cancel).await;
            last = outcome.last_detail;
            let running = self.cli.is_running(&name, cancel).await?;
            if !running {
                return Ok(Err(format!(
                    "the container exited after {try_no} tries; last: GET {}: {last}",
                    health.path
                )));
            }
            if outcome.healthy {
                return Ok(Ok(format!("after {try_no} tries, {last}")));
            }
        }
        Ok(Err(format!(
            "GET {} after {} tries: {last}",
            health.path, health.tries
        )))
    }
}

#[async_trait]
impl Deployer for DockerDeployer {
    async fn preflight(&self, cancel: &CancellationToken) -> Result<Option<String>, DeployError> {
        let version = self.cli.ping(cancel).await?;
        Ok(Some(format!(
            "the docker daemon answers (server {version})"
        )))
    }

    async fn port_holder(&self, env: Env, cancel: &CancellationToken) -> PortHolder {
        let port = self.ports.of(env);
        if instance::port_is_free(port) {
            return PortHolder::Free;
        }
        // Host networking: the project's own container is what listens, when it runs.
        let name = self.container(env);
        match self.cli.is_running(&name, cancel).await {
            Ok(true) => PortHolder::Orch(format!("container {name}")),
            Ok(false) => PortHolder::Other,
            Err(_) => PortHolder::Unknown,
        }
    }

    async fn deploy_staging(
        &self,
        worktree: &Path,
        sha: &str,
        tolerance: bool,
        cancel: &CancellationToken,
    ) -> StagingReport {
        staging::deploy_staging(self, worktree, sha, tolerance, cancel).await
    }

    async fn promote(&self, validated_sha: &str, cancel: &CancellationToken) -> DeployReport {
        promote::promote(self, validated_sha, cancel).await
    }
}

/// `sha256:` and the first 12 hex digits, as `docker images` shows ids.
fn short_id(id: &str) -> &str {
    id.get(..19).unwrap_or(id)
}
