//! The egress proxy of a sandboxed run: the one way out to the network besides the model bridge.
//!
//! orch listens on a Unix socket in a per-run folder (0700), bound at [`EGRESS_DIR`] inside;
//! there `socat` relays `127.0.0.1:`[`EGRESS_PORT`] to it, and `HTTP_PROXY`/`HTTPS_PROXY` point
//! there. A request (`CONNECT host:port`, or a plain `GET http://host/...`) to a host the
//! project's `allow_hosts` lists is connected and spliced; any other is answered 403 and recorded
//! in the run's log, in orch's own log, in the process-wide count ([`egress_refusals`], exported
//! on `/metrics`) and in the run's [`EgressRefusals`] (handed to the run's observer, which the
//! engine turns into events on the item), so a person can see what an agent tried.
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
/// The distinct destinations one run's refusals are kept for; refusals to further ones are only
/// counted, so a program looping over addresses cannot flood the item's history.
pub const KEPT_DESTINATIONS: usize = 50;
/// The longest host name kept (DNS names stop at 253 characters).
const HOST_CAP: usize = 253;

/// Refusals since this process started, for a metrics endpoint to export.
static REFUSALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many requests the egress proxies of this process refused since it started.
pub fn egress_refusals() -> u64 {
    REFUSALS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Where a refused request tried to go. The host is as the program named it, cut to 253
/// characters with anything but letters, digits, `.`, `-`, `_`, `:` and `*` shown as `?`; the
/// request's path, headers and body are never kept (they may carry credentials).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub host: String,
    pub port: u16,
}

/// What the egress proxy of one run refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressRefusals {
    /// Each destination refused, in the order first tried, with how many times; at most
    /// [`KEPT_DESTINATIONS`].
    pub destinations: Vec<(Destination, u64)>,
    /// Refusals to destinations past the first [`KEPT_DESTINATIONS`].
    pub unlisted: u64,
}

impl EgressRefusals {
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty() && self.unlisted == 0
    }

    /// Every refusal, listed or not.
    pub fn total(&self) -> u64 {
        self.destinations
            .iter()
            .map(|(_, n)| *n)
            .sum::<u64>()
            .saturating_add(self.unlisted)
    }

    fn add(&mut self, to: Destination) {
        if let Some((_, n)) = self.destinations.iter_mut().find(|(d, _)| *d == to) {
            *n = n.saturating_add(1);
        } else if self.destinations.len() < KEPT_DESTINATIONS {
            self.destinations.push((to, 1));
        } else {
            self.unlisted = self.unlisted.saturating_add(1);
        }
    }
}

/// A running proxy; dropping it stops it.
#[derive(Debug)]
pub(crate) struct EgressProxy {
    dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
    rules: Arc<Rules>,
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
            refused: std::sync::Mutex::default(),
        });
        let serving = Arc::clone(&rules);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let rules = Arc::clone(&serving);
                tokio::spawn(async move { rules.serve(stream).await });
            }
        });
        Ok(Self { dir, task, rules })
    }

    /// What the proxy refused so far (all of it once the run's processes are gone).
    pub(crate) fn refusals(&self) -> EgressRefusals {
        match self.rules.refused.lock() {
            Ok(refused) => refused.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The folder to bind at [`EGRESS_DIR`].
    pub(crate) fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

#[derive(Debug)]
struct Rules {
    allow: Vec<String>,
    log: Option<PathBuf>,
    refused: std::sync::Mutex<EgressRefusals>,
}

impl Rules {
    fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allow.iter().any(|rule| match rule.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => *rule == host,
        })
    }

    fn record_refusal(&self, method: &str, to: Destination) {
        REFUSALS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let line = format!(
            "orch: egress refused: {} {}:{} (not in the project's sandbox allow_hosts)",
            printable(method, 16),
            to.host,
            to.port
        );
        match self.refused.lock() {
            Ok(mut refused) => refused.add(to),
            Err(poisoned) => poisoned.into_inner().add(to),
        }
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
            let to = Destination {
                host: printable(&host, HOST_CAP),
                port,
            };
            self.record_refusal(method, to);
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

/// `text` cut to `cap` characters, with anything unusual in a host name or a method shown as `?`:
/// what an agent sent must not be able to forge log lines or carry control characters on.
fn printable(text: &str, cap: usize) -> String {
    text.chars()
        .take(cap)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*') {
                c
            } else {
                '?'
            }
        })
        .collect()
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
            refused: std::sync::Mutex::default(),
        };
        assert!(rules.allows("crates.io"));
        assert!(rules.allows("CRATES.IO"));
        assert!(rules.allows("files.pypi.org"));
        assert!(!rules.allows("pypi.org.evil.com"));
        assert!(!rules.allows("evilcrates.io"));
        assert!(!rules.allows("pypi.org"));
    }

    #[test]
    fn refusals_are_kept_per_destination_and_bounded() {
        let mut refused = EgressRefusals::default();
        let to = |host: &str, port| Destination {
            host: host.to_owned(),
            port,
        };
        refused.add(to("example.com", 443));
        refused.add(to("example.com", 443));
        refused.add(to("example.com", 80));
        assert_eq!(
            refused.destinations,
            [(to("example.com", 443), 2), (to("example.com", 80), 1)]
        );
        for i in 0..100u16 {
            refused.add(to("flood.example", i));
        }
        assert_eq!(refused.destinations.len(), KEPT_DESTINATIONS);
        assert_eq!(refused.unlisted, 100 - (KEPT_DESTINATIONS as u64 - 2));
        assert_eq!(refused.total(), 103);
    }

    #[test]
    fn hosts_are_kept_printable_and_short() {
        assert_eq!(
            printable("evil.com\u{1b}[2J\nx", HOST_CAP),
            "evil.com??2J?x"
        );
        assert_eq!(printable(&"a".repeat(300), HOST_CAP).len(), HOST_CAP);
        assert_eq!(printable("[::1]", HOST_CAP), "?::1?");
    }
}
