//! deploy-staging: integrate the default branch's tip into the item's branch, then validate that
//! candidate on staging.
//!
//! A conflict is the developer's work, not staging's failure and never a person's chore: orch
//! commits the merge with its conflict markers on the item's branch and sends the item back to
//! development with the conflicting paths and both sides in the feedback. The next integration
//! finds the tip contained; a conflict marker left in one of those paths fails it again (and an
//! identical repeat stops the item, like any repeated failure).

use std::path::Path;
use std::sync::Arc;

use orch_core::pipeline::GateKind;
use orch_core::staging::StagingVerdict;
use orch_git::{ConflictExcerpt, Integration, Repo};
use orch_store::{NewEvent, RunRecord};
use serde_json::{Value, json};

use crate::action_stage::{Acted, ActionContext, ActionOutcome};
use crate::execute::{Measured, StageError, fingerprint};
use crate::handoff::HEAD_FACT;
use crate::project::branch;
use crate::{Engine, events};

/// The verdict facts of a passed deploy-staging run that promotion relies on.
pub(crate) const CANDIDATE_FACT: &str = "sha";
pub(crate) const TIP_FACT: &str = "tip";
pub(crate) const CHANGE_FACT: &str = "change_id";
/// The paths an integration left conflict markers in.
pub(crate) const CONFLICTS_FACT: &str = "conflicts";

impl Engine {
    pub(crate) async fn stage_candidate(
        self: &Arc<Self>,
        cx: &ActionContext<'_>,
        wt: &Path,
        head: &str,
        runs: &[RunRecord],
    ) -> Result<ActionOutcome, StageError> {
        let ActionContext {
            deployer,
            repo,
            item,
            run,
            cancel,
            ..
        } = *cx;
        let default = repo.default_branch().await?;
        let tip = match self.default_tip_now(cx.project, repo).await {
            Ok(tip) => tip,
            Err(reason) => {
                return Ok(ActionOutcome::Decided {
                    measured: Measured::blocked(format!(
                        "{reason} (infrastructure, not the change: fix it, then `orch retry`)"
                    )),
                    lines: Vec::new(),
                });
            }
        };
        let message = format!("Merge {}: {}", item.id, item.title);
        self.crashpoint("during-integrate");
        let candidate = match repo.integrate(wt, &tip, &message).await? {
            Integration::Conflict {
                commit,
                paths,
                excerpts,
            } => {
                return Ok(conflict(
                    run, &default, &tip, head, &commit, &paths, &excerpts,
                ));
            }
            Integration::AlreadyContains { candidate } | Integration::Merged { candidate } => {
                candidate
            }
        };
        let mut lines = vec![format!(
            "candidate {} = {} integrated with {default} at {}",
            short(&candidate),
            branch(&item.id),
            short(&tip)
        )];
        let earlier = earlier_conflicts(runs);
        let unresolved = Repo::unresolved_conflicts(wt, &earlier);
        if !unresolved.is_empty() {
            let reason = format!(
                "conflict markers are still in {}: resolve them on the branch (keep what both sides meant), then commit",
                unresolved.join(", ")
            );
            lines.push(format!("FAILED: {reason}"));
            let mut measured = Measured::refused(GateKind::Action, reason);
            measured.fingerprint =
                fingerprint(run.stage.as_str(), &measured.verdict.reasons(), &candidate);
            measured.facts =
                json!({ HEAD_FACT: candidate, CONFLICTS_FACT: unresolved, TIP_FACT: tip });
            return Ok(ActionOutcome::Decided { measured, lines });
        }
        let change_id = repo.change_id(&tip, &candidate).await?;
        let mut evs = vec![NewEvent::for_run(
            events::INTEGRATED,
            run.id,
            json!({ "tip": tip, "candidate": candidate, "merged": candidate != head, "change_id": change_id }),
        )];
        self.crashpoint("during-deploy");
        let mut span = self.settings.telemetry.child(item, run, "deploy staging");
        let report = deployer
            .deploy_staging(wt, &candidate, self.settings.staging_tolerance, cancel)
            .await;
        span.set("orch.deploy.step", "staging");
        span.set("orch.sha", candidate.as_str());
        span.set("orch.staging.passed", report.verdict.is_success());
        span.set("orch.staging.checks", report.checks.len() as i64);
        if !report.verdict.is_success() {
            span.fail("staging failed");
        }
        span.end();
        for check in &report.checks {
            for m in &check.measurements {
                evs.push(NewEvent::for_run(
                    events::CHECK_MEASURED,
                    run.id,
                    json!({
                        "check": m.check_id, "try": m.try_no, "ok": m.ok, "measured": m.measured,
                        "detail": m.detail, "elapsed_ms": m.elapsed_ms,
                    }),
                ));
            }
        }
        // The build command is the item's code: what its sandbox refused is on the item too.
        evs.extend(events::egress_refused(
            run.id,
            "build",
            &report.build_egress_refused,
        ));
        evs.push(NewEvent::for_run(events::DEPLOY_STAGING, run.id, json!({
            "sha": candidate, "tip": tip, "base_url": report.base_url, "verdict": report.verdict.verdict_line(),
            "waived": report.waived(), "lines": report.lines, "error": report.error,
        })));
        let mut block = None;
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
        lines.push(format!(
            "deploy-staging of {candidate} to {}",
            report.base_url
        ));
        lines.extend(report.error.iter().map(|e| format!("error: {e}")));
        lines.extend(report.lines.iter().cloned());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let digest = report.build.as_ref().map(|b| b.digest.clone());
        Ok(ActionOutcome::Acted(Acted {
            text: report.log_markdown(&now),
            facts: json!({
                CANDIDATE_FACT: candidate, TIP_FACT: tip, CHANGE_FACT: change_id, "digest": digest,
            }),
            lines,
            events: evs,
            block,
            head: candidate,
        }))
    }
}

