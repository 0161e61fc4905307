//! orch-server: orch's HTTP face. A JSON API over the engine (list, show, file, approve, stop,
//! retry), signed webhook intake for Plane, Gitea/Forgejo and GitHub, the HTML dashboard (board,
//! items with live logs, projects; see `dashboard`), health and metrics.
//!
//! Quick start (the binary's `orch serve` does this with its own engine and signals):
//!
//! ```no_run
//! # async fn example(engine: std::sync::Arc<orch_engine::Engine>) -> std::io::Result<()> {
//! use orch_server::{AppState, WebhookSource};
//! let state = AppState::new(engine)
//!     .with_api_token("a-long-random-token")
//!     .with_webhook_secret(WebhookSource::Github, "shared-secret");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8500").await?;
//! orch_server::serve(listener, state, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Invariants:
//! - A webhook delivery is verified (HMAC-SHA256 over the raw body, compared in constant time)
//!   before a byte of it is parsed; a delivery that fails leaves nothing behind but a counter.
//! - The server never decides anything about the pipeline: every change goes through the
//!   engine's commands, which ask orch-core.
//! - Secrets never appear in responses, logs or `Debug` output.
//! - No global state: the listener, the shutdown signal and everything shared arrive as arguments.
//! - Whoever acts is who their token or session names ([`people`]): never a name from a request
//!   body. A request for a host name not configured is refused, webhooks aside.

mod api;
mod auth;
mod dashboard;
mod error;
mod metrics;
pub mod people;
mod state;
mod tracker_events;
pub mod views;
mod webhook;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use error::ApiError;
pub use metrics::{DeliveryResult, WebhookMetrics};
pub use state::{AppState, DEFAULT_SERVICE_NAME};
pub use tracker_events::WebhookAction;
pub use webhook::WebhookSource;

/// The largest request body accepted, webhooks included; larger ones get 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// Every route of the server over `state`.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/items", get(api::list_items).post(api::create_item))
        .route("/items/{id}", get(api::show_item))
        .route("/items/{id}/approve", post(api::approve_item))
        .route("/items/{id}/stop", post(api::stop_item))
        .route("/items/{id}/retry", post(api::retry_item))
        .route("/projects/{project}/queue", get(api::promotion_queue))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics::render))
        .route("/hooks/{source}", post(webhook::receive))
        .nest("/api/v1", api)
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::NotFound("no such route; see docs/server.md".into()) })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            dashboard::limits::require_known_host,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then stops accepting, ends the
/// open log streams and lets the requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let streams = state.shutting_down().clone();
    let shutdown = async move {
        shutdown.await;
        streams.cancel();
    };
    // With each connection's address: the login limit counts failures per client.
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
