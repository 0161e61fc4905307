//! The one error type of the server and its one mapping to HTTP statuses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use orch_engine::EngineError;
use serde_json::json;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ApiError {
    /// The request lacks the bearer token, or carries another one.
    #[error("missing or wrong API token; send `Authorization: Bearer <token>`")]
    Unauthorized,
    /// The server was started without an API token, so nothing may change through the API.
    #[error(
        "this server has no API token configured, so the API is read-only; restart it with a \
         token (see `orch serve --help`) and send it as `Authorization: Bearer <token>`"
    )]
    NoTokenConfigured,
    /// A webhook delivery whose signature is missing or wrong, or whose source has no secret.
    #[error("webhook from {sender} refused: {reason}")]
    BadSignature {
        sender: &'static str,
        reason: &'static str,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// Known, but not allowed to see or do this.
    #[error("{0}")]
    Forbidden(String),
    /// The request does not fit the item's state (approve what does not wait for approval).
    #[error("{0}")]
    Conflict(String),
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Something failed inside orch; the details go to the log, not to the client.
    #[error("internal error; see the server log")]
    Internal(String),
}

impl ApiError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::BadSignature { .. } => StatusCode::UNAUTHORIZED,
            ApiError::NoTokenConfigured | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!("request failed: {detail}");
        }
        (self.status(), Json(json!({ "error": self.to_string() }))).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::UnknownItem(_) | EngineError::UnknownProject(_) => {
                ApiError::NotFound(e.to_string())
            }
            EngineError::Refused { .. } => ApiError::Conflict(e.to_string()),
            EngineError::Store(orch_store::StoreError::NotFound { .. }) => {
                ApiError::NotFound(e.to_string())
            }
            EngineError::Store(orch_store::StoreError::Conflict { .. }) => {
                ApiError::Conflict(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<orch_store::StoreError> for ApiError {
    fn from(e: orch_store::StoreError) -> Self {
        EngineError::from(e).into()
    }
}
