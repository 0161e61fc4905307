//! Plane CE as a tracker, over its REST API v1 (`X-API-Key` auth).
//!
//! Paths follow developers.plane.so/api-reference: under
//! `/api/v1/workspaces/{slug}/projects/{project_id}/` the `states/` list and create, the
//! `work-items/` list (cursor-paginated: `per_page`, `cursor`, answered with `results`,
//! `next_cursor`, `next_page_results`), get and patch (`state` is a state UUID), and
//! `work-items/{id}/comments/` (`comment_html`). A 429 carries `X-RateLimit-Reset`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::error::{IntegrationError, Result};
use crate::http::{ApiClient, RetryPolicy};
use crate::secret::Token;
use crate::setup::{SetupOp, SetupSpec, SetupStatus, SetupStep};
use crate::tracker::{RemoteItem, Tracker, TrackerUser, canonical};

/// Where a Plane project is.
#[derive(Debug, Clone)]
pub struct PlaneConfig {
    pub base_url: String,
    pub workspace: String,
    pub project_id: String,
    pub token: Token,
    pub retry: RetryPolicy,
}

#[derive(Debug)]
pub struct Plane {
    api: ApiClient,
    prefix: String,
    /// State name -> id, read once (and again after `ensure_states` creates some).
    states: Mutex<Option<BTreeMap<String, String>>>,
}

/// One page of a Plane list; some list endpoints answer a bare array instead.
fn page_results(value: Value) -> (Vec<Value>, Option<String>) {
    match value {
        Value::Array(items) => (items, None),
        Value::Object(mut map) => {
            let items = match map.remove("results") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let more = map
                .get("next_page_results")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let cursor = map
                .get("next_cursor")
                .and_then(Value::as_str)
                .filter(|_| more)
                .map(str::to_owned);
            (items, cursor)
        }
        _ => (Vec::new(), None),
    }
}

/// The longest list orch walks (pages of 100): a runaway cursor cannot loop forever.
const MAX_PAGES: usize = 50;

impl Plane {
    pub fn new(config: PlaneConfig) -> Result<Self> {
        for (field, value) in [
            ("workspace", &config.workspace),
            ("project", &config.project_id),
        ] {
            if value.trim().is_empty() || value.contains('/') {
                return Err(IntegrationError::Config(format!(
                    "plane `{field}` must be a non-empty slug or id without `/`"
                )));
            }
        }
        let api = ApiClient::new(
            "plane",
            &config.base_url,
            "x-api-key",
            "",
            config.token,
            config.retry,
        )?;
        Ok(Self {
            api,
            prefix: format!(
                "/api/v1/workspaces/{}/projects/{}",
                config.workspace.trim(),
                config.project_id.trim()
            ),
            states: Mutex::new(None),
        })
    }

