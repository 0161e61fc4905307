//! The egress proxy of a sandboxed run: the one way out to the network besides the model bridge.
//!
//! orch listens on a Unix socket in a per-run folder (0700), bound at [`EGRESS_DIR`] inside;
//! there `socat` relays `127.0.0.1:`[`EGRESS_PORT`] to it, and `HTTP_PROXY`/`HTTPS_PROXY` point
//! there. A request (`CONNECT host:port`, or a plain `GET http://host/...`) to a host the
//! project's `allow_hosts` lists is connected and spliced; any other is answered 403 and recorded
//! in the run's log and in orch's own log, so a person can see what an agent tried.
//!
//! This module must never connect to a host the list does not name, and never outlive its run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// Where the proxy's folder appears inside the sandbox.
pub const EGRESS_DIR: &str = "/run/orch-egress";
/// The proxy's socket in that folder.
pub const EGRESS_SOCKET: &str = "proxy.sock";
/// The loopback port inside that leads to the proxy.
pub const EGRESS_PORT: u16 = 41001;
const HEAD_CAP: usize = 64 * 1024;

/// Refusals since this process started, for a metrics endpoint to export.
static REFUSALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many requests the egress proxies of this process refused since it started.
pub fn egress_refusals() -> u64 {
    REFUSALS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A running proxy; dropping it stops it.
#[derive(Debug)]
pub(crate) struct EgressProxy {
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EgressProxy {
    /// Starts a proxy that lets through the hosts `allow` names (`example.com`, or
    /// `*.example.com` for its subdomains) and records every refusal in `log`.
    pub(crate) fn start(allow: &[String], log: Option<&Path>) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("orch-egress-").tempdir()?;
        let listener = UnixListener::bind(dir.path().join(EGRESS_SOCKET))?;
        let rules = Arc::new(Rules {
            allow: allow.iter().map(|h| h.to_ascii_lowercase()).collect(),
            log: log.map(Path::to_owned),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let rules = Arc::clone(&rules);
                tokio::spawn(async move { rules.serve(stream).await });
            }
        });
        Ok(Self { dir, task })
    }

    /// The folder to bind at [`EGRESS_DIR`].
    pub(crate) fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

struct Rules {
    allow: Vec<String>,
    log: Option<PathBuf>,
}

impl Rules {
    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allow.iter().any(|rule| match rule.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => *rule == host,
        })
    }

    fn record_refusal(&self, what: &str) {
        REFUSALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let line =
            format!("orch: egress refused: {what} (not in the project's sandbox allow_hosts)");
        tracing::warn!("{line}");
        if let Some(path) = &self.log
            && let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(path)
        {
            use std::io::Write;
            let _ = writeln!(file, "{line}");
        }
    }

    async fn serve(&self, stream: UnixStream) {
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let before = head.len();
            match reader.read_line(&mut head).await {
                Ok(0) | Err(_) => return,
                Ok(_) if head.len() > HEAD_CAP => return,
                Ok(_) => {}
            }
            if head[before..].trim_end().is_empty() {
                break;
            }
        }
        let first = head.lines().next().unwrap_or_default().to_owned();
        let mut parts = first.split(' ');
        let (method, target) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        let Some((host, port)) = destination(method, target) else {
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
                .await;
            return;
        };
        if !self.allows(&host) {
            self.record_refusal(&format!("{method} {host}:{port}"));
            let _ = reader
                .get_mut()
                .write_all(
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        }
        let Ok(mut upstream) = TcpStream::connect((host.as_str(), port)).await else {
            let _ = reader
                .get_mut()
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        };
        let mut client = reader.into_inner();
        let ready = if method.eq_ignore_ascii_case("CONNECT") {
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
        } else {
            // A plain HTTP request goes on as it came (servers accept the absolute form).
            upstream.write_all(head.as_bytes()).await
        };
        if ready.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    }
}

/// The host and port a proxy request names: `CONNECT host:port`, or an absolute
/// `http://host[:port]/...` target.
fn destination(method: &str, target: &str) -> Option<(String, u16)> {
    let authority = if method.eq_ignore_ascii_case("CONNECT") {
        target
    } else {
        let rest = target.strip_prefix("http://")?;
        rest.split('/').next()?
    };
    let default_port = if method.eq_ignore_ascii_case("CONNECT") {
        443
    } else {
        80
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) => (host, port.parse().ok()?),
            None if after.is_empty() => (host, default_port),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, default_port),
        }
    };
    (!host.is_empty() && !host.contains('@')).then(|| (host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_read_from_connect_and_absolute_targets() {
        assert_eq!(
            destination("CONNECT", "example.com:443"),
            Some(("example.com".to_owned(), 443))
        );
        assert_eq!(
            destination("GET", "http://example.com/a/b"),
            Some(("example.com".to_owned(), 80))
        );
        assert_eq!(
            destination("GET", "http://example.com:8080/"),
            Some(("example.com".to_owned(), 8080))
        );
        assert_eq!(destination("GET", "/relative"), None);
        assert_eq!(destination("GET", "http://user@evil.com/"), None);
    }

    #[test]
    fn hosts_match_exactly_or_as_subdomains() {
        let rules = Rules {
            allow: vec!["crates.io".to_owned(), "*.pypi.org".to_owned()],
            log: None,
        };
        assert!(rules.allows("crates.io"));
        assert!(rules.allows("CRATES.IO"));
        assert!(rules.allows("files.pypi.org"));
        assert!(!rules.allows("pypi.org.evil.com"));
        assert!(!rules.allows("evilcrates.io"));
        assert!(!rules.allows("pypi.org"));
    }
}
