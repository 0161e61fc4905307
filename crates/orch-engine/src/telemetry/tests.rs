//! Ids, the OTLP JSON encoding, and an exporter whose endpoint is down (it must neither block
//! nor fail). The export itself is tested end to end in `crates/orch/tests/it/traces.rs`.

use std::time::{Duration, Instant};

use super::otlp::{Exporter, encode};
use super::*;

fn span(parent: Option<[u8; 8]>) -> SpanData {
    SpanData {
        trace_id: [0xab; 16],
        span_id: [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
        parent,
        name: "invoke_agent analyst".to_owned(),
        start_ns: 1_700_000_000_000_000_000,
        end_ns: 1_700_000_000_500_000_000,
        attributes: vec![
            ("gen_ai.request.model".to_owned(), Value::from("m-1")),
            (
                "gen_ai.usage.input_tokens".to_owned(),
                Value::from(1000_i64),
            ),
            ("orch.cost_usd".to_owned(), Value::from(0.25)),
            ("orch.gate.passed".to_owned(), Value::from(false)),
        ],
        error: Some("gate failed".to_owned()),
    }
}

#[test]
fn spans_are_encoded_as_otlp_json() {
    let body = encode("orch", &[span(Some([0xff; 8])), span(None)]);
    let resource = &body["resourceSpans"][0];
    assert_eq!(
        resource["resource"]["attributes"][0],
        serde_json::json!({ "key": "service.name", "value": { "stringValue": "orch" } })
    );
    let spans = &resource["scopeSpans"][0]["spans"];
    let s = &spans[0];
    assert_eq!(s["traceId"], "abababababababababababababababab");
    assert_eq!(s["spanId"], "0102030405060708");
    assert_eq!(s["parentSpanId"], "ffffffffffffffff");
    assert_eq!(s["kind"], 1);
    // 64-bit integers are decimal strings in OTLP's JSON.
    assert_eq!(s["startTimeUnixNano"], "1700000000000000000");
    assert_eq!(s["endTimeUnixNano"], "1700000000500000000");
    let attributes = s["attributes"].as_array().expect("attributes");
    assert_eq!(attributes[0]["value"]["stringValue"], "m-1");
    assert_eq!(attributes[1]["value"]["intValue"], "1000");
    assert_eq!(attributes[2]["value"]["doubleValue"], 0.25);
    assert_eq!(attributes[3]["value"]["boolValue"], false);
    assert_eq!(s["status"]["code"], 2);
    // A root span has no parent field at all, and an unset status.
    assert!(spans[1].get("parentSpanId").is_none());
    let mut ok = span(None);
    ok.error = None;
    assert_eq!(
        encode("orch", &[ok])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"]["code"],
        0
    );
}

#[test]
fn ids_follow_the_records_so_workers_agree() {
    let a = trace_id_of("quick", "QUICK-1", 1000);
    assert_eq!(a, trace_id_of("quick", "QUICK-1", 1000));
    // The same id after a reset of the store (another creation time) is another trace.
    assert_ne!(a, trace_id_of("quick", "QUICK-1", 2000));
    assert_ne!(a, trace_id_of("other", "QUICK-1", 1000));
    assert_eq!(item_span_id(&a), item_span_id(&a));
    assert_ne!(random_span_id(&a), random_span_id(&a));
    assert_ne!(span_id(&[b"x"]), [0; 8]);
}

#[test]
fn telemetry_off_sends_nothing_and_costs_nothing() {
    let off = Telemetry::off();
    assert!(!off.is_on());
    let mut s = off.span(None, "x".to_owned());
    s.set("k", "v");
    assert!(s.record.is_none());
}

#[tokio::test]
async fn an_unreachable_endpoint_neither_blocks_nor_fails() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let exporter = Exporter::start(
        format!("http://127.0.0.1:{port}/v1/traces"),
        "orch".to_owned(),
    );
    let started = Instant::now();
    // More than the queue holds: the excess is dropped at once, never awaited.
    for _ in 0..5_000 {
        exporter.queue(span(None));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "queueing blocked"
    );
    // Flushing costs the tries of one batch; the others are dropped while the endpoint is down.
    let flushing = Instant::now();
    exporter.flush().await;
    assert!(
        flushing.elapsed() < Duration::from_secs(5),
        "flush took {:?}",
        flushing.elapsed()
    );
}
