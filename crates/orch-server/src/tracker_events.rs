//! What a verified webhook delivery means: which project and tracker item it is about and which
//! state the item is in now, then the engine's mapping of that state to a command
//! ([`orch_engine::Engine::apply_tracker_state`]).
//!
//! Payload shapes: Plane's issue events (developers.plane.so/dev-tools/intro-webhooks: `event`,
//! `action`, `data` with `id`, `name`, `project`, `state` as an id or an object with its `name`)
//! and Gitea's issue events (docs.gitea.com/usage/webhooks: `action`, `issue` with `number`,
//! `title`, `body`, `labels`; `repository.full_name`; `sender.login`), the state being the
//! issue's `state/<Name>` label. GitHub's `issues` events
//! (docs.github.com/webhooks/webhook-events-and-payloads#issues: `action` such as `labeled` or
//! `unlabeled`, `issue`, `label`, `repository.full_name`, `sender.login`) have the same shape and
//! are read the same way; its `issue_comment` events (an `issue` with a `comment`) are not state
//! changes and are left alone. A delivery about something else, or for a project orch does not
//! serve, is accepted and does nothing.
//!
//! The actor a payload names (Plane's `activity.actor`, `sender` elsewhere) is logged only: who
//! moved an item to `STOP` or `Approved` is read from the tracker by the engine, by user id, and
//! so is the state itself (a delivery whose state no longer holds is stale).

use orch_engine::{Engine, EngineError, StateSource, TrackerAction};
use orch_integrations::RemoteItem;
use orch_integrations::gitea::state_of_labels;
use serde_json::Value;

use crate::webhook::WebhookSource;

/// One tracker item a delivery is about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemNews {
    /// `plane`, `gitea` or `github`: the tracker kind whose projects to look in.
    pub kind: &'static str,
    /// What names the project: a Plane project id, a Gitea `owner/repo`.
    pub project_key: String,
    pub item: RemoteItem,
    /// Whether `item.state` came from the payload; when not, the tracker is asked.
    pub state_known: bool,
    /// The login or display name the payload shows (for logs only).
    pub actor: String,
    /// The tracker's id of that account, as the payload says (for logs only).
    pub actor_id: Option<String>,
}

/// What a delivery led to, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookAction {
    Created,
    AlreadyFiled,
    Stopped,
    Approved,
    /// Not about an item, about a project orch does not serve, or a state orch leaves alone.
    Ignored,
    /// The tracker, asked, says the item is not in the state the delivery claims: stale,
    /// replayed or forged. Nothing was done.
    Stale,
    /// orch refused to act: the account that moved the item may not approve, or nothing is
    /// validated to approve.
    Refused,
    /// The engine or the tracker failed; the reconciliation poll tries again.
    Failed,
    /// A forge's news about a pull request's reviews or a commit's checks: orch asked the forge
    /// itself again (approvals by review at once; a waiting deploy at its next look).
    ForgeNews,
}

impl WebhookAction {
    pub const ALL: [WebhookAction; 9] = [
        WebhookAction::Created,
        WebhookAction::AlreadyFiled,
        WebhookAction::Stopped,
        WebhookAction::Approved,
        WebhookAction::Ignored,
        WebhookAction::Stale,
        WebhookAction::Refused,
        WebhookAction::Failed,
        WebhookAction::ForgeNews,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookAction::Created => "created",
            WebhookAction::AlreadyFiled => "already_filed",
            WebhookAction::Stopped => "stopped",
            WebhookAction::Approved => "approved",
            WebhookAction::Ignored => "ignored",
            WebhookAction::Stale => "stale",
            WebhookAction::Refused => "refused",
            WebhookAction::Failed => "failed",
            WebhookAction::ForgeNews => "forge_news",
        }
    }
}

