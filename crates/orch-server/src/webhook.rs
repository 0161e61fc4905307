//! Webhook intake: verify the signature over the raw body, then parse, then store the delivery
//! once in the inbox, then act on a newly stored one (`tracker_events`). A redelivery (same
//! delivery id) is a duplicate; a captured body sent again under a new delivery id (the id is an
//! unsigned header, the body is what the signature covers) is a replay. Neither is acted on.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use orch_integrations::signature;
use orch_store::InboxOutcome;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::metrics::DeliveryResult;
use crate::state::{AppState, Secret};
use crate::tracker_events::WebhookAction;

/// Where a delivery comes from; each signs and names its deliveries in its own headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WebhookSource {
    Plane,
    /// Gitea and Forgejo (same payloads, either header name).
    Gitea,
    Github,
}

impl WebhookSource {
    pub const ALL: [WebhookSource; 3] = [
        WebhookSource::Plane,
        WebhookSource::Gitea,
        WebhookSource::Github,
    ];

    /// The name in the URL (`/hooks/<name>`), the inbox and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookSource::Plane => "plane",
            WebhookSource::Gitea => "gitea",
            WebhookSource::Github => "github",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The signature header value this source sends for `body` signed with `secret` (for tests
    /// and for tools that replay deliveries).
    pub fn sign(self, secret: &str, body: &[u8]) -> Option<String> {
        let hex = signature::sign_hex(secret.as_bytes(), body);
        Some(match self {
            WebhookSource::Github => format!("sha256={hex}"),
            WebhookSource::Plane | WebhookSource::Gitea => hex,
        })
    }

    /// Headers that may carry the signature, in order of preference.
    fn signature_headers(self) -> &'static [&'static str] {
        match self {
            WebhookSource::Plane => &["x-plane-signature"],
            WebhookSource::Gitea => &["x-gitea-signature", "x-forgejo-signature"],
            WebhookSource::Github => &["x-hub-signature-256"],
        }
    }

    fn delivery_headers(self) -> &'static [&'static str] {
        match self {
            WebhookSource::Plane => &["x-plane-delivery"],
            WebhookSource::Gitea => &["x-gitea-delivery", "x-forgejo-delivery"],
            WebhookSource::Github => &["x-github-delivery"],
        }
    }

    /// The hex digest from a signature header value (GitHub prefixes it with `sha256=`).
    fn signature_hex(self, value: &str) -> Option<&str> {
        match self {
            WebhookSource::Github => value.strip_prefix("sha256="),
            WebhookSource::Plane | WebhookSource::Gitea => Some(value),
        }
    }
}

/// The longest delivery id stored; real ones are UUIDs or numbers.
const MAX_DELIVERY_ID: usize = 200;

pub(crate) async fn receive(
    State(state): State<AppState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(source) = WebhookSource::parse(&source) else {
        return ApiError::NotFound(format!(
            "no webhook source `{source}`; use /hooks/plane, /hooks/gitea or /hooks/github"
        ))
        .into_response();
    };
    let (result, response) = match intake(&state, source, &headers, body).await {
        Ok(Intake::Stored(payload)) => {
            let action = crate::tracker_events::act(state.engine(), source, &payload).await;
            state.metrics().record_action(source, action);
            if matches!(
                action,
                WebhookAction::Created | WebhookAction::Approved | WebhookAction::ForgeNews
            ) {
                state.notify_work_added();
            }
            (
                DeliveryResult::Accepted,
                (
                    StatusCode::ACCEPTED,
                    Json(json!({ "accepted": true, "action": action.as_str() })),
                )
                    .into_response(),
            )
        }
        Ok(Intake::Duplicate) => (
            DeliveryResult::Duplicate,
            (StatusCode::OK, Json(json!({ "duplicate": true }))).into_response(),
        ),
        Ok(Intake::Replayed) => {
            tracing::warn!(
                "webhook from {}: a body seen before under another delivery id; not acted on",
                source.as_str()
            );
            (
                DeliveryResult::Replayed,
                (
                    StatusCode::OK,
                    Json(json!({ "duplicate": true, "replayed": true })),
                )
                    .into_response(),
            )
        }
        Err((result, error)) => (result, error.into_response()),
    };
    state.metrics().record(source, result);
    response
}

