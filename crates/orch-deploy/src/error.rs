//! The one error type of orch-deploy. Each message says what was wrong and what to do about it.
//!
//! Most of these never escape as `Err`: `deploy_staging` and `promote` fold them into a FAILED
//! report (fail-closed), so the message is what a person reads in the stage log.

use std::path::PathBuf;

use thiserror::Error;

use crate::instance::Env;

#[derive(Debug, Error)]
pub enum DeployError {
    #[error(".orch/deploy.toml: {message}")]
    ConfigSyntax { message: String },

    #[error(".orch/deploy.toml: {field}: {problem}")]
    Config { field: String, problem: String },

    #[error(
        "`{sha}` is not a full git commit SHA (40 or 64 lowercase hex digits); pass the validated commit"
    )]
    InvalidSha { sha: String },

    #[error(
        "the worktree {worktree} is at {head}, not at the validated SHA {expected}; check out {expected} there and deploy again"
    )]
    WorktreeNotAtSha {
        worktree: PathBuf,
        expected: String,
        head: String,
    },

    #[error("could not read the worktree's HEAD with git: {detail}")]
    Git { detail: String },

    #[error("the build command `{command}` {outcome}; fix the build and deploy again{tail}")]
    BuildFailed {
        command: String,
        outcome: String,
        tail: String,
    },

    #[error(
        "the build finished but its artifact {path} does not exist; check build.artifact in .orch/deploy.toml"
    )]
    ArtifactMissing { path: PathBuf },

    #[error(
        "the artifact contains {path}, which is neither a file nor a directory; artifacts must be plain files"
    )]
    ArtifactNotPlain { path: PathBuf },

    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "the record {path} is unreadable ({detail}); delete it if no instance runs, or deploy again"
    )]
    Record { path: PathBuf, detail: String },

    #[error("port {port} is in use by another program; free it or set a different {env} port")]
    PortInUse { port: u16, env: Env },

    #[error("could not start the {env} instance: {detail}")]
    StartFailed { env: Env, detail: String },

    #[error(
        "could not stop the {env} instance (pid {pid}): {detail}; stop it by hand and deploy again"
    )]
    StopFailed { env: Env, pid: u32, detail: String },

    #[error("the {env} instance never became healthy: {detail}; see {log}")]
    Unhealthy {
        env: Env,
        detail: String,
        log: PathBuf,
    },

    #[error("{validated} never passed staging (no proof at {proof}); deploy it to staging first")]
    NotValidated { validated: String, proof: PathBuf },

    #[error(
        "the build in {build_dir} does not match its label ({detail}); refusing to promote it, deploy staging again to rebuild"
    )]
    BuildTampered { build_dir: PathBuf, detail: String },

    #[error(
        "prod is frozen since a restore failed: {reason}. Fix prod by hand, then delete {marker} to allow deploys again"
    )]
    Frozen { marker: PathBuf, reason: String },

    #[error(
        "promotions are paused since prod was restored: {reason}. Check prod and why the promotion failed, then resume promotions (delete {marker}) to allow deploys again"
    )]
    Paused { marker: PathBuf, reason: String },

    #[error("the {env} deploy hook {outcome}; see its output in {log}")]
    HookFailed {
        env: Env,
        outcome: String,
        log: PathBuf,
    },

    /// Contract 3's exit 2: the hook says it was misused or misconfigured. Not the change's
    /// fault: the item is blocked for a person, never sent back to development.
    #[error(
        "the {env} deploy hook exited 2: misuse or configuration error; fix the hook's settings (see its output in {log})"
    )]
    HookMisuse { env: Env, log: PathBuf },

    #[error(
        "the docker engine cannot be reached with `{binary}` (DOCKER_HOST: {host}): {detail}; start dockerd or fix docker.binary / docker.host in .orch/deploy.toml"
    )]
    DockerUnreachable {
        binary: String,
        host: String,
        detail: String,
    },

    #[error("docker could not {action}: {detail}")]
    Docker { action: String, detail: String },

    #[error(
        "the image {image} is not the one staging validated ({detail}); refusing to promote it, deploy staging again"
    )]
    ImageMismatch { image: String, detail: String },

    #[error("prod stopped being healthy {after_secs}s into its {soak_secs}s soak window: {detail}")]
    SoakFailed {
        after_secs: u64,
        soak_secs: u64,
        detail: String,
    },

    #[error(
        "the detached deploy {id} ended without recording its exit code (no {exit_file}); it was killed or never started, see {log}"
    )]
    DetachedVanished {
        id: String,
        exit_file: PathBuf,
        log: PathBuf,
    },

    #[error("the detached deploy {id} recorded `{text}` in {exit_file}, which is no exit code")]
    DetachedExitUnreadable {
        id: String,
        exit_file: PathBuf,
        text: String,
    },

    #[error(
        "another detached deploy, {id} (pid {pid}), is still running on prod; wait for it to end (the orch that runs its stage judges it) or stop it by hand (kill -- -{pid}), then retry"
    )]
    DetachedBusy { id: String, pid: u32 },

    #[error("`{id}` is not a valid detached deploy id (letters, digits and `-` only)")]
    InvalidDeployId { id: String },

    #[error("cancelled before it finished")]
    Cancelled,
}

impl DeployError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> DeployError {
        let path = path.into();
        move |source| DeployError::Io {
            action,
            path,
            source,
        }
    }
}

impl DeployError {
    /// Whether the change itself caused this failure (it does not build, builds nothing usable,
    /// or does not come up healthy; a hook that exits 1 or otherwise fails). Everything else (a
    /// taken port, the disk, git, a bad configuration, a hook exiting 2 for misuse, an unreachable
    /// container engine, a lost record) is the sandbox's or the operator's fault: it must never send
    /// the item back to development (contract 4), so the engine blocks the item instead.
    pub fn caused_by_change(&self) -> bool {
        matches!(
            self,
            DeployError::BuildFailed { .. }
                | DeployError::ArtifactMissing { .. }
                | DeployError::ArtifactNotPlain { .. }
                | DeployError::Unhealthy { .. }
                | DeployError::HookFailed { .. }
                | DeployError::SoakFailed { .. }
        )
    }
}
