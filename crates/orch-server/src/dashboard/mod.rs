//! The dashboard: server-rendered HTML pages over the same store and engine as the JSON API.
//!
//! - `/` the board: per project, a column per pipeline stage with a card per open item;
//! - `/items/{id}` an item: its runs with verdicts and spend, its artifacts, its diff, and its
//!   live agent log (`/items/{id}/log/stream`, server-sent events);
//! - `/projects` each project with the health of its staging and prod instances;
//! - `/login`, `/logout`, and the POST forms approve / stop / retry.
//!
//! Access (see `docs/dashboard.md`): with an API token configured every page needs a session,
//! opened by presenting the token at `/login` (see [`session`]); without one the pages are
//! public and read-only, like the API's reads, and no form is shown or accepted. Every POST is
//! checked for its `Origin`, its session and its CSRF token before anything else happens.
//!
//! Everything the pages need is embedded in the binary; no page loads anything from elsewhere.

mod actions;
mod board;
mod html;
mod item;
mod projects;
mod session;
mod stream;

use std::time::SystemTime;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;
use html::{Page, Viewer, esc, page};
pub(crate) use session::SessionKey;

/// The dashboard's routes, to be merged into the server's router.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(board::render))
        .route("/projects", get(projects::render))
        .route("/items/{id}", get(item::render))
        .route("/items/{id}/log/stream", get(stream::log_stream))
        .route("/items/{id}/{action}", post(actions::submit))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/assets/dashboard.css", get(css))
        .route("/assets/dashboard.js", get(js))
}

/// Who is looking at a page.
#[derive(Debug, Clone)]
pub(crate) enum Access {
    /// Logged in; `csrf` goes into every form of the page.
    Session { csrf: String },
    /// No API token is configured: reading is public, nothing can be changed.
    ReadOnly,
}

impl Access {
    /// The viewer the page frame shows.
    fn viewer(&self) -> Viewer<'_> {
        match self {
            Access::Session { csrf } => Viewer::Session { csrf },
            Access::ReadOnly => Viewer::ReadOnly,
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
/// expired, or forged).
pub(crate) fn access(state: &AppState, headers: &HeaderMap) -> Result<Access, Refusal> {
    let Some(key) = state.session_key() else {
        return Ok(Access::ReadOnly);
    };
    session::cookie_value(headers)
        .and_then(|value| key.verify(value, SystemTime::now()))
        .map(|session| Access::Session {
            csrf: key.csrf_token(&session),
        })
        .ok_or(Refusal::Login)
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

async fn login_form(State(state): State<AppState>) -> Page {
    let body = if state.session_key().is_some() {
        "<section class=\"login\"><h1>Log in</h1>\
         <p>Enter the API token this server was started with (<code>ORCH_API_TOKEN</code>). \
         It is checked once; the browser keeps only a session cookie, never the token.</p>\
         <form method=\"post\" action=\"/login\"><label>API token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus required>\
         </label><button type=\"submit\">Log in</button></form></section>"
    } else {
        "<section class=\"login\"><h1>Read-only</h1><p>This server has no API token \
         (<code>ORCH_API_TOKEN</code>), so nobody can log in and the dashboard only shows.</p>\
         <p><a href=\"/\">Go to the board</a></p></section>"
    };
    let viewer = if state.session_key().is_some() {
        Viewer::Anonymous
    } else {
        Viewer::ReadOnly
    };
    page("Log in", viewer, body)
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    // Login CSRF: a foreign page must not log a browser into this server either.
    if !session::same_origin(&headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            "the form was not sent from this server's pages",
        );
    }
    let (Some(key), Some(expected)) = (state.session_key(), state.api_token()) else {
        return HtmlError(ApiError::NoTokenConfigured).into_response();
    };
    let Ok(Form(form)) = form else {
        return HtmlError(ApiError::BadRequest("the login form needs `token`".into()))
            .into_response();
    };
    if !bool::from(form.token.trim().as_bytes().ct_eq(expected.expose())) {
        return refuse(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let session = key.issue(SystemTime::now());
    (
        [(header::SET_COOKIE, session.set_cookie())],
        Redirect::to("/"),
    )
        .into_response()
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
    if let Err(refused) = check_post(&state, &headers, &csrf) {
        return refused.into_response();
    }
    (
        [(header::SET_COOKIE, session::clear_cookie())],
        Redirect::to("/login"),
    )
        .into_response()
}

/// The checks every state-changing POST passes before it is read further: same origin, a valid
/// session, and the session's CSRF token.
pub(crate) fn check_post(state: &AppState, headers: &HeaderMap, csrf: &str) -> Result<(), Refusal> {
    if !session::same_origin(headers) {
        return Err(Refusal::page(
            StatusCode::FORBIDDEN,
            "the form was not sent from this server's pages (Origin)",
        ));
    }
    let Some(key) = state.session_key() else {
        return Err(ApiError::NoTokenConfigured.into());
    };
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
    Ok(())
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
