//! The promotion queue of a project: the items between staging and prod, in the order people
//! approved them, with what each waits for; and the carry-over of an approval to a re-validated
//! candidate of the same change.

use orch_core::pipeline::{Action, Pipeline, StageKind};
use orch_core::transition::{ItemStatus, Outcome};
use orch_core::{ItemId, ProjectId};
use orch_store::{ItemRecord, NewEvent, RunRecord, RunState};
use serde_json::json;

use crate::execute::REVALIDATE_CLASS;
use crate::{Engine, EngineError, approval, events};

/// One item of a project's promotion queue.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueueEntry {
    /// 1 is promoted next.
    pub position: usize,
    pub item: ItemId,
    pub title: String,
    pub stage: String,
    pub status: String,
    /// When a person approved the change (UTC ms), which orders the queue.
    pub approved_at: Option<i64>,
    pub approved_by: Option<String>,
    /// What the item waits for, in words.
    pub waiting_for: String,
}

/// Whether `stage` lies between staging and prod: deploy-staging, an approval, deploy.
fn in_delivery(pipeline: &Pipeline, stage: &orch_core::StageName) -> bool {
    pipeline.stage(stage).is_some_and(|s| {
        matches!(
            s.kind,
            StageKind::Approval
                | StageKind::Action {
                    action: Action::DeployStaging | Action::Deploy
                }
        )
    })
}

impl Engine {
    /// The promotion queue of `project`, first to be promoted first.
    pub async fn promotion_queue(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<QueueEntry>, EngineError> {
        let p = self.project(project)?;
        let mut entries = Vec::new();
        for item in self.store.list_items(Some(project)).await? {
            if item.progress.status.is_terminal() || !in_delivery(&p.pipeline, &item.progress.stage)
            {
                continue;
            }
            let history = self.store.list_events(&item.id, 0).await?;
            // The first approval of the change orders the queue: a re-validation keeps its place.
            let first = history.iter().find(|e| e.kind == events::APPROVED);
            let approved_at = first.map(|e| {
                e.data
                    .get(approval::GIVEN_AT)
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(e.at)
            });
            let approved_by = first
                .and_then(|e| e.data.get("by"))
                .and_then(|b| b.as_str())
                .map(str::to_owned);
            let runs = self.store.list_runs(&item.id).await?;
            let waiting_for = waiting_for(&p.pipeline, &item, &runs);
            entries.push(QueueEntry {
                position: 0,
                item: item.id.clone(),
                title: item.title.clone(),
                stage: item.progress.stage.to_string(),
                status: item.progress.status.as_str().to_owned(),
                approved_at,
                approved_by,
                waiting_for,
            });
        }
        entries.sort_by_key(|e| (e.approved_at.is_none(), e.approved_at, e.item.to_string()));
        for (i, entry) in entries.iter_mut().enumerate() {
            entry.position = i + 1;
        }
        Ok(entries)
    }

    /// Approves, in the approver's name, every item waiting at an approval stage whose change
    /// was approved before and only re-integrated since (see [`approval::carried_approval`]).
    /// Returns how many were carried over.
    pub(crate) async fn carry_approvals(&self) -> Result<u32, EngineError> {
        let mut carried = 0;
        for item in self
            .store
            .list_items_with_status(ItemStatus::AwaitingApproval)
            .await?
        {
            let Ok(project) = self.project(&item.project) else {
                continue;
            };
            let runs = self.store.list_runs(&item.id).await?;
            let Some(staging) = approval::validated_staging(&project.pipeline, &runs)
                .ok()
                .and_then(|r| r.verdict.clone())
            else {
                continue;
            };
            let history = self.store.list_events(&item.id, 0).await?;
            let Some(earlier) = approval::carried_approval(
                &history,
                &staging,
                project.settings.reapprove_on_reintegration,
            ) else {
                continue;
            };
            let given_at = earlier
                .data
                .get(approval::GIVEN_AT)
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(earlier.at);
            let event = NewEvent::new(
                events::APPROVED,
                json!({
                    "by": earlier.data.get("by"), "by_kind": earlier.data.get("by_kind"),
                    "stage": item.progress.stage.as_str(),
                    "sha": staging.get("sha"), "digest": staging.get("digest"),
                    "change_id": staging.get("change_id"), "tip": staging.get("tip"),
                    "carried_from": earlier.data.get("sha"), approval::GIVEN_AT: given_at,
                }),
            );
            let id = item.id.clone();
            match self
                .change(
                    item,
                    Outcome::Approved,
                    vec![ItemStatus::AwaitingApproval],
                    Some(RunState::Passed),
                    vec![event],
                )
                .await
            {
                Ok(()) => {
                    carried += 1;
                    self.report(
                        id.as_str(),
                        "confirm-deploy",
                        0,
                        "approval carried over: same change, integrated anew and validated again",
                    );
                }
                // Someone else acted first (a person, another worker): nothing to carry.
                Err(EngineError::Refused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(carried)
    }
}

/// What an item in the delivery stages waits for.
fn waiting_for(pipeline: &Pipeline, item: &ItemRecord, runs: &[RunRecord]) -> String {
    if item.progress.status == ItemStatus::Blocked {
        return format!(
            "blocked: {}",
            item.blocked_reason.as_deref().unwrap_or("see its events")
        );
    }
    let stage = pipeline.stage(&item.progress.stage);
    let revalidating = runs
        .iter()
        .rev()
        .find(|r| r.state != RunState::Queued && r.state != RunState::Running)
        .and_then(|r| {
            let v = r.verdict.as_ref()?;
            (v.get("class")?.as_str()? == REVALIDATE_CLASS)
                .then(|| v.get("revalidate_reason")?.as_str().map(str::to_owned))
                .flatten()
        });
    match stage.map(|s| &s.kind) {
        Some(StageKind::Approval) => "a person's approval".to_owned(),
        Some(StageKind::Action {
            action: Action::DeployStaging,
        }) => match revalidating {
            Some(reason) => format!("re-validation on staging: {reason}"),
            None => "validation on staging".to_owned(),
        },
        Some(StageKind::Action {
            action: Action::Deploy,
        }) if item.progress.status == ItemStatus::Running => {
            "promotion to prod (running)".to_owned()
        }
        Some(StageKind::Action {
            action: Action::Deploy,
        }) => "its turn to be promoted".to_owned(),
        _ => item.progress.status.as_str().to_owned(),
    }
}
