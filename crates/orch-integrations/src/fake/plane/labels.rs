//! The fake Plane's work item labels: `GET labels/` (cursor-paginated like every list) and
//! `POST labels/` (`name` required, `color` and `description` optional; a name the project
//! already has is refused), each label answered as Plane's label object (`id`, `name`, `color`,
//! `description`, `parent`, `sort_order`, `project`, `workspace`).

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::FakePlane;

#[derive(Debug, Clone)]
pub struct PlaneLabel {
    pub id: String,
    pub name: String,
    pub color: String,
}

impl FakePlane {
    /// Adds a label to the project; returns its id.
    pub fn add_label(&mut self, name: &str) -> String {
        let id = self.uuid();
        self.labels.push(PlaneLabel {
            id: id.clone(),
            name: name.to_owned(),
            color: "#000000".to_owned(),
        });
        id
    }

    fn label_json(&self, label: &PlaneLabel, sort_order: usize) -> Value {
        json!({
            "id": label.id, "name": label.name, "color": label.color, "description": "",
            "parent": null, "sort_order": (sort_order as f64 + 1.0) * 65535.0,
            "project": self.project_id, "workspace": self.workspace_id,
        })
    }

    pub(super) fn list_labels(&self, query: &str) -> (StatusCode, Value) {
        let labels = self
            .labels
            .iter()
            .enumerate()
            .map(|(i, l)| self.label_json(l, i))
            .collect();
        (StatusCode::OK, Self::list(labels, query))
    }

    pub(super) fn create_label(&mut self, body: &Value) -> (StatusCode, Value) {
        let Some(name) = body
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "name": ["This field is required."] }),
            );
        };
        if self.labels.iter().any(|l| l.name == name) {
            return (
                StatusCode::CONFLICT,
                json!({ "error": "Label with the same name already exists in the project" }),
            );
        }
        let id = self.add_label(name);
        if let Some(color) = body.get("color").and_then(Value::as_str)
            && let Some(label) = self.labels.iter_mut().find(|l| l.id == id)
        {
            label.color = color.to_owned();
        }
        let index = self.labels.len() - 1;
        (
            StatusCode::CREATED,
            self.label_json(&self.labels[index], index),
        )
    }
}
