//! `/items/{id}`: one item. Its runs as a timeline with verdicts, reasons and spend, the forms
//! people act with, its live agent log, its artifacts and the diff of its branch.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use axum::extract::{Path as UrlPath, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use orch_core::ItemId;
use orch_core::frontmatter::{self, Frontmatter};
use orch_core::transition::ItemStatus;
use orch_engine::Project;
use orch_engine::spend::ItemSpend;
use orch_process::safe_file;
use orch_store::{EventRecord, ItemRecord, RunRecord};

use super::html::{csrf_field, esc, page};
use super::{Access, HtmlError, access};
use crate::error::ApiError;
use crate::state::AppState;

/// The largest part of an artifact or a diff a page shows.
const SHOWN_BYTES: usize = 200 * 1024;

pub(crate) async fn render(
    State(state): State<AppState>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response {
    let access = match access(&state, &headers).await {
        Ok(a) => a,
        Err(refused) => return refused.into_response(),
    };
    match item_page(&state, &access, &id).await {
        Ok(body) => page(&id, access.viewer(), &body).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The item named by a URL segment, or a 400/404 naming the problem.
pub(crate) async fn find_item(state: &AppState, raw: &str) -> Result<ItemRecord, HtmlError> {
    let id = ItemId::parse(raw).map_err(|e| ApiError::BadRequest(format!("bad item id: {e}")))?;
    state
        .engine()
        .store()
        .get_item(&id)
        .await?
        .ok_or_else(|| HtmlError(ApiError::NotFound(format!("no work item `{id}`"))))
}

async fn item_page(state: &AppState, access: &Access, raw: &str) -> Result<String, HtmlError> {
    let item = find_item(state, raw).await?;
    let store = state.engine().store();
    let runs = store.list_runs(&item.id).await?;
    let events = store.list_events(&item.id, 0).await?;
    let project = state.engine().project(&item.project)?;
    let spend = ItemSpend::of_runs(&runs);

    let mut out = String::new();
    let status = item.progress.status;
    let _ = write!(
        out,
        "<section class=\"item-head\"><h1><span class=\"id\">{id}</span> {title}</h1>\
         <p class=\"meta\">project {project} · stage <b>{stage}</b> · \
         <span class=\"badge status-{status}\" id=\"item-status\">{status}</span> · spend {spend}</p>",
        id = esc(item.id.as_str()),
        title = esc(&item.title),
        project = esc(item.project.as_str()),
        stage = esc(item.progress.stage.as_str()),
        status = status.as_str(),
        spend = esc(&spend.total.describe()),
    );
    if project.sandbox.is_opted_out() {
        let _ = write!(
            out,
            "<p class=\"unconfined\" id=\"unconfined\">{}</p>",
            esc(orch_process::OPTED_OUT_NOTICE)
        );
    }
    if let Some(reason) = &item.blocked_reason {
        let _ = write!(out, "<p class=\"blocked\">{}</p>", esc(reason));
    }
    if !item.body.trim().is_empty() {
        let _ = write!(out, "<p class=\"body\">{}</p>", esc(item.body.trim()));
    }
    out.push_str("</section>");

    actions(&mut out, state, access, &item).await;

    if access.shows_content() {
        let _ = write!(
            out,
            "<section><h2>Live log</h2><pre class=\"log\" id=\"log\" data-stream=\"/items/{}/log/stream\">\
             </pre><p class=\"hint\" id=\"log-state\">connecting…</p></section>",
            esc(item.id.as_str())
        );
    }
    timeline(&mut out, &runs);
    super::checks::section(&mut out, &events);
    if access.shows_content() {
        artifacts(&mut out, project, &item.id);
        diff(&mut out, project, &item).await;
    } else {
        let _ = write!(
            out,
            "<section><h2>Artifacts, log and diff</h2><p class=\"hint\">{}</p></section>",
            esc(super::stream::HIDDEN)
        );
    }
    events_list(&mut out, &events);
    Ok(out)
}

/// The approve / stop / retry forms that fit the item's status, for a logged-in viewer.
async fn actions(out: &mut String, state: &AppState, access: &Access, item: &ItemRecord) {
    let Access::Session { csrf, actor } = access else {
        return;
    };
    let status = item.progress.status;
    let form = |action: &str, label: &str, extra: &str| {
        format!(
            "<form method=\"post\" action=\"/items/{}/{action}\" class=\"action\">{}{extra}\
             <button type=\"submit\" name=\"do\" value=\"{action}\" id=\"{action}-button\">{label}</button></form>",
            esc(item.id.as_str()),
            csrf_field(csrf)
        )
    };
    let _ = write!(
        out,
        "<section class=\"actions\"><p class=\"hint\">You act as <b>{}</b> ({}).</p>",
        esc(actor.name()),
        actor.kind()
    );
    if status == ItemStatus::AwaitingApproval {
        // What the approval binds to, so the approver sees it before pressing.
        if let Ok(ev) = state.engine().approval_evidence(&item.id).await {
            let _ = write!(
                out,
                "<p class=\"evidence\">Approving deploys build <code>{}</code> (digest <code>{}</code>), validated on staging.</p>",
                esc(ev.sha.as_deref().unwrap_or("none recorded")),
                esc(ev.digest.as_deref().unwrap_or("none recorded"))
            );
        }
        out.push_str(&form("approve", "Approve deploy", ""));
    }
    if matches!(status, ItemStatus::Blocked | ItemStatus::NeedsInfo) {
        out.push_str(&form(
            "retry",
            "Retry",
            "<input type=\"text\" name=\"answer\" placeholder=\"answer for the agent (optional)\">",
        ));
    }
    if !status.is_terminal() {
        out.push_str(&form("stop", "Stop", ""));
    }
    out.push_str("</section>");
}

fn timeline(out: &mut String, runs: &[RunRecord]) {
    out.push_str(
        "<section><h2>Runs</h2><table class=\"runs\"><thead><tr><th>stage</th><th>attempt</th>\
         <th>state</th><th>took</th><th>verdict</th><th>reasons</th><th>spend</th></tr></thead><tbody>",
    );
    for run in runs {
        let took = match (run.started_at, run.finished_at) {
            (Some(s), Some(f)) => format!("{:.1}s", (f - s) as f64 / 1000.0),
            (None, Some(_)) => "approval".into(),
            _ => "–".into(),
        };
        let verdict = run.verdict.as_ref();
        let field = |name: &str| {
            verdict
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let list = |name: &str| -> Vec<String> {
            verdict
                .and_then(|v| v.get(name))
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut reasons = String::new();
        for reason in list("reasons") {
            let _ = write!(reasons, "<li>{}</li>", esc(&reason));
        }
        let gates = list("gates");
        if !gates.is_empty() {
            let _ = write!(
                reasons,
                "<li class=\"gates\">failed gates: {}</li>",
                esc(&gates.join(", "))
            );
        }
        let spend = if run.usage.is_some() {
            ItemSpend::of_runs(std::slice::from_ref(run))
                .total
                .describe()
        } else {
            "–".into()
        };
        let _ = write!(
            out,
            "<tr class=\"run state-{state}\"><td>{stage}</td><td>{attempt}</td><td>{state}</td>\
             <td>{took}</td><td>{class} {value}</td><td><ul>{reasons}</ul></td><td>{spend}</td></tr>",
            stage = esc(run.stage.as_str()),
            attempt = run.attempt,
            state = run.state.as_str(),
            class = esc(&field("class")),
            value = esc(&field("value")),
            spend = esc(&spend),
        );
    }
    out.push_str("</tbody></table></section>");
}

/// Where the item's files are now: its worktree while it has one, else the main repository
/// (after the merge the artifacts live on the default branch).
fn checkout(project: &Project, id: &ItemId) -> PathBuf {
    let worktree = project.worktree(id);
    if worktree.is_dir() {
        worktree
    } else {
        project.settings.repo.clone()
    }
}

fn artifacts(out: &mut String, project: &Project, id: &ItemId) {
    let root = checkout(project, id);
    let dir = orch_engine::project::artifact_dir(id);
    out.push_str("<section><h2>Artifacts</h2>");
    let mut any = false;
    for stage in project.pipeline.stages() {
        let Some(name) = &stage.artifact else {
            continue;
        };
        // Never through a link, only a regular file, bounded: an agent's link to
        // `/proc/self/environ` would otherwise show orch's secrets on this page.
        let rel = format!("{dir}{name}");
        let text = match safe_file::read_regular_bounded(&root, Path::new(&rel), SHOWN_BYTES) {
            Ok(read) => read.text(),
            Err(safe_file::SafeFileError::NotFound { .. }) => continue,
            Err(e) => {
                any = true;
                let _ = write!(
                    out,
                    "<p class=\"error\">{} is not shown: {}</p>",
                    esc(name),
                    esc(&e.to_string())
                );
                continue;
            }
        };
        any = true;
        let _ = write!(
            out,
            "<details class=\"artifact\" open><summary>{} <span class=\"hint\">({})</span></summary>",
            esc(name),
            esc(stage.name.as_str())
        );
        match Frontmatter::parse(Some(&text)) {
            Ok(fm) => {
                out.push_str("<table class=\"frontmatter\">");
                for (key, value) in fm.fields() {
                    let shown = value
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| serde_json::to_string(value).unwrap_or_default());
                    let _ = write!(
                        out,
                        "<tr><th>{}</th><td>{}</td></tr>",
                        esc(key),
                        esc(&shown)
                    );
                }
                out.push_str("</table>");
            }
            Err(e) => {
                let _ = write!(
                    out,
                    "<p class=\"error\">frontmatter unreadable: {}</p>",
                    esc(&e.to_string())
                );
            }
        }
        let _ = write!(
            out,
            "<pre>{}</pre></details>",
            esc(frontmatter::body(&text))
        );
    }
    if !any {
        out.push_str("<p class=\"hint\">No artifacts yet.</p>");
    }
    out.push_str("</section>");
}

async fn diff(out: &mut String, project: &Project, item: &ItemRecord) {
    out.push_str("<section><h2>Diff</h2>");
    let worktree = project.worktree(&item.id);
    if !worktree.is_dir() {
        out.push_str(
            "<p class=\"hint\">The item has no worktree now (not started, merged or stopped); \
             its commits are in the repository's history.</p></section>",
        );
        return;
    }
    let shown = async {
        let repo = orch_git::Repo::open(&project.settings.repo).await?;
        let default = repo.default_branch().await?;
        let base = repo
            .merge_base(&default, &orch_engine::project::branch(&item.id))
            .await?;
        repo.diff(&worktree, &base, SHOWN_BYTES).await
    }
    .await;
    match shown {
        Ok(text) if text.trim().is_empty() => out.push_str("<p class=\"hint\">No changes yet.</p>"),
        Ok(text) => {
            let _ = write!(out, "<pre class=\"diff\">{}</pre>", esc(&text));
        }
        Err(e) => {
            let _ = write!(
                out,
                "<p class=\"error\">The diff could not be read: {}</p>",
                esc(&e.to_string())
            );
        }
    }
    out.push_str("</section>");
}

fn events_list(out: &mut String, events: &[EventRecord]) {
    let _ = write!(
        out,
        "<section><details><summary>History ({} events)</summary><table class=\"events\">",
        events.len()
    );
    for e in events {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            e.seq,
            esc(&e.kind),
            esc(&e.data.to_string())
        );
    }
    out.push_str("</table></details></section>");
}
