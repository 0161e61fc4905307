//! What people do to items: file one, approve it, stop it, retry it. Each asks the core for the
//! transition and writes it only if the item is still in the state the decision was made on.

use orch_core::transition::{self, ItemStatus, Outcome};
use orch_core::{ItemId, ProjectId};
use orch_store::{ItemChange, ItemRecord, NewEvent, NewRun, RunState, StoreError};
use serde_json::json;

use crate::{Actor, Engine, EngineError, approval, events, record};

/// A new item as the store receives it.
struct NewItem {
    title: String,
    progress: transition::ItemProgress,
    first_run: NewRun,
    events: Vec<NewEvent>,
}

/// What an approver sees before approving: the staging verdict and the artifact it is bound to.
#[derive(Debug, Clone, PartialEq)]
pub struct ApproveEvidence {
    pub item: ItemId,
    pub title: String,
    pub sha: Option<String>,
    pub digest: Option<String>,
    pub staging: Option<serde_json::Value>,
}

impl Engine {
    /// Files a new work item; it enters the first stage of its project's pipeline.
    pub async fn create_item(
        &self,
        project: &ProjectId,
        title: &str,
        body: &str,
    ) -> Result<ItemRecord, EngineError> {
        let new = self.new_item(project, title, None)?;
        let item = self
            .store
            .create_item(
                project,
                &project.item_prefix(),
                &new.title,
                body,
                &new.progress,
                new.first_run,
                new.events,
            )
            .await?;
        Ok(item)
    }

    /// Files the item a tracker announced under `external_id`, once: announcing it again (a
    /// redelivered webhook, the reconciliation poll) returns the item filed first, with `false`.
    pub async fn create_linked_item(
        &self,
        project: &ProjectId,
        external_id: &str,
        title: &str,
        body: &str,
    ) -> Result<(ItemRecord, bool), EngineError> {
        let new = self.new_item(project, title, Some(external_id))?;
        Ok(self
            .store
            .create_linked_item(
                external_id,
                project,
                &project.item_prefix(),
                &new.title,
                body,
                &new.progress,
                new.first_run,
                new.events,
            )
            .await?)
    }

    /// What a new item of `project` starts with: its first run and its first events.
    fn new_item(
        &self,
        project: &ProjectId,
        title: &str,
        external_id: Option<&str>,
    ) -> Result<NewItem, EngineError> {
        let p = self.project(project)?;
        let title = title.trim();
        if title.is_empty() {
            return Err(EngineError::Refused {
                item: "new item".into(),
                message: "a title is required".into(),
            });
        }
        let decision = transition::start(&p.pipeline);
        let planned = record::plan(&p.pipeline, &decision);
        let Some(first_run) = planned.next_run else {
            return Err(EngineError::Refused {
                item: "new item".into(),
                message: "the pipeline has no first stage".into(),
            });
        };
        let mut created = json!({ "title": title, "project": project.as_str() });
        if let Some(external) = external_id {
            created["external_id"] = json!(external);
        }
        let mut events = vec![NewEvent::new(events::ITEM_CREATED, created)];
        events.extend(planned.events);
        Ok(NewItem {
            title: title.to_owned(),
            progress: decision.progress,
            first_run,
            events,
        })
    }

    async fn item(&self, id: &ItemId) -> Result<ItemRecord, EngineError> {
        self.store
            .get_item(id)
            .await?
            .ok_or_else(|| EngineError::UnknownItem(id.to_string()))
    }

