//! Bearer-token authentication of the JSON API.
//!
//! With any credential configured (the global token, or a person added with `orch user add`),
//! every `/api/v1` request must carry one, and the request acts as who it names
//! ([`crate::people`]). Without any, reads are allowed and every write is refused (403): a
//! server nobody gave a token cannot be driven by whoever reaches its port.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use orch_engine::Actor;

use crate::error::ApiError;
use crate::people::{actor_of_token, credentials_exist};
use crate::state::AppState;

/// Who an authenticated API request acts as; in the request's extensions.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Actor);

pub(crate) async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !credentials_exist(&state).await? {
        let reads = request.method() == Method::GET || request.method() == Method::HEAD;
        return if reads {
            Ok(next.run(request).await)
        } else {
            Err(ApiError::NoTokenConfigured)
        };
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("")
        .to_owned();
    match actor_of_token(&state, &presented).await? {
        Some(actor) => {
            request.extensions_mut().insert(Caller(actor));
            Ok(next.run(request).await)
        }
        None => Err(ApiError::Unauthorized),
    }
}
