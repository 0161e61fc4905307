//! The engine and a project's tracker and forge, both ways.
//!
//! Inbound: a tracker state a person set becomes a command. The project's ready state files the
//! item (once per tracker id), `STOP` stops it, `Approved` approves it, anything else is left
//! alone. Webhooks call [`Engine::apply_tracker_state`] for one item; the reconciliation poll
//! ([`Engine::reconcile_trackers`]) lists those states and applies the same mapping, so a missed
//! webhook is caught.
//!
//! Before acting on `STOP` or `Approved`, the tracker itself is asked: a delivery's word about
//! the state is read back (`get_item`; a state that no longer holds is stale and changes
//! nothing), and who moved the item there is read from the tracker's history of the item
//! (`Tracker::state_setter`) by the tracker's user id. That account is a person when one is
//! linked to it (`orch user add NAME --tracker-id kind:id`), else only an account
//! ([`Actor::TrackerAccount`]): a display name, which its owner can edit, names nobody.
//!
//! Outbound: [`Engine::follow_remotes`] reads each item's new events from its cursor in the
//! store and reflects them: the tracker state follows the stage, verdicts become comments, a pull
//! request is opened when development passes, and every later verdict is a commit status on the
//! commit its run recorded (the stage itself pushed the branch before its result was recorded). The cursor moves only past an event that was reflected (or failed for
//! good), so a restart neither repeats nor loses; a tracker or forge that cannot be reached
//! leaves the cursor where it is and the item shows `remote.unreachable`.

use orch_core::ItemId;
use orch_core::ProjectId;
use orch_core::transition::ItemStatus;
use orch_integrations::{CommitState, CommitStatus, IntegrationError, RemoteItem, TrackerUser};
use orch_store::{EventRecord, ItemRecord, NewEvent};
use serde_json::{Value, json};

use crate::project::{Project, branch};
use crate::{Actor, Engine, EngineError, events, handoff};

/// The state that stops an item, and the one that approves it (canonical names).
pub const STOP_STATE: &str = "STOP";
pub const APPROVED_STATE: &str = "Approved";
/// The stage whose pass opens the pull request.
const DEVELOPMENT: &str = "development";

/// What a tracker state did to orch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackerAction {
    Created(ItemId),
    /// The item was filed before: nothing to do.
    AlreadyFiled(ItemId),
    Stopped(ItemId),
    Approved(ItemId),
    /// Nothing to do, and why.
    Ignored(String),
    /// The delivery said the item is in a state the tracker, asked, says it is not in: stale,
    /// replayed or forged. Nothing was done.
    Stale(String),
    /// The tracker could not be asked to confirm the state or who set it: nothing was done on
    /// the delivery's word; the reconciliation poll tries again.
    Unconfirmed(String),
}

/// Where the state handed to [`Engine::apply_tracker_state`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSource {
    /// A webhook delivery: its word only, so the state is read back from the tracker first.
    Delivery,
    /// The tracker's own listing, just read (the reconciliation poll).
    Tracker,
}

/// What one pass of [`Engine::follow_remotes`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowSummary {
    pub reflected: u32,
    /// Items whose tracker or forge could not be reached; they keep their place.
    pub unreachable: u32,
}

impl Engine {
    /// The project whose tracker is of `kind` and named `key` in webhooks.
    pub fn project_for_tracker(&self, kind: &str, key: &str) -> Option<&std::sync::Arc<Project>> {
        self.projects().find(|p| {
            p.settings
                .remotes
                .tracker
                .as_ref()
                .is_some_and(|t| t.tracker.kind() == kind && t.key == key)
        })
    }

