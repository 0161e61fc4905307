//! A fake Plane CE project: states, labels (`fake/plane/labels`), work items and comments under
//! `/api/v1/workspaces/{slug}/projects/{id}/`, `X-API-Key` auth, cursor pagination
//! (`per_page`, `cursor` as `per_page:page:0`, answered with `results`, `next_cursor`,
//! `next_page_results`), errors as `{"error": ...}`, and issue webhooks shaped as
//! developers.plane.so/dev-tools/intro-webhooks shows (`event`, `action`, `webhook_id`,
//! `workspace_id`, `data`, `activity` with its `actor`'s `id` and `display_name`). Members have a
//! stable id and a display name they can edit ([`FakePlane::rename_member`]); every state
//! change, a member's or the API token's, is kept as an activity of the work item
//! (`GET work-items/{id}/activities/`: `field` `state`, `old_value`/`new_value` the names,
//! `old_identifier`/`new_identifier` the ids, `actor` the member's id, `created_at`).

use async_trait::async_trait;
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::server::{FakeApi, not_found, query_pairs};
use super::webhook::{Delivery, Sender};

mod labels;

pub use labels::PlaneLabel;

#[derive(Debug, Clone)]
pub struct PlaneState {
    pub id: String,
    pub name: String,
    pub group: String,
}

#[derive(Debug, Clone)]
pub struct PlaneWorkItem {
    pub id: String,
    pub sequence_id: u64,
    pub name: String,
    pub description: String,
    pub state_id: String,
}

/// One state change of a work item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaneActivity {
    pub work_item: String,
    pub old_state: String,
    pub new_state: String,
    /// The member's id.
    pub actor: String,
}

/// The id of the member the API token belongs to.
pub const TOKEN_MEMBER: &str = "0c7ef2c4-0000-4000-8000-0000000000b0";

/// The fake's data; seed it with [`FakePlane::add_state`] and [`FakePlane::add_work_item`].
#[derive(Debug)]
pub struct FakePlane {
    token: String,
    pub workspace: String,
    pub workspace_id: String,
    pub project_id: String,
    pub states: Vec<PlaneState>,
    /// The project's work item labels.
    pub labels: Vec<PlaneLabel>,
    pub work_items: Vec<PlaneWorkItem>,
    /// (work item id, comment_html), in order.
    pub comments: Vec<(String, String)>,
    /// A state name the fake refuses to create (400), as a Plane with a conflicting rule would.
    pub refuse_state: Option<String>,
    /// Workspace members as (id, display name); display names need not be unique.
    pub members: Vec<(String, String)>,
    /// Every state change, oldest first.
    pub activities: Vec<PlaneActivity>,
    next_id: u64,
    deliveries: u64,
}

impl FakePlane {
    pub fn new(token: &str, workspace: &str, project_id: &str) -> Self {
        Self {
            token: token.to_owned(),
            workspace: workspace.to_owned(),
            workspace_id: "9d1c3f0e-0000-4000-8000-000000000001".to_owned(),
            project_id: project_id.to_owned(),
            states: Vec::new(),
            labels: Vec::new(),
            work_items: Vec::new(),
            comments: Vec::new(),
            refuse_state: None,
            members: vec![(TOKEN_MEMBER.to_owned(), "orch".to_owned())],
            activities: Vec::new(),
            next_id: 0,
            deliveries: 0,
        }
    }

    fn uuid(&mut self) -> String {
        self.next_id += 1;
        format!("5f2b6a10-0000-4000-8000-{:012x}", self.next_id)
    }

    pub fn add_state(&mut self, name: &str, group: &str) -> String {
        let id = self.uuid();
        self.states.push(PlaneState {
            id: id.clone(),
            name: name.to_owned(),
            group: group.to_owned(),
        });
        id
    }

    /// Every canonical state of orch, as a person following docs/trackers/plane.md has made them.
    pub fn with_canonical_states(mut self) -> Self {
        for s in orch_core::states::CANONICAL_STATES {
            self.add_state(s.name, s.group.as_str());
        }
        self
    }

