//! Bearer-token authentication of the JSON API.
//!
//! With a token configured, every `/api/v1` request must carry it. Without one, reads are
//! allowed and every write is refused (403): a server nobody gave a token cannot be driven by
//! whoever reaches its port.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(expected) = state.api_token() else {
        let reads = request.method() == Method::GET || request.method() == Method::HEAD;
        return if reads {
            Ok(next.run(request).await)
        } else {
            Err(ApiError::NoTokenConfigured)
        };
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    // Constant time, so the comparison does not tell an attacker how much of a guess was right.
    if bool::from(presented.as_bytes().ct_eq(expected.expose())) {
        Ok(next.run(request).await)
    } else {
        Err(ApiError::Unauthorized)
    }
}
