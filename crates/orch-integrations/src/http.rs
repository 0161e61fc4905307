//! The HTTP client every remote adapter shares: one base URL, one auth header, JSON in and out,
//! and the one retry policy.
//!
//! Retries are bounded: 5xx, 429 and transport failures (refused, reset, timeout) are tried
//! again with exponential backoff; a rate limit (a 429, or GitHub's 403 with
//! `X-RateLimit-Remaining: 0` or `Retry-After`) waits as long as the service says
//! (`Retry-After` seconds, or the `X-RateLimit-Reset` epoch seconds of Plane and GitHub), capped. Everything else is answered
//! at once with a typed error. The token is never part of an error or a log line.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::error::{IntegrationError, Result};
use crate::secret::Token;

/// How often and how long to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// The first wait; each next one doubles.
    pub base_delay: Duration,
    /// No single wait (a rate limit's included) is longer.
    pub max_delay: Duration,
    /// Per request, connect included.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            timeout: Duration::from_secs(20),
        }
    }
}

/// A JSON API at `base_url` authenticated by one header.
#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    service: &'static str,
    base_url: String,
    auth: (HeaderName, Token),
    /// What goes before the token in the auth header (`token ` for Gitea, nothing for Plane).
    auth_prefix: &'static str,
    /// The `Accept` header: `application/json` unless the API asks for its own media type.
    accept: &'static str,
    /// Headers every request carries besides auth and `Accept` (an API version).
    extra: Vec<(HeaderName, HeaderValue)>,
    retry: RetryPolicy,
    http: reqwest::Client,
}

