//! People's reviews on the item's pull request have a say.
//!
//! At the deploy, before anything is promoted: a reviewer whose latest decisive review requests
//! changes sends the item back to development with that review's text and its comments (file,
//! line, words) in the prompt, once per review; after the developer's new commits, the deploy
//! waits for that reviewer to review again (bounded, then blocked). With `comments = true`, a
//! plain comment review with comments on the diff also sends the item back, once.
//!
//! Only people orch knows have a say: a review counts when its author is an active orch person
//! linked to that forge account (`orch user add NAME --tracker-id <forge>:<user id>`). Anyone
//! else's review (on a public repository, anyone at all) is listed on the item as not counted and
//! changes nothing: its words never reach a prompt, and nobody waits for it.
//!
//! An approving review can stand in for `orch approve` ([`Engine::approve_by_reviews`]): only by
//! an active orch person listed in `approvers`, linked to that forge account
//! (`orch user add NAME --tracker-id <forge>:<user id>`), and only on the very candidate staging
//! validated, as orch's own approvals bind to the build.

use std::time::Duration;

use orch_core::transition::ItemStatus;
use orch_integrations::{Review, ReviewState};
use orch_store::{EventRecord, ItemRecord, NewEvent, RunRecord};
use serde_json::json;

use crate::action_stage::ActionOutcome;
use crate::execute::{Measured, StageError, fingerprint};
use crate::external_checks::{CheckPolicy, ChecksGate};
use crate::integration::{CANDIDATE_FACT, fact};
use crate::project::Project;
use crate::{Actor, Engine, EngineError, approval, events};

/// `[projects.forge.reviews]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewPolicy {
    /// orch people whose approving review on the candidate approves the item.
    pub approvers: Vec<String>,
    /// A comment review with comments on the diff sends the item back too.
    pub comments: bool,
    /// How long the deploy waits for reviewers who requested changes to look at the new change
    /// before it blocks, and how often it asks.
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for ReviewPolicy {
    fn default() -> Self {
        Self {
            approvers: Vec::new(),
            comments: false,
            timeout: CheckPolicy::DEFAULT_TIMEOUT,
            poll: CheckPolicy::DEFAULT_POLL,
        }
    }
}

