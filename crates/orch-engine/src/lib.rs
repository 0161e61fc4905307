//! orch-engine: the runtime that moves work items through their pipelines.
//!
//! It claims runnable stage runs from the store, runs the agent or the action of each, measures
//! what happened (exit codes, diffs, artifacts, command gates), asks `orch-core` for the verdict
//! and the transition, and records both with their events in one fenced write.
//!
//! Invariants:
//! - Only this crate sequences effects; the adapters (store, git, agents, deployers) each do one
//!   thing and know nothing of the pipeline.
//! - No verdict comes from an agent's word: the engine passes only measured facts to the gates.
//! - Every write about a run carries its lease epoch; a worker that lost its lease changes nothing.
//! - A stage's result is recorded at most once (the fenced `finish_run`), however often a crash
//!   makes its execution start again.
//! - Notifications (`notify`) are derived from the event log beside the engine loop: they never
//!   hold up or change an item, and are delivered at least once.

mod action_stage;
mod agent_stage;
mod approval;
mod commands;
pub mod events;
mod execute;
mod external_checks;
mod handoff;
mod integration;
mod locks;
mod merge;
pub mod notify;
pub mod people;
pub mod project;
mod promotion;
mod queue;
mod reaper;
mod record;
mod remotes;
mod reviews;
mod selfdeploy;
mod session;
pub mod spend;
pub mod stats;
pub mod telemetry;
mod upstream;
mod worktree_files;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orch_core::ProjectId;
use orch_store::Store;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

pub use commands::ApproveEvidence;
pub use external_checks::CheckPolicy;
pub use people::Actor;
pub use project::{ForgeLink, Project, ProjectSettings, Remotes, TrackerLink};
pub use queue::QueueEntry;
pub use remotes::{FollowSummary, StateSource, TrackerAction};
pub use reviews::{ReviewPolicy, ReviewShown, ReviewsShown};

#[derive(Debug, Error)]
pub enum EngineError {
    /// A project's configuration is wrong; `file` names where.
    #[error("{file}: {message}")]
    Config { file: String, message: String },
    #[error("unknown project `{0}`; projects are listed in orch.toml")]
    UnknownProject(String),
    #[error("no work item `{0}`")]
    UnknownItem(String),
    /// A person's command does not fit the item's state.
    #[error("{item}: {message}")]
    Refused { item: String, message: String },
    #[error(transparent)]
    Store(#[from] orch_store::StoreError),
    #[error("git: {0}")]
    Git(#[from] orch_git::GitError),
    /// A per-project lock (merges, deploys: one at a time) could not be taken.
    #[error("cannot take the lock {path}: {source}; check that the data directory is writable")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

/// Tuning of the engine; the binary fills it from configuration and environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Who holds leases: `host:pid:nonce`, unique per engine process.
    pub owner: String,
    pub lease: Duration,
    pub max_parallel: usize,
    /// Caps on runs held at once across every process sharing the store.
    pub claim_limits: orch_store::ClaimLimits,
    /// Staging infra tolerance (contract 4); `false` makes INFRA failures FAILED.
    pub staging_tolerance: bool,
    /// Test hook: the name of a point at which the process kills itself with SIGKILL.
    pub crashpoint: Option<String>,
    /// Where traces go (`[telemetry]`); off by default.
    pub telemetry: telemetry::Telemetry,
    /// The dashboard's public base URL (`https://orch.example.com`), for links in notifications.
    pub public_url: Option<String>,
}

impl Settings {
    pub fn new(owner: String) -> Self {
        Self {
            owner,
            lease: Duration::from_secs(30),
            max_parallel: 4,
            claim_limits: orch_store::ClaimLimits::default(),
            staging_tolerance: true,
            crashpoint: None,
            telemetry: telemetry::Telemetry::off(),
            public_url: None,
        }
    }
}

/// A line of progress for people: what just happened to which item.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub item: String,
    pub stage: String,
    pub attempt: u32,
    pub what: String,
}

/// Receives progress; the CLI prints it, the server streams it.
pub trait Reporter: Send + Sync {
    fn report(&self, progress: Progress);
}

/// A reporter that drops everything.
#[derive(Debug)]
pub struct Silent;

impl Reporter for Silent {
    fn report(&self, _progress: Progress) {}
}

/// The runtime: a store, the projects it serves, and its settings.
pub struct Engine {
    store: Arc<dyn Store>,
    projects: BTreeMap<ProjectId, Arc<Project>>,
    settings: Settings,
    reporter: Arc<dyn Reporter>,
    /// Cancellation of the runs this process executes, by run id, so STOP reaches them at once.
    running: Mutex<BTreeMap<i64, CancellationToken>>,
    claims: Mutex<stats::ClaimStats>,
    /// Until when a run this engine handed back (it gave way in the promotion queue) cannot be
    /// claimed: the engine is not idle before then.
    deferred_until: Mutex<Option<tokio::time::Instant>>,
    /// Finished items whose every event the notification follower has read: nothing they can
    /// still get is notified, so later passes skip them (see `notify::follow`).
    notify_settled: Mutex<std::collections::BTreeSet<orch_core::ItemId>>,
    /// Rung when this process queued work (an item filed, approved, retried) or news came that
    /// a run which gave way waits for: a claim loop with room claims at once instead of waiting
    /// for a run in flight to end or a pause to run out. Only a hint: the store stays the truth
    /// of what is claimable.
    work_added: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("projects", &self.projects.keys())
            .field("settings", &self.settings)
            .finish()
    }
}

