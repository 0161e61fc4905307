//! The end of the pipeline: merge the item's branch into the default branch (idempotent, so a
//! crash in the middle is finished by the next pass), record done, remove the worktree.

use orch_core::transition::{self, ItemStatus, Outcome};
use orch_store::{ItemChange, ItemRecord, NewEvent, StoreError};
use serde_json::json;

use crate::project::{Project, branch};
use crate::{Engine, EngineError, events};

impl Engine {
    /// Merges every item waiting in `merging`; returns how many were finished. Each finished
    /// item's work tree is removed by a task in `tasks`, beside the claim loop.
    pub(crate) async fn finish_merges(
        &self,
        tasks: &mut tokio::task::JoinSet<Result<(), EngineError>>,
    ) -> Result<u32, EngineError> {
        let mut done = 0;
        for item in self
            .store
            .list_items_with_status(ItemStatus::Merging)
            .await?
        {
            let Ok(project) = self.project(&item.project) else {
                continue;
            };
            let _merging = crate::locks::project_lock(
                &project.settings.data_dir,
                crate::locks::LockKind::Merge,
                item.project.as_str(),
            )
            .await?;
            let repo = project.repo().await?;
            let message = format!("Merge {}: {}", item.id, item.title);
            let merged = match self.merge_item(project, repo, &item, &message).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    // A conflict or a dirty checkout needs a person; the item keeps its place.
                    tracing::warn!("{}: merge failed: {e}", item.id);
                    self.report(item.id.as_str(), "merge", 1, format!("merge failed: {e}"));
                    continue;
                }
            };
            self.crashpoint("after-merge");
            let decision = transition::decide(&project.pipeline, &item.progress, Outcome::Merged)
                .map_err(|e| EngineError::Refused {
                item: item.id.to_string(),
                message: e.to_string(),
            })?;
            let change = ItemChange {
                expected: vec![ItemStatus::Merging],
                progress: decision.progress,
                blocked_reason: None,
                end_active_run: None,
                next_run: None,
                events: vec![
                    NewEvent::new(
                        events::MERGED,
                        json!({ "branch": branch(&item.id), "outcome": merged }),
                    ),
                    NewEvent::new(events::DONE, json!({})),
                ],
            };
            match self.store.change_item(&item.id, change).await {
                Ok(()) => {}
                // Another engine finished it first.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            self.settings.telemetry.item_ended(&item, "done");
            // The finished item's work tree goes away beside the claim loop, not in it: deleting
            // its files takes a while, and a ready item must not wait for that. It is one of the
            // loop's tasks, so `run_until_idle` still returns only once it is gone.
            let (repo, worktree) = (repo.clone(), project.worktree(&item.id));
            tasks.spawn(async move {
                let _ = repo.remove_worktree(&worktree).await;
                Ok(())
            });
            self.report(item.id.as_str(), "merge", 1, "merged; done");
            done += 1;
        }
        Ok(done)
    }

    /// Merges the item's branch: through the project's forge (check that the forge's branch is at
    /// the head the last stage recorded, find or open the pull request, merge it) when it has one, else locally into the default branch. Returns what
    /// happened, for the `item.merged` event.
    async fn merge_item(
        &self,
        project: &Project,
        repo: &orch_git::Repo,
        item: &ItemRecord,
        message: &str,
    ) -> Result<String, String> {
        let branch = branch(&item.id);
        let Some(link) = &project.settings.remotes.forge else {
            return repo
                .merge_into_default(&branch, message)
                .await
                .map(|outcome| format!("{outcome:?}"))
                .map_err(|e| e.to_string());
        };
        let forge = &link.forge;
        let runs = self
            .store
            .list_runs(&item.id)
            .await
            .map_err(|e| e.to_string())?;
        match crate::handoff::recorded_head(&runs) {
            // Every stage pushed the branch before it passed, maybe from another machine whose
            // branch this repository does not have: pushing ours could move it back. Merge only
            // what the last stage left.
            Some(head) => {
                let at = forge
                    .fetch_branch(repo, &branch)
                    .await
                    .map_err(|e| e.to_string())?;
                if at != head {
                    return Err(format!(
                        "the forge's `{branch}` is at {at}, but the item's last stage left it at                          {head}; orch merges only what its stages passed"
                    ));
                }
            }
            // Runs recorded before stages pushed: the branch goes up from here, as it did then.
            None => forge
                .push_branch(repo, &branch)
                .await
                .map_err(|e| e.to_string())?,
        }
        // The pull request a promotion already merged, or the one to merge now.
        let number = self.pull_request_of(project, item).await?;
        forge
            .merge_pull_request(
                number,
                &match crate::handoff::recorded_head(&runs) {
                    Some(head) => head,
                    None => repo
                        .rev_parse(&format!("refs/heads/{branch}"))
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("no local branch `{branch}`"))?,
                },
                link.merge_style,
                message,
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{} pull request #{} merged ({})",
            forge.kind(),
            number,
            link.merge_style.as_str()
        ))
    }
}
