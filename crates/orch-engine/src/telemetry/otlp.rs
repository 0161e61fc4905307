//! The OTLP/HTTP exporter: spans encoded as OTLP's JSON (`ExportTraceServiceRequest`, ids in
//! hex, times and 64-bit integers as decimal strings, as the OTLP specification's JSON mapping
//! says) and POSTed to the traces URL in batches, from one background task.
//!
//! Must never block or fail the engine: `queue` only tries a bounded channel (a full one drops
//! the span and counts it), a batch is tried a few times with backoff and then dropped with a
//! warning, and every request has a timeout. Warnings never show the URL (it may carry a key).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, oneshot};

use super::{SpanData, Value};

/// The path OTLP/HTTP collectors serve traces on, appended to a base endpoint.
pub const DEFAULT_PATH: &str = "/v1/traces";

/// Spans waiting to be sent; more are dropped.
const QUEUE: usize = 4096;
/// Spans per request.
const BATCH: usize = 256;
/// How long a started batch waits for more spans before it is sent.
const INTERVAL: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const TRIES: u32 = 3;
/// How long [`Exporter::flush`] waits for the queue to be sent.
const FLUSH_WAIT: Duration = Duration::from_secs(15);
/// After a batch could not be sent, later batches are dropped without a try for this long, so
/// a collector that is down costs one batch's tries, not every batch's.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(30);

enum Message {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The sending side; the task that sends ends when every `Exporter` is gone.
#[derive(Debug)]
pub struct Exporter {
    tx: mpsc::Sender<Message>,
    dropped: AtomicU64,
}

impl Exporter {
    pub(crate) fn start(traces_url: String, service_name: String) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_loop(rx, traces_url, service_name));
        Self {
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    pub(crate) fn queue(&self, span: SpanData) {
        if self.tx.try_send(Message::Span(Box::new(span))).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    "traces: {dropped} spans dropped so far (the OTLP endpoint is slower than \
                     orch, or unreachable)"
                );
            }
        }
    }

    pub(crate) async fn flush(&self) {
        let (done, sent) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = tokio::time::timeout(FLUSH_WAIT, sent).await;
        }
    }
}

async fn send_loop(mut rx: mpsc::Receiver<Message>, url: String, service: String) {
    let client = match reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!("traces: no HTTP client ({e}); no span is sent");
            while let Some(message) = rx.recv().await {
                if let Message::Flush(done) = message {
                    let _ = done.send(());
                }
            }
            return;
        }
    };
    let mut batch: Vec<SpanData> = Vec::new();
    let mut sender = Sender {
        client,
        url,
        service,
        paused_until: None,
    };
    loop {
        let message = tokio::select! {
            message = rx.recv() => message,
            _ = tokio::time::sleep(INTERVAL), if !batch.is_empty() => {
                sender.send(std::mem::take(&mut batch)).await;
                continue;
            }
        };
        match message {
            None => {
                sender.send(batch).await;
                return;
            }
            Some(Message::Span(span)) => {
                batch.push(*span);
                if batch.len() >= BATCH {
                    sender.send(std::mem::take(&mut batch)).await;
                }
            }
            Some(Message::Flush(done)) => {
                sender.send(std::mem::take(&mut batch)).await;
                let _ = done.send(());
            }
        }
    }
}

struct Sender {
    client: reqwest::Client,
    url: String,
    service: String,
    paused_until: Option<tokio::time::Instant>,
}

impl Sender {
    async fn send(&mut self, batch: Vec<SpanData>) {
        if batch.is_empty() {
            return;
        }
        if self
            .paused_until
            .is_some_and(|until| tokio::time::Instant::now() < until)
        {
            tracing::debug!(
                "traces: {} spans dropped (the endpoint failed)",
                batch.len()
            );
            return;
        }
        let body = encode(&self.service, &batch).to_string();
        let mut why = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
            let response = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match response {
                Ok(r) if r.status().is_success() => {
                    self.paused_until = None;
                    return;
                }
                // The collector is busy or restarting: worth another try.
                Ok(r) if matches!(r.status().as_u16(), 429 | 502 | 503 | 504) => {
                    why = format!("answered {}", r.status());
                }
                Ok(r) => {
                    why = format!("answered {}", r.status());
                    break;
                }
                Err(e) => why = without_url(&e),
            }
        }
        self.paused_until = Some(tokio::time::Instant::now() + PAUSE_AFTER_FAILURE);
        tracing::warn!(
            "traces: {} spans dropped: the OTLP endpoint {why}; spans are dropped for {} s",
            batch.len(),
            PAUSE_AFTER_FAILURE.as_secs()
        );
    }
}

/// A request error's text without the URL it names.
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "did not answer in time"
    } else if e.is_connect() {
        "could not be reached"
    } else {
        "failed"
    };
    kind.to_owned()
}

/// The OTLP JSON body of one export request.
pub(crate) fn encode(service: &str, spans: &[SpanData]) -> Json {
    let spans: Vec<Json> = spans.iter().map(span).collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [attribute("service.name", &Value::Str(service.to_owned()))] },
            "scopeSpans": [{
                "scope": { "name": "orch", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
}

fn span(s: &SpanData) -> Json {
    let mut out = json!({
        "traceId": hex(&s.trace_id),
        "spanId": hex(&s.span_id),
        "name": s.name,
        // SPAN_KIND_INTERNAL: orch's own work, not a request it serves or makes.
        "kind": 1,
        "startTimeUnixNano": s.start_ns.to_string(),
        "endTimeUnixNano": s.end_ns.to_string(),
        "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
        // STATUS_CODE_ERROR (2) or UNSET (0).
        "status": match &s.error {
            Some(message) => json!({ "code": 2, "message": message }),
            None => json!({ "code": 0 }),
        },
    });
    if let Some(parent) = &s.parent {
        out["parentSpanId"] = json!(hex(parent));
    }
    out
}

fn attribute(key: &str, value: &Value) -> Json {
    let value = match value {
        Value::Str(s) => json!({ "stringValue": s }),
        Value::Int(i) => json!({ "intValue": i.to_string() }),
        Value::Float(f) => json!({ "doubleValue": f }),
        Value::Bool(b) => json!({ "boolValue": b }),
    };
    json!({ "key": key, "value": value })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
