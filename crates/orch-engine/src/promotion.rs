//! deploy: promote exactly the candidate staging validated, and only while it contains what prod
//! runs; then move the default branch to it in the same critical section.
//!
//! The rule ("the not-rocket-science rule", carried through to prod): prod and the default
//! branch move together, to a candidate that contains the default branch's tip. When the tip
//! moved since staging (another item was promoted, a person pushed), the item goes back to
//! deploy-staging to be integrated and validated again, spending no budget and running no agent.
//!
//! The promotion runs under a deadline of its own, not under the run's cancellation: a STOP or a
//! lost lease in the middle never leaves prod half-promoted. Failures that are not the change's
//! (a port held by another program, the container engine down, promotions paused, a hook's
//! exit 2) block the item with their cause; only a change that does not come up healthy restores
//! prod and goes back to development.

use std::sync::Arc;
use std::time::Duration;

use orch_core::gate::VerdictClass;
use orch_core::pipeline::{GateKind, Stage};
use orch_deploy::DeployReport;
use orch_store::{ItemRecord, NewEvent};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::action_stage::{Acted, ActionContext, ActionOutcome};
use crate::execute::{Measured, StageError};
use crate::external_checks::ChecksGate;
use crate::integration::{CANDIDATE_FACT, TIP_FACT, fact, short};
use crate::project::Project;
use crate::upstream::MoveRefused;
use crate::{Engine, approval, events};

impl Engine {
    /// The promotion queue's order: an item approved earlier that is on its way to prod (being
    /// re-validated on staging, or waiting at deploy) goes first. Going ahead would only make it
    /// integrate and validate once more after this promotion. Checked before the deploy lock is
    /// taken, so a run that must wait never holds up the one it waits for.
    pub(crate) async fn check_turn(
        &self,
        project: &Project,
        item: &ItemRecord,
    ) -> Result<(), StageError> {
        let queue = self.promotion_queue(project.id()).await?;
        let mine = queue.iter().position(|e| e.item == item.id).unwrap_or(0);
        match queue[..mine]
            .iter()
            .find(|e| e.approved_at.is_some() && (e.status == "queued" || e.status == "running"))
        {
            Some(ahead) => Err(StageError::NotYourTurn(format!(
                "{} was approved first and is promoted first ({})",
                ahead.item, ahead.waiting_for
            ))),
            None => Ok(()),
        }
    }

