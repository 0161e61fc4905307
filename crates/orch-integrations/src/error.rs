//! The one error type of trackers and forges. Each variant is something a caller can act on:
//! retry later, fix the token's scopes, fix the configuration, or give up on a bad answer.

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum IntegrationError {
    /// Nothing answered (connection refused, timeout, DNS), after the bounded retries.
    #[error("{service} is unreachable: {detail}")]
    Unreachable { service: String, detail: String },
    /// The service kept answering 429 after the bounded retries.
    #[error("{service} rate-limited orch; retry after {retry_after:?}")]
    RateLimited {
        service: String,
        retry_after: Option<Duration>,
    },
    /// 401 or 403: the token is wrong, expired or lacks a scope (named when the API says which).
    #[error("{service} refused the token{}: {detail}", scope.as_ref().map(|s| format!(" (missing scope `{s}`)")).unwrap_or_default())]
    Unauthorized {
        service: String,
        scope: Option<String>,
        detail: String,
    },
    #[error("{service}: not found: {what}")]
    NotFound { service: String, what: String },
    /// An answer orch cannot use: a 5xx after the retries, an unexpected status, a body that is
    /// not the documented shape.
    #[error("{service} answered badly: {detail}")]
    BadResponse { service: String, detail: String },
    /// orch refuses to do this (for example, push to the default branch).
    #[error("refused: {0}")]
    Refused(String),
    /// The configuration cannot work (a bad base URL, a missing state name).
    #[error("configuration: {0}")]
    Config(String),
    #[error("git: {0}")]
    Git(#[from] orch_git::GitError),
}

impl IntegrationError {
    /// Whether the failure may go away by itself (the caller keeps the item's place and tries
    /// again later), as opposed to one that needs a person.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IntegrationError::Unreachable { .. }
                | IntegrationError::RateLimited { .. }
                | IntegrationError::BadResponse { .. }
        )
    }
}

pub type Result<T, E = IntegrationError> = std::result::Result<T, E>;
