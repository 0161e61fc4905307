//! The POST forms of the item page: approve, stop, retry. Each passes [`check_post`] (origin,
//! session, CSRF token) before its item is even looked up, then goes through the engine's
//! command like the CLI and the API do, as the session's person (or automation), and sends the
//! browser back to the item.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use orch_engine::Actor;
use serde::Deserialize;

use super::item::find_item;
use super::{HtmlError, check_post};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// For retry: an answer to the agent's question.
    answer: Option<String>,
}

/// The actions a form may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Approve,
    Stop,
    Retry,
}

impl Action {
    fn parse(raw: &str) -> Option<Self> {
        match raw {
            "approve" => Some(Action::Approve),
            "stop" => Some(Action::Stop),
            "retry" => Some(Action::Retry),
            _ => None,
        }
    }
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    // An unreadable form has no CSRF token; it is refused like a missing one.
    let form = form.map(|Form(f)| f).unwrap_or(ActionForm {
        csrf: String::new(),
        answer: None,
    });
    let actor = match check_post(&state, &headers, &form.csrf).await {
        Ok(actor) => actor,
        Err(refused) => return refused.into_response(),
    };
    let Some(action) = Action::parse(&action) else {
        return HtmlError(ApiError::NotFound(format!(
            "no action `{action}`; the item page offers approve, stop and retry"
        )))
        .into_response();
    };
    match run(&state, &id, action, form.answer, &actor).await {
        Ok(location) => Redirect::to(&location).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run(
    state: &AppState,
    id: &str,
    action: Action,
    answer: Option<String>,
    actor: &Actor,
) -> Result<String, HtmlError> {
    let item = find_item(state, id).await?;
    let engine = state.engine();
    match action {
        Action::Approve => {
            engine.approve_as(&item.id, actor).await?;
            state.notify_work_added();
        }
        Action::Stop => engine.stop_as(&item.id, actor).await?,
        Action::Retry => {
            let answer = answer
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty());
            engine.retry_as(&item.id, answer, actor).await?;
            state.notify_work_added();
        }
    }
    Ok(format!("/items/{}", item.id))
}
