//! The model bridge: how a sandboxed CLI reaches its model without holding the model's key.
//!
//! orch listens on a Unix socket in a per-run folder (0700, orch's user only), which the sandbox
//! binds at [`orch_process::BRIDGE_DIR`]; inside, a loopback port forwards to it, and the CLI's
//! base URL points there. The CLI holds a placeholder key ([`PLACEHOLDER_KEY`]); each request
//! that comes through has the placeholder replaced by the real key (read from orch's environment
//! when the run starts) in its header lines, and goes to the one configured endpoint. One request
//! per connection (`Connection: close`); responses stream back as they come (SSE).
//!
//! This module must never send a request anywhere but the configured endpoint, never write the
//! real key into a log, an error or the sandbox, and never outlive its run (dropping the
//! [`Bridge`] stops it and removes its folder).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

/// What the CLI inside gets as its API key. Harmless when read: it opens nothing.
pub const PLACEHOLDER_KEY: &str = "sk-orch-sandbox-placeholder-key";
/// The loopback port inside the sandbox that leads to the bridge.
pub const INSIDE_PORT: u16 = orch_process::BRIDGE_PORT;
/// The most a request's head may hold.
const HEAD_CAP: usize = 256 * 1024;
/// The most a request's body may hold (a long conversation with its tool results).
const BODY_CAP: usize = 64 * 1024 * 1024;
/// Headers that belong to one connection, not to the request or response they travel with.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// A running bridge; dropping it stops it.
#[derive(Debug)]
pub struct Bridge {
    dir: tempfile::TempDir,
    inside_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bridge {
    /// Starts a bridge to `upstream` (an `http://` or `https://` base URL) that puts `key` where
    /// the CLI sent [`PLACEHOLDER_KEY`].
    pub fn open(upstream: &str, key: Option<String>) -> Result<Self, String> {
        let url = reqwest::Url::parse(upstream)
            .map_err(|e| format!("the model endpoint `{upstream}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "the model endpoint `{upstream}` must be an http:// or https:// URL with a host"
            ));
        }
        let origin = url.origin().ascii_serialization();
        let path = url.path().trim_end_matches('/');
        let inside_url = format!("http://127.0.0.1:{INSIDE_PORT}{path}");
        let dir = tempfile::Builder::new()
            .prefix("orch-bridge-")
            .tempdir()
            .map_err(|e| format!("cannot create the model bridge's folder: {e}"))?;
        let socket = dir.path().join(orch_process::BRIDGE_SOCKET);
        // The folder is 0700: only orch's user, which the sandbox's user maps to, reaches it.
        let listener = UnixListener::bind(&socket)
            .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build the model bridge's HTTP client: {e}"))?;
        let forward = Arc::new(Forward {
            client,
            origin,
            key,
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let forward = Arc::clone(&forward);
                tokio::spawn(async move { forward.serve(stream).await });
            }
        });
        Ok(Self {
            dir,
            inside_url,
            task,
        })
    }

    /// The folder to bind at [`orch_process::BRIDGE_DIR`].
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The base URL the CLI inside uses: the loopback port, with the endpoint's path.
    pub fn inside_url(&self) -> &str {
        &self.inside_url
    }
}

struct Forward {
    client: reqwest::Client,
    /// `scheme://host[:port]`: every request goes there, whatever its target says.
    origin: String,
    key: Option<String>,
}

/// One request as the CLI sent it.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Forward {
    async fn serve(&self, stream: UnixStream) {
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let reply = match read_request(&mut read).await {
            Ok(request) => self.send(request).await,
            Err(reason) => Err((400, reason)),
        };
        let result = match reply {
            Ok(response) => stream_back(response, &mut write).await,
            Err((status, reason)) => {
                let body = format!("orch model bridge: {reason}\n");
                let head = format!(
                    "HTTP/1.1 {status} Bridge Error\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                write
                    .write_all(head.as_bytes())
                    .await
                    .and(write.write_all(body.as_bytes()).await)
            }
        };
        if let Err(e) = result {
            tracing::debug!("model bridge: the CLI's connection ended early: {e}");
        }
        let _ = write.shutdown().await;
    }

    async fn send(&self, request: Request) -> Result<reqwest::Response, (u16, String)> {
        if !request.target.starts_with('/') {
            return Err((400, "the request target must be a path".to_owned()));
        }
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| (400, "the request method is not valid".to_owned()))?;
        let url = format!("{}{}", self.origin, request.target);
        let mut builder = self.client.request(method, &url).body(request.body);
        for (name, value) in request.headers {
            if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            let value = match &self.key {
                Some(key) => value.replace(PLACEHOLDER_KEY, key),
                None => value,
            };
            builder = builder.header(name, value);
        }
        // The error may print the URL, never a header: the key stays out of it.
        builder.send().await.map_err(|e| {
            (
                502,
                format!("the model endpoint did not answer: {}", e.without_url()),
            )
        })
    }
}