    pub fn state_id(&self, name: &str) -> Option<String> {
        self.states
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.id.clone())
    }

    pub fn state_name_of(&self, item_id: &str) -> Option<String> {
        let item = self.work_items.iter().find(|w| w.id == item_id)?;
        self.states
            .iter()
            .find(|s| s.id == item.state_id)
            .map(|s| s.name.clone())
    }

    /// Adds a work item in the state named `state` (which must exist); returns its id.
    pub fn add_work_item(&mut self, name: &str, description: &str, state: &str) -> String {
        let id = self.uuid();
        let sequence_id = self.work_items.len() as u64 + 1;
        let state_id = self.state_id(state).unwrap_or_default();
        self.work_items.push(PlaneWorkItem {
            id: id.clone(),
            sequence_id,
            name: name.to_owned(),
            description: description.to_owned(),
            state_id,
        });
        id
    }

    /// Adds a workspace member shown as `display_name`; returns their id.
    pub fn add_member(&mut self, display_name: &str) -> String {
        self.next_id += 1;
        let id = format!("0c7ef2c4-0000-4000-8000-{:012x}", self.next_id);
        self.members.push((id.clone(), display_name.to_owned()));
        id
    }

    /// A member changes their display name, as anyone may in their Plane profile.
    pub fn rename_member(&mut self, id: &str, display_name: &str) {
        if let Some(member) = self.members.iter_mut().find(|(m, _)| m == id) {
            member.1 = display_name.to_owned();
        }
    }

    /// Moves a work item as the member shown as `by` would (the first such member, made on
    /// first use), and returns the webhook delivery Plane sends for it.
    pub fn move_work_item(&mut self, id: &str, state: &str, by: &str) -> Option<Delivery> {
        let member = match self.members.iter().find(|(_, name)| name == by) {
            Some((member, _)) => member.clone(),
            None => self.add_member(by),
        };
        self.move_work_item_as(id, state, &member)
    }

    /// Moves a work item as the member `member` (an id), and returns the delivery.
    pub fn move_work_item_as(&mut self, id: &str, state: &str, member: &str) -> Option<Delivery> {
        let new = self.state_id(state)?;
        let item = self.work_items.iter_mut().find(|w| w.id == id)?;
        let old = std::mem::replace(&mut item.state_id, new.clone());
        self.activities.push(PlaneActivity {
            work_item: id.to_owned(),
            old_state: old.clone(),
            new_state: new.clone(),
            actor: member.to_owned(),
        });
        let by = self
            .members
            .iter()
            .find(|(m, _)| m == member)
            .map(|(_, name)| name.clone())?;
        let payload = self.issue_payload_by(id, "updated", member, &by, Some((&old, &new)))?;
        self.deliveries += 1;
        let delivery_id = format!("f819eff4-cd50-4987-bc97-{:012x}", self.deliveries);
        Some(Delivery::new(Sender::Plane, delivery_id, "issue", &payload))
    }

    /// The body Plane sends for an issue event about `id`, by the first member shown as `by`.
    pub fn issue_payload(
        &self,
        id: &str,
        action: &str,
        by: &str,
        state_change: Option<(&str, &str)>,
    ) -> Option<Value> {
        let member = self
            .members
            .iter()
            .find(|(_, name)| name == by)
            .map(|(m, _)| m.clone())
            .unwrap_or_default();
        self.issue_payload_by(id, action, &member, by, state_change)
    }

    fn issue_payload_by(
        &self,
        id: &str,
        action: &str,
        member: &str,
        by: &str,
        state_change: Option<(&str, &str)>,
    ) -> Option<Value> {
        let item = self.work_items.iter().find(|w| w.id == id)?;
        let state = self.states.iter().find(|s| s.id == item.state_id)?;
        let mut data = self.work_item_json(item);
        data["state"] = json!({ "id": state.id, "name": state.name, "group": state.group });
        let actor = json!({ "id": member, "display_name": by });
        let activity = match state_change {
            Some((old, new)) => json!({
                "field": "state", "old_value": old, "new_value": new, "actor": actor,
            }),
            None => json!({ "actor": actor }),
        };
        Some(json!({
            "event": "issue",
            "action": action,
            "webhook_id": "3c2c32ac-82df-48b3-be2a-a3e21dbe8692",
            "workspace_id": self.workspace_id,
            "data": data,
            "activity": activity,
        }))
    }

    /// Work item `id`'s activities as Plane's API answers them.
    fn activities_json(&self, id: &str) -> Vec<Value> {
        let name = |state: &str| {
            self.states
                .iter()
                .find(|s| s.id == state)
                .map(|s| s.name.clone())
                .unwrap_or_default()
        };
        self.activities
            .iter()
            .enumerate()
            .filter(|(_, a)| a.work_item == id)
            .map(|(seq, a)| {
                json!({
                    "id": format!("a0000000-0000-4000-8000-{seq:012x}"),
                    "verb": "updated", "field": "state",
                    "old_value": name(&a.old_state), "new_value": name(&a.new_state),
                    "old_identifier": a.old_state, "new_identifier": a.new_state,
                    "actor": a.actor, "issue": a.work_item,
                    "project": self.project_id, "workspace": self.workspace_id,
                    "created_at": super::gitea::timestamp(seq + 1),
                })
            })
            .collect()
    }

    fn work_item_json(&self, w: &PlaneWorkItem) -> Value {
        let changes = self
            .activities
            .iter()
            .filter(|a| a.work_item == w.id)
            .count();
        json!({
            "updated_at": super::gitea::timestamp(changes),
            "id": w.id,
            "sequence_id": w.sequence_id,
            "name": w.name,
            "description_html": format!("<p>{}</p>", w.description),
            "description_stripped": w.description,
            "state": w.state_id,
            "project": self.project_id,
            "workspace": self.workspace_id,
            "priority": "none",
        })
    }

    fn list(items: Vec<Value>, query: &str) -> Value {
        let pairs = query_pairs(query);
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let per_page: usize = get("per_page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(100)
            .clamp(1, 100);
        let page: usize = get("cursor")
            .and_then(|c| c.split(':').nth(1).and_then(|p| p.parse().ok()))
            .unwrap_or(0);
        let total = items.len();
        let results: Vec<Value> = items
            .into_iter()
            .skip(page * per_page)
            .take(per_page)
            .collect();
        let more = (page + 1) * per_page < total;
        json!({
            "grouped_by": null, "sub_grouped_by": null,
            "total_count": total,
            "next_cursor": format!("{per_page}:{}:0", page + 1),
            "prev_cursor": format!("{per_page}:{}:1", page.saturating_sub(1)),
            "next_page_results": more,
            "prev_page_results": page > 0,
            "count": results.len(),
            "total_pages": total.div_ceil(per_page),
            "total_results": total,
            "results": results,
        })
    }
}

