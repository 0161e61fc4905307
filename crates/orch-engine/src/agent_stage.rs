//! An agent stage: reset the worktree to the stage's base commit, run the role's agent, measure
//! the diff, run the command gates, read the artifact, and keep or discard the attempt's work.

use std::path::Path;
use std::sync::Arc;

use orch_agent::prompt::{self, PromptContext};
use orch_agent::{AgentRequest, RunObserver, Usage};
use orch_core::RoleName;
use orch_core::gate::{self, CommandResult, GateInput};
use orch_core::pipeline::{GateKind, GateSpec, Stage};
use orch_core::spend::Overrun;
use orch_store::{Fence, ItemRecord, NewEvent, RunRecord, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::execute::{Measured, StageError, fingerprint};
use crate::handoff::{HEAD_FACT, StartingPoint};
use crate::project::{Project, artifact_dir, branch};
use crate::spend::RunBudget;
use crate::{Engine, events, session};

/// Watches the agent: records its process group in the run's checkpoint, so a crash can be
/// cleaned up, and stops it when what it reports it spent reaches a spend limit.
struct StageObserver<'a> {
    store: Arc<dyn Store>,
    fence: Fence,
    base: String,
    budget: &'a RunBudget<'a>,
    /// The limit the run reached while it ran, when it was stopped for it.
    stopped_for: Option<Overrun>,
}

impl RunObserver for StageObserver<'_> {
    fn started(&mut self, pgid: u32) {
        let store = Arc::clone(&self.store);
        let fence = self.fence;
        let checkpoint = json!({ "base": self.base, "pgid": pgid });
        tokio::spawn(async move {
            let _ = store.save_checkpoint(fence, checkpoint, Vec::new()).await;
        });
    }

    fn usage_so_far(&mut self, usage: &Usage) -> bool {
        match self.budget.during_run(usage) {
            None => true,
            Some(overrun) => {
                self.stopped_for.get_or_insert(overrun);
                false
            }
        }
    }
}