/// The integration conflicted: FAILED, back to development with the paths and both sides.
fn conflict(
    run: &RunRecord,
    default: &str,
    tip: &str,
    head: &str,
    commit: &str,
    paths: &[String],
    excerpts: &[ConflictExcerpt],
) -> ActionOutcome {
    let mut reasons = vec![format!(
        "integrating {default} at {} into this branch conflicts in {}. orch committed the merge \
         with its conflict markers on the branch: edit those files so that both sides' changes \
         survive, remove every marker line, and commit; nothing was deployed",
        short(tip),
        paths.join(", ")
    )];
    for excerpt in excerpts {
        reasons.push(format!(
            "conflict in {} (ours = this branch, theirs = {default}):\n{}",
            excerpt.path, excerpt.text
        ));
    }
    let lines = vec![
        format!(
            "integrating {default} at {} into {}",
            short(tip),
            short(head)
        ),
        format!("CONFLICT in {}: back to development", paths.join(", ")),
    ];
    let measured = Measured::action_failed(
        &reasons,
        fingerprint(run.stage.as_str(), &reasons, head),
        json!({ HEAD_FACT: commit, CONFLICTS_FACT: paths, TIP_FACT: tip }),
        vec![NewEvent::for_run(
            events::CONFLICT,
            run.id,
            json!({ "tip": tip, "branch_head": head, "commit": commit, "paths": paths }),
        )],
    );
    ActionOutcome::Decided { measured, lines }
}

/// Every path an earlier integration of the item left conflict markers in.
fn earlier_conflicts(runs: &[RunRecord]) -> Vec<String> {
    let mut paths: Vec<String> = runs
        .iter()
        .filter_map(|r| r.verdict.as_ref()?.get(CONFLICTS_FACT)?.as_array().cloned())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    paths.sort();
    paths.dedup();
    paths
}

/// The first 8 characters of a SHA, for people.
pub(crate) fn short(sha: &str) -> &str {
    sha.get(..8).unwrap_or(sha)
}

/// A fact of a run's verdict, as a string.
pub(crate) fn fact<'a>(verdict: Option<&'a Value>, name: &str) -> Option<&'a str> {
    verdict?.get(name)?.as_str()
}
