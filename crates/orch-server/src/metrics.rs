//! `/metrics` in the OpenMetrics text format, written by the Prometheus project's client
//! library (`prometheus-client`): the webhook delivery counters this process keeps, and the
//! pipeline metrics read from the store at each scrape (`pipeline`). Every family is registered
//! in `families`, and only there. This module must never write exposition text by hand.

mod families;
mod notifications;
mod pipeline;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tracker_events::WebhookAction;
use crate::webhook::WebhookSource;

/// The content type of the OpenMetrics text format (Prometheus asks for it and parses it).
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How a webhook delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryResult {
    /// Verified, parsed and stored in the inbox.
    Accepted,
    /// Verified, but its delivery id was stored before: nothing more happened.
    Duplicate,
    /// Verified, but its body was stored before under another delivery id: a captured delivery
    /// sent again. Nothing more happened.
    Replayed,
    /// Missing or wrong signature, or no secret configured for the source.
    RejectedSignature,
    /// Verified, but not JSON or without a delivery id.
    Malformed,
    /// Larger than the body limit.
    TooLarge,
    /// Verified and parsed, but storing it failed (the store is down); the sender retries.
    Failed,
}

impl DeliveryResult {
    pub const ALL: [DeliveryResult; 7] = [
        DeliveryResult::Accepted,
        DeliveryResult::Duplicate,
        DeliveryResult::Replayed,
        DeliveryResult::RejectedSignature,
        DeliveryResult::Malformed,
        DeliveryResult::TooLarge,
        DeliveryResult::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryResult::Accepted => "accepted",
            DeliveryResult::Duplicate => "duplicate",
            DeliveryResult::Replayed => "replayed",
            DeliveryResult::RejectedSignature => "rejected_signature",
            DeliveryResult::Malformed => "malformed",
            DeliveryResult::TooLarge => "too_large",
            DeliveryResult::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeliveryLabels {
    source: &'static str,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ActionLabels {
    source: &'static str,
    action: &'static str,
}

/// Deliveries counted per source and result since the server started, and what accepted ones
/// led to. Every series exists from the start (zeros included), so a dashboard sees each from
/// the first scrape.
#[derive(Debug)]
pub struct WebhookMetrics {
    pub(crate) deliveries: Family<DeliveryLabels, Counter>,
    pub(crate) actions: Family<ActionLabels, Counter>,
}

impl Default for WebhookMetrics {
    fn default() -> Self {
        let metrics = Self {
            deliveries: Family::default(),
            actions: Family::default(),
        };
        for source in WebhookSource::ALL {
            for result in DeliveryResult::ALL {
                // Created at zero; the guard is dropped at once.
                let _ = metrics.deliveries.get_or_create(&delivery(source, result));
            }
            for action in WebhookAction::ALL {
                let _ = metrics
                    .actions
                    .get_or_create(&action_labels(source, action));
            }
        }
        metrics
    }
}

fn delivery(source: WebhookSource, result: DeliveryResult) -> DeliveryLabels {
    DeliveryLabels {
        source: source.as_str(),
        result: result.as_str(),
    }
}

fn action_labels(source: WebhookSource, action: WebhookAction) -> ActionLabels {
    ActionLabels {
        source: source.as_str(),
        action: action.as_str(),
    }
}

impl WebhookMetrics {
    pub fn record(&self, source: WebhookSource, result: DeliveryResult) {
        self.deliveries
            .get_or_create(&delivery(source, result))
            .inc();
    }

    pub fn count(&self, source: WebhookSource, result: DeliveryResult) -> u64 {
        self.deliveries
            .get_or_create(&delivery(source, result))
            .get()
    }

    pub fn record_action(&self, source: WebhookSource, action: WebhookAction) {
        self.actions
            .get_or_create(&action_labels(source, action))
            .inc();
    }

    pub fn action_count(&self, source: WebhookSource, action: WebhookAction) -> u64 {
        self.actions
            .get_or_create(&action_labels(source, action))
            .get()
    }
}

pub(crate) async fn render(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let projects: Vec<String> = state
        .engine()
        .projects()
        .map(|p| p.id().to_string())
        .collect();
    let pipeline = pipeline::gather(state.engine().store().as_ref(), &projects).await?;
    let notifications = notifications::gather(state.engine().store().as_ref()).await?;
    let registry = families::registry(state.metrics(), pipeline, notifications);
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .map_err(|_| ApiError::Internal("the metrics could not be encoded".to_owned()))?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], out))
}