    async fn list_all(&self, path: &str) -> Result<Vec<Value>> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                Some(c) => format!("{path}{sep}per_page=100&cursor={c}"),
                None => format!("{path}{sep}per_page=100"),
            };
            let (items, next) = page_results(self.api.get(&url).await?);
            all.extend(items);
            match next {
                Some(next) if Some(&next) != cursor.as_ref() => cursor = Some(next),
                _ => return Ok(all),
            }
        }
        Ok(all)
    }

    async fn state_ids(&self) -> Result<BTreeMap<String, String>> {
        let mut cached = self.states.lock().await;
        if let Some(states) = cached.as_ref() {
            return Ok(states.clone());
        }
        let mut states = BTreeMap::new();
        for s in self.list_all(&format!("{}/states/", self.prefix)).await? {
            if let (Some(id), Some(name)) = (
                s.get("id").and_then(Value::as_str),
                s.get("name").and_then(Value::as_str),
            ) {
                states.insert(name.to_owned(), id.to_owned());
            }
        }
        *cached = Some(states.clone());
        Ok(states)
    }

    /// The project's work item label names (`GET labels/`), read now.
    async fn label_names(&self) -> Result<Vec<String>> {
        Ok(self
            .list_all(&format!("{}/labels/", self.prefix))
            .await?
            .iter()
            .filter_map(|label| label.get("name").and_then(Value::as_str).map(str::to_owned))
            .collect())
    }

    /// Every state's group by name, read now (not cached: onboarding compares them).
    async fn state_groups(&self) -> Result<BTreeMap<String, String>> {
        Ok(self
            .list_all(&format!("{}/states/", self.prefix))
            .await?
            .iter()
            .filter_map(|s| {
                Some((
                    s.get("name")?.as_str()?.to_owned(),
                    s.get("group")?.as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    async fn state_id(&self, name: &str) -> Result<String> {
        canonical(name)?;
        self.state_ids()
            .await?
            .remove(name)
            .ok_or_else(|| IntegrationError::NotFound {
                service: "plane".into(),
                what: format!("state `{name}` (create it in the Plane project's states; docs/trackers/plane.md lists them)"),
            })
    }

    fn item(&self, value: &Value, names: &BTreeMap<String, String>) -> Result<RemoteItem> {
        let text = |k: &str| value.get(k).and_then(Value::as_str).map(str::to_owned);
        let id = text("id").ok_or_else(|| IntegrationError::BadResponse {
            service: "plane".into(),
            detail: "a work item without an `id`".into(),
        })?;
        // `state` is a UUID in the API and an object with an `id` in some webhook payloads.
        let state_id = match value.get("state") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_owned),
            _ => None,
        };
        let state = state_id.and_then(|sid| {
            names
                .iter()
                .find(|(_, id)| **id == sid)
                .map(|(name, _)| name.clone())
        });
        let key = value
            .get("sequence_id")
            .and_then(Value::as_u64)
            .map(|n| format!("#{n}"))
            .unwrap_or_else(|| id.clone());
        Ok(RemoteItem {
            id,
            key,
            title: text("name").unwrap_or_default(),
            body: text("description_stripped")
                .or_else(|| text("description_html"))
                .unwrap_or_default(),
            state,
        })
    }
}

/// Escapes text for Plane's HTML comment body.
fn html_paragraph(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!("<p>{}</p>", escaped.replace('\n', "<br/>"))
}

fn checked_id(id: &str) -> Result<&str> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(IntegrationError::Config(format!(
            "`{id}` is not a Plane work item id"
        )));
    }
    Ok(id)
}

#[async_trait]
impl Tracker for Plane {
    fn kind(&self) -> &'static str {
        "plane"
    }

    /// Every canonical state with its group; a webhook is always a manual step, as Plane's
    /// API v1 has no webhooks endpoint and Plane makes each webhook's secret itself.
    async fn survey_setup(&self, spec: &SetupSpec) -> Result<Vec<SetupStep>> {
        let existing = self.state_groups().await?;
        let create = format!("POST {}/states/", self.prefix);
        let mut steps: Vec<SetupStep> = orch_core::states::CANONICAL_STATES
            .iter()
            .map(|state| {
                let wanted = state.group.as_str();
                let step = SetupStep::new(
                    "plane",
                    SetupOp::State(state.name),
                    format!("state {} ({wanted})", state.name),
                );
                match existing.get(state.name) {
                    None => step.missing(vec![create.clone()]),
                    Some(group) if group == wanted => step,
                    // orch never edits a state, and a state in the wrong group misleads Plane's
                    // board (STOP under `started` is not terminal): a gap until a person moves it.
                    Some(group) => step.with_status(SetupStatus::Refused(format!(
                        "it is in group `{group}`, not `{wanted}`: move it to `{wanted}` in Plane → Project settings → States (orch does not edit states)"
                    ))),
                }
            })
            .collect();
        if !spec.labels.is_empty() {
            let existing = self.label_names().await?;
            let create = format!("POST {}/labels/", self.prefix);
            steps.extend(spec.labels.iter().enumerate().map(|(index, name)| {
                let step = SetupStep::new("plane", SetupOp::Label(index), format!("label {name}"));
                if existing.iter().any(|have| have == name) {
                    step
                } else {
                    step.missing(vec![create.clone()])
                }
            }));
        }
        if let Some(hook) = &spec.webhook {
            steps.push(
                SetupStep::new("plane", SetupOp::Webhook, format!("webhook {}", hook.url))
                    .with_status(SetupStatus::Manual(format!(
                        "Plane's API cannot create webhooks: in Plane, Workspace settings → Webhooks, add {} with work item events, then give the secret Plane shows to `orch serve` as ORCH_PLANE_WEBHOOK_SECRET (one webhook serves every project of the workspace)",
                        hook.url
                    ))),
            );
        }
        Ok(steps)
    }

    async fn apply_setup(&self, step: &SetupStep, spec: &SetupSpec) -> Result<()> {
        if let SetupOp::Label(index) = step.op {
            let name = spec.labels.get(index).ok_or_else(|| {
                IntegrationError::Config(format!("plane: no label number {index} was asked for"))
            })?;
            self.api
                .post(
                    &format!("{}/labels/", self.prefix),
                    json!({ "name": name, "color": "#6b7280" }),
                )
                .await?;
            return Ok(());
        }
        let SetupOp::State(name) = step.op else {
            return Err(IntegrationError::Refused(format!(
                "plane: orch cannot do `{}` through Plane's API",
                step.what
            )));
        };
        let state = canonical(name)?;
        self.api
            .post(
                &format!("{}/states/", self.prefix),
                json!({ "name": state.name, "group": state.group.as_str(), "color": "#6b7280" }),
            )
            .await?;
        *self.states.lock().await = None;
        Ok(())
    }

    async fn list_items(&self, state: &str) -> Result<Vec<RemoteItem>> {
        let wanted = self.state_id(state).await?;
        let names = self.state_ids().await?;
        let all = self
            .list_all(&format!("{}/work-items/", self.prefix))
            .await?;
        all.iter()
            .filter(|v| v.get("state").and_then(Value::as_str) == Some(wanted.as_str()))
            .map(|v| self.item(v, &names))
            .collect()
    }

    async fn get_item(&self, id: &str) -> Result<RemoteItem> {
        let id = checked_id(id)?;
        let value = self
            .api
            .get(&format!("{}/work-items/{id}/", self.prefix))
            .await?;
        let names = self.state_ids().await?;
        self.item(&value, &names)
    }

    /// The latest of the work item's activities (`work-items/{id}/activities/`) that set its
    /// `state` to this one: `field` `state`, `new_identifier` the state's id (or `new_value`
    /// its name), `actor` the user's id (also `actor_detail.id`), by `created_at`.
    async fn state_setter(&self, id: &str, state: &str) -> Result<Option<TrackerUser>> {
        let id = checked_id(id)?;
        let state_id = self.state_id(state).await?;
        let activities = self
            .list_all(&format!("{}/work-items/{id}/activities/", self.prefix))
            .await?;
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let latest = activities
            .iter()
            .filter(|a| text(a, "field").as_deref() == Some("state"))
            .filter(|a| {
                text(a, "new_identifier").as_deref() == Some(state_id.as_str())
                    || (a.get("new_identifier").is_none_or(Value::is_null)
                        && text(a, "new_value").as_deref() == Some(state))
            })
            // ISO 8601 times of one service compare as text; on a tie the later entry wins.
            .enumerate()
            .max_by(|(i, a), (j, b)| (text(a, "created_at"), i).cmp(&(text(b, "created_at"), j)))
            .map(|(_, a)| a);
        let Some(activity) = latest else {
            return Ok(None);
        };
        let detail = activity.get("actor_detail");
        let actor = text(activity, "actor")
            .or_else(|| detail.and_then(|d| text(d, "id")))
            .ok_or_else(|| IntegrationError::BadResponse {
                service: "plane".into(),
                detail: format!("work item {id}: a state change without an actor"),
            })?;
        Ok(Some(TrackerUser {
            id: actor,
            login: detail
                .and_then(|d| text(d, "display_name"))
                .unwrap_or_default(),
        }))
    }

    async fn set_state(&self, id: &str, state: &str) -> Result<()> {
        let id = checked_id(id)?;
        let state_id = self.state_id(state).await?;
        self.api
            .patch(
                &format!("{}/work-items/{id}/", self.prefix),
                json!({ "state": state_id }),
            )
            .await
            .map(|_| ())
    }

    async fn add_comment(&self, id: &str, text: &str) -> Result<()> {
        let id = checked_id(id)?;
        self.api
            .post(
                &format!("{}/work-items/{id}/comments/", self.prefix),
                json!({ "comment_html": html_paragraph(text) }),
            )
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_are_escaped() {
        assert_eq!(html_paragraph("a<b>\nc&"), "<p>a&lt;b&gt;<br/>c&amp;</p>");
    }

    #[test]
    fn ids_that_could_change_the_path_are_refused() {
        assert!(checked_id("../x").is_err());
        assert!(checked_id("5f0e-aa").is_ok());
    }

    #[test]
    fn pages_follow_next_cursor_only_when_there_are_more() {
        let (items, next) = page_results(
            json!({"results": [{"id": "a"}], "next_cursor": "100:1:0", "next_page_results": true}),
        );
        assert_eq!((items.len(), next.as_deref()), (1, Some("100:1:0")));
        let (_, next) =
            page_results(json!({"results": [], "next_cursor": "x", "next_page_results": false}));
        assert_eq!(next, None);
    }
}
