//! Action stages: orch itself deploys. deploy-staging integrates the default branch's tip into
//! the item's branch and validates that candidate on staging (`integration`); deploy promotes
//! exactly that candidate to prod and moves the default branch to it (`promotion`). orch writes
//! the stage's log artifact from the measured outcome, and the gates read it like any other
//! artifact.
//!
//! The stage logs are written beside the run logs in orch's data directory, never committed to
//! the item's branch: the branch (and so the default branch after a promotion) holds exactly the
//! candidate prod runs, not orch's account of running it.

use std::path::PathBuf;
use std::sync::Arc;

use orch_core::gate::{self, GateInput, VerdictClass};
use orch_core::pipeline::{Action, Stage};
use orch_store::{ItemRecord, NewEvent, RunRecord};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::execute::{Measured, StageError, fingerprint};
use crate::handoff::{HEAD_FACT, StartingPoint};
use crate::project::{Project, artifact_dir, branch};
use crate::{Engine, EngineError};

/// What an action did, before orch writes its log and the gates read it.
pub(crate) struct Acted {
    /// The stage log artifact (`15-staging-log.md`, `14-deploy-log.md`).
    pub text: String,
    /// Facts kept on the run's verdict (the candidate, the tip it contains, its change id...).
    pub facts: Value,
    /// Lines for the run log, which `orch logs` shows.
    pub lines: Vec<String>,
    pub events: Vec<NewEvent>,
    /// Set when a failure is not the change's: the item blocks instead of going back.
    pub block: Option<String>,
    /// The commit the stage acted on.
    pub head: String,
}

/// What both action stages work with: the project, its deployer (checked present once), the
/// repository, the item and the run, and the run's cancellation.
pub(crate) struct ActionContext<'a> {
    pub project: &'a Arc<Project>,
    pub deployer: &'a dyn orch_deploy::Deployer,
    pub repo: &'a orch_git::Repo,
    pub item: &'a ItemRecord,
    pub run: &'a RunRecord,
    pub cancel: &'a CancellationToken,
}

/// An action either acted (and its log decides through the gates) or decided without acting
/// (a conflict, a moved default branch, a refused promotion).
pub(crate) enum ActionOutcome {
    Acted(Acted),
    Decided {
        measured: Measured,
        lines: Vec<String>,
    },
}

impl Engine {
    pub(crate) async fn run_action_stage(
        self: &Arc<Self>,
        project: &Arc<Project>,
        item: &ItemRecord,
        run: &RunRecord,
        stage: &Stage,
        action: Action,
        cancel: &CancellationToken,
    ) -> Result<Measured, StageError> {
        let Some(deployer) = project.deployer.as_deref() else {
            return Err(StageError::Engine(EngineError::Config {
                file: crate::project::files::DEPLOY.to_owned(),
                message: "is missing; deploy stages need it".to_owned(),
            }));
        };
        if action == Action::Deploy {
            self.check_turn(project, item).await?;
        }
        // One deploy per project at a time, across every task and every worker process (flock
        // conflicts between two descriptors of one process too).
        let _one_deploy_at_a_time = crate::locks::project_lock(
            &project.settings.data_dir,
            crate::locks::LockKind::Deploy,
            project.id().as_str(),
        )
        .await?;
        let repo = project.repo().await?;
        let wt = project.worktree(&item.id);
        let default = repo.default_branch().await?;
        let runs = self.store.list_runs(&item.id).await?;
        let start = self
            .starting_point(project, repo, item, &runs, None)
            .await?;
        if let StartingPoint::Unavailable(reason) = start {
            return Ok(Measured::blocked(reason));
        }
        repo.ensure_worktree(&wt, &branch(&item.id), &default)
            .await?;
        let head = match start {
            StartingPoint::Commit { sha, .. } => sha,
            _ => repo.head(&wt).await?,
        };
        // Leftovers of a crashed execution are not part of what is validated.
        repo.reset_to(&wt, &head).await?;
        let outcome = match action {
            Action::DeployStaging => {
                let cx = ActionContext {
                    project,
                    deployer,
                    repo,
                    item,
                    run,
                    cancel,
                };
                self.stage_candidate(&cx, &wt, &head, &runs).await?
            }
            Action::Deploy => {
                let cx = ActionContext {
                    project,
                    deployer,
                    repo,
                    item,
                    run,
                    cancel,
                };
                self.promote_candidate(&cx, stage).await?
            }
        };
        let (acted, lines) = match outcome {
            ActionOutcome::Decided { measured, lines } => {
                self.write_run_log(project, item, run, &lines).await?;
                return Ok(measured);
            }
            ActionOutcome::Acted(acted) => {
                let lines = acted.lines.clone();
                (acted, lines)
            }
        };
        if cancel.is_cancelled() {
            return Err(StageError::Abandoned);
        }
        self.write_run_log(project, item, run, &lines).await?;
        let file = stage.artifact.clone().unwrap_or_default();
        let path = stage_log_path(project, item, &file);
        write_file(project, &path, &acted.text)?;
        let dir = artifact_dir(&item.id);
        let changes = vec![format!("{dir}{file}")];
        let input = GateInput {
            artifact: Some(&acted.text),
            agent_exit: None,
            stage_changes: &changes,
            branch_changes: &changes,
            write_allowlist: None,
            commands: &[],
            artifact_dir: &dir,
        };
        let mut verdict = gate::evaluate(stage, &input);
        if let (Some(reason), false) = (acted.block, verdict.is_pass()) {
            verdict.class = VerdictClass::Block(reason);
        }
        let print = fingerprint(run.stage.as_str(), &verdict.reasons(), &acted.head);
        let mut facts = acted.facts;
        facts[HEAD_FACT] = json!(acted.head);
        Ok(Measured {
            verdict,
            fingerprint: print,
            usage: None,
            facts,
            events: acted.events,
            overrun: None,
        })
    }

    /// The action's steps go to the run log, where `orch logs` shows them beside the agents'.
    async fn write_run_log(
        &self,
        project: &Project,
        item: &ItemRecord,
        run: &RunRecord,
        lines: &[String],
    ) -> Result<(), StageError> {
        let log = project.run_log(&item.id, run.stage.as_str(), run.attempt);
        let mut text = lines.join("\n");
        text.push('\n');
        write_file(project, &log, &text)
    }
}

/// Where orch keeps an item's action stage log: beside its run logs, outside every work tree.
pub fn stage_log_path(project: &Project, item: &ItemRecord, file: &str) -> PathBuf {
    project.item_log_dir(&item.id).join(file)
}

/// Writes one of orch's own files under the data directory: a link or anything but a regular
/// file planted at its path (by an agent that was not sandboxed) is removed, never written
/// through.
fn write_file(project: &Project, path: &std::path::Path, text: &str) -> Result<(), StageError> {
    let root = &project.settings.data_dir;
    crate::worktree_files::clear_planted(root, path)?;
    let rel = path
        .strip_prefix(root)
        .map_err(|_| cannot_write(path, "is outside the data directory"))?;
    orch_process::safe_file::write_regular(root, rel, text.as_bytes())
        .map_err(|e| cannot_write(path, &e.to_string()))
}

fn cannot_write(path: &std::path::Path, why: &str) -> StageError {
    StageError::Engine(EngineError::Config {
        file: path.display().to_string(),
        message: format!("cannot write: {why}"),
    })
}
