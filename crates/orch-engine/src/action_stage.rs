//! Action stages: orch itself deploys. deploy-staging builds once from the item's worktree at its
//! SHA and validates staging; deploy promotes that exact build to prod. orch writes the stage's
//! log artifact from the measured outcome, and the gates read it like any other artifact.

use std::sync::Arc;

use orch_core::gate::{self, GateInput, VerdictClass};
use orch_core::pipeline::{Action, Stage};
use orch_core::staging::StagingVerdict;
use orch_store::{ItemRecord, NewEvent, RunRecord, RunState};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::execute::{Measured, StageError, fingerprint};
use crate::handoff::{HEAD_FACT, StartingPoint};
use crate::project::{Project, artifact_dir, branch};
use crate::{Engine, EngineError, approval, events};

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
        let Some(deployer) = project.deployer.clone() else {
            return Err(StageError::Engine(EngineError::Config {
                file: crate::project::files::DEPLOY.to_owned(),
                message: "is missing; deploy stages need it".to_owned(),
            }));
        };
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
        let dir = artifact_dir(&item.id);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut evs = Vec::new();
        let mut block = None;
        let mut lines: Vec<String> = Vec::new();
        let (text, facts) = match action {
            Action::DeployStaging => {
                self.crashpoint("during-deploy");
                let report = deployer
                    .deploy_staging(&wt, &head, self.settings.staging_tolerance, cancel)
                    .await;
                for check in &report.checks {
                    for m in &check.measurements {
                        evs.push(NewEvent::for_run(events::CHECK_MEASURED, run.id, json!({
                            "check": m.check_id, "try": m.try_no, "ok": m.ok, "measured": m.measured,
                            "detail": m.detail, "elapsed_ms": m.elapsed_ms,
                        })));
                    }
                }
                evs.push(NewEvent::for_run(events::DEPLOY_STAGING, run.id, json!({
                    "sha": head, "base_url": report.base_url, "verdict": report.verdict.verdict_line(),
                    "waived": report.waived(), "lines": report.lines, "error": report.error,
                })));
                if report.infra_error {
                    // Staging could not even run: the sandbox or its configuration, not the change.
                    block = Some(format!(
                        "staging could not run: {} (infrastructure or configuration, not the change; \
                         fix it, then `orch retry`)",
                        report.error.as_deref().unwrap_or("unknown error")
                    ));
                } else if let StagingVerdict::Failed {
                    infra_only: true,
                    reasons,
                } = &report.verdict
                {
                    // The sandbox is broken, not the change: stop without blaming the developer.
                    block = Some(format!(
                        "staging failed only on INFRA checks in strict mode: {}",
                        reasons.join("; ")
                    ));
                }
                lines.push(format!("deploy-staging of {head} to {}", report.base_url));
                lines.extend(report.error.iter().map(|e| format!("error: {e}")));
                lines.extend(report.lines.iter().cloned());
                let digest = report.build.as_ref().map(|b| b.digest.clone());
                (
                    report.log_markdown(&now),
                    json!({ "sha": head, "digest": digest }),
                )
            }
            Action::Deploy => {
                let Some(sha) = self.validated_sha(item).await? else {
                    return Ok(Measured::internal_error(
                        orch_core::pipeline::GateKind::Action,
                        &"no deploy-staging run of this item passed; nothing is validated to promote",
                    ));
                };
                let history = self.store.list_events(&item.id, 0).await?;
                if let Err(reason) = approval::approval_covers(&project.pipeline, &history, &sha) {
                    return Ok(Measured::refused(
                        orch_core::pipeline::GateKind::Action,
                        reason,
                    ));
                }
                let now_ms = chrono::Utc::now().timestamp_millis();
                if let Some(reason) =
                    approval::approval_expired(&history, project.settings.approval_ttl, now_ms)
                {
                    // Nothing was touched: the same build waits for a fresh approval.
                    let mut refused =
                        Measured::refused(orch_core::pipeline::GateKind::Action, reason.clone());
                    refused.verdict.class = VerdictClass::Reapprove(reason);
                    return Ok(refused);
                }
                self.crashpoint("during-deploy");
                let report = match deployer.self_deploy() {
                    Some(own) => {
                        self.promote_detached(own, &project.pipeline, run, &sha, cancel)
                            .await?
                    }
                    None => deployer.promote(&sha, cancel).await,
                };
                if let (true, orch_deploy::DeployStatus::Failed { reason }) =
                    (report.infra_error, &report.status)
                {
                    // Not the change: a person fixes the deploy, then `orch retry`.
                    block = Some(format!(
                        "prod deploy could not complete: {reason} (configuration or infrastructure, \
                         not the change; fix it, then `orch retry`)"
                    ));
                }
                evs.push(NewEvent::for_run(
                    events::DEPLOY_PROD,
                    run.id,
                    json!({
                        "sha": sha, "success": report.is_success(), "restored": report.restored,
                        "frozen": report.frozen, "lines": report.lines,
                    }),
                ));
                (
                    report.log_markdown(&now),
                    json!({ "sha": sha, "digest": report.digest }),
                )
            }
        };
        if cancel.is_cancelled() {
            return Err(StageError::Abandoned);
        }
        // The action's steps go to the run log, where `orch logs` shows them beside the agents'.
        let log = project.run_log(&item.id, run.stage.as_str(), run.attempt);
        if let Some(parent) = log.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_err(&log, e))?;
        }
        let mut text_log = lines.join("\n");
        text_log.push('\n');
        tokio::fs::write(&log, text_log)
            .await
            .map_err(|e| io_err(&log, e))?;
        let file = stage.artifact.clone().unwrap_or_default();
        let path = wt.join(&dir).join(&file);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_err(&path, e))?;
        }
        tokio::fs::write(&path, &text)
            .await
            .map_err(|e| io_err(&path, e))?;
        let message = format!("{}: {} (attempt {})", item.id, run.stage, run.attempt);
        let new_head = match repo.commit_all(&wt, &message).await? {
            Some(sha) => {
                evs.push(NewEvent::for_run(
                    events::COMMITTED,
                    run.id,
                    json!({ "sha": sha }),
                ));
                sha
            }
            // Expected on an action stage (contract 9): logged, not counted as under-delivery.
            None => {
                evs.push(NewEvent::for_run(
                    events::NO_CHANGES,
                    run.id,
                    json!({ "expected": true }),
                ));
                head.clone()
            }
        };
        let written = tokio::fs::read_to_string(&path).await.ok();
        let changes = vec![format!("{dir}{file}")];
        let input = GateInput {
            artifact: written.as_deref(),
            agent_exit: None,
            stage_changes: &changes,
            branch_changes: &changes,
            write_allowlist: None,
            commands: &[],
            artifact_dir: &dir,
        };
        let mut verdict = gate::evaluate(stage, &input);
        if let (Some(reason), false) = (block, verdict.is_pass()) {
            verdict.class = VerdictClass::Block(reason);
        }
        let print = fingerprint(run.stage.as_str(), &verdict.reasons(), &head);
        let mut facts = facts;
        facts[HEAD_FACT] = json!(new_head);
        Ok(Measured {
            verdict,
            fingerprint: print,
            usage: None,
            facts,
            events: evs,
            overrun: None,
        })
    }

    /// The SHA the item's latest passed deploy-staging run built and validated.
    async fn validated_sha(&self, item: &ItemRecord) -> Result<Option<String>, EngineError> {
        let project = self.project(&item.project)?;
        let runs = self.store.list_runs(&item.id).await?;
        Ok(runs
            .iter()
            .rev()
            .filter(|r| r.state == RunState::Passed)
            .filter(|r| {
                project.pipeline.stage(&r.stage).is_some_and(|s| {
                    s.kind
                        == orch_core::pipeline::StageKind::Action {
                            action: Action::DeployStaging,
                        }
                })
            })
            .find_map(|r| r.verdict.as_ref()?.get("sha")?.as_str().map(str::to_owned)))
    }
}

fn io_err(path: &std::path::Path, e: std::io::Error) -> StageError {
    StageError::Engine(EngineError::Config {
        file: path.display().to_string(),
        message: format!("cannot write: {e}"),
    })
}