impl Engine {
    /// The reviews' say at the deploy (see the module doc).
    pub(crate) async fn reviews_gate(
        &self,
        project: &Project,
        item: &ItemRecord,
        run: &RunRecord,
        history: &[EventRecord],
        sha: &str,
    ) -> Result<ChecksGate, StageError> {
        let Some(link) = &project.settings.remotes.forge else {
            return Ok(ChecksGate::Proceed(Vec::new()));
        };
        let blocked = |why: String| {
            Ok(ChecksGate::Stop(Box::new(ActionOutcome::Decided {
                measured: Measured::blocked(format!(
                    "{why} (prod was not touched; fix it, then `orch retry`)"
                )),
                lines: Vec::new(),
            })))
        };
        let number = match self.pull_request_of(project, item).await {
            Ok(number) => number,
            Err(e) => return blocked(format!("the pull request: {e}")),
        };
        let reviews = match link.forge.reviews(number).await {
            Ok(reviews) => reviews,
            Err(e) => {
                return blocked(format!(
                    "the reviews of pull request #{number} could not be read: {e}"
                ));
            }
        };
        let known = self.known_reviewers(link.forge.kind(), &reviews).await?;
        // What the reviews say, on the item whenever it changed (shown by `orch item show` and
        // the dashboard).
        let read = json!({
            "pull": number,
            "reviews": reviews.iter().map(|r| json!({
                "id": r.id, "by": r.login, "state": state_word(r.state), "commit": r.commit_id,
                "comments": r.comments.len(), "counted": known.contains(&r.user_id),
            })).collect::<Vec<_>>(),
        });
        let last = history
            .iter()
            .rev()
            .find(|e| e.kind == events::REVIEWS_READ)
            .map(|e| &e.data);
        if !reviews.is_empty() && last != Some(&read) {
            self.store
                .append_events(
                    &item.id,
                    vec![NewEvent::for_run(events::REVIEWS_READ, run.id, read)],
                )
                .await?;
        }
        // Only the reviews of people orch knows have a say (see the module doc).
        let reviews: Vec<Review> = reviews
            .into_iter()
            .filter(|r| known.contains(&r.user_id))
            .collect();
        let handled: Vec<u64> = history
            .iter()
            .filter(|e| e.kind == events::REVIEW_RETURNED)
            .filter_map(|e| e.data["review"].as_u64())
            .collect();
        let policy = link.reviews.clone().unwrap_or_default();
        let (new, standing) = objections(&reviews, &handled, policy.comments);
        if !new.is_empty() {
            let reasons: Vec<String> = new.iter().map(|r| feedback(r)).collect();
            let ids: Vec<String> = new.iter().map(|r| r.id.to_string()).collect();
            let returned = new
                .iter()
                .map(|r| {
                    NewEvent::for_run(
                        events::REVIEW_RETURNED,
                        run.id,
                        json!({ "review": r.id, "by": r.login, "pull": number,
                                "state": state_word(r.state), "commit": r.commit_id }),
                    )
                })
                .collect();
            let measured = Measured::action_failed(
                &reasons,
                fingerprint(run.stage.as_str(), &ids, "reviews"),
                json!({ crate::handoff::HEAD_FACT: sha }),
                returned,
            );
            let lines = reasons.iter().map(|r| format!("FAILED: {r}")).collect();
            return Ok(ChecksGate::Stop(Box::new(ActionOutcome::Decided {
                measured,
                lines,
            })));
        }
        if standing.is_empty() {
            return Ok(ChecksGate::Proceed(Vec::new()));
        }
        // Sent back once already for these: the reviewers look at the new change first.
        let who: Vec<&str> = standing.iter().map(|r| r.login.as_str()).collect();
        let (timeout, poll) = (policy.timeout, policy.poll);
        let since = history
            .iter()
            .find(|e| e.kind == events::REVIEW_AWAITED && e.run_id == Some(run.id))
            .map(|e| e.at);
        let now = chrono::Utc::now().timestamp_millis();
        match since {
            None => {
                self.store
                    .append_events(
                        &item.id,
                        vec![NewEvent::for_run(
                            events::REVIEW_AWAITED,
                            run.id,
                            json!({ "pull": number, "reviewers": who }),
                        )],
                    )
                    .await?;
            }
            Some(at) if Duration::from_millis(u64::try_from(now - at).unwrap_or(0)) >= timeout => {
                return blocked(format!(
                    "{} requested changes on pull request #{number} and has not reviewed the new \
                     change after {}s",
                    who.join(", "),
                    timeout.as_secs()
                ));
            }
            Some(_) => {}
        }
        Err(StageError::Waiting {
            reason: format!(
                "{} requested changes on pull request #{number}; waiting for a new review",
                who.join(", ")
            ),
            pause: poll,
        })
    }

