//! `/projects`: each project with the health of its staging and prod instances, probed now on
//! their configured ports and health path, once each and time-bounded.

use std::fmt::Write as _;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use orch_deploy::{DEFAULT_HEALTH_PATH, DeployConfig, HealthOutcome, probe_health};
use orch_engine::Project;
use tokio_util::sync::CancellationToken;

use super::access;
use super::html::{esc, page};
use crate::state::AppState;

/// How long one probe may take; the page waits at most this long for all of them.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

pub(crate) async fn render(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let access = match access(&state, &headers).await {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    let projects: Vec<_> = state.engine().projects().cloned().collect();
    let probes = projects.iter().map(|p| project_health(p));
    let rows = futures_util::future::join_all(probes).await;
    let mut body = String::from(
        "<h1>Projects</h1><table class=\"projects\"><thead><tr><th>project</th><th>repository</th>\
         <th>health path</th><th>sandbox</th><th>staging</th><th>prod</th></tr></thead><tbody>",
    );
    for (project, health) in projects.iter().zip(rows) {
        let _ = write!(
            body,
            "<tr data-project=\"{id}\"><td><a href=\"/?project={id}\">{id}</a></td><td><code>{repo}</code></td>\
             <td><code>{path}</code></td>{sandbox}{staging}{prod}</tr>",
            id = esc(project.id().as_str()),
            repo = esc(&project.settings.repo.display().to_string()),
            path = esc(&health.path),
            staging = cell(project.settings.staging_port, &health.staging),
            prod = cell(project.settings.prod_port, &health.prod),
            sandbox = sandbox_cell(&project.sandbox),
        );
    }
    body.push_str("</tbody></table>");
    for project in &projects {
        let Ok(queue) = state.engine().promotion_queue(project.id()).await else {
            continue;
        };
        if queue.is_empty() {
            continue;
        }
        let _ = write!(
            body,
            "<h2>Promotion queue of {}</h2><p class=\"hint\">In approval order: the first is promoted \
             next, once staging validated it against what prod runs.</p><table class=\"queue\" \
             data-project=\"{}\"><thead><tr><th>#</th><th>item</th><th>approved by</th><th>stage</th>\
             <th>waiting for</th></tr></thead><tbody>",
            esc(project.id().as_str()),
            esc(project.id().as_str())
        );
        for e in &queue {
            let _ = write!(
                body,
                "<tr><td>{}</td><td><a href=\"/items/{id}\">{id}</a> {title}</td><td>{by}</td>\
                 <td>{stage}</td><td>{waiting}</td></tr>",
                e.position,
                id = esc(e.item.as_str()),
                title = esc(&e.title),
                by = esc(e.approved_by.as_deref().unwrap_or("-")),
                stage = esc(&e.stage),
                waiting = esc(&e.waiting_for),
            );
        }
        body.push_str("</tbody></table>");
    }
    page("Projects", access.viewer(), &body).into_response()
}

struct ProjectHealth {
    path: String,
    staging: HealthOutcome,
    prod: HealthOutcome,
}

async fn project_health(project: &Project) -> ProjectHealth {
    let path = health_path(project);
    let probe = |port: u16| {
        let url = format!("http://127.0.0.1:{port}{path}");
        async move {
            probe_health(
                &url,
                1,
                Duration::ZERO,
                PROBE_TIMEOUT,
                &CancellationToken::new(),
            )
            .await
        }
    };
    let (staging, prod) = tokio::join!(
        probe(project.settings.staging_port),
        probe(project.settings.prod_port)
    );
    ProjectHealth {
        path,
        staging,
        prod,
    }
}

/// The health path of the project's process or docker deployer; a hook deployer (or a project without
/// a readable deploy file) is probed on the default path.
fn health_path(project: &Project) -> String {
    std::fs::read_to_string(
        project
            .settings
            .repo
            .join(orch_engine::project::files::DEPLOY),
    )
    .ok()
    .and_then(|text| DeployConfig::from_toml(&text).ok())
    .and_then(|config| match config {
        DeployConfig::Process(spec) => Some(spec.health.path),
        DeployConfig::Docker(spec) => Some(spec.health.path),
        DeployConfig::Hook(_) => None,
    })
    .unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_owned())
}

/// How the project's agents are confined; an opted-out project is shown as the warning it is.
fn sandbox_cell(sandbox: &orch_process::Sandbox) -> String {
    if sandbox.is_opted_out() {
        format!(
            "<td class=\"sandbox unconfined\"><b>NOT SANDBOXED</b> <span class=\"hint\">{}</span></td>",
            esc(orch_process::OPTED_OUT_NOTICE)
        )
    } else {
        format!("<td class=\"sandbox\">{}</td>", sandbox.label())
    }
}

fn cell(port: u16, outcome: &HealthOutcome) -> String {
    let (class, word) = if outcome.healthy {
        ("up", "healthy")
    } else {
        ("down", "down")
    };
    format!(
        "<td class=\"health {class}\">:{port} <b>{word}</b> <span class=\"hint\">{}</span></td>",
        esc(&outcome.last_detail)
    )
}
