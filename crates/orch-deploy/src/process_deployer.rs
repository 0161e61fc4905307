//! The `process` deployer: the default, needing nothing but the project's own build.
//!
//! Build once into `<root>/builds/<sha>`, run that build as a detached process on the staging
//! port, check it there, then run the very same files on the prod port. Staging and prod are
//! separate envs with separate records: an operation on one never stops, starts or probes the
//! other. Every step can be run again after a crash: a build is reused while it matches its
//! label, and an env's recorded instance is stopped before its replacement starts.

mod promote;
mod staging;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::build::Build;
use crate::config::{DeploySpec, Mode};
use crate::confine::Confinement;
use crate::deployer::{Deployer, PortHolder};
use crate::error::DeployError;
use crate::health::probe_health_while;
use crate::instance::{self, Env, InstanceRecord, Ports};
use crate::layout::{Layout, write_record};
use crate::report::{DeployReport, StagingReport};

#[derive(Debug, Clone)]
pub struct ProcessDeployer {
    layout: Layout,
    root: PathBuf,
    spec: DeploySpec,
    ports: Ports,
    mode: Mode,
    confinement: Confinement,
}

impl ProcessDeployer {
    /// A deployer keeping its state under `root` (e.g. `<orch dir>/deploy/<project>`). Staging
    /// checks run in [`Mode::Stub`] unless [`ProcessDeployer::with_mode`] says otherwise; builds
    /// and instances are confined ([`ProcessDeployer::with_confinement`]).
    pub fn new(
        root: impl Into<PathBuf>,
        spec: DeploySpec,
        ports: Ports,
    ) -> Result<ProcessDeployer, DeployError> {
        if ports.staging == 0 || ports.prod == 0 || ports.staging == ports.prod {
            return Err(DeployError::Config {
                field: "ports".to_owned(),
                problem: format!(
                    "staging ({}) and prod ({}) need two different, non-zero ports",
                    ports.staging, ports.prod
                ),
            });
        }
        let root = root.into();
        Ok(ProcessDeployer {
            layout: Layout::new(&root),
            confinement: Confinement::confined(vec![root.clone()]),
            root,
            spec,
            ports,
            mode: Mode::Stub,
        })
    }

    /// Where builds and instances run; by default builds in the agents' default sandbox and
    /// instances with the deployer's root hidden.
    pub fn with_confinement(mut self, confinement: Confinement) -> ProcessDeployer {
        self.confinement = confinement;
        self
    }

    pub fn with_mode(mut self, mode: Mode) -> ProcessDeployer {
        self.mode = mode;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `http://127.0.0.1:<port>` of an env: the only address its probes and checks use.
    pub fn base_url(&self, env: Env) -> String {
        format!("http://127.0.0.1:{}", self.ports.of(env))
    }

    /// The instance recorded for `env`, if any (it may have exited since; see
    /// [`InstanceRecord::is_running`]).
    pub fn current(&self, env: Env) -> Result<Option<InstanceRecord>, DeployError> {
        instance::current(&self.layout, env)
    }

    /// Stops `env`'s instance and forgets it; returns what was stopped.
    pub async fn stop(&self, env: Env) -> Result<Option<InstanceRecord>, DeployError> {
        instance::stop(&self.layout, env).await
    }

    /// Replaces `env`'s instance with `build` and waits for it to be healthy. On failure the new
    /// instance is stopped again, so nothing unhealthy is left recorded as current.
    async fn start_healthy(
        &self,
        env: Env,
        build: &Build,
        cancel: &CancellationToken,
        log: &mut Vec<String>,
    ) -> Result<InstanceRecord, DeployError> {
        let port = self.ports.of(env);
        let stopped = instance::stop(&self.layout, env).await?;
        if let Some(old) = &stopped {
            log.push(format!(
                "{env}: stopped {} (pid {})",
                short(&old.sha),
                old.pid
            ));
        }
        // Only wait for the port when our own instance just let go of it.
        let free = if stopped.is_some() {
            instance::wait_for_free_port(port).await
        } else {
            instance::port_is_free(port)
        };
        if !free {
            return Err(DeployError::PortInUse { port, env });
        }
        let mut record = instance::start(
            &self.layout,
            env,
            build,
            port,
            &self.spec.run,
            self.confinement.hidden.as_deref(),
        )?;
        log.push(format!(
            "{env}: started {} on port {port} (pid {})",
            short(&build.sha),
            record.pid
        ));
        let health = &self.spec.health;
        let url = format!("{}{}", self.base_url(env), health.path);
        let running = record.clone();
        let outcome = probe_health_while(
            &url,
            health.tries,
            health.interval,
            health.timeout,
            cancel,
            || (!running.is_running()).then(|| "the process exited".to_owned()),
        )
        .await;
        // Healthy only counts if our process still runs: otherwise another program answered.
        let failure = if !outcome.healthy {
            Some(format!(
                "GET {} after {} tries: {}",
                health.path, outcome.tries_used, outcome.last_detail
            ))
        } else if !record.is_running() {
            Some(format!(
                "the process exited, yet something answered on port {port}"
            ))
        } else {
            None
        };
        if let Some(detail) = failure {
            instance::stop(&self.layout, env).await?;
            // Leave the port free for whatever runs next on it (a restore).
            instance::wait_for_free_port(port).await;
            log.push(format!("{env}: unhealthy, stopped: {detail}"));
            return Err(DeployError::Unhealthy {
                env,
                detail,
                log: self.layout.instance_log(env),
            });
        }
        log.push(format!(
            "{env}: healthy after {} tries ({})",
            outcome.tries_used, outcome.last_detail
        ));
        record.healthy = true;
        write_record(&self.layout.current(env), &record)?;
        Ok(record)
    }
}

#[async_trait]
impl Deployer for ProcessDeployer {
    async fn port_holder(&self, env: Env, _cancel: &CancellationToken) -> PortHolder {
        let port = self.ports.of(env);
        if instance::port_is_free(port) {
            return PortHolder::Free;
        }
        match instance::current(&self.layout, env) {
            Ok(Some(record)) if record.port == port && record.is_running() => {
                PortHolder::Orch(format!("pid {}", record.pid))
            }
            _ => PortHolder::Other,
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

/// Written beside a build when staging passed it; the only way a build becomes promotable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Validation {
    pub sha: String,
    pub digest: String,
}

/// The first 12 digits of a SHA, for log lines.
pub(crate) fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}
