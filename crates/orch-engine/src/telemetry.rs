//! Traces: an optional OpenTelemetry export (OTLP over HTTP, JSON) of a span per item, stage
//! run, agent run, gate and deploy step, so a team's tracing backend shows where time and money
//! go. Off unless an endpoint is configured; then spans go to a bounded queue that a background
//! task sends in batches (`otlp`).
//!
//! Ids are derived from the store's records, not drawn at random, so the spans that different
//! workers and restarts send about one item join one trace: the trace id and the item's span id
//! come from the item (project, id, creation time), a stage run's span id from the run (id and
//! epoch). Children of a run (agent, gates, deploy steps) need only the item and the run to find
//! their parent. The item's span is sent when the item ends.
//!
//! This module must never slow or fail the pipeline: sending is fire-and-forget, a full queue
//! drops spans (counted in a warning), and nothing here returns an error to the engine. Spans
//! carry ids, names, models, token counts, costs and verdict classes; never a prompt, an
//! artifact, a reason text or a secret.

mod otlp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use orch_store::{ItemRecord, RunRecord};
use sha2::{Digest, Sha256};

pub use otlp::{DEFAULT_PATH, Exporter};

/// Where traces go, or nowhere. Cheap to clone; [`Telemetry::off`] does nothing at all.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
    exporter: Option<Arc<Exporter>>,
}

impl Telemetry {
    /// No export: every span is a no-op.
    pub fn off() -> Self {
        Self::default()
    }

    /// Export to `traces_url` (the full URL, such as `http://collector:4318/v1/traces`) as
    /// `service_name`. Must be called inside a tokio runtime (it starts the sending task).
    pub fn otlp(traces_url: String, service_name: String) -> Self {
        Self {
            exporter: Some(Arc::new(Exporter::start(traces_url, service_name))),
        }
    }

    pub fn is_on(&self) -> bool {
        self.exporter.is_some()
    }

    /// Sends what is queued and waits for it (bounded); for the end of a process and tests.
    pub async fn flush(&self) {
        if let Some(exporter) = &self.exporter {
            exporter.flush().await;
        }
    }

    /// The span of a stage run (child of its item's span), started now.
    pub fn stage_run(&self, item: &ItemRecord, run: &RunRecord) -> Span {
        let ids = self.exporter.as_ref().map(|_| {
            let trace = trace_id(item);
            (trace, run_span_id(&trace, run), Some(item_span_id(&trace)))
        });
        let mut span = self.span(ids, format!("stage {}", run.stage));
        span.item_attributes(item);
        span.set("orch.stage", run.stage.as_str());
        span.set("orch.attempt", i64::from(run.attempt));
        span.set("orch.run_id", run.id);
        span
    }

    /// A span inside a stage run (an agent run, a gate, a deploy step), started now.
    pub fn child(&self, item: &ItemRecord, run: &RunRecord, name: impl Into<String>) -> Span {
        let ids = self.exporter.as_ref().map(|_| {
            let trace = trace_id(item);
            (
                trace,
                random_span_id(&trace),
                Some(run_span_id(&trace, run)),
            )
        });
        let mut span = self.span(ids, name.into());
        span.item_attributes(item);
        span.set("orch.stage", run.stage.as_str());
        span
    }

    /// The item's own span, from its creation until now; sent when the item ends.
    pub fn item_ended(&self, item: &ItemRecord, status: &str) {
        if self.exporter.is_none() {
            return;
        }
        let trace = trace_id(item);
        let mut span = self.span(Some((trace, item_span_id(&trace), None)), "item".to_owned());
        if let Some((_, data)) = &mut span.record {
            data.start_ns = millis_to_nanos(item.created_at);
        }
        span.item_attributes(item);
        span.set("orch.item.status", status);
        span.end();
    }

    fn span(&self, ids: Option<SpanIds>, name: String) -> Span {
        let record = match (&self.exporter, ids) {
            (Some(exporter), Some((trace_id, span_id, parent))) => Some((
                Arc::clone(exporter),
                SpanData {
                    trace_id,
                    span_id,
                    parent,
                    name,
                    start_ns: now_ns(),
                    end_ns: 0,
                    attributes: Vec::new(),
                    error: None,
                },
            )),
            _ => None,
        };
        Span { record }
    }
}

/// A span's trace id, its own id and its parent's.
type SpanIds = ([u8; 16], [u8; 8], Option<[u8; 8]>);

/// A value of a span attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Str(v.to_owned())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Str(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

/// One finished span, as the exporter sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanData {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub attributes: Vec<(String, Value)>,
    /// `Some(message)` marks the span failed (OTLP status ERROR).
    pub error: Option<String>,
}

/// A span being measured; sent when ended (or dropped, so an early return still reports it).
#[derive(Debug)]
pub struct Span {
    record: Option<(Arc<Exporter>, SpanData)>,
}

impl Span {
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        if let Some((_, data)) = &mut self.record {
            data.attributes.push((key.to_owned(), value.into()));
        }
    }

    /// Marks the span failed with a short, fixed description (never a free-form reason).
    pub fn fail(&mut self, what: &str) {
        if let Some((_, data)) = &mut self.record {
            data.error = Some(what.to_owned());
        }
    }

    /// Ends the span now and queues it.
    pub fn end(mut self) {
        self.send();
    }

    fn item_attributes(&mut self, item: &ItemRecord) {
        self.set("orch.project", item.project.as_str());
        self.set("orch.item", item.id.as_str());
    }

    fn send(&mut self) {
        if let Some((exporter, mut data)) = self.record.take() {
            data.end_ns = now_ns().max(data.start_ns);
            exporter.queue(data);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        self.send();
    }
}

/// The item's trace: its project, id and creation time (an id reused after a reset of the store
/// is another trace).
fn trace_id(item: &ItemRecord) -> [u8; 16] {
    trace_id_of(item.project.as_str(), item.id.as_str(), item.created_at)
}

fn trace_id_of(project: &str, item: &str, created_at: i64) -> [u8; 16] {
    let digest = Sha256::new()
        .chain_update(b"orch trace\0")
        .chain_update(project)
        .chain_update(b"\0")
        .chain_update(item)
        .chain_update(b"\0")
        .chain_update(created_at.to_be_bytes())
        .finalize();
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

fn span_id(parts: &[&[u8]]) -> [u8; 8] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part);
        hash.update(b"\0");
    }
    let digest = hash.finalize();
    let mut id = [0; 8];
    id.copy_from_slice(&digest[..8]);
    // An all-zero span id is invalid in OTLP; a digest that begins with eight zero bytes is
    // not worth a branch, but the cost of the check is nothing.
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

fn item_span_id(trace: &[u8; 16]) -> [u8; 8] {
    span_id(&[b"item", trace])
}

/// A run executed again under a new epoch (a crash, a hand-back) is another span.
fn run_span_id(trace: &[u8; 16], run: &RunRecord) -> [u8; 8] {
    span_id(&[
        b"run",
        trace,
        &run.id.to_be_bytes(),
        &run.epoch.to_be_bytes(),
    ])
}

fn random_span_id(trace: &[u8; 16]) -> [u8; 8] {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    span_id(&[
        b"child",
        trace,
        &std::process::id().to_be_bytes(),
        &now_ns().to_be_bytes(),
        &n.to_be_bytes(),
    ])
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn millis_to_nanos(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

#[cfg(test)]
mod tests;