async fn read_request(
    read: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> Result<Request, String> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = read
            .read_line(&mut line)
            .await
            .map_err(|e| format!("cannot read the request: {e}"))?;
        total += n;
        if n == 0 || total > HEAD_CAP {
            return Err("the request head is incomplete or too long".to_owned());
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut first = lines.first().map(|l| l.split(' ')).into_iter().flatten();
    let (Some(method), Some(target)) = (first.next(), first.next()) else {
        return Err("the request line is malformed".to_owned());
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let headers: Vec<(String, String)> = lines
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(read).await?
    } else {
        let length: usize = match header("content-length") {
            Some(v) => v
                .parse()
                .map_err(|_| "the content-length is not a number".to_owned())?,
            None => 0,
        };
        if length > BODY_CAP {
            return Err("the request body is too large".to_owned());
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body)
            .await
            .map_err(|e| format!("cannot read the request body: {e}"))?;
        body
    };
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn read_chunked(
    read: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        read.read_line(&mut size)
            .await
            .map_err(|e| format!("cannot read a chunk: {e}"))?;
        let hex = size.trim().split(';').next().unwrap_or_default();
        let n =
            usize::from_str_radix(hex, 16).map_err(|_| "a chunk size is malformed".to_owned())?;
        if body.len() + n > BODY_CAP {
            return Err("the request body is too large".to_owned());
        }
        let mut chunk = vec![0; n + 2];
        read.read_exact(&mut chunk)
            .await
            .map_err(|e| format!("cannot read a chunk: {e}"))?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

async fn stream_back(
    mut response: reqwest::Response,
    write: &mut tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (name, value) in response.headers() {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        head.push_str(name.as_str());
        head.push_str(": ");
        head.push_str(&String::from_utf8_lossy(value.as_bytes()));
        head.push_str("\r\n");
    }
    // Without a length, the body ends when the connection closes.
    head.push_str("connection: close\r\n\r\n");
    write.write_all(head.as_bytes()).await?;
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) => {
                write.write_all(&bytes).await?;
                write.flush().await?;
            }
            Ok(None) => return Ok(()),
            Err(e) => return Err(std::io::Error::other(e.without_url())),
        }
    }
}

/// The name of the variable the CLI inside reads its key from when `api_key_env` is configured:
/// it holds [`PLACEHOLDER_KEY`]. An `ORCH_*` name, which `api_key_env` may never be.
pub(crate) const PLACEHOLDER_VAR: &str = "ORCH_SANDBOX_MODEL_KEY";

/// A sandboxed run's view of its model: the bridge, the settings the adapter launches with
/// (the bridge's URL inside, the placeholder key) and the request with the bridge bound.
#[derive(Debug)]
pub(crate) struct Bridged {
    _bridge: Bridge,
    pub(crate) settings: crate::CliSettings,
    pub(crate) request: crate::AgentRequest,
}

impl Bridged {
    /// Opens the bridge of a sandboxed run to the configured endpoint, else `default_url` (the
    /// CLI's vendor API). `None`: the run is not sandboxed, or there is no endpoint to bridge to
    /// (the CLI then reaches no model and says so).
    pub(crate) fn open(
        cli: &crate::CliSettings,
        default_url: Option<&str>,
        req: &crate::AgentRequest,
    ) -> Result<Option<Self>, String> {
        let Some(policy) = req.sandbox.policy() else {
            return Ok(None);
        };
        let Some(upstream) = cli.base_url.as_deref().or(default_url) else {
            crate::cli::log_line(
                &req.log,
                "orch: no `base_url` is configured, so the sandboxed CLI reaches no model; set \
                 `base_url` in .orch/agents.toml",
            );
            return Ok(None);
        };
        let key = match &cli.api_key_env {
            Some(name) => Some(crate::cli::secret_from_env(name)?),
            None => None,
        };
        let bridge = Bridge::open(upstream, key)?;
        let settings = crate::CliSettings {
            base_url: Some(bridge.inside_url().to_owned()),
            api_key_env: cli.api_key_env.as_ref().map(|_| PLACEHOLDER_VAR.to_owned()),
            ..cli.clone()
        };
        let mut policy = policy.clone();
        policy.bridge = Some(bridge.dir());
        let request = crate::AgentRequest {
            sandbox: req.sandbox.with_policy(policy),
            ..req.clone()
        };
        Ok(Some(Self {
            _bridge: bridge,
            settings,
            request,
        }))
    }
}

/// Runs a CLI agent through the bridge when its run is sandboxed: `run` gets the settings and
/// request to use (the bridged ones inside a sandbox, the given ones outside), and the bridge
/// stays open until `run` ends. A bridge that cannot be opened fails the run before it starts.
pub(crate) async fn run_bridged(
    cli: &crate::CliSettings,
    default_url: Option<&str>,
    req: &crate::AgentRequest,
    run: impl AsyncFnOnce(crate::CliSettings, &crate::AgentRequest) -> crate::AgentRun,
) -> crate::AgentRun {
    match Bridged::open(cli, default_url, req) {
        Err(message) => crate::cli::failed_to_start(req, message),
        Ok(None) => run(cli.clone(), req).await,
        Ok(Some(bridged)) => run(bridged.settings.clone(), &bridged.request).await,
    }
}
