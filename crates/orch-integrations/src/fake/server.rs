//! The part every fake shares: binding on loopback, recording requests (headers and bodies),
//! the token check, then injected faults (a refused token never spends one, as on a real
//! server), and the git repository over smart HTTP behind the fake's git credentials; each fake
//! supplies only its routes and credentials.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::smart_http::{self, GitRepository};

/// One request a fake received, as sent: tests assert what a client put in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// Every header, names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The raw body (empty for none; not kept for git's pack data).
    pub body: Vec<u8>,
}

impl Recorded {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Self {
        Self {
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| uri.path().to_owned()),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        }
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`None` when empty or not JSON).
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A failure a fake answers the next request with instead of its real answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// This status with a JSON error body.
    Status(u16),
    /// 429 with `X-RateLimit-Remaining: 0` and `X-RateLimit-Reset` this many seconds ahead.
    RateLimited { reset_in_secs: u64 },
    /// The same as a 403, as GitHub answers an exhausted primary rate limit.
    RateLimitedForbidden { reset_in_secs: u64 },
    /// No answer for this long (longer than the client's timeout makes a timeout).
    Hang(Duration),
}

/// What one fake service answers; [`FakeServer`] does the rest.
#[async_trait]
pub trait FakeApi: Send + Sync + 'static {
    /// Whether the request carries the right credentials.
    fn authorized(&self, headers: &HeaderMap) -> bool;
    /// Told the server's base URL once, before the first request (clone URLs name it).
    fn serving_at(&mut self, _base_url: &str) {}
    /// The git repository served over smart HTTP, if the service has one.
    fn git_repository(&self) -> Option<GitRepository> {
        None
    }
    /// The user a git request authenticates as, if its credentials are the ones the real
    /// service accepts for git over HTTP; `None` is answered 401.
    fn git_user(&self, _headers: &HeaderMap) -> Option<String> {
        None
    }
    /// The realm of the 401 challenge for git.
    fn git_realm(&self) -> &'static str {
        "fake"
    }
    /// An answer to an authorized request the service refuses for its headers (a wrong API
    /// version), before routing.
    fn refuse_headers(&self, _headers: &HeaderMap) -> Option<(StatusCode, Value)> {
        None
    }
    /// Headers to add to an answer (what permission a refused request needed).
    fn answer_headers(&self, _method: &Method, _path: &str, _status: StatusCode) -> HeaderMap {
        HeaderMap::new()
    }
    /// The answer to an authorized request: status and JSON body (`Value::Null` for none).
    async fn answer(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        body: Value,
    ) -> (StatusCode, Value);
}

struct Shared<A> {
    api: Mutex<A>,
    recorded: std::sync::Mutex<Vec<Recorded>>,
    /// git's requests, apart: they are not API calls (a fetch is a POST, yet reads nothing).
    git: std::sync::Mutex<Vec<Recorded>>,
    faults: std::sync::Mutex<VecDeque<Fault>>,
}

/// A running fake; it stops when dropped.
pub struct FakeServer<A: FakeApi> {
    shared: Arc<Shared<A>>,
    base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl<A: FakeApi> std::fmt::Debug for FakeServer<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeServer")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl<A: FakeApi> FakeServer<A> {
    /// Serves `api` on an ephemeral loopback port.
    pub async fn start(mut api: A) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        api.serving_at(&base_url);
        let shared = Arc::new(Shared {
            api: Mutex::new(api),
            recorded: std::sync::Mutex::new(Vec::new()),
            git: std::sync::Mutex::new(Vec::new()),
            faults: std::sync::Mutex::new(VecDeque::new()),
        });
        let app = axum::Router::new()
            .fallback(handle::<A>)
            // git pushes pack files; the extractor's 2 MB default is for API bodies.
            .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            shared,
            base_url,
            task,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .recorded
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Every git request over smart HTTP so far (refused ones included), in order; their
    /// bodies are not kept.
    pub fn git_requests(&self) -> Vec<Recorded> {
        self.shared
            .git
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The requests with `method` whose path starts with `prefix`.
    pub fn requests_to(&self, method: &str, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(prefix))
            .collect()
    }

    /// The next requests get these faults, one each, before answers resume.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        if let Ok(mut queue) = self.shared.faults.lock() {
            queue.extend(faults);
        }
    }

    /// Runs `f` on the fake's state (to seed it or to look at it).
    pub async fn with<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        f(&mut *self.shared.api.lock().await)
    }
}

impl<A: FakeApi> Drop for FakeServer<A> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle<A: FakeApi>(
    State(shared): State<Arc<Shared<A>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = uri.query().unwrap_or_default().to_owned();
    let (git, git_user, authorized, realm) = {
        let api = shared.api.lock().await;
        (
            api.git_repository(),
            api.git_user(&headers),
            api.authorized(&headers),
            api.git_realm(),
        )
    };
    if let Some(repo) = git
        && let Some(rest) = repo.inside(&path)
    {
        if let Ok(mut recorded) = shared.git.lock() {
            recorded.push(Recorded::new(&method, &uri, &headers, &[]));
        }
        return match git_user {
            Some(user) => {
                smart_http::serve(&repo, rest, &method, &query, &headers, body, &user).await
            }
            None => smart_http::challenge(realm),
        };
    }
    if let Ok(mut recorded) = shared.recorded.lock() {
        recorded.push(Recorded::new(&method, &uri, &headers, &body));
    }
    // A real server checks the credentials first: a refused token never reaches what would
    // have failed, so a fault is spent only on an authorized request.
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({ "message": "token is required", "detail": "Authentication credentials were not provided." })),
        )
            .into_response();
    }
    let fault = shared.faults.lock().ok().and_then(|mut q| q.pop_front());
    match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, axum::Json(json!({ "error": "injected failure" }))).into_response();
        }
        Some(
            fault @ (Fault::RateLimited { reset_in_secs }
            | Fault::RateLimitedForbidden { reset_in_secs }),
        ) => {
            let status = match fault {
                Fault::RateLimitedForbidden { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::TOO_MANY_REQUESTS,
            };
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                + reset_in_secs;
            return (
                status,
                [
                    ("x-ratelimit-remaining", "0".to_owned()),
                    ("x-ratelimit-reset", reset.to_string()),
                ],
                axum::Json(json!({ "error": "rate limit exceeded" })),
            )
                .into_response();
        }
        Some(Fault::Hang(wait)) => tokio::time::sleep(wait).await,
        None => {}
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({ "message": format!("invalid JSON: {e}") })),
                )
                    .into_response();
            }
        }
    };
    let mut api = shared.api.lock().await;
    if let Some((status, value)) = api.refuse_headers(&headers) {
        return (status, axum::Json(value)).into_response();
    }
    let (status, value) = api.answer(&method, &path, &query, body).await;
    let extra = api.answer_headers(&method, &path, status);
    if value.is_null() {
        (status, extra).into_response()
    } else {
        (status, extra, axum::Json(value)).into_response()
    }
}

/// `key=value` pairs of a query string, percent-decoded.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A percent-decoded path segment or query value.
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn not_found(what: &str) -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({ "message": format!("{what} not found"), "error": format!("{what} not found") }),
    )
}