fn text(v: &Value, k: &str) -> String {
    v.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// The item a delivery from `source` is about, if it is about a tracker item at all.
pub(crate) fn parse(source: WebhookSource, body: &Value) -> Option<ItemNews> {
    match source {
        WebhookSource::Plane => {
            if body.get("event").and_then(Value::as_str) != Some("issue") {
                return None;
            }
            let data = body.get("data")?;
            let id = data.get("id")?.as_str()?.to_owned();
            let project_key = data.get("project").and_then(|p| match p {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("id").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })?;
            let state = data
                .get("state")
                .and_then(|s| s.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            let actor_value = body.get("activity").and_then(|a| a.get("actor"));
            let actor = actor_value
                .map(|a| text(a, "display_name"))
                .unwrap_or_default();
            let actor_id = actor_value
                .and_then(|a| a.get("id"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            Some(ItemNews {
                kind: "plane",
                project_key,
                state_known: state.is_some(),
                item: RemoteItem {
                    key: data
                        .get("sequence_id")
                        .and_then(Value::as_u64)
                        .map(|n| format!("#{n}"))
                        .unwrap_or_else(|| id.clone()),
                    id,
                    title: text(data, "name"),
                    body: text(data, "description_stripped"),
                    state,
                },
                actor,
                actor_id,
            })
        }
        WebhookSource::Gitea | WebhookSource::Github => {
            let kind = match source {
                WebhookSource::Github => "github",
                _ => "gitea",
            };
            let issue = body.get("issue")?;
            // Pull requests are issues too in these payloads; orch files issues only. A comment
            // event carries the issue as it is, which says nothing new.
            if issue.get("pull_request").is_some_and(|p| !p.is_null())
                || (source == WebhookSource::Github && body.get("comment").is_some())
            {
                return None;
            }
            let number = issue.get("number")?.as_u64()?;
            let project_key = body
                .get("repository")?
                .get("full_name")?
                .as_str()?
                .to_owned();
            let labels: Vec<&str> = issue
                .get("labels")
                .and_then(Value::as_array)
                .map(|ls| ls.iter().filter_map(|l| l.get("name")?.as_str()).collect())
                .unwrap_or_default();
            Some(ItemNews {
                kind,
                project_key,
                state_known: true,
                item: RemoteItem {
                    id: number.to_string(),
                    key: format!("#{number}"),
                    title: text(issue, "title"),
                    body: text(issue, "body"),
                    state: state_of_labels(labels),
                },
                actor: body
                    .get("sender")
                    .map(|s| text(s, "login"))
                    .unwrap_or_default(),
                actor_id: body
                    .get("sender")
                    .and_then(|s| s.get("id"))
                    .and_then(Value::as_u64)
                    .map(|id| id.to_string()),
            })
        }
    }
}

/// Whether a Gitea or GitHub delivery is about a pull request's review (`review` with
/// `pull_request`), a check run or suite, or a commit status (`sha`, `state`, `context`).
pub(crate) fn is_forge_news(source: WebhookSource, body: &Value) -> bool {
    if source == WebhookSource::Plane {
        return false;
    }
    let has = |k: &str| body.get(k).is_some_and(|v| !v.is_null());
    (has("review") && has("pull_request"))
        || has("check_run")
        || has("check_suite")
        || (has("sha") && has("state") && has("context"))
}

/// Acts on a verified, newly stored delivery.
pub(crate) async fn act(engine: &Engine, source: WebhookSource, body: &Value) -> WebhookAction {
    if is_forge_news(source, body) {
        // The delivery's word decides nothing: the forge is read again, by the approvals here
        // and by the runs waiting for checks or reviews, woken to look now.
        let approved = engine.approve_by_reviews().await;
        let woken = engine.wake_for_forge_news(source.as_str()).await;
        tracing::debug!(
            "forge news: {} item(s) approved by review, {woken} waiting run(s) woken",
            approved.len()
        );
        return WebhookAction::ForgeNews;
    }
    let Some(news) = parse(source, body) else {
        return WebhookAction::Ignored;
    };
    let Some(project) = engine.project_for_tracker(news.kind, &news.project_key) else {
        return WebhookAction::Ignored;
    };
    let mut item = news.item;
    let mut source = StateSource::Delivery;
    if !news.state_known {
        let Some(link) = &project.settings.remotes.tracker else {
            return WebhookAction::Ignored;
        };
        match link.tracker.get_item(&item.id).await {
            Ok(fresh) => {
                item.state = fresh.state;
                source = StateSource::Tracker;
            }
            Err(e) => {
                tracing::warn!(
                    "{}: reading {} from the tracker: {e}",
                    project.id(),
                    item.key
                );
                return WebhookAction::Failed;
            }
        }
    }
    let shown = format!(
        "{} ({}:{})",
        news.actor,
        news.kind,
        news.actor_id.as_deref().unwrap_or("no id")
    );
    match engine
        .apply_tracker_state(project.id(), &item, source)
        .await
    {
        Ok(TrackerAction::Created(_)) => WebhookAction::Created,
        Ok(TrackerAction::AlreadyFiled(_)) => WebhookAction::AlreadyFiled,
        Ok(TrackerAction::Stopped(_)) => WebhookAction::Stopped,
        Ok(TrackerAction::Approved(_)) => WebhookAction::Approved,
        Ok(TrackerAction::Ignored(why)) => {
            tracing::debug!("{}: {}: {why}", project.id(), item.key);
            WebhookAction::Ignored
        }
        Ok(TrackerAction::Unconfirmed(why)) => {
            tracing::warn!(
                "{}: {why}; the reconciliation poll tries again",
                project.id()
            );
            WebhookAction::Failed
        }
        Ok(TrackerAction::Stale(why)) => {
            tracing::warn!(
                "{}: a delivery shown as from {shown} is stale: {why}",
                project.id()
            );
            WebhookAction::Stale
        }
        Err(e @ EngineError::Refused { .. }) => {
            tracing::warn!(
                "{}: {}: a delivery shown as from {shown} was refused: {e}",
                project.id(),
                item.key
            );
            WebhookAction::Refused
        }
        Err(e) => {
            tracing::warn!("{}: acting on {}: {e}", project.id(), item.key);
            WebhookAction::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).expect("fixture");
        serde_json::from_str(&text).expect("fixture is JSON")
    }

    #[test]
    fn a_plane_issue_update_names_project_item_state_and_actor() {
        let news = parse(WebhookSource::Plane, &fixture("plane-issue-updated.json")).expect("news");
        assert_eq!(news.kind, "plane");
        assert_eq!(news.project_key, "4af6d1a2-0b1c-4e5f-9a7b-1c2d3e4f5a6b");
        assert_eq!(news.item.state.as_deref(), Some("Ready"));
        assert_eq!(news.item.title, "Say hello from the landing page");
        assert_eq!(news.actor, "Ada Lovelace");
        assert!(news.state_known);
    }

    #[test]
    fn a_gitea_label_change_names_repository_issue_state_and_sender() {
        let news = parse(
            WebhookSource::Gitea,
            &fixture("gitea-issue-label-updated.json"),
        )
        .expect("news");
        assert_eq!(news.project_key, "acme/web");
        assert_eq!(news.item.id, "12");
        assert_eq!(news.item.state.as_deref(), Some("STOP"));
        assert_eq!(news.actor, "grace");
    }

    #[test]
    fn github_issue_labels_name_repository_issue_state_and_sender() {
        let labeled = |label: &str| {
            serde_json::json!({
                "action": "labeled",
                "issue": { "number": 7, "title": "Fix it", "body": "b",
                           "labels": [{ "name": "bug" }, { "name": label }] },
                "label": { "name": label },
                "repository": { "full_name": "acme/web" },
                "sender": { "login": "octocat" },
            })
        };
        for (label, state) in [
            ("state/Ready", "Ready"),
            ("state/STOP", "STOP"),
            ("state/Approved", "Approved"),
        ] {
            let news = parse(WebhookSource::Github, &labeled(label)).expect("news");
            assert_eq!(news.kind, "github");
            assert_eq!(news.project_key, "acme/web");
            assert_eq!((news.item.id.as_str(), news.item.key.as_str()), ("7", "#7"));
            assert_eq!(news.item.state.as_deref(), Some(state));
            assert_eq!(news.actor, "octocat");
        }
        let mut comment = labeled("state/Ready");
        comment["action"] = "created".into();
        comment["comment"] = serde_json::json!({ "body": "hi" });
        assert_eq!(parse(WebhookSource::Github, &comment), None);
        let mut pull = labeled("state/Ready");
        pull["issue"]["pull_request"] = serde_json::json!({ "url": "x" });
        assert_eq!(parse(WebhookSource::Github, &pull), None);
    }

    #[test]
    fn reviews_checks_and_statuses_are_forge_news_and_issues_are_not() {
        let review = serde_json::json!({ "action": "submitted", "review": { "state": "approved" },
            "pull_request": { "number": 1 } });
        let check = serde_json::json!({ "action": "completed", "check_run": { "name": "test" } });
        let status = serde_json::json!({ "sha": "abc", "state": "failure", "context": "ci" });
        for body in [&review, &check, &status] {
            assert!(is_forge_news(WebhookSource::Github, body), "{body}");
            assert!(is_forge_news(WebhookSource::Gitea, body), "{body}");
            assert!(!is_forge_news(WebhookSource::Plane, body), "{body}");
        }
        let issue = serde_json::json!({ "action": "labeled", "issue": { "number": 1 } });
        assert!(!is_forge_news(WebhookSource::Github, &issue));
    }

    #[test]
    fn other_events_are_not_item_news() {
        let project =
            serde_json::json!({ "event": "project", "action": "update", "data": { "id": "x" } });
        assert_eq!(parse(WebhookSource::Plane, &project), None);
        let pull = serde_json::json!({ "action": "opened", "issue": { "number": 3, "pull_request": {} }, "repository": { "full_name": "a/b" } });
        assert_eq!(parse(WebhookSource::Gitea, &pull), None);
        let state_as_id = serde_json::json!({ "event": "issue", "data": { "id": "i", "project": "p", "state": "uuid" } });
        let news = parse(WebhookSource::Plane, &state_as_id).expect("news");
        assert!(
            !news.state_known,
            "a bare state id is resolved through the tracker"
        );
    }
}
