//! The dashboard: server-rendered HTML pages over the same store and engine as the JSON API.
//!
//! - `/` the board: per project, a column per pipeline stage with a card per open item;
//! - `/items/{id}` an item: its runs with verdicts and spend, its artifacts, its diff, and its
//!   live agent log (`/items/{id}/log/stream`, server-sent events);
//! - `/projects` each project with the health of its staging and prod instances;
//! - `/login`, `/logout`, and the POST forms approve / stop / retry.
//!
//! Access (see `docs/dashboard.md`): with any credential configured (the global API token, or a
//! person added with `orch user add`) every page needs a session, opened by presenting a token
//! at `/login` (see [`session`]), and acts as who that token names; without any, the pages are
//! public and read-only, like the API's reads, no form is shown or accepted, and artifact text,
//! logs and diffs are hidden unless the operator opted in ([`AppState::with_public_content`]).
//! Every POST is checked for its `Origin`, its session and its CSRF token before anything else
//! happens; failed logins are limited per client address ([`limits`]).
//!
//! Everything the pages need is embedded in the binary; no page loads anything from elsewhere.

mod actions;
mod board;
mod checks;
mod html;
mod item;
pub(crate) mod limits;
mod login;
mod projects;
mod session;
mod stream;

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use orch_engine::Actor;
use serde::Deserialize;

use crate::error::ApiError;
use crate::people::credentials_exist;
use crate::state::AppState;
use html::{Viewer, esc, page};
pub(crate) use session::SessionKey;

/// The dashboard's routes, to be merged into the server's router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(board::render))
        .route("/projects", get(projects::render))
        .route("/items/{id}", get(item::render))
        .route("/items/{id}/log/stream", get(stream::log_stream))
        .route("/items/{id}/{action}", post(actions::submit))
        .route("/login", get(login::login_form).post(login::login))
        .route("/logout", post(logout))
        .route("/assets/dashboard.css", get(css))
        .route("/assets/dashboard.js", get(js))
}

/// Who is looking at a page.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// Logged in as `actor`; `csrf` goes into every form of the page.
    Session { csrf: String, actor: Actor },
    /// No credential is configured: reading is public, nothing can be changed; artifact text,
    /// logs and diffs show only when the operator opted in (`content`).
    ReadOnly { content: bool },
}

impl Access {
    /// The viewer the page frame shows.
    fn viewer(&self) -> Viewer<'_> {
        match self {
            Access::Session { csrf, .. } => Viewer::Session { csrf },
            Access::ReadOnly { .. } => Viewer::ReadOnly,
        }
    }

    /// Whether artifact text, agent logs and diffs may be shown.
    pub(crate) fn shows_content(&self) -> bool {
        match self {
            Access::Session { .. } => true,
            Access::ReadOnly { content } => *content,
        }
    }
}

/// Why a request was turned away before its handler did anything.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A page needs a session and has none (or an expired or forged one): go log in.
    Login,
    /// A status and a message for an error page.
    Page { status: StatusCode, message: String },
}

impl Refusal {
    fn page(status: StatusCode, message: &str) -> Self {
        Refusal::Page {
            status,
            message: message.to_owned(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Login => Redirect::to("/login").into_response(),
            Refusal::Page { status, message } => refuse(status, &message),
        }
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Refusal::page(e.status(), &e.to_string())
    }
}

/// The request's access, or [`Refusal::Login`] when a session is needed and missing (or
/// expired, forged, or of a person revoked since).
pub(crate) async fn access(state: &AppState, headers: &HeaderMap) -> Result<Access, Refusal> {
    if !credentials_exist(state).await? {
        return Ok(Access::ReadOnly {
            content: state.public_content(),
        });
    }
    let key = state.session_key();
    let Some(session) =
        session::cookie_value(headers).and_then(|value| key.verify(value, SystemTime::now()))
    else {
        return Err(Refusal::Login);
    };
    let actor = session_actor(state, &session)
        .await?
        .ok_or(Refusal::Login)?;
    Ok(Access::Session {
        csrf: key.csrf_token(&session),
        actor,
    })
}

/// The actor of a verified session, if it still stands: a person must still be active, the
/// service only while the global token is configured.
async fn session_actor(
    state: &AppState,
    session: &session::Session,
) -> Result<Option<Actor>, ApiError> {
    Ok(match session.actor() {
        Some(Actor::Person(name)) => {
            let people = state.engine().store().list_people().await?;
            people
                .into_iter()
                .find(|p| p.name == name && p.is_active())
                .map(|p| Actor::Person(p.name))
        }
        Some(Actor::Service(name)) if state.api_token().is_some() => Some(Actor::Service(name)),
        _ => None,
    })
}

/// An error shown as an HTML page with the status of the same [`ApiError`] in the JSON API.
#[derive(Debug)]
pub(crate) struct HtmlError(pub(crate) ApiError);

impl<E: Into<ApiError>> From<E> for HtmlError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self.0 {
            tracing::error!("dashboard request failed: {detail}");
        }
        refuse(self.0.status(), &self.0.to_string())
    }
}

/// An error page with `status` and `message`.
fn refuse(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/\">Back to the board</a></p>",
        status.as_u16(),
        esc(message)
    );
    (status, page("Error", Viewer::Anonymous, &body)).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let csrf = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if let Err(refused) = check_post(&state, &headers, &csrf).await {
        return refused.into_response();
    }
    (
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

/// The checks every state-changing POST passes before it is read further: same origin, a valid
/// session of someone who still may act, and the session's CSRF token. Returns who acts.
pub(crate) async fn check_post(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<Actor, Refusal> {
    if !session::same_origin(headers) {
        return Err(Refusal::page(
            StatusCode::FORBIDDEN,
            "the form was not sent from this server's pages (Origin)",
        ));
    }
    if !credentials_exist(state).await? {
        return Err(ApiError::NoTokenConfigured.into());
    }
    let key = state.session_key();
    let Some(session) =
        session::cookie_value(headers).and_then(|v| key.verify(v, SystemTime::now()))
    else {
        return Err(Refusal::page(StatusCode::UNAUTHORIZED, "log in first"));
    };
    if !key.csrf_holds(&session, csrf) {
        return Err(Refusal::page(
            StatusCode::FORBIDDEN,
            "the form's CSRF token is missing or wrong; reload the page and try again",
        ));
    }
    session_actor(state, &session)
        .await?
        .ok_or_else(|| Refusal::page(StatusCode::UNAUTHORIZED, "log in again"))
}

/// The address of the connection, when the server was started with connection info (it always
/// is by [`crate::serve`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) Option<std::net::SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/dashboard.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("assets/dashboard.js"),
    )
}