impl Engine {
    pub(crate) async fn run_agent_stage(
        self: &Arc<Self>,
        project: &Arc<Project>,
        item: &ItemRecord,
        run: &RunRecord,
        stage: &Stage,
        role_name: &RoleName,
        cancel: &CancellationToken,
    ) -> Result<Measured, StageError> {
        self.kill_previous_agent(run).await;
        let runs = self.store.list_runs(&item.id).await?;
        let budget = RunBudget::new(&project.pipeline, &run.stage, &runs, run.id);
        if let Some(overrun) = budget.before_run() {
            return Err(StageError::OverBudget(overrun));
        }
        let repo = project.repo().await?;
        let wt = project.worktree(&item.id);
        let default = repo.default_branch().await?;
        let pinned = run.checkpoint.get("base").and_then(|b| b.as_str());
        // With a forge, the run starts from the commit the item's last run recorded, fetched
        // from the forge when another machine made it (see `handoff`).
        let start = self
            .starting_point(project, repo, item, &runs, pinned)
            .await?;
        if let StartingPoint::Unavailable(reason) = start {
            return Ok(Measured::blocked(reason));
        }
        repo.ensure_worktree(&wt, &branch(&item.id), &default)
            .await?;

        // The base commit is fixed at the first execution of this run, so a re-execution after a
        // crash starts from exactly the same tree.
        let base = match pinned {
            Some(b) => b.to_owned(),
            None => {
                let (head, fetched) = match start {
                    StartingPoint::Commit { sha, fetched } => (sha, fetched),
                    _ => (repo.head(&wt).await?, false),
                };
                let started = NewEvent::for_run(
                    events::RUN_STARTED,
                    run.id,
                    json!({
                        "stage": run.stage.as_str(), "attempt": run.attempt, "base": head,
                        "fetched": fetched,
                    }),
                );
                self.store
                    .save_checkpoint(run.fence(), json!({ "base": head }), vec![started])
                    .await
                    .map_err(lease)?;
                head
            }
        };
        repo.reset_to(&wt, &base).await?;

        let Some(role) = project.roles.get(role_name) else {
            return Ok(Measured::internal_error(
                GateKind::AgentExit,
                &format!("role `{role_name}` was not loaded"),
            ));
        };
        let Some(built) = project.agent(role_name) else {
            return Ok(Measured::internal_error(
                GateKind::AgentExit,
                &format!("no agent is configured for role `{role_name}`"),
            ));
        };
        let dir = artifact_dir(&item.id);
        let earlier = read_artifacts(&wt.join(&dir)).await;
        let text = prompt::render(&PromptContext {
            role,
            item_id: item.id.as_str(),
            title: &item.title,
            body: &item.body,
            stage: run.stage.as_str(),
            attempt: run.attempt,
            artifact_dir: &dir,
            artifact: stage.artifact.as_deref(),
            verdict: stage.verdict.as_ref(),
            feedback: &run.feedback,
            earlier: &earlier,
        });
        let log = project.run_log(&item.id, run.stage.as_str(), run.attempt);
        let prompt_file = log.with_extension("prompt.md");
        if let Some(parent) = prompt_file.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error(&prompt_file, e))?;
        }
        tokio::fs::write(&prompt_file, &text)
            .await
            .map_err(|e| io_error(&prompt_file, e))?;
        let req = AgentRequest {
            item: item.id.clone(),
            title: item.title.clone(),
            stage: run.stage.clone(),
            attempt: run.attempt,
            worktree: wt.clone(),
            artifact_dir: dir.clone(),
            artifact: stage.artifact.clone(),
            prompt: text,
            model: role.model.clone(),
            tools: role.tools.clone(),
            timeout: std::time::Duration::from_secs(stage.timeout_secs),
            stall: built.stall,
            log: log.clone(),
            prompt_file,
            resume_session: session::to_resume(&runs, run),
            sandbox: project.sandbox.clone(),
        };
        self.crashpoint("during-agent");
        let mut observer = StageObserver {
            store: Arc::clone(&self.store),
            fence: run.fence(),
            base: base.clone(),
            budget: &budget,
            stopped_for: None,
        };
        let agent_run = built.agent.run(&req, cancel, &mut observer).await;
        if cancel.is_cancelled() {
            return Err(StageError::Abandoned);
        }
        let mut evs = vec![NewEvent::for_run(
            events::AGENT_FINISHED,
            run.id,
            json!({ "agent": built.agent.kind(), "outcome": agent_run.outcome.describe(), "usage": agent_run.usage, "resumed": req.resume_session }),
        )];
        let overrun = match observer.stopped_for {
            Some(live) => Some((live, "during-run")),
            None => budget
                .after_run(&agent_run.usage)
                .map(|after| (after, "after-run")),
        };
        if let Some((overrun, when)) = &overrun {
            evs.push(events::spend_limit_reached(run, &overrun.to_string(), when));
        }

        // One snapshot of what the agent left serves both comparisons and the fingerprint.
        let digest = repo.tree_digest(&wt).await?;
        let stage_changes = repo.changed_paths_to(&wt, &base, &digest).await?;
        let fork = repo.merge_base(&default, &base).await?;
        let branch_changes = repo.changed_paths_to(&wt, &fork, &digest).await?;
        let artifact = match &stage.artifact {
            Some(file) => read_optional(&wt.join(&dir).join(file)).await?,
            None => None,
        };
        let mut input = GateInput {
            artifact: artifact.as_deref(),
            agent_exit: Some(agent_run.outcome.clone()),
            stage_changes: &stage_changes,
            branch_changes: &branch_changes,
            write_allowlist: Some(&role.writes),
            commands: &[],
            artifact_dir: &dir,
        };
        let mut commands = Vec::new();
        if gate::evaluate_static(stage, &input).is_empty() {
            commands = run_command_gates(stage, &wt, &log, &project.sandbox, cancel).await;
            if cancel.is_cancelled() {
                return Err(StageError::Abandoned);
            }
        }
        input.commands = &commands;
        let verdict = gate::evaluate(stage, &input);
        self.crashpoint("after-gates");

        // Keep the attempt's work when it passed, or when the agent gave a legitimate negative
        // verdict (a reviewer's REQUEST_CHANGES belongs in history); discard it otherwise, and
        // always discard writes outside the role's allowlist.
        let outside_allowlist = verdict
            .failures
            .iter()
            .any(|f| f.gate == GateKind::WriteAllowlist);
        let judged = verdict
            .failures
            .iter()
            .all(|f| matches!(f.gate, GateKind::Verdict | GateKind::DocGate));
        let keep = !outside_allowlist && verdict.value.is_some() && judged;
        // The head after this: the new commit, else the base (nothing kept, or nothing to
        // commit: the worktree was reset to the base at the start).
        let head = if keep {
            let message = format!("{}: {} (attempt {})", item.id, run.stage, run.attempt);
            match repo.commit_all(&wt, &message).await? {
                Some(sha) => {
                    evs.push(NewEvent::for_run(
                        events::COMMITTED,
                        run.id,
                        json!({ "sha": sha }),
                    ));
                    sha
                }
                None => {
                    evs.push(NewEvent::for_run(events::NO_CHANGES, run.id, json!({})));
                    base.clone()
                }
            }
        } else {
            repo.reset_to(&wt, &base).await?;
            evs.push(NewEvent::for_run(
                events::DISCARDED,
                run.id,
                json!({ "paths": stage_changes }),
            ));
            base.clone()
        };
        let print = fingerprint(run.stage.as_str(), &verdict.reasons(), &digest);
        let usage = serde_json::to_value(&agent_run.usage).ok();
        Ok(Measured {
            verdict,
            fingerprint: print,
            usage,
            facts: json!({ "base": base, HEAD_FACT: head }),
            events: evs,
            overrun: overrun.map(|(o, _)| o),
        })
    }

    /// A run executed again after a crash may have left its agent running: kill that group.
    pub(crate) async fn kill_previous_agent(&self, run: &RunRecord) {
        if let Some(pgid) = run
            .checkpoint
            .get("pgid")
            .and_then(|p| p.as_u64())
            .and_then(|p| u32::try_from(p).ok())
            && orch_process::group_is_alive(pgid)
        {
            let _ = orch_process::kill_group(pgid, std::time::Duration::from_secs(2)).await;
        }
    }
}

