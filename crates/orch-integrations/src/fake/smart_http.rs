//! git over smart HTTP for the fake forges: the fake's bare repository is served by
//! `git http-backend` (git's own CGI program, so the protocol is git's, not a copy of it) at
//! `{base_url}/{owner}/{repo}.git`, behind the fake's credential check for git, so that a push or
//! fetch orch makes carries its credentials the way the real forge requires them.
//!
//! It never serves another directory than the fake's bare repository, and never runs the CGI
//! for a request whose credentials the fake refused.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use tokio::io::AsyncWriteExt;

/// The repository a fake serves over HTTP.
#[derive(Debug, Clone)]
pub struct GitRepository {
    /// The URL path of the repository, `/{owner}/{repo}.git`.
    pub path: String,
    /// The bare repository on disk.
    pub bare: PathBuf,
}

impl GitRepository {
    /// The part of `path` after the repository (`/info/refs`, `/git-receive-pack`), if `path`
    /// is inside it.
    pub(crate) fn inside<'a>(&self, path: &'a str) -> Option<&'a str> {
        path.strip_prefix(self.path.as_str())
            .filter(|rest| rest.starts_with('/'))
    }
}

/// The user and password of an `Authorization: Basic` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The answer to a git request without acceptable credentials: 401 with a Basic challenge, as
/// both forges answer (git then asks its credential helpers, which orch's git has none of).
pub(crate) fn challenge(realm: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", format!("Basic realm=\"{realm}\""))],
        "authentication required\n",
    )
        .into_response()
}

/// Runs `git http-backend` for one request inside `repo` and turns its CGI answer into a
/// response. `user` becomes `REMOTE_USER` (which is what lets the backend accept a push).
pub(crate) async fn serve(
    repo: &GitRepository,
    rest: &str,
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
    user: &str,
) -> Response {
    match run_backend(repo, rest, method, query, headers, body, user).await {
        Ok(response) => response,
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("git http-backend: {e}\n"),
        )
            .into_response(),
    }
}

async fn run_backend(
    repo: &GitRepository,
    rest: &str,
    method: &Method,
    query: &str,
    headers: &HeaderMap,
    body: Bytes,
    user: &str,
) -> std::io::Result<Response> {
    let (root, name) = split(&repo.bare)?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut command = tokio::process::Command::new("git");
    command
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{name}{rest}"))
        .env("REQUEST_METHOD", method.as_str())
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    // Written while the output is read, so a large answer cannot block a large request.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
        drop(stdin);
    });
    let output = child.wait_with_output().await?;
    let _ = writer.await;
    if !output.status.success() && output.stdout.is_empty() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(cgi_response(&output.stdout))
}

/// The directory holding the bare repository and the repository's directory name.
fn split(bare: &Path) -> std::io::Result<(PathBuf, String)> {
    let root = bare
        .parent()
        .ok_or_else(|| std::io::Error::other("the bare repository has no parent"))?;
    let name = bare
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| std::io::Error::other("the bare repository has no UTF-8 name"))?;
    Ok((root.to_owned(), name.to_owned()))
}

/// A CGI answer (header lines, a blank line, the body) as an HTTP response.
fn cgi_response(raw: &[u8]) -> Response {
    let (head, body) = match find(raw, b"\r\n\r\n") {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => match find(raw, b"\n\n") {
            Some(i) => (&raw[..i], &raw[i + 2..]),
            None => (&raw[..0], raw),
        },
    };
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|code| code.parse().ok())
                .and_then(|code| StatusCode::from_u16(code).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    (status, headers, body.to_vec()).into_response()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
