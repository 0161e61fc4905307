//! `/api/v1`: the board over HTTP. Every change goes through the engine's commands.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use orch_core::{ItemId, ProjectId};
use orch_engine::Actor;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::views;

type ApiResult<T> = Result<T, ApiError>;

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    project: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewItem {
    /// May be left out when the server has exactly one project.
    project: Option<String>,
    title: String,
    #[serde(default)]
    body: String,
}

/// The body of approve and stop. `by` is accepted only when it names the caller: who acts is
/// who the token names, never what the body says.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActorBody {
    by: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    answer: Option<String>,
    by: Option<String>,
}

/// `GET /api/v1/projects/{project}/queue`: the items between staging and prod, next first.
pub(crate) async fn promotion_queue(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = project_id(&project)?;
    let queue = state.engine().promotion_queue(&id).await?;
    Ok(Json(
        serde_json::json!({ "project": id.as_str(), "queue": queue }),
    ))
}

pub(crate) async fn list_items(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let project = match query.project.as_deref() {
        Some(name) => {
            let id = project_id(name)?;
            state.engine().project(&id)?;
            Some(id)
        }
        None => None,
    };
    let items = state.engine().store().list_items(project.as_ref()).await?;
    Ok(Json(items.iter().map(views::item_json).collect()))
}

pub(crate) async fn show_item(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = item_id(&id)?;
    let store = state.engine().store();
    let item = store
        .get_item(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no work item `{id}`")))?;
    let runs = store.list_runs(&id).await?;
    let events = store.list_events(&id, 0).await?;
    Ok(Json(views::item_detail_json(&item, &runs, &events)))
}

pub(crate) async fn create_item(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let new: NewItem = required_json(body)?;
    if new.title.trim().is_empty() {
        return Err(ApiError::BadRequest("`title` must not be empty".into()));
    }
    let project = match new.project.as_deref() {
        Some(name) => project_id(name)?,
        None => only_project(&state)?,
    };
    let item = state
        .engine()
        .create_item(&project, &new.title, &new.body)
        .await?;
    state.notify_work_added();
    Ok((StatusCode::CREATED, Json(views::item_json(&item))))
}

pub(crate) async fn approve_item(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let id = item_id(&id)?;
    let body: ActorBody = optional_json(body)?;
    only_self(&caller, body.by.as_deref())?;
    state.engine().approve_as(&id, &caller).await?;
    state.notify_work_added();
    current(&state, &id).await
}

pub(crate) async fn stop_item(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let id = item_id(&id)?;
    let body: ActorBody = optional_json(body)?;
    only_self(&caller, body.by.as_deref())?;
    state.engine().stop_as(&id, &caller).await?;
    current(&state, &id).await
}

pub(crate) async fn retry_item(
    State(state): State<AppState>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let id = item_id(&id)?;
    let retry: RetryRequest = optional_json(body)?;
    only_self(&caller, retry.by.as_deref())?;
    state.engine().retry_as(&id, retry.answer, &caller).await?;
    state.notify_work_added();
    current(&state, &id).await
}

/// The item as it is after a change.
async fn current(state: &AppState, id: &ItemId) -> ApiResult<Json<Value>> {
    let item = state
        .engine()
        .store()
        .get_item(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no work item `{id}`")))?;
    Ok(Json(views::item_json(&item)))
}

fn item_id(raw: &str) -> ApiResult<ItemId> {
    ItemId::parse(raw).map_err(|e| ApiError::BadRequest(format!("bad item id: {e}")))
}

fn project_id(raw: &str) -> ApiResult<ProjectId> {
    ProjectId::parse(raw).map_err(|e| ApiError::BadRequest(format!("bad project name: {e}")))
}

fn only_project(state: &AppState) -> ApiResult<ProjectId> {
    let mut ids = state.engine().projects().map(|p| p.id().clone());
    match (ids.next(), ids.next()) {
        (Some(id), None) => Ok(id),
        (None, _) => Err(ApiError::BadRequest(
            "this server has no projects configured".into(),
        )),
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "several projects are configured; name one in `project`".into(),
        )),
    }
}

/// Refuses a body's `by` that names someone other than the caller.
fn only_self(caller: &Actor, by: Option<&str>) -> ApiResult<()> {
    match by.map(str::trim).filter(|b| !b.is_empty()) {
        Some(named) if named != caller.name() => Err(ApiError::BadRequest(format!(
            "`by` says `{named}`, but this token is {}'s; leave `by` out: who acts is who the token names",
            caller.name()
        ))),
        _ => Ok(()),
    }
}

/// The body read as JSON. The content type is not checked: `curl -d` sends a form type.
fn required_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = read_body(body)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("the body is not the expected JSON: {e}")))
}

/// Like [`required_json`], but an empty body means every field left out.
fn optional_json<T: DeserializeOwned + Default>(
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<T> {
    let bytes = read_body(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    required_json(Ok(bytes))
}

fn read_body(body: Result<Bytes, BytesRejection>) -> ApiResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: crate::BODY_LIMIT,
            }
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
        }
    })
}