    /// Acts on `item` being in its tracker state (see the module doc). For `STOP` and
    /// `Approved` the state is read back when it came from a delivery, and the actor is who the
    /// tracker's history says moved the item there.
    pub async fn apply_tracker_state(
        &self,
        project: &ProjectId,
        item: &RemoteItem,
        source: StateSource,
    ) -> Result<TrackerAction, EngineError> {
        let p = self.project(project)?;
        let Some(link) = &p.settings.remotes.tracker else {
            return Ok(TrackerAction::Ignored(format!(
                "project `{project}` has no tracker"
            )));
        };
        let kind = link.tracker.kind();
        let external = format!("{kind}:{}", item.id);
        let Some(state) = item.state.as_deref() else {
            return Ok(TrackerAction::Ignored("not in a state orch knows".into()));
        };
        if state == link.ready_state {
            let (created, new) = self
                .create_linked_item(project, &external, &item.title, &item.body)
                .await?;
            return Ok(if new {
                TrackerAction::Created(created.id)
            } else {
                TrackerAction::AlreadyFiled(created.id)
            });
        }
        if state != STOP_STATE && state != APPROVED_STATE {
            return Ok(TrackerAction::Ignored(format!(
                "orch does not act on state `{state}`"
            )));
        }
        let Some(id) = self.store.find_linked_item(project, &external).await? else {
            return Ok(TrackerAction::Ignored(format!(
                "{} is not an orch item",
                item.key
            )));
        };
        let Some(current) = self.store.get_item(&id).await? else {
            return Ok(TrackerAction::Ignored(format!("{id} is gone")));
        };
        if state == STOP_STATE && current.progress.status.is_terminal() {
            return Ok(TrackerAction::Ignored(format!("{id} is already finished")));
        }
        if state == APPROVED_STATE && current.progress.status != ItemStatus::AwaitingApproval {
            return Ok(TrackerAction::Ignored(format!(
                "{id} is not waiting for approval"
            )));
        }
        if source == StateSource::Delivery {
            let fresh = match link.tracker.get_item(&item.id).await {
                Ok(fresh) => fresh,
                Err(e) => return Ok(unconfirmed(&item.key, &e)),
            };
            if fresh.state.as_deref() != Some(state) {
                return Ok(TrackerAction::Stale(format!(
                    "the delivery says {} is {state}, the tracker says {}",
                    item.key,
                    fresh.state.as_deref().unwrap_or("another state")
                )));
            }
        }
        let setter = match link.tracker.state_setter(&item.id, state).await {
            Ok(setter) => setter,
            Err(e) => return Ok(unconfirmed(&item.key, &e)),
        };
        let actor = match setter {
            Some(user) => self.actor_of(kind, user, state == APPROVED_STATE).await?,
            None if state == STOP_STATE => Ok(Actor::TrackerAccount {
                account: format!("{kind}:unknown"),
                login: String::new(),
            }),
            None => Err(format!(
                "the tracker's history of {} shows nobody moving it to {state}",
                item.key
            )),
        };
        let actor = match actor {
            Ok(actor) => actor,
            Err(why) => {
                return Err(EngineError::Refused {
                    item: id.to_string(),
                    message: why,
                });
            }
        };
        if state == STOP_STATE {
            self.stop_as(&id, &actor).await?;
            return Ok(TrackerAction::Stopped(id));
        }
        self.approve_as(&id, &actor).await?;
        Ok(TrackerAction::Approved(id))
    }

    /// Who the tracker account `user` of a `kind` tracker is: the person linked to it, else
    /// only the account. A revoked person approves nothing (`approving`); their stop still
    /// counts, as their account's.
    async fn actor_of(
        &self,
        kind: &str,
        user: TrackerUser,
        approving: bool,
    ) -> Result<Result<Actor, String>, EngineError> {
        let account = format!("{kind}:{}", user.id);
        Ok(
            match self.store.person_by_tracker_account(&account).await? {
                Some(person) if person.is_active() => Ok(Actor::Person(person.name)),
                Some(person) if approving => Err(format!(
                    "the tracker account {account} is {}, whose access was revoked",
                    person.name
                )),
                _ => Ok(Actor::TrackerAccount {
                    account,
                    login: user.login,
                }),
            },
        )
    }

    /// One reconciliation pass: for every project with a tracker, the items in the ready,
    /// STOP and Approved states get the same treatment as a webhook would give them. A tracker
    /// that cannot be reached is skipped (and reported) until the next pass.
    pub async fn reconcile_trackers(&self) -> Vec<(ProjectId, TrackerAction)> {
        let mut done = Vec::new();
        for p in self.projects() {
            let Some(link) = &p.settings.remotes.tracker else {
                continue;
            };
            for state in [link.ready_state.as_str(), STOP_STATE, APPROVED_STATE] {
                let items = match link.tracker.list_items(state).await {
                    Ok(items) => items,
                    Err(e) => {
                        tracing::warn!("{}: reconciling `{state}`: {e}", p.id());
                        continue;
                    }
                };
                for item in items {
                    match self
                        .apply_tracker_state(p.id(), &item, StateSource::Tracker)
                        .await
                    {
                        Ok(action) => done.push((p.id().clone(), action)),
                        Err(e) => tracing::warn!("{}: {}: {e}", p.id(), item.key),
                    }
                }
            }
        }
        done
    }

