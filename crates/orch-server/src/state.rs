//! What every request handler shares: the engine, the secrets and the counters.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use orch_engine::Engine;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::dashboard::SessionKey;
use crate::metrics::WebhookMetrics;
use crate::webhook::WebhookSource;

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
    /// Derived from the API token; signs dashboard sessions and CSRF tokens.
    session_key: Option<SessionKey>,
    webhook_secrets: Arc<BTreeMap<WebhookSource, Secret>>,
    metrics: Arc<WebhookMetrics>,
    work_added: Arc<Notify>,
    /// Cancelled when the server shuts down, so long-lived responses (log streams) end and the
    /// graceful shutdown does not wait for them.
    shutting_down: CancellationToken,
}

impl AppState {
    /// A state with no API token (writes through the API are refused) and no webhook secrets
    /// (every delivery is refused) until they are added.
    pub fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            api_token: None,
            session_key: None,
            webhook_secrets: Arc::new(BTreeMap::new()),
            metrics: Arc::new(WebhookMetrics::default()),
            work_added: Arc::new(Notify::new()),
            shutting_down: CancellationToken::new(),
        }
    }

    /// The bearer token every `/api/v1` request must carry. An empty token counts as none.
    #[must_use]
    pub fn with_api_token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.session_key = (!token.is_empty()).then(|| SessionKey::derive(token.as_bytes()));
        self.api_token = (!token.is_empty()).then_some(Secret(token));
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

    pub(crate) fn session_key(&self) -> Option<&SessionKey> {
        self.session_key.as_ref()
    }

    pub(crate) fn webhook_secret(&self, source: WebhookSource) -> Option<&Secret> {
        self.webhook_secrets.get(&source)
    }

    pub(crate) fn shutting_down(&self) -> &CancellationToken {
        &self.shutting_down
    }

    pub(crate) fn notify_work_added(&self) {
        self.work_added.notify_one();
    }
}
