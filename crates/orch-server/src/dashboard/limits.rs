//! What keeps the dashboard from being an open door beyond its login: failed logins limited per
//! client address, and requests for a host name the operator did not configure refused (a page
//! on a DNS-rebound name would otherwise read this server as if it were its own).
//!
//! Must never: trust a forwarded header from an address not listed as a proxy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Failed logins allowed per address in a [`WINDOW`].
pub(crate) const MAX_FAILURES: u32 = 5;
/// How long failures are remembered.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; beyond, the oldest windows are forgotten.
const MAX_ADDRESSES: usize = 10_000;

/// Failed logins per client address (`None`: a connection whose address is unknown, all
/// counted together).
#[derive(Debug, Default)]
pub(crate) struct LoginLimiter {
    failures: Mutex<HashMap<Option<IpAddr>, (u32, Instant)>>,
}

impl LoginLimiter {
    /// `Err(wait)` when `client` used up its failures in the current window.
    pub(crate) fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        // A poisoned lock means a panic elsewhere; refusing is the safe answer.
        let Ok(failures) = self.failures.lock() else {
            return Err(WINDOW);
        };
        match failures.get(&client) {
            Some((count, since)) if *count >= MAX_FAILURES && since.elapsed() < WINDOW => {
                Err(WINDOW.saturating_sub(since.elapsed()))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn failed(&self, client: Option<IpAddr>) {
        let Ok(mut failures) = self.failures.lock() else {
            return;
        };
        if failures.len() >= MAX_ADDRESSES {
            failures.retain(|_, (_, since)| since.elapsed() < WINDOW);
        }
        let entry = failures.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub(crate) fn succeeded(&self, client: Option<IpAddr>) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(&client);
        }
    }
}

/// Whether `host` (a `Host` header value) names this server: an IP address (a DNS rebinding
/// needs a name), `localhost`, or one of `allowed` (with or without its port).
pub(crate) fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host.as_str(), |(name, _)| name)
    };
    if name.is_empty() {
        return false;
    }
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || allowed.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            a == host || a == name
        })
}

/// Refuses (421) a request whose `Host` is not this server's; webhooks and `/healthz` are
/// exempt (senders and probes name the server however they reach it, and a webhook proves
/// itself by its signature).
pub(crate) async fn require_known_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if path.starts_with("/hooks/") || path == "/healthz" {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()))
        .unwrap_or("");
    if host_allowed(host, state.allowed_hosts()) {
        return next.run(request).await;
    }
    (
        StatusCode::MISDIRECTED_REQUEST,
        format!(
            "this server does not answer to the host `{}`; add it to [server] hosts in orch.toml \
             (IP addresses and localhost are always allowed)",
            host.chars().take(100).collect::<String>()
        ),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_localhost_and_configured_names_are_hosts() {
        let allowed = vec!["orch.example.com".to_owned()];
        for ok in [
            "127.0.0.1:8500",
            "10.1.2.3",
            "[::1]:8500",
            "localhost:8500",
            "orch.example.com",
            "ORCH.example.com:443",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example:8500",
            "",
            "127.0.0.1.evil.example",
            "[zz]:1",
            "localhost.evil",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn failures_are_limited_per_address_and_a_success_clears_them() {
        let limiter = LoginLimiter::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check(a).is_ok());
            limiter.failed(a);
        }
        assert!(limiter.check(a).is_err(), "the sixth try waits");
        assert!(limiter.check(b).is_ok(), "another address does not");
        limiter.succeeded(a);
        assert!(limiter.check(a).is_ok());
    }
}
