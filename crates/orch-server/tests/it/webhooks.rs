//! Webhook intake: signatures first, then size, delivery id and JSON, then the inbox, once.

use orch_server::{DeliveryResult, WebhookSource};
use serde_json::json;

use crate::support::{
    GITEA_SECRET, GITHUB_SECRET, PLANE_SECRET, Request, Server, parse_openmetrics,
};

/// How one source signs and names a delivery.
struct Sender {
    source: WebhookSource,
    path: &'static str,
    secret: &'static str,
    signature_header: &'static str,
    delivery_header: &'static str,
}

const SENDERS: [Sender; 4] = [
    Sender {
        source: WebhookSource::Plane,
        path: "/hooks/plane",
        secret: PLANE_SECRET,
        signature_header: "X-Plane-Signature",
        delivery_header: "X-Plane-Delivery",
    },
    Sender {
        source: WebhookSource::Gitea,
        path: "/hooks/gitea",
        secret: GITEA_SECRET,
        signature_header: "X-Gitea-Signature",
        delivery_header: "X-Gitea-Delivery",
    },
    Sender {
        source: WebhookSource::Gitea,
        path: "/hooks/gitea",
        secret: GITEA_SECRET,
        signature_header: "X-Forgejo-Signature",
        delivery_header: "X-Forgejo-Delivery",
    },
    Sender {
        source: WebhookSource::Github,
        path: "/hooks/github",
        secret: GITHUB_SECRET,
        signature_header: "X-Hub-Signature-256",
        delivery_header: "X-GitHub-Delivery",
    },
];

impl Sender {
    fn delivery(&self, id: &str, body: &[u8], secret: &str) -> Request<'static> {
        let signature = self.source.sign(secret, body).expect("sign");
        Request::post(self.path)
            .header(self.signature_header, signature)
            .header(self.delivery_header, id)
            .header("Content-Type", "application/json")
            .body(body.to_vec())
    }

    fn signed(&self, id: &str, body: &[u8]) -> Request<'static> {
        self.delivery(id, body, self.secret)
    }
}

#[tokio::test]
async fn every_source_accepts_signed_deliveries_once_and_refuses_the_rest() {
    let server = Server::start().await;
    for sender in &SENDERS {
        let name = sender.signature_header;
        let body = json!({"action": "updated", "from": name}).to_string();
        // Gitea and Forgejo share the `gitea` inbox, so each sender uses ids of its own.
        let first = format!("{name}-1");
        let second = format!("{name}-2");

        // A wrong signature is refused and stores nothing: the same id, correctly signed
        // afterwards, is new.
        let forged = server
            .send(sender.delivery(&first, body.as_bytes(), "not-the-secret"))
            .await;
        assert_eq!(forged.status, 401, "{name}: {forged:?}");
        assert!(
            !forged.body.contains(sender.secret),
            "{name}: the secret leaks"
        );
        let unsigned = server
            .send(
                Request::post(sender.path)
                    .header(sender.delivery_header, &first)
                    .body(body.clone()),
            )
            .await;
        assert_eq!(unsigned.status, 401, "{name}: {unsigned:?}");
        let garbage = server
            .send(
                Request::post(sender.path)
                    .header(sender.signature_header, "sha256=zz")
                    .header(sender.delivery_header, &first)
                    .body(body.clone()),
            )
            .await;
        assert_eq!(garbage.status, 401, "{name}: {garbage:?}");

        let accepted = server.send(sender.signed(&first, body.as_bytes())).await;
        assert_eq!(accepted.status, 202, "{name}: {accepted:?}");
        // Not about an item of a project this server serves: accepted, nothing done.
        assert_eq!(
            accepted.json(),
            json!({"accepted": true, "action": "ignored"})
        );

        let again = server.send(sender.signed(&first, body.as_bytes())).await;
        assert_eq!(again.status, 200, "{name}: {again:?}");
        assert_eq!(again.json(), json!({"duplicate": true}));
        // The same signed body under a fresh delivery id (the id is not signed): a replay.
        let replayed = server
            .send(sender.signed(&format!("{name}-3"), body.as_bytes()))
            .await;
        assert_eq!(replayed.status, 200, "{name}: {replayed:?}");
        assert_eq!(
            replayed.json(),
            json!({"duplicate": true, "replayed": true})
        );

        let malformed = server.send(sender.signed(&second, b"{not json")).await;
        assert_eq!(malformed.status, 400, "{name}: {malformed:?}");
        let no_id = server
            .send(
                Request::post(sender.path)
                    .header(
                        sender.signature_header,
                        sender.source.sign(sender.secret, b"{}").expect("sign"),
                    )
                    .body("{}"),
            )
            .await;
        assert_eq!(no_id.status, 400, "{name}: {no_id:?}");
        assert!(no_id.error().contains("delivery id"), "{name}: {no_id:?}");
        // The malformed delivery was not stored either: its id is still new.
        let fixed_body = json!({ "from": name }).to_string();
        let fixed = server
            .send(sender.signed(&second, fixed_body.as_bytes()))
            .await;
        assert_eq!(fixed.status, 202, "{name}: {fixed:?}");
    }
    let metrics = server.state.metrics();
    let gitea = |result| metrics.count(WebhookSource::Gitea, result);
    assert_eq!(gitea(DeliveryResult::Accepted), 4);
    assert_eq!(gitea(DeliveryResult::Duplicate), 2);
    assert_eq!(gitea(DeliveryResult::Replayed), 2);
    assert_eq!(gitea(DeliveryResult::RejectedSignature), 6);
    assert_eq!(gitea(DeliveryResult::Malformed), 4);
    server.stop().await;
}

