//! `/metrics` in the Prometheus text format: the webhook delivery counters this process keeps,
//! and the pipeline metrics read from the store at each scrape (`pipeline`).

mod exposition;
mod notifications;
mod pipeline;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::state::AppState;
use crate::tracker_events::WebhookAction;
use crate::webhook::WebhookSource;

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

    fn index(self) -> usize {
        self as usize
    }
}

/// Deliveries counted per source and result since the server started.
#[derive(Debug, Default)]
pub struct WebhookMetrics {
    counts: [[AtomicU64; DeliveryResult::ALL.len()]; WebhookSource::ALL.len()],
    /// What accepted deliveries led to, per source.
    actions: [[AtomicU64; WebhookAction::ALL.len()]; WebhookSource::ALL.len()],
}

impl WebhookMetrics {
    pub fn record(&self, source: WebhookSource, result: DeliveryResult) {
        self.counts[source.index()][result.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self, source: WebhookSource, result: DeliveryResult) -> u64 {
        self.counts[source.index()][result.index()].load(Ordering::Relaxed)
    }

    pub fn record_action(&self, source: WebhookSource, action: WebhookAction) {
        self.actions[source.index()][action as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn action_count(&self, source: WebhookSource, action: WebhookAction) -> u64 {
        self.actions[source.index()][action as usize].load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every counter, zeros included, so a dashboard sees
    /// each series from the first scrape.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::from(
            "# HELP orch_webhook_deliveries_total Webhook deliveries received, by source and result.\n\
             # TYPE orch_webhook_deliveries_total counter\n",
        );
        for source in WebhookSource::ALL {
            for result in DeliveryResult::ALL {
                // Writing to a String cannot fail.
                let _ = writeln!(
                    out,
                    "orch_webhook_deliveries_total{{source=\"{}\",result=\"{}\"}} {}",
                    source.as_str(),
                    result.as_str(),
                    self.count(source, result)
                );
            }
        }
        out.push_str(
            "# HELP orch_webhook_actions_total What accepted deliveries led to, by source and action.\n\
             # TYPE orch_webhook_actions_total counter\n",
        );
        for source in WebhookSource::ALL {
            for action in WebhookAction::ALL {
                let _ = writeln!(
                    out,
                    "orch_webhook_actions_total{{source=\"{}\",action=\"{}\"}} {}",
                    source.as_str(),
                    action.as_str(),
                    self.action_count(source, action)
                );
            }
        }
        out
    }
}

pub(crate) async fn render(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut out = exposition::Exposition::default();
    out.push_raw(&state.metrics().to_prometheus());
    let projects: Vec<String> = state
        .engine()
        .projects()
        .map(|p| p.id().to_string())
        .collect();
    pipeline::render(state.engine().store().as_ref(), &projects, &mut out).await?;
    notifications::render(state.engine().store().as_ref(), &mut out).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        out.finish(),
    ))
}