    /// One pass of the event follower over every item of a project with a tracker or a forge.
    pub async fn follow_remotes(&self) -> Result<FollowSummary, EngineError> {
        let mut summary = FollowSummary::default();
        for item in self.store.list_items(None).await? {
            let Ok(project) = self.project(&item.project) else {
                continue;
            };
            if project.settings.remotes.is_empty() {
                continue;
            }
            let cursor = cursor_name(&item.id);
            let from = self.store.cursor(&cursor).await?;
            let new = self.store.list_events(&item.id, from).await?;
            let already_reported = new
                .last()
                .is_some_and(|e| e.kind == events::REMOTE_UNREACHABLE);
            for event in &new {
                match self.reflect(project, &item, event).await {
                    Ok(()) => {}
                    Err(e) if e.is_transient() => {
                        summary.unreachable += 1;
                        if !already_reported {
                            self.store
                                .append_events(
                                    &item.id,
                                    vec![NewEvent::new(
                                        events::REMOTE_UNREACHABLE,
                                        json!({ "error": e.to_string(), "at_event": event.seq }),
                                    )],
                                )
                                .await?;
                            self.report(
                                item.id.as_str(),
                                "tracker",
                                0,
                                format!("tracker unreachable: {e}"),
                            );
                        }
                        break;
                    }
                    Err(e) => {
                        // Retrying cannot help (a token without a scope, a deleted issue): say
                        // so on the item and move on rather than stall its history for good.
                        self.store
                            .append_events(
                                &item.id,
                                vec![NewEvent::new(
                                    events::REMOTE_FAILED,
                                    json!({ "error": e.to_string(), "at_event": event.seq }),
                                )],
                            )
                            .await?;
                    }
                }
                self.store.set_cursor(&cursor, event.seq).await?;
                summary.reflected += 1;
            }
        }
        Ok(summary)
    }

