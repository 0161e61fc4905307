//! What every request handler shares: the engine, the secrets and the counters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use orch_engine::Engine;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

use crate::dashboard::SessionKey;
use crate::dashboard::limits::LoginLimiter;
use crate::metrics::WebhookMetrics;
use crate::webhook::WebhookSource;

/// The name the global API token acts under unless configured otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "automation";

/// A secret value; its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) String);

impl Secret {
    pub(crate) fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The server's shared state; cheap to clone. Configure it with the `with_*` methods before
/// serving.
#[derive(Clone, Debug)]
pub struct AppState {
    engine: Arc<Engine>,
    api_token: Option<Secret>,
    /// Drawn at random per server state; signs dashboard sessions and CSRF tokens, so a
    /// restart ends every session.
    session_key: SessionKey,
    webhook_secrets: Arc<BTreeMap<WebhookSource, Secret>>,
    /// The name the global API token acts under (automation, not a person).
    service_name: Arc<str>,
    metrics: Arc<WebhookMetrics>,
    work_added: Arc<Notify>,
    /// Read-only mode (no credential configured) shows artifact text, logs and diffs.
    public_content: bool,
    /// Host names the server answers to besides IP addresses and `localhost`.
    allowed_hosts: Arc<Vec<String>>,
    /// Addresses of reverse proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` count.
    trusted_proxies: Arc<Vec<IpAddr>>,
    /// Session cookies are `Secure` whatever the request says (TLS ends before orch).
    secure_cookies: bool,
    /// A trusted proxy's `X-Auth-Request-User` / `X-Forwarded-User` logs a person in.
    proxy_auth: bool,
    login_limiter: Arc<LoginLimiter>,
    /// Cancelled when the server shuts down, so long-lived responses (log streams) end and the
    /// graceful shutdown does not wait for them.
    shutting_down: CancellationToken,
}

impl AppState {
    /// A state with no API token (writes through the API are refused) and no webhook secrets
    /// (every delivery is refused) until they are added.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            // The engine's own bell: its claim loop hears new work even with runs in flight.
            work_added: engine.work_added(),
            engine,
            api_token: None,
            session_key: SessionKey::random(),
            webhook_secrets: Arc::new(BTreeMap::new()),
            service_name: Arc::from(DEFAULT_SERVICE_NAME),
            metrics: Arc::new(WebhookMetrics::default()),
            shutting_down: CancellationToken::new(),
            public_content: false,
            allowed_hosts: Arc::new(Vec::new()),
            trusted_proxies: Arc::new(Vec::new()),
            secure_cookies: false,
            proxy_auth: false,
            login_limiter: Arc::new(LoginLimiter::default()),
        }
    }

    /// The global bearer token: automation acting as the service name (see
    /// [`AppState::with_service_name`]), not a person. An empty token counts as none.
    #[must_use]
    pub fn with_api_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.api_token = (!token.is_empty()).then_some(Secret(token));
        self
    }

    /// The name the global API token acts under (default [`DEFAULT_SERVICE_NAME`]): recorded
    /// as who stopped or retried, and an approver only where a project lists it.
    #[must_use]
    pub fn with_service_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if !name.trim().is_empty() {
            self.service_name = Arc::from(name.trim());
        }
        self
    }

    /// The HMAC secret deliveries from `source` are signed with. An empty secret counts as none.
    #[must_use]
    pub fn with_webhook_secret(mut self, source: WebhookSource, secret: impl Into<String>) -> Self {
        let secret = secret.into();
        let secrets = Arc::make_mut(&mut self.webhook_secrets);
        if secret.is_empty() {
            secrets.remove(&source);
        } else {
            secrets.insert(source, Secret(secret));
        }
        self
    }

    /// Whether a read-only dashboard (no credential configured) shows artifact text, agent logs
    /// and diffs to anyone who reaches it. Off by default: they may hold what the agents read.
    #[must_use]
    pub fn with_public_content(mut self, public: bool) -> Self {
        self.public_content = public;
        self
    }

    /// Host names (with or without a port) the server answers to, besides IP addresses and
    /// `localhost`; a request naming another host is refused (DNS rebinding).
    #[must_use]
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = Arc::new(hosts);
        self
    }

    /// Reverse proxies whose `X-Forwarded-For` names the client (for the login limit) and whose
    /// `X-Forwarded-Proto: https` makes the session cookie `Secure`.
    #[must_use]
    pub fn with_trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// Session cookies always `Secure` (the dashboard is reached over TLS ended before orch).
    #[must_use]
    pub fn with_secure_cookies(mut self, secure: bool) -> Self {
        self.secure_cookies = secure;
        self
    }

    /// Trust an authenticating reverse proxy (oauth2-proxy and the like): a request from a
    /// [`AppState::with_trusted_proxies`] address whose `X-Auth-Request-User` (or
    /// `X-Forwarded-User`) names an active person is logged in as them at `/login`. From any
    /// other address the headers count for nothing.
    #[must_use]
    pub fn with_proxy_auth(mut self, trust: bool) -> Self {
        self.proxy_auth = trust;
        self
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    pub fn metrics(&self) -> &WebhookMetrics {
        &self.metrics
    }

    /// Notified whenever the API queues work (a new item, an approval, a retry), so an engine
    /// loop can start at once instead of at its next poll.
    pub fn work_added(&self) -> Arc<Notify> {
        Arc::clone(&self.work_added)
    }

    pub(crate) fn api_token(&self) -> Option<&Secret> {
        self.api_token.as_ref()
    }

    pub(crate) fn session_key(&self) -> &SessionKey {
        &self.session_key
    }

    pub(crate) fn service_name(&self) -> &str {
        &self.service_name
    }

    pub(crate) fn webhook_secret(&self, source: WebhookSource) -> Option<&Secret> {
        self.webhook_secrets.get(&source)
    }

    pub(crate) fn public_content(&self) -> bool {
        self.public_content
    }

    pub(crate) fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }

    pub(crate) fn login_limiter(&self) -> &LoginLimiter {
        &self.login_limiter
    }

    fn is_trusted_proxy(&self, peer: Option<SocketAddr>) -> bool {
        peer.is_some_and(|p| self.trusted_proxies.contains(&p.ip()))
    }

    /// The client's address: the peer's, or, from a trusted proxy, the last address it added to
    /// `X-Forwarded-For`.
    pub(crate) fn client_address(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<IpAddr> {
        if self.is_trusted_proxy(peer) {
            let forwarded = headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok());
            if forwarded.is_some() {
                return forwarded;
            }
        }
        peer.map(|p| p.ip())
    }

    /// The user a trusted authenticating proxy says the request is from, if proxy login is on.
    pub(crate) fn proxy_user(
        &self,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<String> {
        if !self.proxy_auth || !self.is_trusted_proxy(peer) {
            return None;
        }
        ["x-auth-request-user", "x-forwarded-user"]
            .iter()
            .find_map(|name| headers.get(*name))
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Whether the browser reached the dashboard over TLS: configured so, or a trusted proxy
    /// says `X-Forwarded-Proto: https`.
    pub(crate) fn over_tls(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
        self.secure_cookies
            || (self.is_trusted_proxy(peer)
                && headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("https")))
    }

    pub(crate) fn shutting_down(&self) -> &CancellationToken {
        &self.shutting_down
    }

    pub(crate) fn notify_work_added(&self) {
        // The engine's own bell: its claim loop hears it with runs in flight, and while it
        // waits for a run that gave way.
        self.work_added.notify_one();
    }
}
