//! An agent stage: reset the worktree to the stage's base commit, run the role's agent, measure
//! the diff, run the command gates, read the artifact, and keep or discard the attempt's work.

use std::path::Path;
use std::sync::Arc;

use orch_agent::prompt::{self, PromptContext};
use orch_agent::{AgentRequest, RunObserver, Usage};
use orch_core::gate::{self, CommandResult, GateInput};
use orch_core::pipeline::{GateKind, GateSpec, Stage};
use orch_core::spend::Overrun;
use orch_core::{RoleName, protected};
use orch_store::{Fence, ItemRecord, NewEvent, RunRecord, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::execute::{Measured, StageError, fingerprint};
use crate::handoff::{HEAD_FACT, StartingPoint};
use crate::project::{Project, artifact_dir, branch};
use crate::spend::RunBudget;
use crate::telemetry::{Span, Telemetry};
use crate::{Engine, events, session, worktree_files};

/// Watches the agent: records its process group in the run's checkpoint, so a crash can be
/// cleaned up, and stops it when what it reports it spent reaches a spend limit.
struct StageObserver<'a> {
    store: Arc<dyn Store>,
    fence: Fence,
    base: String,
    budget: &'a RunBudget<'a>,
    /// The limit the run reached while it ran, when it was stopped for it.
    stopped_for: Option<Overrun>,
    /// Where the agent tried to connect and the sandbox refused.
    refused: orch_process::EgressRefusals,
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

    fn egress_refused(&mut self, refused: &orch_process::EgressRefusals) {
        self.refused = refused.clone();
    }
}

/// Collects what a command gate's sandbox refused.
#[derive(Default)]
struct GateObserver(orch_process::EgressRefusals);