    /// Tells the tracker and the forge what one event means for them.
    async fn reflect(
        &self,
        project: &Project,
        item: &ItemRecord,
        event: &EventRecord,
    ) -> Result<(), IntegrationError> {
        let remotes = &project.settings.remotes;
        let tracked = match &remotes.tracker {
            Some(link) => self
                .store
                .external_id(&item.id)
                .await
                .map_err(|e| IntegrationError::Config(format!("store: {e}")))?
                .and_then(|ext| {
                    ext.strip_prefix(&format!("{}:", link.tracker.kind()))
                        .map(str::to_owned)
                })
                .map(|id| (link, id)),
            None => None,
        };
        let field = |k: &str| {
            event
                .data
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let state = match event.kind.as_str() {
            events::STAGE_ENTERED => {
                orch_core::states::state_for_stage(field("stage")).map(|s| s.name)
            }
            events::BLOCKED => Some("Blocked"),
            events::NEEDS_INFO => Some("Needs Info"),
            events::STOPPED => Some(STOP_STATE),
            events::DONE => Some("Done"),
            _ => None,
        };
        let comment = match event.kind.as_str() {
            events::STAGE_PASSED | events::STAGE_FAILED => {
                let verdict = match event.run_id {
                    Some(run) => self
                        .store
                        .get_run(run)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|r| r.verdict),
                    None => None,
                };
                Some(verdict_comment(item, event, verdict.as_ref()))
            }
            events::BLOCKED => Some(format!("orch: {} is blocked: {}", item.id, field("reason"))),
            events::NEEDS_INFO => Some(format!(
                "orch: {} needs information to go on (stage {}); answer with `orch retry`",
                item.id,
                field("stage")
            )),
            events::APPROVED => Some(format!(
                "orch: deploy of {} approved by {}",
                item.id,
                field("by")
            )),
            events::MERGED => Some(format!("orch: {} merged ({})", item.id, field("outcome"))),
            _ => None,
        };
        if let Some((link, id)) = &tracked {
            if let Some(state) = state {
                link.tracker.set_state(id, state).await?;
            }
            if let Some(comment) = &comment {
                link.tracker.add_comment(id, comment).await?;
            }
        }
        if let Some(forge) = &remotes.forge
            && event.kind == events::STOPPED
            && self
                .store
                .cursor(&pr_cursor_name(&item.id))
                .await
                .unwrap_or(0)
                > 0
        {
            // A stopped item never merges: its pull request should not wait for a review.
            forge.forge.close_pull_request(&branch(&item.id)).await?;
        }
        if let Some(forge) = &remotes.forge
            && matches!(
                event.kind.as_str(),
                events::STAGE_PASSED | events::STAGE_FAILED
            )
        {
            let stage = field("stage");
            let opened = self
                .store
                .cursor(&pr_cursor_name(&item.id))
                .await
                .unwrap_or(0)
                > 0;
            let passed = event.kind == events::STAGE_PASSED;
            if !(opened || (passed && stage == DEVELOPMENT)) {
                return Ok(());
            }
            let branch = branch(&item.id);
            let runs = self
                .store
                .list_runs(&item.id)
                .await
                .map_err(|e| IntegrationError::Config(format!("store: {e}")))?;
            // The stage pushed the branch itself before its result was recorded (`handoff`),
            // maybe from another machine: mark the commit it recorded, push nothing from here.
            let recorded = event
                .run_id
                .and_then(|id| runs.iter().find(|r| r.id == id))
                .and_then(handoff::run_head)
                .map(str::to_owned)
                .or_else(|| handoff::recorded_head(&runs));
            let sha = match recorded {
                Some(sha) => sha,
                // Runs recorded before stages pushed: push from here, as was done then.
                None => {
                    let repo = project.repo().await?;
                    // The branch may be gone (an item merged and cleaned up): nothing to mark.
                    let Some(sha) = repo.rev_parse(&branch).await? else {
                        return Ok(());
                    };
                    forge.forge.push_branch(repo, &branch).await?;
                    sha
                }
            };
            if !opened {
                let pr = forge
                    .forge
                    .open_pull_request(&branch, &format!("{}: {}", item.id, item.title), &item.body)
                    .await?;
                let number = i64::try_from(pr.number).unwrap_or(i64::MAX);
                self.store
                    .set_cursor(&pr_cursor_name(&item.id), number)
                    .await
                    .map_err(|e| IntegrationError::Config(format!("store: {e}")))?;
            }
            let status = CommitStatus {
                state: if passed {
                    CommitState::Success
                } else {
                    CommitState::Failure
                },
                context: format!("orch/{stage}"),
                description: format!(
                    "{stage} attempt {}: {}",
                    event
                        .data
                        .get("attempt")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                    if passed { "PASS" } else { "FAILED" }
                ),
            };
            forge.forge.set_commit_status(&sha, &status).await?;
        }
        Ok(())
    }
}

/// A tracker that could not be asked: nothing is done on the delivery's word alone.
fn unconfirmed(key: &str, e: &IntegrationError) -> TrackerAction {
    TrackerAction::Unconfirmed(format!("could not read {key} back from the tracker: {e}"))
}

/// The store cursor of an item's event follower.
fn cursor_name(item: &ItemId) -> String {
    format!("follow:{item}")
}

/// Where the number of an item's pull request is kept (0: none opened yet).
pub(crate) fn pr_cursor_name(item: &ItemId) -> String {
    format!("pull-request:{item}")
}

/// `orch: WEB-1 review attempt 2: FAILED (fail): reasons`, from a stage's passed or failed event
/// and its run's verdict.
fn verdict_comment(item: &ItemRecord, event: &EventRecord, verdict: Option<&Value>) -> String {
    let text = |k: &str| {
        event
            .data
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let attempt = event
        .data
        .get("attempt")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let outcome = if event.kind == events::STAGE_PASSED {
        "PASS".to_owned()
    } else {
        format!("FAILED ({})", text("class"))
    };
    let reasons: Vec<&str> = verdict
        .and_then(|v| v.get("reasons"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let head = format!(
        "orch: {} {} attempt {attempt}: {outcome}",
        item.id,
        text("stage")
    );
    if reasons.is_empty() {
        head
    } else {
        format!("{head}: {}", reasons.join("; "))
    }
}
