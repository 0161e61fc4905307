//! `/login`: a token presented once (a person's, or the automation token) opens a session of
//! who it names; failed attempts are limited per client address; behind a trusted
//! authenticating proxy, the person it names is logged in without a token.
//!
//! Must never: issue a session for anyone a token or a trusted proxy did not name.

use std::time::SystemTime;

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use orch_engine::Actor;
use serde::Deserialize;

use super::html::{Viewer, page};
use super::{HtmlError, Peer, refuse, session};
use crate::error::ApiError;
use crate::people::{actor_of_token, credentials_exist};
use crate::state::AppState;

pub(crate) async fn login_form(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    if let Some(user) = state.proxy_user(peer, &headers) {
        return proxy_login(&state, peer, &headers, &user).await;
    }
    let can_log_in = match credentials_exist(&state).await {
        Ok(can) => can,
        Err(e) => return HtmlError(e).into_response(),
    };
    let body = if can_log_in {
        "<section class=\"login\"><h1>Log in</h1>\
         <p>Enter your own token (<code>orch user add NAME</code> printed it), or the server's \
         automation token (<code>ORCH_API_TOKEN</code>). It is checked once; the browser keeps \
         only a session cookie, never the token.</p>\
         <form method=\"post\" action=\"/login\"><label>Token \
         <input type=\"password\" name=\"token\" autocomplete=\"current-password\" autofocus required>\
         </label><button type=\"submit\">Log in</button></form></section>"
    } else {
        "<section class=\"login\"><h1>Read-only</h1><p>This server has no API token \
         (<code>ORCH_API_TOKEN</code>) and no people (<code>orch user add</code>), so nobody \
         can log in and the dashboard only shows.</p>\
         <p><a href=\"/\">Go to the board</a></p></section>"
    };
    let viewer = if can_log_in {
        Viewer::Anonymous
    } else {
        Viewer::ReadOnly
    };
    page("Log in", viewer, body).into_response()
}

/// Logs in the person a trusted authenticating proxy names: only an active person of that exact
/// name, never anyone else.
async fn proxy_login(
    state: &AppState,
    peer: Option<std::net::SocketAddr>,
    headers: &HeaderMap,
    user: &str,
) -> Response {
    let people = match state.engine().store().list_people().await {
        Ok(people) => people,
        Err(e) => return HtmlError::from(e).into_response(),
    };
    let Some(person) = people.into_iter().find(|p| p.name == user && p.is_active()) else {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "the proxy says you are `{user}`, who is no active person in orch; `orch user add {user}` adds them"
            ),
        );
    };
    let session = state
        .session_key()
        .issue(SystemTime::now(), &Actor::Person(person.name));
    (
        [(
            header::SET_COOKIE,
            session.set_cookie(state.over_tls(peer, headers)),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    token: String,
}

pub(crate) async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
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
    let client = state.client_address(peer, &headers);
    if let Err(wait) = state.login_limiter().check(client) {
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "too many failed logins from this address; try again in {} s",
                wait.as_secs().max(1)
            ),
        );
        if let Ok(value) = wait.as_secs().max(1).to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    match credentials_exist(&state).await {
        Ok(true) => {}
        Ok(false) => return HtmlError(ApiError::NoTokenConfigured).into_response(),
        Err(e) => return HtmlError(e).into_response(),
    }
    let Ok(Form(form)) = form else {
        return HtmlError(ApiError::BadRequest("the login form needs `token`".into()))
            .into_response();
    };
    let actor = match actor_of_token(&state, &form.token).await {
        Ok(Some(actor)) => actor,
        Ok(None) => {
            state.login_limiter().failed(client);
            return refuse(StatusCode::UNAUTHORIZED, "wrong token");
        }
        Err(e) => return HtmlError(e).into_response(),
    };
    state.login_limiter().succeeded(client);
    let session = state.session_key().issue(SystemTime::now(), &actor);
    (
        [(
            header::SET_COOKIE,
            session.set_cookie(state.over_tls(peer, &headers)),
        )],
        Redirect::to("/"),
    )
        .into_response()
}