#[tokio::test]
async fn a_source_without_a_secret_refuses_every_delivery() {
    let server =
        Server::start_with(|state| state.with_webhook_secret(WebhookSource::Github, GITHUB_SECRET))
            .await;
    let plane = &SENDERS[0];
    let refused = server.send(plane.signed("d-1", b"{}")).await;
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(refused.error().contains("no secret"), "{refused:?}");
    let github = &SENDERS[3];
    let accepted = server.send(github.signed("d-1", b"{}")).await;
    assert_eq!(accepted.status, 202, "{accepted:?}");
    let unknown = server.send(Request::post("/hooks/jira").body("{}")).await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
}

#[tokio::test]
async fn an_oversized_delivery_is_413_and_counted() {
    let server = Server::start().await;
    let github = &SENDERS[3];
    let body = vec![b' '; orch_server::BODY_LIMIT + 1];
    let response = server.send(github.signed("big", &body)).await;
    assert_eq!(response.status, 413, "{response:?}");
    // Exactly at the limit is fine (JSON allows trailing whitespace).
    let mut at_limit = vec![b' '; orch_server::BODY_LIMIT];
    at_limit[..2].copy_from_slice(b"{}");
    let response = server.send(github.signed("big", &at_limit)).await;
    assert_eq!(response.status, 202, "{response:?}");
    let metrics = server.state.metrics();
    assert_eq!(
        metrics.count(WebhookSource::Github, DeliveryResult::TooLarge),
        1
    );
    assert_eq!(
        metrics.count(WebhookSource::Github, DeliveryResult::Accepted),
        1
    );
}

