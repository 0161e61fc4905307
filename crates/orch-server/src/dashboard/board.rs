//! `/`: the board. Per project, one column per pipeline stage in pipeline order, a card per open
//! item in its stage's column, and a last column with the most recently finished items.

use std::fmt::Write as _;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use orch_engine::Project;
use orch_engine::spend::ItemSpend;
use orch_store::ItemRecord;
use serde::Deserialize;

use super::html::{age, esc, now_ms, page};
use super::{HtmlError, access};
use crate::state::AppState;

/// How many finished items the last column shows.
const FINISHED_SHOWN: usize = 8;

/// Seconds between reloads of the board, so cards move without a click.
const REFRESH_SECS: u32 = 3;

#[derive(Debug, Deserialize)]
pub(crate) struct BoardQuery {
    project: Option<String>,
}

pub(crate) async fn render(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<BoardQuery>,
) -> Response {
    let access = match access(&state, &headers).await {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let mut body = format!("<div data-refresh=\"{REFRESH_SECS}\"></div>");
    for project in state.engine().projects() {
        if query
            .project
            .as_deref()
            .is_some_and(|p| p != project.id().as_str())
        {
            continue;
        }
        match project_board(&state, project).await {
            Ok(html) => body.push_str(&html),
            Err(e) => return e.into_response(),
        }
    }
    if state.engine().projects().next().is_none() {
        body.push_str("<p>No projects are configured; add one to orch.toml.</p>");
    }
    page("Board", access.viewer(), &body).into_response()
}

async fn project_board(state: &AppState, project: &Project) -> Result<String, HtmlError> {
    let store = state.engine().store();
    let items = store.list_items(Some(project.id())).await?;
    let now = now_ms();
    let mut out = String::new();
    let _ = write!(
        out,
        "<section class=\"project\"><h2>{}</h2><div class=\"board\">",
        esc(project.id().as_str())
    );
    for stage in project.pipeline.stages() {
        let here: Vec<&ItemRecord> = items
            .iter()
            .filter(|i| !i.progress.status.is_terminal() && i.progress.stage == stage.name)
            .collect();
        column(&mut out, stage.name.as_str(), &here, state, now).await?;
    }
    let mut finished: Vec<&ItemRecord> = items
        .iter()
        .filter(|i| i.progress.status.is_terminal())
        .collect();
    finished.sort_by_key(|i| std::cmp::Reverse(i.updated_at));
    finished.truncate(FINISHED_SHOWN);
    column(&mut out, "finished", &finished, state, now).await?;
    out.push_str("</div></section>");
    Ok(out)
}

async fn column(
    out: &mut String,
    name: &str,
    items: &[&ItemRecord],
    state: &AppState,
    now: i64,
) -> Result<(), HtmlError> {
    let _ = write!(
        out,
        "<div class=\"column\" data-stage=\"{0}\"><h3>{0} <span class=\"count\">{1}</span></h3>",
        esc(name),
        items.len()
    );
    for item in items {
        let runs = state.engine().store().list_runs(&item.id).await?;
        let spend = ItemSpend::of_runs(&runs).total;
        let status = item.progress.status.as_str();
        let _ = write!(
            out,
            "<a class=\"card status-{status}\" data-item=\"{id}\" href=\"/items/{id}\">\
             <div class=\"card-head\"><span class=\"id\">{id}</span>\
             <span class=\"badge\">{status}</span></div>\
             <div class=\"title\">{title}</div>\
             <div class=\"meta\">attempt {attempt} · {age} old · {spend}</div>",
            id = esc(item.id.as_str()),
            title = esc(&item.title),
            attempt = current_attempt(item),
            age = age(now, item.created_at),
            spend = esc(&spend.describe()),
        );
        if let Some(reason) = &item.blocked_reason {
            let _ = write!(out, "<div class=\"blocked\">{}</div>", esc(reason));
        }
        out.push_str("</a>");
    }
    out.push_str("</div>");
    Ok(())
}

/// The attempt number of the item's current stage (its latest run of that stage).
pub(crate) fn current_attempt(item: &ItemRecord) -> u32 {
    item.progress
        .attempts
        .get(&item.progress.stage)
        .copied()
        .unwrap_or(0)
}
