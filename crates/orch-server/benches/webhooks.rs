//! Webhook ingestion throughput: signed Plane deliveries (HMAC check, JSON parse, inbox insert in
//! SQLite, the tracker mapping) against `/healthz` requests measured the same way in the same run,
//! over loopback with keep-alive connections.
//!
//! `cargo bench -p orch-server --bench webhooks` (set `ORCH_BENCH_DELIVERIES`, default 2000, and
//! `ORCH_BENCH_CONNECTIONS`, default 8). Prints requests per second of each and their ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orch_engine::{Engine, Settings, Silent};
use orch_server::{AppState, WebhookSource};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "bench-secret";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// Builds request `i` on a client.
type MakeRequest = Arc<dyn Fn(&reqwest::Client, usize) -> reqwest::RequestBuilder + Send + Sync>;

/// Sends `total` requests made by `make(i)` over `connections` keep-alive clients; returns the
/// elapsed time, failing on any unexpected status.
async fn drive(total: usize, connections: usize, expect: u16, make: MakeRequest) -> Duration {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let make = Arc::clone(&make);
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut i = c;
            while i < total {
                let status = make(&client, i)
                    .send()
                    .await
                    .expect("send")
                    .status()
                    .as_u16();
                assert_eq!(status, expect, "request {i}");
                i += connections;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("client task");
    }
    start.elapsed()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let total = env_number("ORCH_BENCH_DELIVERIES", 2000);
        let connections = env_number("ORCH_BENCH_CONNECTIONS", 8);
        let dir = tempfile::tempdir().expect("tempdir");
        let store = orch_store::open_store(&format!(
            "sqlite://{}",
            dir.path().join("orch.db").display()
        ))
        .await
        .expect("store");
        let engine = Arc::new(Engine::new(
            store,
            Vec::new(),
            Settings::new("bench:1:0".into()),
            Arc::new(Silent),
        ));
        let state =
            AppState::new(engine).with_webhook_secret(WebhookSource::Plane, SECRET);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(orch_server::serve(
            listener,
            state.clone(),
            shutdown.clone().cancelled_owned(),
        ));

        let healthz = format!("{base}/healthz");
        let baseline = drive(
            total,
            connections,
            200,
            Arc::new(move |client, _| client.get(&healthz)),
        )
        .await;

        let hook = format!("{base}/hooks/plane");
        let deliveries = drive(
            total,
            connections,
            202,
            Arc::new(move |client, i| {
                let body = format!(
                    r#"{{"event":"issue","action":"updated","data":{{"id":"item-{i}","project":"p","name":"bench","state":{{"name":"Ready"}}}}}}"#
                );
                let signature = WebhookSource::Plane
                    .sign(SECRET, body.as_bytes())
                    .expect("sign");
                client
                    .post(&hook)
                    .header("X-Plane-Signature", signature)
                    .header("X-Plane-Delivery", format!("bench-{i}"))
                    .body(body)
            }),
        )
        .await;
        let rate = |d: Duration| total as f64 / d.as_secs_f64();
        println!(
            "webhooks: {total} requests over {connections} connections\n  \
             /healthz (baseline):   {:>9.0} req/s\n  \
             /hooks/plane (signed): {:>9.0} req/s\n  \
             ratio: {:.2} of the baseline",
            rate(baseline),
            rate(deliveries),
            rate(deliveries) / rate(baseline),
        );
        assert_eq!(
            state.metrics().count(WebhookSource::Plane, orch_server::DeliveryResult::Accepted),
            total as u64,
            "every delivery stored once"
        );
        shutdown.cancel();
        let _ = server.await;
    });
}