enum Intake {
    /// Stored for the first time; the parsed payload.
    Stored(serde_json::Value),
    /// Its delivery id was stored before.
    Duplicate,
    /// Its body was stored before under another delivery id.
    Replayed,
}

async fn intake(
    state: &AppState,
    source: WebhookSource,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Intake, (DeliveryResult, ApiError)> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            (
                DeliveryResult::TooLarge,
                ApiError::TooLarge {
                    limit: crate::BODY_LIMIT,
                },
            )
        } else {
            (
                DeliveryResult::Malformed,
                ApiError::BadRequest(format!("cannot read the request body: {rejection}")),
            )
        }
    })?;
    verify(state.webhook_secret(source), source, headers, &body)
        .map_err(|e| (DeliveryResult::RejectedSignature, e))?;
    let malformed = |message: String| (DeliveryResult::Malformed, ApiError::BadRequest(message));
    let delivery_id = first_header(headers, source.delivery_headers())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= MAX_DELIVERY_ID)
        .ok_or_else(|| {
            malformed(format!(
                "missing delivery id: send header {} (at most {MAX_DELIVERY_ID} characters)",
                source.delivery_headers().join(" or ")
            ))
        })?;
    let payload = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| malformed(format!("the body is not JSON: {e}")))?;
    let body_sha256 = hex::encode(Sha256::digest(&body));
    let stored = state
        .engine()
        .store()
        .inbox_insert(source.as_str(), delivery_id, &body_sha256, &body)
        .await
        .map_err(|e| (DeliveryResult::Failed, ApiError::from(e)))?;
    Ok(match stored {
        InboxOutcome::Stored => Intake::Stored(payload),
        InboxOutcome::SameDelivery => Intake::Duplicate,
        InboxOutcome::SameBody => Intake::Replayed,
    })
}

fn first_header<'h>(headers: &'h HeaderMap, names: &[&str]) -> Option<&'h str> {
    names
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
}

/// Checks the delivery's HMAC-SHA256 over the raw body against `secret`, in constant time.
fn verify(
    secret: Option<&Secret>,
    source: WebhookSource,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let refuse = |reason| ApiError::BadSignature {
        sender: source.as_str(),
        reason,
    };
    let secret = secret.ok_or_else(|| refuse("no secret is configured for this source"))?;
    let header = first_header(headers, source.signature_headers())
        .ok_or_else(|| refuse("the signature header is missing"))?;
    let signature = source
        .signature_hex(header.trim())
        .filter(|h| hex::decode(h).is_ok())
        .ok_or_else(|| refuse("the signature is not a hex HMAC-SHA256"))?;
    if signature::verify_hex(secret.expose(), body, signature) {
        Ok(())
    } else {
        Err(refuse("the signature does not match the body"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().expect("header value"));
        }
        h
    }

    #[test]
    fn each_source_verifies_its_own_header_format() {
        let secret = Secret("s3cret".into());
        let body = br#"{"a":1}"#;
        let cases = [
            (WebhookSource::Plane, "x-plane-signature"),
            (WebhookSource::Gitea, "x-gitea-signature"),
            (WebhookSource::Gitea, "x-forgejo-signature"),
            (WebhookSource::Github, "x-hub-signature-256"),
        ];
        for (source, header) in cases {
            let good = source.sign("s3cret", body).expect("sign");
            let ok = verify(Some(&secret), source, &headers(&[(header, &good)]), body);
            assert!(ok.is_ok(), "{source:?} {header}: {ok:?}");
            let tampered = verify(
                Some(&secret),
                source,
                &headers(&[(header, &good)]),
                br#"{"a":2}"#,
            );
            assert!(tampered.is_err(), "{source:?}: a changed body must fail");
            let none = verify(None, source, &headers(&[(header, &good)]), body);
            assert!(none.is_err(), "{source:?}: no secret must fail");
        }
    }

    #[test]
    fn github_signature_without_its_prefix_is_refused() {
        let secret = Secret("s3cret".into());
        let bare = WebhookSource::Plane.sign("s3cret", b"{}").expect("sign");
        let result = verify(
            Some(&secret),
            WebhookSource::Github,
            &headers(&[("x-hub-signature-256", &bare)]),
            b"{}",
        );
        assert!(result.is_err());
    }
}