fn lease(e: orch_store::StoreError) -> StageError {
    match e {
        orch_store::StoreError::LeaseLost { .. } => StageError::Abandoned,
        other => StageError::Engine(other.into()),
    }
}

async fn run_command_gates(
    stage: &Stage,
    wt: &Path,
    log: &Path,
    sandbox: &orch_process::Sandbox,
    cancel: &CancellationToken,
) -> Vec<CommandResult> {
    let mut results = Vec::new();
    for g in &stage.gates {
        if let GateSpec::Command {
            name,
            run,
            timeout_secs,
        } = g
        {
            let mut spec = orch_process::Spec::shell(run, wt)
                .timeout(std::time::Duration::from_secs(*timeout_secs))
                .log(log)
                .sandbox(sandbox.clone());
            spec.env = orch_process::safe_env();
            let finished = orch_process::run(&spec, cancel, &mut ()).await;
            let ok = finished.outcome.success();
            results.push(CommandResult {
                name: name.clone(),
                outcome: finished.outcome,
                output_tail: finished.tail,
            });
            if !ok {
                break;
            }
        }
    }
    results
}

fn io_error(path: &Path, e: std::io::Error) -> StageError {
    StageError::Engine(crate::EngineError::Config {
        file: path.display().to_string(),
        message: format!("cannot write: {e}"),
    })
}

async fn read_optional(path: &Path) -> Result<Option<String>, StageError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StageError::Engine(crate::EngineError::Config {
            file: path.display().to_string(),
            message: e.to_string(),
        })),
    }
}

/// The item's artifacts so far, by file name, for the prompt.
pub(crate) async fn read_artifacts(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return out;
    };
    while let Ok(Some(e)) = entries.next_entry().await {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md")
            && let Ok(text) = tokio::fs::read_to_string(e.path()).await
        {
            out.push((name, text));
        }
    }
    out.sort();
    out
}