#[tokio::test]
async fn metrics_expose_every_counter_in_openmetrics_text() {
    let server = Server::start().await;
    let plane = &SENDERS[0];
    server.send(plane.signed("m-1", b"{}")).await;
    server.send(plane.signed("m-1", b"{}")).await;
    server.send(plane.delivery("m-2", b"{}", "wrong")).await;
    server.send(plane.signed("m-3", b"[")).await;
    let response = server.send(Request::get("/metrics")).await;
    assert_eq!(response.status, 200);
    let content_type = response
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.as_str());
    assert_eq!(
        content_type,
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let text = &response.body;
    assert!(
        text.contains("# TYPE orch_webhook_deliveries counter\n"),
        "{text}"
    );
    let samples = parse_openmetrics(text);
    let delivered = |source: &str, result: &str| {
        let series =
            format!("orch_webhook_deliveries_total{{source=\"{source}\",result=\"{result}\"}}");
        *samples
            .get(&series)
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    for (result, count) in [
        ("accepted", 1.0),
        ("duplicate", 1.0),
        ("rejected_signature", 1.0),
        ("malformed", 1.0),
        ("too_large", 0.0),
    ] {
        assert_eq!(delivered("plane", result), count, "{result}");
    }
    // Every source and result is there from the start, zeros included.
    assert_eq!(delivered("github", "accepted"), 0.0);
    let deliveries = samples
        .keys()
        .filter(|k| k.starts_with("orch_webhook_deliveries_total{"))
        .count();
    assert_eq!(
        deliveries,
        WebhookSource::ALL.len() * DeliveryResult::ALL.len()
    );
}

/// The vendors' own numbers, not orch's signer: GitHub's docs ("Validating webhook deliveries",
/// docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries) publish the secret
/// `It's a Secret to Everybody`, the payload `Hello, World!` and the signature below. Gitea
/// publishes no vector; its sender (`services/webhook/deliver.go`, `addDefaultHeaders`) puts the
/// same hex HMAC-SHA256 of the raw body, without the `sha256=` prefix, in `X-Gitea-Signature`
/// (and Forgejo in `X-Forgejo-Signature`), so the same numbers are what Gitea sends. A wrong
/// assumption shared by orch's signer and verifier (another hash, a hex of the secret, a
/// re-serialized body, the prefix on the wrong header) fails here.
const VECTOR_SECRET: &str = "It's a Secret to Everybody";
const VECTOR_BODY: &[u8] = b"Hello, World!";
const VECTOR_HEX: &str = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

#[tokio::test]
async fn the_vendors_published_signatures_are_accepted_and_nothing_else() {
    let server = Server::start_with(|state| {
        state
            .with_webhook_secret(WebhookSource::Gitea, VECTOR_SECRET)
            .with_webhook_secret(WebhookSource::Github, VECTOR_SECRET)
    })
    .await;
    let github = format!("sha256={VECTOR_HEX}");
    let cases = [
        (
            "/hooks/github",
            "X-Hub-Signature-256",
            github.as_str(),
            "X-GitHub-Delivery",
        ),
        (
            "/hooks/gitea",
            "X-Gitea-Signature",
            VECTOR_HEX,
            "X-Gitea-Delivery",
        ),
        (
            "/hooks/gitea",
            "X-Forgejo-Signature",
            VECTOR_HEX,
            "X-Forgejo-Delivery",
        ),
    ];
    for (i, (path, header, signature, delivery)) in cases.into_iter().enumerate() {
        let send = |body: &[u8], signature: &str| {
            Request::post(path)
                .header(header, signature)
                .header(delivery, format!("vector-{i}"))
                .body(body.to_vec())
        };
        // The signature holds, so the delivery gets as far as its body, which is not JSON: 400,
        // never 401.
        let signed = server.send(send(VECTOR_BODY, signature)).await;
        assert_eq!(signed.status, 400, "{header}: {signed:?}");
        assert!(
            !signed.error().contains("signature"),
            "{header}: {signed:?}"
        );
        // One byte changed in the body, or the prefix on the wrong header: refused.
        let tampered = server.send(send(b"Hello, World?", signature)).await;
        assert_eq!(tampered.status, 401, "{header}: {tampered:?}");
        let other_form = if signature.starts_with("sha256=") {
            VECTOR_HEX.to_owned()
        } else {
            format!("sha256={VECTOR_HEX}")
        };
        let wrong_form = server.send(send(VECTOR_BODY, &other_form)).await;
        assert_eq!(wrong_form.status, 401, "{header}: {wrong_form:?}");
    }
    // orch's own signer agrees with the vendors.
    assert_eq!(
        WebhookSource::Github.sign(VECTOR_SECRET, VECTOR_BODY),
        Some(github.clone())
    );
    assert_eq!(
        WebhookSource::Gitea
            .sign(VECTOR_SECRET, VECTOR_BODY)
            .as_deref(),
        Some(VECTOR_HEX)
    );
    server.stop().await;
}
