//! The `Deployer` port: what the engine asks of any deployer on the two action stages.

use std::path::Path;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::error::DeployError;
use crate::instance::Env;
use crate::report::{DeployReport, StagingReport};
use crate::selfdeploy::SelfDeploy;

/// Builds once and runs on staging, then promotes that same build to prod.
///
/// Neither method returns an error: every failure, including an internal one, is a FAILED
/// report with its reason (fail-closed), so the engine has exactly one thing to record.
#[async_trait]
pub trait Deployer: Send + Sync {
    /// Builds `worktree` at `sha` (or reuses that build), runs it on staging only, probes its
    /// health and runs the staging checks against it. `tolerance = false` makes INFRA failures
    /// FAILED too (`--strict`, or tolerance turned off globally).
    async fn deploy_staging(
        &self,
        worktree: &Path,
        sha: &str,
        tolerance: bool,
        cancel: &CancellationToken,
    ) -> StagingReport;

    /// Promotes the build that passed staging at `validated_sha` to prod; on a failed health
    /// check restores the previous prod build, and freezes prod if that fails too.
    async fn promote(&self, validated_sha: &str, cancel: &CancellationToken) -> DeployReport;

    /// `Some` when prod's deploy must run detached because the project is orch itself (contract
    /// 8); the engine then calls this instead of [`Deployer::promote`].
    fn self_deploy(&self) -> Option<&dyn SelfDeploy> {
        None
    }

    /// Whether this deployer can work on this machine, changing nothing (for `orch doctor`):
    /// `Ok(Some(what was found))`, `Ok(None)` when it needs nothing outside orch, or the error a
    /// deploy would fail with (docker: the daemon does not answer).
    async fn preflight(&self, _cancel: &CancellationToken) -> Result<Option<String>, DeployError> {
        Ok(None)
    }

    /// Who listens on `env`'s port now, asked when the port is taken (for `orch doctor`). By
    /// default orch cannot tell its own instance from another program's.
    async fn port_holder(&self, env: Env, _cancel: &CancellationToken) -> PortHolder {
        let _ = env;
        PortHolder::Unknown
    }
}

/// Who holds a port a project deploys to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortHolder {
    /// Nothing listens on it.
    Free,
    /// This project's own instance, as orch recorded it (what, such as `pid 4242`).
    Orch(String),
    /// Another program: a deploy there would fail.
    Other,
    /// Taken, by whom the deployer cannot tell (a hook's own service, say).
    Unknown,
}

/// Whether nothing listens on `port` on loopback, the way a deploy checks it.
pub fn port_is_free(port: u16) -> bool {
    crate::instance::port_is_free(port)
}
