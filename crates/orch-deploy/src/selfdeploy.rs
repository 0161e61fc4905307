//! Self-deploy (contract 8): when the project is orch itself, prod's deploy restarts the very
//! process that would wait for it. So the prod hook runs **detached** (its own session, outliving
//! orch), a small wrapper records its exit code in a file when it ends, and whichever orch runs
//! afterwards reads that file and judges prod by its own health probe.
//!
//! ```text
//! <root>/selfdeploy/<id>/deploy.json   this record, written before the hook starts
//! <root>/selfdeploy/<id>/pid           the wrapper's pid (= its session and group id)
//! <root>/selfdeploy/<id>/exit          the hook's exit code, renamed into place when it ended
//! <root>/selfdeploy/<id>/hook.log      the hook's output
//! ```
//!
//! Starting is idempotent by `id`: a deploy whose directory exists is never started again, so a
//! crash between the start and the engine's checkpoint cannot run the hook twice.

use std::path::PathBuf;

use async_trait::async_trait;
use orch_core::gate::ExitOutcome;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::DeployError;
use crate::report::DeployReport;

/// What orch keeps about one detached deploy: in the run's checkpoint and in `deploy.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedDeploy {
    /// Chosen by the caller, unique per stage run (`run-<id>`): letters, digits and `-`.
    pub id: String,
    /// The validated SHA the hook promotes.
    pub sha: String,
    /// What the hook received as `SOURCE_IMAGE`.
    pub artifact: String,
    /// The wrapper's pid, which leads its own session and process group; `None` when a crashed
    /// start left only its directory (the wrapper's `pid` file then says).
    pub pid: Option<u32>,
    /// Milliseconds since the Unix epoch when it was started, for the hook's timeout.
    pub started_at_ms: u64,
    pub dir: PathBuf,
    pub pid_file: PathBuf,
    pub exit_file: PathBuf,
    pub log: PathBuf,
    /// The transient systemd unit the wrapper runs in (`systemctl status <unit>`); `None` when
    /// it runs in a new session instead (`setsid`), or for a record from before units.
    #[serde(default)]
    pub unit: Option<String>,
}

/// How a detached deploy stands.
#[derive(Debug)]
pub enum DetachedState {
    /// The hook still runs (or has just been started).
    Running,
    /// The hook ended: how (exit code, signal, timeout), or why that cannot be known.
    Ended(Result<ExitOutcome, DeployError>),
}

/// The detached promotion of a self-deploying project. The engine starts it, records it under
/// the run's lease, waits for it across restarts, and has it judged.
#[async_trait]
pub trait SelfDeploy: Send + Sync {
    /// Phase B: starts prod's hook for `validated_sha` detached, under `id`; returns the record
    /// of the deploy already started under `id` instead of starting a second one.
    fn start_detached(&self, id: &str, validated_sha: &str) -> Result<DetachedDeploy, DeployError>;

    /// Whether the hook has ended; one that outlived its timeout is killed and `TimedOut`.
    async fn poll(&self, deploy: &DetachedDeploy) -> DetachedState;

    /// Phase C: the verdict. A hook that exited 0 is SUCCESS only once prod answers its health
    /// probe (and stays healthy through the soak window, if any); anything else is FAILED.
    async fn conclude(
        &self,
        deploy: &DetachedDeploy,
        ended: Result<ExitOutcome, DeployError>,
        cancel: &CancellationToken,
    ) -> DeployReport;
}