    /// The evidence an approval would be bound to: the passed staging run of the item's current
    /// build, if there is one.
    pub async fn approval_evidence(&self, id: &ItemId) -> Result<ApproveEvidence, EngineError> {
        let item = self.item(id).await?;
        let project = self.project(&item.project)?;
        let runs = self.store.list_runs(id).await?;
        let staging = approval::validated_staging(&project.pipeline, &runs)
            .ok()
            .and_then(|r| r.verdict.clone());
        let field = |k: &str| {
            staging
                .as_ref()
                .and_then(|v| v.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Ok(ApproveEvidence {
            item: item.id.clone(),
            title: item.title.clone(),
            sha: field("sha"),
            digest: field("digest"),
            staging,
        })
    }

    /// [`Engine::approve_as`] by the person `by`: for the operator at the machine (the CLI).
    pub async fn approve(&self, id: &ItemId, by: &str) -> Result<(), EngineError> {
        self.approve_as(id, &Actor::Person(by.trim().to_owned()))
            .await
    }

    /// Approves the item's current approval stage, bound to the SHA and digest its latest passed
    /// staging run validated. Refused for an agent, for automation and unlinked tracker accounts
    /// (see `approval::refuse_approver`), for anyone not on the project's approvers (when it
    /// names some), and when nothing of the current build passed staging.
    pub async fn approve_as(&self, id: &ItemId, actor: &Actor) -> Result<(), EngineError> {
        let item = self.item(id).await?;
        let project = self.project(&item.project)?;
        let refused = |message: String| EngineError::Refused {
            item: id.to_string(),
            message,
        };
        if let Some(why) = approval::refuse_approver(actor, &project.settings.approvers) {
            return Err(refused(why));
        }
        // Another status is refused by the transition below, with the message that fits it.
        if item.progress.status == ItemStatus::AwaitingApproval {
            let runs = self.store.list_runs(id).await?;
            approval::validated_staging(&project.pipeline, &runs).map_err(refused)?;
        }
        let evidence = self.approval_evidence(id).await?;
        let fact = |k: &str| evidence.staging.as_ref().and_then(|v| v.get(k)).cloned();
        let mut data = actor.fields();
        data["stage"] = json!(item.progress.stage.as_str());
        data["sha"] = json!(evidence.sha);
        data["digest"] = json!(evidence.digest);
        data["change_id"] = json!(fact("change_id"));
        data["tip"] = json!(fact("tip"));
        let extra = vec![NewEvent::new(events::APPROVED, data)];
        self.change(
            item,
            Outcome::Approved,
            vec![ItemStatus::AwaitingApproval],
            Some(RunState::Passed),
            extra,
        )
        .await
    }

    /// [`Engine::stop_as`] by the person `by` (the CLI).
    pub async fn stop(&self, id: &ItemId, by: &str) -> Result<(), EngineError> {
        self.stop_as(id, &Actor::Person(by.trim().to_owned())).await
    }

    /// Stops the item (STOP): its running agent is killed and it is cancelled for good.
    pub async fn stop_as(&self, id: &ItemId, actor: &Actor) -> Result<(), EngineError> {
        let item = self.item(id).await?;
        let expected: Vec<ItemStatus> = ItemStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        let mut data = actor.fields();
        data["stage"] = json!(item.progress.stage.as_str());
        let extra = vec![NewEvent::new(events::STOPPED, data)];
        let project = item.project.clone();
        let traced = item.clone();
        self.change(
            item,
            Outcome::Stopped,
            expected,
            Some(RunState::Cancelled),
            extra,
        )
        .await?;
        self.settings.telemetry.item_ended(&traced, "cancelled");
        // Reach a run this process executes at once; others find their lease gone.
        let runs = self.store.list_runs(id).await?;
        if let Ok(running) = self.running.lock() {
            for r in &runs {
                if let Some(token) = running.get(&r.id) {
                    token.cancel();
                }
            }
        }
        if let Ok(p) = self.project(&project)
            && let Ok(repo) = p.repo().await
        {
            let _ = repo.remove_worktree(&p.worktree(id)).await;
        }
        Ok(())
    }

    /// [`Engine::retry_as`] by the person `by` (the CLI).
    pub async fn retry(
        &self,
        id: &ItemId,
        answer: Option<String>,
        by: &str,
    ) -> Result<(), EngineError> {
        self.retry_as(id, answer, &Actor::Person(by.trim().to_owned()))
            .await
    }

    /// Resumes a blocked or needs-info item at its stage, with a person's answer as feedback.
    pub async fn retry_as(
        &self,
        id: &ItemId,
        answer: Option<String>,
        actor: &Actor,
    ) -> Result<(), EngineError> {
        let item = self.item(id).await?;
        let mut data = actor.fields();
        data["answer"] = json!(answer);
        let extra = vec![NewEvent::new(events::RETRIED, data)];
        let expected = vec![ItemStatus::Blocked, ItemStatus::NeedsInfo];
        self.change(item, Outcome::Retried { answer }, expected, None, extra)
            .await
    }

    pub(crate) async fn change(
        &self,
        item: ItemRecord,
        outcome: Outcome,
        expected: Vec<ItemStatus>,
        end_active_run: Option<RunState>,
        mut evs: Vec<NewEvent>,
    ) -> Result<(), EngineError> {
        let project = self.project(&item.project)?;
        let decision =
            transition::decide(&project.pipeline, &item.progress, outcome).map_err(|e| {
                EngineError::Refused {
                    item: item.id.to_string(),
                    message: e.to_string(),
                }
            })?;
        let planned = record::plan(&project.pipeline, &decision);
        evs.extend(planned.events);
        let change = ItemChange {
            expected,
            progress: decision.progress,
            blocked_reason: planned.blocked_reason,
            end_active_run,
            next_run: planned.next_run,
            events: evs,
        };
        match self.store.change_item(&item.id, change).await {
            Ok(()) => Ok(()),
            Err(StoreError::Conflict { actual, .. }) => Err(EngineError::Refused {
                item: item.id.to_string(),
                message: format!(
                    "it changed meanwhile (now {actual}); look again with `orch item show {}`",
                    item.id
                ),
            }),
            Err(e) => Err(e.into()),
        }
    }
}