    pub(crate) async fn promote_candidate(
        self: &Arc<Self>,
        cx: &ActionContext<'_>,
        stage: &Stage,
    ) -> Result<ActionOutcome, StageError> {
        let ActionContext {
            project,
            deployer,
            repo,
            item,
            run,
            cancel,
        } = *cx;
        // The default branch moves in here; merges of items without deploys take this lock too.
        let _main_moves_here = crate::locks::project_lock(
            &project.settings.data_dir,
            crate::locks::LockKind::Merge,
            project.id().as_str(),
        )
        .await?;
        // What this very run follows: its own record is the last one.
        let mut runs = self.store.list_runs(&item.id).await?;
        runs.retain(|r| r.id != run.id);
        let Some(staging) = approval::validated_staging(&project.pipeline, &runs).ok() else {
            return Ok(decided(Measured::internal_error(
                GateKind::Action,
                &"no deploy-staging run of this item passed; nothing is validated to promote",
            )));
        };
        let (Some(sha), Some(tip)) = (
            fact(staging.verdict.as_ref(), CANDIDATE_FACT).map(str::to_owned),
            fact(staging.verdict.as_ref(), TIP_FACT).map(str::to_owned),
        ) else {
            return Ok(revalidate(
                "the validated build records no default-branch tip (staged before orch integrated \
                 candidates); integrating and validating again"
                    .to_owned(),
                Vec::new(),
            ));
        };
        let default = repo.default_branch().await?;
        let now = match self.default_tip_now(project, repo).await {
            Ok(now) => now,
            Err(reason) => {
                return Ok(blocked(
                    format!(
                        "{reason} (infrastructure, not the change: prod was not touched; fix it, then `orch retry`)"
                    ),
                    Vec::new(),
                ));
            }
        };
        if now != tip && now != sha {
            let reason = format!(
                "{default} moved from {} to {} since staging validated {}; integrating it and \
                 validating again (the approval of the same change carries over)",
                short(&tip),
                short(&now),
                short(&sha)
            );
            let lines = vec![reason.clone()];
            return Ok(revalidate(reason, lines));
        }
        let history = self.store.list_events(&item.id, 0).await?;
        if let Err(reason) = approval::approval_covers(&project.pipeline, &history, &sha) {
            return Ok(decided(Measured::refused(GateKind::Action, reason)));
        }
        let now_ms = chrono::Utc::now().timestamp_millis();
        if let Some(reason) =
            approval::approval_expired(&history, project.settings.approval_ttl, now_ms)
        {
            // Nothing was touched: the same build waits for a fresh approval.
            let mut refused = Measured::refused(GateKind::Action, reason.clone());
            refused.verdict.class = VerdictClass::Reapprove(reason);
            return Ok(decided(refused));
        }
        // The team's own CI on the very candidate: passed, or nothing is promoted.
        let check_lines = match self.checks_gate(project, item, run, &history, &sha).await? {
            ChecksGate::Proceed(lines) => lines,
            ChecksGate::Stop(outcome) => return Ok(*outcome),
        };
        // People's reviews on the pull request: a request for changes is the developer's work.
        if let ChecksGate::Stop(outcome) = self
            .reviews_gate(project, item, run, &history, &sha)
            .await?
        {
            return Ok(*outcome);
        }
        let target = match self.prepare_move(project, repo, item, &sha).await {
            Ok(target) => target,
            Err(reason) => {
                return Ok(blocked(
                    format!("{reason} (prod was not touched; fix it, then `orch retry`)"),
                    Vec::new(),
                ));
            }
        };
        self.crashpoint("before-promote");
        // STOP and a lost lease do not reach into a promotion: it completes or restores.
        let deadline = Duration::from_secs(stage.timeout_secs.max(1));
        let own = deadline_token(deadline);
        let mut span = self.settings.telemetry.child(item, run, "deploy promote");
        span.set("orch.deploy.step", "promote");
        span.set("orch.sha", sha.as_str());
        let mut report = match deployer.self_deploy() {
            Some(detached) => {
                self.promote_detached(detached, &project.pipeline, run, &sha, cancel)
                    .await?
            }
            None => deployer.promote(&sha, &own.token).await,
        };
        if !report.is_success() {
            span.fail("promotion failed");
        }
        span.end();
        report.lines.splice(0..0, check_lines);
        let mut evs = Vec::new();
        if report.is_success() {
            self.crashpoint("after-promote");
            match self
                .move_default(project, repo, item, target, &tip, &sha)
                .await
            {
                Ok(line) => {
                    report.lines.push(line);
                    evs.push(NewEvent::for_run(
                        events::MAIN_ADVANCED,
                        run.id,
                        json!({ "branch": default, "from": tip, "to": sha }),
                    ));
                }
                Err(refused) => {
                    // prod must not run what the default branch lacks. Put back what it ran
                    // (the tip, by the invariant), then integrate again or let a person look.
                    let (moved, why) = match refused {
                        MoveRefused::Moved(why) => (true, why),
                        MoveRefused::Failed(why) => (false, why),
                    };
                    let mut span = self.settings.telemetry.child(item, run, "deploy restore");
                    span.set("orch.deploy.step", "restore");
                    span.set("orch.sha", tip.as_str());
                    let restored = deployer.promote(&tip, &own.token).await;
                    if !restored.is_success() {
                        span.fail("restore failed");
                    }
                    span.end();
                    let mut lines = report.lines.clone();
                    lines.push(why.clone());
                    lines.extend(restored.lines.iter().cloned());
                    let reason = format!(
                        "{default} could not be moved to the promoted {}: {why}; prod was put \
                         back to {} ({})",
                        short(&sha),
                        short(&tip),
                        if restored.is_success() {
                            "restored"
                        } else {
                            "restoring it FAILED too: look at prod"
                        }
                    );
                    return Ok(if moved && restored.is_success() {
                        revalidate(reason, lines)
                    } else {
                        blocked(reason, lines)
                    });
                }
            }
        }
        let block = match (&report.status, report.infra_error) {
            (orch_deploy::DeployStatus::Failed { reason }, true) => Some(format!(
                "prod deploy could not complete: {reason} (not the change: prod still runs its \
                 previous build; fix it, then `orch retry`)"
            )),
            _ => None,
        };
        evs.push(NewEvent::for_run(
            events::DEPLOY_PROD,
            run.id,
            json!({
                "sha": sha, "tip": tip, "success": report.is_success(), "restored": report.restored,
                "frozen": report.frozen, "infra": report.infra_error, "lines": report.lines,
            }),
        ));
        let text = report
            .log_markdown(&chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        Ok(ActionOutcome::Acted(Acted {
            text,
            facts: json!({ "sha": sha, "tip": tip, "digest": report.digest }),
            lines: report_lines(&report),
            events: evs,
            block,
            head: sha,
        }))
    }
}

fn report_lines(report: &DeployReport) -> Vec<String> {
    let mut lines = vec![format!("deploy of {}", report.sha)];
    lines.extend(report.lines.iter().cloned());
    lines
}

fn decided(measured: Measured) -> ActionOutcome {
    ActionOutcome::Decided {
        measured,
        lines: Vec::new(),
    }
}

/// Back to deploy-staging: integrate the new tip, validate again; no budget, no agent.
fn revalidate(reason: String, lines: Vec<String>) -> ActionOutcome {
    let mut measured = Measured::refused(GateKind::Action, reason.clone());
    measured.verdict.class = VerdictClass::Revalidate(reason);
    ActionOutcome::Decided { measured, lines }
}

/// Not the change's fault: the item blocks with the cause.
fn blocked(reason: String, lines: Vec<String>) -> ActionOutcome {
    ActionOutcome::Decided {
        measured: Measured::blocked(reason),
        lines,
    }
}

/// A cancellation of its own that fires after a deadline; its timer ends when it is dropped.
struct Deadline {
    token: CancellationToken,
    _timer: AbortOnDropHandle<()>,
}

fn deadline_token(deadline: Duration) -> Deadline {
    let token = CancellationToken::new();
    let fire = token.clone();
    let timer = tokio::spawn(async move {
        tokio::time::sleep(deadline).await;
        fire.cancel();
    });
    Deadline {
        token,
        _timer: AbortOnDropHandle::new(timer),
    }
}
