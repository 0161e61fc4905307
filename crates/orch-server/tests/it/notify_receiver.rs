//! A notification receiver on loopback for the tests: it records every request and answers as
//! the test says, and checks signatures with its own HMAC code, as a real receiver would.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Got {
    pub at: Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How the receiver answers the n-th request (1-based).
pub type Answer = Arc<dyn Fn(&Got, usize) -> StatusCode + Send + Sync>;

#[derive(Clone)]
struct Sink {
    got: Arc<Mutex<Vec<Got>>>,
    answer: Answer,
}

/// A receiver on a loopback port; its URL is `http://127.0.0.1:PORT`.
pub struct Loopback {
    pub base: String,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Loopback {
    pub async fn start(answer: Answer) -> Self {
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink {
            got: Arc::clone(&got),
            answer,
        };
        let app = axum::Router::new().fallback(receive).with_state(sink);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, got }
    }

    pub fn got(&self) -> Vec<Got> {
        self.got.lock().expect("lock").clone()
    }
}

async fn receive(
    State(sink): State<Sink>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let got = Got {
        at: Instant::now(),
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
    };
    let mut all = sink.got.lock().expect("lock");
    all.push(got.clone());
    (sink.answer)(&got, all.len())
}

/// What a receiver does: recompute the HMAC-SHA256 of the raw body with its own copy of the
/// secret and compare, in constant time, with `X-Orch-Signature-256: sha256=<hex>`.
pub fn signature_holds(got: &Got, secret: &str) -> bool {
    let Some(hex) = got.header("x-orch-signature-256").strip_prefix("sha256=") else {
        return false;
    };
    let Ok(signature) = hex::decode(hex) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(&got.body);
    mac.verify_slice(&signature).is_ok()
}

/// A receiver that accepts only bodies signed with `secret`.
pub fn checking(secret: &'static str) -> Answer {
    Arc::new(move |got, _| {
        if signature_holds(got, secret) {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::UNAUTHORIZED
        }
    })
}