    /// One pass over the items waiting for approval in projects whose `[projects.forge.reviews]`
    /// names approvers: an approving review by one of them, on the validated candidate, approves
    /// the item as that person. Returns the items approved.
    pub async fn approve_by_reviews(&self) -> Vec<orch_core::ItemId> {
        let mut approved = Vec::new();
        let Ok(waiting) = self
            .store
            .list_items_with_status(ItemStatus::AwaitingApproval)
            .await
        else {
            return approved;
        };
        for item in waiting {
            match self.approval_by_review(&item).await {
                Ok(Some(actor)) => match self.approve_as(&item.id, &actor).await {
                    Ok(()) => approved.push(item.id.clone()),
                    Err(e) => tracing::warn!("{}: approving by review: {e}", item.id),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!("{}: reading reviews: {e}", item.id),
            }
        }
        approved
    }

    /// The forge accounts among the reviews' authors that are active orch people.
    async fn known_reviewers(
        &self,
        forge: &str,
        reviews: &[Review],
    ) -> Result<Vec<u64>, orch_store::StoreError> {
        let mut known = Vec::new();
        let mut asked = Vec::new();
        for review in reviews {
            if asked.contains(&review.user_id) {
                continue;
            }
            asked.push(review.user_id);
            let account = format!("{forge}:{}", review.user_id);
            if let Some(person) = self.store.person_by_tracker_account(&account).await?
                && person.is_active()
            {
                known.push(review.user_id);
            }
        }
        Ok(known)
    }

    async fn approval_by_review(&self, item: &ItemRecord) -> Result<Option<Actor>, EngineError> {
        let Ok(project) = self.project(&item.project) else {
            return Ok(None);
        };
        let Some(link) = &project.settings.remotes.forge else {
            return Ok(None);
        };
        let Some(policy) = link.reviews.as_ref().filter(|p| !p.approvers.is_empty()) else {
            return Ok(None);
        };
        let runs = self.store.list_runs(&item.id).await?;
        let Ok(staging) = approval::validated_staging(&project.pipeline, &runs) else {
            return Ok(None);
        };
        let Some(candidate) = fact(staging.verdict.as_ref(), CANDIDATE_FACT) else {
            return Ok(None);
        };
        // The item's pull request (the event follower opened it; found or opened here if not).
        let number = self
            .pull_request_of(project, item)
            .await
            .map_err(|message| EngineError::Refused {
                item: item.id.to_string(),
                message,
            })?;
        let reviews = link
            .forge
            .reviews(number)
            .await
            .map_err(|e| EngineError::Refused {
                item: item.id.to_string(),
                message: e.to_string(),
            })?;
        for review in reviews.iter().rev() {
            if review.state != ReviewState::Approved || review.commit_id != candidate {
                continue;
            }
            let account = format!("{}:{}", link.forge.kind(), review.user_id);
            let Some(person) = self.store.person_by_tracker_account(&account).await? else {
                continue;
            };
            if person.is_active() && policy.approvers.contains(&person.name) {
                return Ok(Some(Actor::Person(person.name)));
            }
        }
        Ok(None)
    }
}

/// The reviews of the item's pull request as the deploy last read them (`reviews.read`), for
/// people: `orch item show` and the dashboard show the same rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewsShown {
    pub pull: u64,
    pub reviews: Vec<ReviewShown>,
}

/// One review as read, in the forge's words (untrusted: escape or strip before showing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewShown {
    pub by: String,
    /// `approved`, `changes-requested`, `commented` or `other`.
    pub state: String,
    pub commit: String,
    pub comments: u64,
    /// What it did: " (sent back to development)", " (not counted: not an orch person)" or "".
    pub note: &'static str,
}

impl ReviewsShown {
    /// The latest reading in `events`, each review marked when it sent the item back
    /// (`review.returned`) or did not count.
    pub fn last(events: &[EventRecord]) -> Option<Self> {
        let read = events
            .iter()
            .rev()
            .find(|e| e.kind == events::REVIEWS_READ)?;
        let returned: Vec<u64> = events
            .iter()
            .filter(|e| e.kind == events::REVIEW_RETURNED)
            .filter_map(|e| e.data["review"].as_u64())
            .collect();
        let reviews = read.data["reviews"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                let text = |k: &str| r[k].as_str().unwrap_or("").to_owned();
                ReviewShown {
                    by: text("by"),
                    state: text("state"),
                    commit: text("commit"),
                    comments: r["comments"].as_u64().unwrap_or(0),
                    note: if r["id"].as_u64().is_some_and(|id| returned.contains(&id)) {
                        " (sent back to development)"
                    } else if r["counted"] == false {
                        " (not counted: not an orch person)"
                    } else {
                        ""
                    },
                }
            })
            .collect();
        Some(Self {
            pull: read.data["pull"].as_u64().unwrap_or(0),
            reviews,
        })
    }
}