impl ApiClient {
    pub(crate) fn new(
        service: &'static str,
        base_url: &str,
        auth_header: &'static str,
        auth_prefix: &'static str,
        token: Token,
        retry: RetryPolicy,
    ) -> Result<Self> {
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(IntegrationError::Config(format!(
                "{service} base_url `{base_url}` must start with http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .user_agent(concat!("orch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| IntegrationError::Config(format!("{service}: HTTP client: {e}")))?;
        Ok(Self {
            service,
            base_url,
            auth: (HeaderName::from_static(auth_header), token),
            auth_prefix,
            accept: "application/json",
            extra: Vec::new(),
            retry,
            http,
        })
    }

    /// The same client sending `accept` as its `Accept` header and `extra` on every request.
    pub(crate) fn with_headers(
        mut self,
        accept: &'static str,
        extra: &[(&'static str, &'static str)],
    ) -> Self {
        self.accept = accept;
        self.extra = extra
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect();
        self
    }

    /// The auth header's value, for git pushes over HTTP (given to git out of its arguments).
    pub(crate) fn auth_header_line(&self) -> String {
        format!(
            "{}: {}{}",
            self.auth.0.as_str(),
            self.auth_prefix,
            self.auth.1.expose()
        )
    }

    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        self.send(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn patch(&self, path: &str, body: Value) -> Result<Value> {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> Result<Value> {
        self.send(Method::PUT, path, Some(body)).await
    }

    /// Sends with the retry policy; an empty 2xx body is `Value::Null`.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}{path}", self.base_url);
        let mut last = None;
        for attempt in 0..self.retry.attempts.max(1) {
            if attempt > 0 {
                let wait = match &last {
                    Some(IntegrationError::RateLimited {
                        retry_after: Some(wait),
                        ..
                    }) => *wait,
                    _ => self.backoff(attempt),
                };
                tokio::time::sleep(wait.min(self.retry.max_delay)).await;
            }
            match self.once(method.clone(), &url, path, body.as_ref()).await {
                Ok(value) => return Ok(value),
                Err(e) if e.is_transient() => {
                    tracing::debug!(service = self.service, %path, attempt, "retrying: {e}");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| IntegrationError::Unreachable {
            service: self.service.to_owned(),
            detail: "no attempt was made".into(),
        }))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.retry
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
    }

    async fn once(
        &self,
        method: Method,
        url: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value> {
        let mut auth =
            HeaderValue::from_str(&format!("{}{}", self.auth_prefix, self.auth.1.expose()))
                .map_err(|_| {
                    IntegrationError::Config(format!(
                        "{}: the token is not a valid header value",
                        self.service
                    ))
                })?;
        auth.set_sensitive(true);
        let mut request = self
            .http
            .request(method, url)
            .header(self.auth.0.clone(), auth)
            .header(reqwest::header::ACCEPT, self.accept);
        for (name, value) in &self.extra {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| IntegrationError::Unreachable {
                service: self.service.to_owned(),
                // Without the URL: it is ours anyway, and the error chain of reqwest repeats it.
                detail: transport_detail(e),
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .map_err(|e| IntegrationError::Unreachable {
                service: self.service.to_owned(),
                detail: transport_detail(e),
            })?;
        classify(self.service, path, status, &headers, &text)
    }
}

fn transport_detail(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        e.without_url().to_string()
    }
}

/// Maps a status and body to a value or a typed error.
fn classify(
    service: &'static str,
    path: &str,
    status: StatusCode,
    headers: &HeaderMap,
    text: &str,
) -> Result<Value> {
    let service_name = || service.to_owned();
    if status.is_success() {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(text).map_err(|e| IntegrationError::BadResponse {
            service: service_name(),
            detail: format!("{path}: the body is not JSON: {e}"),
        });
    }
    let message = error_message(text);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    // GitHub answers an exhausted rate limit with 403 (or 429) and `x-ratelimit-remaining: 0`,
    // and a secondary limit with 403 and `retry-after`: both are waits, not a bad token.
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (header("x-ratelimit-remaining") == Some("0") || header("retry-after").is_some()));
    // What GitHub says the endpoint needs: fine-grained permissions, else classic scopes.
    let accepted = header("x-accepted-github-permissions").or(header("x-accepted-oauth-scopes"));
    match status {
        _ if rate_limited => Err(IntegrationError::RateLimited {
            service: service_name(),
            retry_after: retry_after(headers),
        }),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(IntegrationError::Unauthorized {
            service: service_name(),
            scope: accepted
                .map(str::to_owned)
                .or_else(|| missing_scope(&message)),
            detail: format!("{} on {path}: {message}", status.as_u16()),
        }),
        // GitHub answers 404, not 403, for what a token may not see: say what it would need.
        StatusCode::NOT_FOUND => Err(IntegrationError::NotFound {
            service: service_name(),
            what: match accepted {
                Some(needed) => format!("{path} (or the token lacks `{needed}`)"),
                None => path.to_owned(),
            },
        }),
        s if s.is_server_error() => Err(IntegrationError::BadResponse {
            service: service_name(),
            detail: format!("{} on {path}: {message}", s.as_u16()),
        }),
        s => Err(IntegrationError::Refused(format!(
            "{service} answered {} on {path}: {message}",
            s.as_u16()
        ))),
    }
}

/// The human message of an error body: `message` (Gitea, GitHub), `error` or `detail` (Plane),
/// else the start of the text.
fn error_message(text: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    parsed
        .as_ref()
        .and_then(|v| {
            ["message", "error", "detail"]
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_str))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| text.chars().take(200).collect())
}

/// The scope an error message names: Gitea writes `required scope(s): [write:issue]` (GitHub's
/// headers are read by `classify`; Plane names none).
fn missing_scope(message: &str) -> Option<String> {
    let start = message.find("scope")?;
    let rest = &message[start..];
    let open = rest.find('[')?;
    let close = rest[open..].find(']')?;
    let scopes = rest[open + 1..open + close].trim();
    (!scopes.is_empty()).then(|| scopes.to_owned())
}

/// How long a 429 asks to wait: `Retry-After` (seconds) or `X-RateLimit-Reset` (epoch seconds).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number =
        |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    if let Some(secs) = number("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let reset = number("x-ratelimit-reset")?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitea_missing_scope_is_named() {
        let body = r#"{"message":"token does not have at least one of required scope(s): [write:issue]","url":"x"}"#;
        let err = classify(
            "gitea",
            "/x",
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            body,
        )
        .expect_err("403");
        match err {
            IntegrationError::Unauthorized { scope, .. } => {
                assert_eq!(scope.as_deref(), Some("write:issue"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn github_rate_limit_on_403_is_a_wait_not_a_bad_token() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset", HeaderValue::from(0u64));
        let err = classify("github", "/x", StatusCode::FORBIDDEN, &h, "{}").expect_err("403");
        assert!(
            matches!(err, IntegrationError::RateLimited { .. }),
            "{err:?}"
        );
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("12"));
        let err = classify("github", "/x", StatusCode::FORBIDDEN, &h, "{}").expect_err("403");
        assert!(
            matches!(err, IntegrationError::Unauthorized { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn github_accepted_permissions_are_named() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-accepted-github-permissions",
            HeaderValue::from_static("issues=write"),
        );
        let body = r#"{"message":"Resource not accessible by personal access token"}"#;
        match classify("github", "/x", StatusCode::FORBIDDEN, &h, body) {
            Err(IntegrationError::Unauthorized { scope, .. }) => {
                assert_eq!(scope.as_deref(), Some("issues=write"));
            }
            other => panic!("{other:?}"),
        }
        let err = classify("github", "/x", StatusCode::NOT_FOUND, &h, body).expect_err("404");
        assert!(err.to_string().contains("issues=write"), "{err}");
    }

    #[test]
    fn statuses_map_to_their_variants() {
        let h = HeaderMap::new();
        let cases = [
            (StatusCode::NOT_FOUND, "not-found"),
            (StatusCode::BAD_GATEWAY, "bad-response"),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
            (StatusCode::TOO_MANY_REQUESTS, "rate-limited"),
        ];
        for (status, want) in cases {
            let got = match classify("plane", "/p", status, &h, r#"{"error":"x"}"#) {
                Err(IntegrationError::NotFound { .. }) => "not-found",
                Err(IntegrationError::BadResponse { .. }) => "bad-response",
                Err(IntegrationError::Unauthorized { .. }) => "unauthorized",
                Err(IntegrationError::Refused(_)) => "refused",
                Err(IntegrationError::RateLimited { .. }) => "rate-limited",
                other => panic!("{status}: {other:?}"),
            };
            assert_eq!(got, want, "{status}");
        }
        assert_eq!(
            classify("plane", "/p", StatusCode::NO_CONTENT, &h, "").expect("ok"),
            Value::Null
        );
    }

    #[test]
    fn rate_limit_reset_is_read_as_epoch_seconds() {
        let mut h = HeaderMap::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        h.insert("x-ratelimit-reset", HeaderValue::from(now + 3));
        let wait = retry_after(&h).expect("a wait");
        assert!(
            wait <= Duration::from_secs(3) && wait >= Duration::from_secs(2),
            "{wait:?}"
        );
    }
}