/// What one call of [`Engine::run_until_idle`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub runs: u32,
    pub merged: u32,
}

impl Engine {
    /// Where this engine's traces go.
    pub fn telemetry(&self) -> &telemetry::Telemetry {
        &self.settings.telemetry
    }

    pub fn new(
        store: Arc<dyn Store>,
        projects: Vec<Project>,
        settings: Settings,
        reporter: Arc<dyn Reporter>,
    ) -> Self {
        let projects = projects
            .into_iter()
            .map(|p| (p.id().clone(), Arc::new(p)))
            .collect();
        Self {
            store,
            projects,
            settings,
            reporter,
            running: Mutex::new(BTreeMap::new()),
            claims: Mutex::default(),
            deferred_until: Mutex::new(None),
            notify_settled: Mutex::default(),
            work_added: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The bell rung when work was queued in this process; the server rings it after filing,
    /// approving or retrying an item, and waits on it when idle.
    pub fn work_added(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.work_added)
    }

    /// How long this engine's successful claims took so far.
    pub fn claim_stats(&self) -> stats::ClaimStats {
        self.claims.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn project(&self, id: &ProjectId) -> Result<&Arc<Project>, EngineError> {
        self.projects
            .get(id)
            .ok_or_else(|| EngineError::UnknownProject(id.to_string()))
    }

    pub fn projects(&self) -> impl Iterator<Item = &Arc<Project>> {
        self.projects.values()
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Registers every project in the store (idempotent).
    pub async fn register_projects(&self) -> Result<(), EngineError> {
        for p in self.projects.values() {
            self.store
                .upsert_project(p.id(), &p.settings.repo.display().to_string())
                .await?;
        }
        Ok(())
    }

    /// Runs stage runs until none is claimable and no merge is pending: items then wait for a
    /// person (approval, needs-info, blocked) or are finished. Up to `max_parallel` at once.
    pub async fn run_until_idle(
        self: &Arc<Self>,
        cancel: &CancellationToken,
    ) -> Result<RunSummary, EngineError> {
        self.run_until_idle_claiming(cancel, None).await
    }

    /// [`Engine::run_until_idle`], claiming at most `max_runs` runs (when given): it returns once
    /// those have finished, so a worker can end after a fixed share of the work.
    pub async fn run_until_idle_claiming(
        self: &Arc<Self>,
        cancel: &CancellationToken,
        max_runs: Option<u32>,
    ) -> Result<RunSummary, EngineError> {
        let mut summary = RunSummary::default();
        let mut tasks = tokio::task::JoinSet::new();
        let claimed = self
            .claim_and_run(cancel, max_runs, &mut tasks, &mut summary)
            .await;
        // Also after an error (the store unreachable for a moment): the runs in flight hold their
        // own leases and go on; dropping the set would abort them in the middle of their stage.
        while let Some(joined) = tasks.join_next().await {
            if let Ok(Err(e)) = joined {
                tracing::warn!("a run ended with an error: {e}");
            }
        }
        claimed.map(|()| summary)
    }

    /// The claim loop of [`Engine::run_until_idle`]: claims into `tasks` until nothing is
    /// claimable and nothing runs. Returns at the first store error, leaving `tasks` running.
    async fn claim_and_run(
        self: &Arc<Self>,
        cancel: &CancellationToken,
        max_runs: Option<u32>,
        tasks: &mut tokio::task::JoinSet<Result<(), EngineError>>,
        summary: &mut RunSummary,
    ) -> Result<(), EngineError> {
        // Woken for new work, the loop claims first: the housekeeping (reaping, merges,
        // approvals) waits for the next turn, so a ready item does not wait behind a merge.
        let mut housekeeping = true;
        loop {
            if cancel.is_cancelled() {
                return Ok(());
            }
            if housekeeping {
                // One read says which of the three has anything to look at.
                let due = self.store.housekeeping_due(&self.settings.owner).await?;
                if due.others_running {
                    self.reap_dead_owners().await?;
                }
                if due.merging {
                    summary.merged += self.finish_merges(tasks).await?;
                }
                if due.awaiting_approval {
                    self.carry_approvals().await?;
                }
            }
            housekeeping = true;
            let mut claimed_any = false;
            let may_claim = |runs: u32| max_runs.is_none_or(|max| runs < max);
            while tasks.len() < self.settings.max_parallel.max(1) && may_claim(summary.runs) {
                let lease_ms = i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX);
                let asked = std::time::Instant::now();
                let Some(run) = self
                    .store
                    .claim_next_run_within(
                        &self.settings.owner,
                        lease_ms,
                        self.settings.claim_limits,
                    )
                    .await?
                else {
                    break;
                };
                if let Ok(mut claims) = self.claims.lock() {
                    claims.record(asked.elapsed());
                }
                claimed_any = true;
                summary.runs += 1;
                let engine = Arc::clone(self);
                let cancel = cancel.child_token();
                tasks.spawn(async move { engine.execute(run, cancel).await });
            }
            // With room for more, new work is claimed while runs are in flight: at once when
            // this process queued it, within `BUSY_POLL` (or at once, on PostgreSQL's
            // notification) when another process did. Without room, only a run's end matters.
            let room = !tasks.is_empty()
                && tasks.len() < self.settings.max_parallel.max(1)
                && may_claim(summary.runs);
            let joined = tokio::select! {
                joined = tasks.join_next() => joined,
                () = self.work_added.notified(), if room => {
                    housekeeping = false;
                    continue;
                }
                _ = self.store.wait_for_work(BUSY_POLL), if room => continue,
            };
            match joined {
                Some(joined) => match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("a run ended with an error: {e}"),
                    Err(e) => tracing::error!("a run task failed: {e}"),
                },
                None if !may_claim(summary.runs) => return Ok(()),
                None if !claimed_any => {
                    // Nothing running and nothing claimable: one last look for merges, then idle.
                    let merged = self.finish_merges(tasks).await?;
                    summary.merged += merged;
                    if merged > 0 {
                        // Their work trees are being removed: wait for that with an ear open
                        // for new work, like for any run in flight.
                        continue;
                    }
                    if self.carry_approvals().await? > 0 {
                        continue;
                    }
                    // A run that gave way comes back when its delay ends: not idle yet.
                    let deferred = self.deferred_until.lock().ok().and_then(|mut d| d.take());
                    let now = tokio::time::Instant::now();
                    if let Some(until) = deferred.filter(|u| *u > now) {
                        // Look now and then meanwhile: work another process queued (the CLI,
                        // a worker) is claimed without waiting out the whole pause.
                        let look = until.min(now + BUSY_POLL);
                        tokio::select! {
                            () = tokio::time::sleep_until(look) => {}
                            () = self.work_added.notified() => {}
                            _ = self.store.wait_for_work(look - now) => {}
                            () = cancel.cancelled() => return Ok(()),
                        }
                        if tokio::time::Instant::now() < until {
                            self.defer_until(until);
                        }
                        continue;
                    }
                    // Under claim limits a queued run may be unclaimable because other
                    // processes hold the slots: rest until the next poll instead of spinning.
                    if self.settings.claim_limits.is_unlimited()
                        && self.has_claimable_work().await?
                    {
                        continue;
                    }
                    return Ok(());
                }
                None => {}
            }
        }
    }

    /// Rings the work bell (see [`Engine::work_added`]): a person added work, or news came that
    /// a run which gave way waits for. A hint only: a run still not claimable is waited for
    /// again.
    pub fn wake(&self) {
        self.work_added.notify_one();
    }

    /// Not idle before `until`: a run handed back then becomes claimable (the latest such time).
    fn defer_until(&self, until: tokio::time::Instant) {
        if let Ok(mut deferred) = self.deferred_until.lock() {
            *deferred = Some(deferred.map_or(until, |d| d.max(until)));
        }
    }

    /// Whether a queued run appeared meanwhile (filed by a person while we ran). A merge that
    /// failed is not retried in a loop: it waits for the next pass; its failure was reported.
    async fn has_claimable_work(&self) -> Result<bool, EngineError> {
        let queued = self
            .store
            .list_items_with_status(orch_core::transition::ItemStatus::Queued)
            .await?;
        Ok(!queued.is_empty())
    }

    fn report(&self, item: &str, stage: &str, attempt: u32, what: impl Into<String>) {
        self.reporter.report(Progress {
            item: item.to_owned(),
            stage: stage.to_owned(),
            attempt,
            what: what.into(),
        });
    }

    /// Test hook: dies here with SIGKILL if the settings name this point.
    fn crashpoint(&self, name: &str) {
        debug_assert!(CRASHPOINTS.contains(&name), "{name} is not in CRASHPOINTS");
        if self.settings.crashpoint.as_deref() == Some(name) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::this(), nix::sys::signal::Signal::SIGKILL);
            // SIGKILL cannot be caught; wait for it to land.
            std::thread::sleep(Duration::from_secs(5));
        }
    }
}

/// How often a claim loop with room for more (runs in flight, or waiting for a run that gave
/// way) looks for work another process queued (PostgreSQL's `LISTEN` wakes it sooner).
const BUSY_POLL: Duration = Duration::from_secs(2);

/// Every named point at which `ORCH_CRASHPOINT` makes orch kill itself (crash-safety tests):
/// the words that variable accepts.
pub const CRASHPOINTS: [&str; 11] = [
    "during-agent",
    "after-gates",
    "before-transition",
    "during-integrate",
    "during-deploy",
    "before-promote",
    "after-detached-start",
    "after-promote",
    "after-merge",
    "after-notify-enqueue",
    "after-notify-claim",
];

/// A lease owner name for this process: `host:pid:nonce`.
pub fn owner_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}:{}:{nonce:08x}", std::process::id())
}