#[async_trait]
impl FakeApi for FakePlane {
    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == self.token)
    }

    async fn answer(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let prefix = format!(
            "/api/v1/workspaces/{}/projects/{}/",
            self.workspace, self.project_id
        );
        let Some(rest) = path.strip_prefix(&prefix) else {
            return not_found("project");
        };
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            (&Method::GET, ["states"]) => {
                let states = self
                    .states
                    .iter()
                    .map(|s| json!({ "id": s.id, "name": s.name, "group": s.group, "color": "#000000" }))
                    .collect();
                (StatusCode::OK, Self::list(states, query))
            }
            (&Method::POST, ["states"]) => {
                let (Some(name), Some(group)) = (
                    body.get("name").and_then(Value::as_str),
                    body.get("group").and_then(Value::as_str),
                ) else {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({ "error": "name and group are required" }),
                    );
                };
                if self.refuse_state.as_deref() == Some(name) {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({ "error": format!("the state name {name} is not allowed") }),
                    );
                }
                if self.state_id(name).is_some() {
                    return (
                        StatusCode::CONFLICT,
                        json!({ "error": "State with the same name already exists" }),
                    );
                }
                let id = self.add_state(name, group);
                (
                    StatusCode::CREATED,
                    json!({ "id": id, "name": name, "group": group }),
                )
            }
            (&Method::GET, ["labels"]) => self.list_labels(query),
            (&Method::POST, ["labels"]) => self.create_label(&body),
            (&Method::GET, ["work-items"]) => {
                let items = self
                    .work_items
                    .iter()
                    .map(|w| self.work_item_json(w))
                    .collect();
                (StatusCode::OK, Self::list(items, query))
            }
            (&Method::GET, ["work-items", id]) => {
                match self.work_items.iter().find(|w| w.id == *id) {
                    Some(w) => (StatusCode::OK, self.work_item_json(w)),
                    None => not_found("work item"),
                }
            }
            (&Method::PATCH, ["work-items", id]) => {
                let state = body.get("state").and_then(Value::as_str).map(str::to_owned);
                if let Some(state) = &state
                    && !self.states.iter().any(|s| s.id == *state)
                {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({ "state": ["Invalid pk - object does not exist."] }),
                    );
                }
                let Some(w) = self.work_items.iter_mut().find(|w| w.id == *id) else {
                    return not_found("work item");
                };
                if let Some(state) = state
                    && state != w.state_id
                {
                    let old = std::mem::replace(&mut w.state_id, state.clone());
                    // The API token's member made the change.
                    self.activities.push(PlaneActivity {
                        work_item: (*id).to_owned(),
                        old_state: old,
                        new_state: state,
                        actor: TOKEN_MEMBER.to_owned(),
                    });
                }
                let Some(w) = self.work_items.iter().find(|w| w.id == *id).cloned() else {
                    return not_found("work item");
                };
                (StatusCode::OK, self.work_item_json(&w))
            }
            (&Method::GET, ["work-items", id, "activities"]) => {
                if !self.work_items.iter().any(|w| w.id == *id) {
                    return not_found("work item");
                }
                (StatusCode::OK, Self::list(self.activities_json(id), query))
            }
            (&Method::POST, ["work-items", id, "comments"]) => {
                if !self.work_items.iter().any(|w| w.id == *id) {
                    return not_found("work item");
                }
                let Some(html) = body.get("comment_html").and_then(Value::as_str) else {
                    return (
                        StatusCode::BAD_REQUEST,
                        json!({ "error": "comment_html is required" }),
                    );
                };
                self.comments.push(((*id).to_owned(), html.to_owned()));
                let cid = self.uuid();
                (
                    StatusCode::CREATED,
                    json!({ "id": cid, "comment_html": html, "issue": id }),
                )
            }
            _ => not_found("route"),
        }
    }
}