impl orch_process::Observer for GateObserver {
    fn egress_refused(&mut self, refused: &orch_process::EgressRefusals) {
        self.0 = refused.clone();
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
        // The team's CI on the branch head decides first: no tokens for a review of red code.
        if let Some(decided) = self.checks_before_agent(project, item, run, &runs).await? {
            return Ok(decided);
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
        let ensured = repo
            .ensure_worktree(&wt, &branch(&item.id), &default)
            .await?;

        // The base commit is fixed at the first execution of this run, so a re-execution after a
        // crash starts from exactly the same tree.
        let mut base_is_head = false;
        let base = match pinned {
            Some(b) => b.to_owned(),
            None => {
                let (head, fetched) = match start {
                    StartingPoint::Commit { sha, fetched } => (sha, fetched),
                    _ => {
                        base_is_head = true;
                        (repo.head(&wt).await?, false)
                    }
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
        // A work tree git checked out just now, at the base, holds exactly the base's tree:
        // resetting and cleaning it would change nothing (a re-execution after a crash finds it
        // existing and takes the full path). A new item's launch waits on these steps.
        let fresh = ensured.is_fresh() && base_is_head;
        // A FIFO or a socket is invisible to git, so `git clean` leaves it: remove it too,
        // unless every file on disk was just seen to be one of the base's.
        if !fresh && repo.reset_to_base(&wt, &base).await? != orch_git::Reset::Exactly {
            orch_process::safe_file::special_files(&wt, true)
                .map_err(worktree_files::file_error)?;
        }
        // The base's files as the index holds them now, before the agent runs: what the stage
        // changed is then measured without asking git.
        let base_files = repo.base_files(&wt, &base)?;
        // A branch made just now from the default branch forks from it at the base (the default
        // branch only ever fast-forwards, so it still descends from there). Otherwise git is
        // asked only when something needs it: a rerun's artifact, a gate reading the branch.
        let mut fork = ForkPoint {
            repo,
            default: &default,
            base: &base,
            known: (fresh && ensured == orch_git::Ensured::Created).then(|| base.clone()),
        };

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
        // Only a file this attempt writes can be the stage's artifact afterwards.
        let artifact_path = stage.artifact.as_ref().map(|file| format!("{dir}{file}"));
        let removed = match &artifact_path {
            Some(rel) => worktree_files::clear_artifact(repo, &wt, &mut fork, rel).await?,
            None => None,
        };
        let limit = std::time::Duration::from_secs(stage.timeout_secs);
        let earlier = worktree_files::read_artifacts(&wt, &dir, cancel, limit).await?;
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
        worktree_files::write_prompt(&project.settings.data_dir, &prompt_file, &text)?;
        worktree_files::clear_planted(&project.settings.data_dir, &log)?;
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
            refused: orch_process::EgressRefusals::default(),
        };
        let agent_started = std::time::Instant::now();
        let telemetry = &self.settings.telemetry;
        let mut agent_span = telemetry.child(item, run, format!("invoke_agent {role_name}"));
        let agent_run = built.agent.run(&req, cancel, &mut observer).await;
        agent_attributes(
            &mut agent_span,
            built.agent.kind(),
            role_name.as_str(),
            &req,
            &agent_run,
        );
        agent_span.end();
        if cancel.is_cancelled() {
            return Err(StageError::Abandoned);
        }
        let mut evs = vec![NewEvent::for_run(
            events::AGENT_FINISHED,
            run.id,
            json!({ "agent": built.agent.kind(), "outcome": agent_run.outcome.describe(), "usage": agent_run.usage, "resumed": req.resume_session }),
        )];
        evs.extend(events::egress_refused(run.id, "agent", &observer.refused));
        let overrun = match observer.stopped_for {
            Some(live) => Some((live, "during-run")),
            None => budget
                .after_run(&agent_run.usage)
                .map(|after| (after, "after-run")),
        };
        if let Some((overrun, when)) = &overrun {
            evs.push(events::spend_limit_reached(run, &overrun.to_string(), when));
        }

        // The stage's commit goes on its base, on the item's branch, whatever the agent did
        // with HEAD (its own commits' files are in the tree, measured like any other change).
        if repo.restore_head(&wt, &branch(&item.id), &base).await? {
            evs.push(NewEvent::for_run(
                events::HEAD_RESTORED,
                run.id,
                json!({ "base": base }),
            ));
        }
        // One snapshot of what the agent left serves both comparisons and the fingerprint. What
        // no diff shows (ignored files: `.env`, `target/`) is removed, so the gates see exactly
        // what a reviewer sees, and a file the agent told git to look away from is measured as
        // it is on disk.
        let snapshot = repo.stage_all(&wt).await?;
        for (kind, paths) in [
            (events::IGNORED_REMOVED, snapshot.ignored()),
            (events::UNHIDDEN, snapshot.unhidden()),
        ] {
            if !paths.is_empty() {
                evs.push(NewEvent::for_run(kind, run.id, json!({ "paths": paths })));
            }
        }
        let digest = snapshot.digest().to_owned();
        let stage_changes = repo
            .changed_since(&wt, &base, base_files.as_ref(), &snapshot)
            .await?;
        let branch_changes = if !stage.reads_branch_changes() {
            Vec::new()
        } else if fork.known.as_deref() == Some(base.as_str()) {
            stage_changes.clone()
        } else {
            // HEAD is the base (put back above) and the index holds the snapshot.
            repo.staged_since_fork(&wt, &default).await?
        };
        let mut file_failures = worktree_files::file_failures(
            &wt,
            &stage_changes,
            project.pipeline.links_inside(),
            snapshot.special_files(),
        );
        let left = req.timeout.saturating_sub(agent_started.elapsed());
        let artifact = match &artifact_path {
            Some(rel) => {
                let (text, failures) =
                    worktree_files::read_artifact(&wt, rel, removed, cancel, left).await?;
                file_failures.extend(failures);
                text
            }
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
        if file_failures.is_empty() && gate::evaluate_static(stage, &input).is_empty() {
            worktree_files::clear_planted(&project.settings.data_dir, &log)?;
            let traced = (telemetry, item, run);
            let (results, refused) =
                run_command_gates(stage, &wt, &log, &project.sandbox, cancel, traced).await;
            commands = results;
            for (gate, refused) in refused {
                evs.extend(events::egress_refused(
                    run.id,
                    &format!("gate:{gate}"),
                    &refused,
                ));
            }
            if cancel.is_cancelled() {
                return Err(StageError::Abandoned);
            }
        }
        input.commands = &commands;
        let verdict = gate::evaluate(stage, &input).with_failures(file_failures);
        gate_spans(telemetry, item, run, stage, &verdict);
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
            let changed_pipeline = protected::pipeline_changes(&stage_changes);
            if !changed_pipeline.is_empty() {
                evs.push(NewEvent::for_run(
                    events::PIPELINE_MODIFIED,
                    run.id,
                    json!({ "paths": changed_pipeline }),
                ));
            }
            let message = format!("{}: {} (attempt {})", item.id, run.stage, run.attempt);
            // The command gates' own leftovers (a build's `target/`) are not the item's either,
            // and what they changed is staged again; a tree they left exactly as staged (the
            // files compared with the index in-process) is committed as it is.
            let gates_ran = !commands.is_empty();
            let moved = gates_ran && repo.restore_head(&wt, &branch(&item.id), &base).await?;
            let (to_commit, changed) = if gates_ran && (moved || !repo.still_staged(&wt)?) {
                let after = repo.stage_all(&wt).await?;
                let changed = if after.digest() == snapshot.digest() {
                    !stage_changes.is_empty()
                } else {
                    !repo
                        .changed_since(&wt, &base, base_files.as_ref(), &after)
                        .await?
                        .is_empty()
                };
                (after, changed)
            } else {
                (snapshot, !stage_changes.is_empty())
            };
            let committed = match changed {
                true => Some(
                    repo.commit_snapshot(&wt, to_commit, &base, &message)
                        .await?,
                ),
                false => None,
            };
            match committed {
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

/// Where the item's branch forked from the default branch: asked of git (`merge-base`) once,
/// and only when needed.
pub(crate) struct ForkPoint<'a> {
    repo: &'a orch_git::Repo,
    default: &'a str,
    base: &'a str,
    known: Option<String>,
}

impl ForkPoint<'_> {
    pub(crate) async fn get(&mut self) -> Result<&str, orch_git::GitError> {
        let fork = match self.known.take() {
            Some(fork) => fork,
            None => self.repo.merge_base(self.default, self.base).await?,
        };
        Ok(self.known.insert(fork))
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
    (telemetry, item, stage_run): (&Telemetry, &ItemRecord, &RunRecord),
) -> (
    Vec<CommandResult>,
    Vec<(String, orch_process::EgressRefusals)>,
) {
    let mut results = Vec::new();
    let mut refusals = Vec::new();
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
            let mut span = telemetry.child(item, stage_run, format!("gate {name}"));
            let mut observer = GateObserver::default();
            let finished = orch_process::run(&spec, cancel, &mut observer).await;
            if !observer.0.is_empty() {
                refusals.push((name.clone(), observer.0));
            }
            let ok = finished.outcome.success();
            span.set("orch.gate", GateKind::Command.name());
            span.set("orch.gate.name", name.as_str());
            span.set("orch.gate.passed", ok);
            if !ok {
                span.fail("gate failed");
            }
            span.end();
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
    (results, refusals)
}

/// The GenAI semantic conventions' attributes of an agent run (OpenTelemetry's `gen_ai.*`), and
/// orch's own: the cost, and how the run ended as a word, never its message.
fn agent_attributes(
    span: &mut Span,
    agent: &str,
    role: &str,
    req: &AgentRequest,
    agent_run: &orch_agent::AgentRun,
) {
    span.set("gen_ai.operation.name", "invoke_agent");
    span.set("gen_ai.agent.name", role);
    span.set("gen_ai.provider.name", agent);
    if let Some(model) = &req.model {
        span.set("gen_ai.request.model", model.as_str());
    }
    let usage = &agent_run.usage;
    if let Some(tokens) = usage.input_tokens {
        span.set("gen_ai.usage.input_tokens", tokens as i64);
    }
    if let Some(tokens) = usage.output_tokens {
        span.set("gen_ai.usage.output_tokens", tokens as i64);
    }
    if let Some(cost) = usage.cost_usd {
        span.set("orch.cost_usd", cost);
        span.set("orch.cost_estimated", usage.cost_estimated);
    }
    let ok = agent_run.outcome.success();
    span.set("orch.agent.exit_ok", ok);
    if !ok {
        span.fail("agent run failed");
    }
}

/// One span per gate the verdict judged (the command gates have their own, timed, from
/// [`run_command_gates`]): passed unless a failure names it.
fn gate_spans(
    telemetry: &Telemetry,
    item: &ItemRecord,
    run: &RunRecord,
    stage: &Stage,
    verdict: &gate::GateVerdict,
) {
    if !telemetry.is_on() {
        return;
    }
    let mut kinds = vec![GateKind::AgentExit, GateKind::WriteAllowlist];
    if stage.artifact.is_some() {
        kinds.push(GateKind::Verdict);
    }
    kinds.extend(stage.gates.iter().map(GateSpec::kind));
    kinds.extend(verdict.failures.iter().map(|f| f.gate));
    kinds.retain(|k| *k != GateKind::Command);
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let mut span = telemetry.child(item, run, format!("gate {}", kind.name()));
        let passed = !verdict.failures.iter().any(|f| f.gate == kind);
        span.set("orch.gate", kind.name());
        span.set("orch.gate.passed", passed);
        if !passed {
            span.fail("gate failed");
        }
        span.end();
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StageError {
    StageError::Engine(crate::EngineError::Config {
        file: path.display().to_string(),
        message: format!("cannot write: {e}"),
    })
}