/// The reviews that send the item back now (not handled before), and those still standing that
/// were: each reviewer's latest approving or change-requesting review decides for them;
/// comment reviews with comments count when `comments` is on.
fn objections<'a>(
    reviews: &'a [Review],
    handled: &[u64],
    comments: bool,
) -> (Vec<&'a Review>, Vec<&'a Review>) {
    let mut latest: Vec<&Review> = Vec::new();
    for review in reviews {
        if !matches!(
            review.state,
            ReviewState::Approved | ReviewState::ChangesRequested
        ) {
            continue;
        }
        latest.retain(|r| r.user_id != review.user_id);
        latest.push(review);
    }
    let mut new = Vec::new();
    let mut standing = Vec::new();
    for review in latest
        .into_iter()
        .filter(|r| r.state == ReviewState::ChangesRequested)
    {
        if handled.contains(&review.id) {
            standing.push(review);
        } else {
            new.push(review);
        }
    }
    if comments {
        new.extend(reviews.iter().filter(|r| {
            r.state == ReviewState::Commented && !r.comments.is_empty() && !handled.contains(&r.id)
        }));
    }
    (new, standing)
}

/// The developer's feedback from one review: who, what they said, and each comment's place.
fn feedback(review: &Review) -> String {
    let mut text = format!(
        "{} {} on the pull request",
        review.login,
        match review.state {
            ReviewState::ChangesRequested => "requested changes",
            _ => "commented",
        }
    );
    if !review.body.trim().is_empty() {
        text.push_str(&format!(": {}", review.body.trim()));
    }
    for c in &review.comments {
        match c.line {
            Some(line) => text.push_str(&format!("\n{}:{line}: {}", c.path, c.body.trim())),
            None => text.push_str(&format!("\n{}: {}", c.path, c.body.trim())),
        }
    }
    text
}

fn state_word(state: ReviewState) -> &'static str {
    match state {
        ReviewState::Approved => "approved",
        ReviewState::ChangesRequested => "changes-requested",
        ReviewState::Commented => "commented",
        ReviewState::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use orch_integrations::ReviewComment;

    use super::*;

    fn review(id: u64, user: u64, state: ReviewState) -> Review {
        Review {
            id,
            user_id: user,
            login: format!("u{user}"),
            state,
            commit_id: "c".into(),
            body: String::new(),
            comments: Vec::new(),
        }
    }

    #[test]
    fn a_reviewers_later_approval_withdraws_their_request_and_each_returns_once() {
        let reviews = [
            review(1, 7, ReviewState::ChangesRequested),
            review(2, 8, ReviewState::ChangesRequested),
            review(3, 7, ReviewState::Approved),
        ];
        let (new, standing) = objections(&reviews, &[], false);
        assert_eq!(new.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
        assert!(standing.is_empty());
        let (new, standing) = objections(&reviews, &[2], false);
        assert!(new.is_empty());
        assert_eq!(standing.iter().map(|r| r.id).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn comment_reviews_count_only_when_asked_and_with_comments() {
        let mut commented = review(4, 9, ReviewState::Commented);
        assert!(
            objections(std::slice::from_ref(&commented), &[], true)
                .0
                .is_empty()
        );
        commented.comments.push(ReviewComment {
            path: "src/a.rs".into(),
            line: Some(3),
            body: "off by one".into(),
        });
        assert!(
            objections(std::slice::from_ref(&commented), &[], false)
                .0
                .is_empty()
        );
        let (new, _) = objections(std::slice::from_ref(&commented), &[], true);
        assert_eq!(
            feedback(new[0]),
            "u9 commented on the pull request\nsrc/a.rs:3: off by one"
        );
    }
}
