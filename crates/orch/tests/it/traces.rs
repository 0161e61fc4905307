//! Traces: an item driven to the end with `[telemetry] otlp_endpoint` pointing at an OTLP/HTTP
//! receiver of the test's own (loopback), which decodes every request as OTLP JSON. One trace
//! per item: the item's span at the root, a span per stage run under it, and under those the
//! agent runs (with the GenAI semantic conventions), the gates and the deploy steps.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::harness::{Orch, git};

/// What the receiver got: (path, content type, body) per request.
type Received = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// An OTLP/HTTP receiver on a loopback port: answers every request `200 {}` and keeps it.
fn receiver() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let received: Received = Arc::default();
    let kept = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            let (mut length, mut content_type) = (0, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap_or_default();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    "content-type" => content_type = value.trim().to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            kept.lock().expect("lock").push((path, content_type, body));
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            );
        }
    });
    (port, received)
}

/// A decoded span: name, parent span id, its attributes as plain JSON values.
#[derive(Debug)]
struct Span {
    trace: String,
    id: String,
    parent: Option<String>,
    name: String,
    start: u64,
    end: u64,
    attributes: BTreeMap<String, Value>,
}

fn decode(received: &Received) -> Vec<Span> {
    let mut spans = Vec::new();
    for (path, content_type, body) in received.lock().expect("lock").iter() {
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/json");
        let request: Value = serde_json::from_slice(body).expect("OTLP JSON");
        for resource in request["resourceSpans"].as_array().expect("resourceSpans") {
            let service = &resource["resource"]["attributes"][0];
            assert_eq!(service["key"], "service.name");
            assert_eq!(service["value"]["stringValue"], "orch");
            for scope in resource["scopeSpans"].as_array().expect("scopeSpans") {
                assert_eq!(scope["scope"]["name"], "orch");
                for s in scope["spans"].as_array().expect("spans") {
                    let hex = |v: &Value, len: usize| {
                        let h = v.as_str().expect("a hex id").to_owned();
                        assert!(
                            h.len() == len && h.bytes().all(|b| b.is_ascii_hexdigit()),
                            "{h}"
                        );
                        h
                    };
                    let nanos = |v: &Value| -> u64 {
                        v.as_str()
                            .expect("a decimal string")
                            .parse()
                            .expect("nanos")
                    };
                    let attributes = s["attributes"]
                        .as_array()
                        .expect("attributes")
                        .iter()
                        .map(|a| {
                            let value = a["value"].as_object().expect("a value");
                            let (_, v) = value.iter().next().expect("one typed value");
                            (a["key"].as_str().expect("key").to_owned(), v.clone())
                        })
                        .collect();
                    spans.push(Span {
                        trace: hex(&s["traceId"], 32),
                        id: hex(&s["spanId"], 16),
                        parent: s.get("parentSpanId").map(|p| hex(p, 16)),
                        name: s["name"].as_str().expect("name").to_owned(),
                        start: nanos(&s["startTimeUnixNano"]),
                        end: nanos(&s["endTimeUnixNano"]),
                        attributes,
                    });
                }
            }
        }
    }
    spans
}

#[test]
fn an_item_is_one_trace_of_stage_agent_gate_and_deploy_spans() {
    let (port, received) = receiver();
    let orch = Orch::new(None);
    let repo = orch.repo();
    // The analyst reports tokens and a cost, and its role names a model.
    let scenario = std::fs::read_to_string(repo.join(".orch/scenario.toml")).expect("scenario");
    let scenario = scenario.replacen(
        "stage = \"analysis\"\n",
        "stage = \"analysis\"\ntokens = [1000, 200]\ncost_usd = 0.25\n",
        1,
    );
    std::fs::write(repo.join(".orch/scenario.toml"), scenario).expect("scenario");
    let role = std::fs::read_to_string(repo.join(".orch/agents/analyst.md")).expect("role");
    let role = role.replacen("name: analyst\n", "name: analyst\nmodel: test-model-1\n", 1);
    std::fs::write(repo.join(".orch/agents/analyst.md"), role).expect("role");
    git(&repo, &["commit", "-qam", "traces scenario"]);
    let config = orch.path().join("orch.toml");
    let mut toml = std::fs::read_to_string(&config).expect("orch.toml");
    toml.push_str(&format!(
        "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\n"
    ));
    std::fs::write(&config, toml).expect("orch.toml");

    orch.ok(&["item", "add", "--title", "Traced"]);
    let item = orch.drive_to_end("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");

    let spans = decode(&received);
    let named = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };
    let one = |name: &str| -> &Span {
        let found = named(name);
        assert_eq!(found.len(), 1, "one `{name}` span in {spans:#?}");
        found[0]
    };
    // One trace, rooted at the item's span.
    let root = one("item");
    assert!(spans.iter().all(|s| s.trace == root.trace), "{spans:#?}");
    assert_eq!(root.parent, None);
    assert_eq!(root.attributes["orch.item"], "QUICK-1");
    assert_eq!(root.attributes["orch.item.status"], "done");
    // Every stage run is a child of the item; every other span a child of a stage run.
    let stages: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name.starts_with("stage "))
        .collect();
    for stage in [
        "analysis",
        "architecture",
        "development",
        "review",
        "qa",
        "deploy-staging",
        "deploy",
    ] {
        assert!(
            stages.iter().any(|s| s.name == format!("stage {stage}")),
            "no span of stage {stage}: {spans:#?}"
        );
    }
    for s in &stages {
        assert_eq!(s.parent.as_ref(), Some(&root.id), "{s:#?}");
        assert!(root.start <= s.start && s.start <= s.end, "{s:#?}");
    }
    for s in spans
        .iter()
        .filter(|s| s.name != "item" && !s.name.starts_with("stage "))
    {
        let parent = stages
            .iter()
            .find(|p| Some(&p.id) == s.parent.as_ref())
            .unwrap_or_else(|| panic!("{} has no stage run as parent", s.name));
        assert_eq!(parent.attributes["orch.stage"], s.attributes["orch.stage"]);
        assert!(
            parent.start <= s.start && s.end <= parent.end,
            "{s:#?} in {parent:#?}"
        );
    }
    // The agent run, with the GenAI semantic conventions.
    let agent = one("invoke_agent analyst");
    assert_eq!(
        stages
            .iter()
            .find(|p| Some(&p.id) == agent.parent.as_ref())
            .map(|p| p.name.as_str()),
        Some("stage analysis")
    );
    assert_eq!(agent.attributes["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(agent.attributes["gen_ai.agent.name"], "analyst");
    assert_eq!(agent.attributes["gen_ai.request.model"], "test-model-1");
    assert_eq!(agent.attributes["gen_ai.usage.input_tokens"], "1000");
    assert_eq!(agent.attributes["gen_ai.usage.output_tokens"], "200");
    assert_eq!(agent.attributes["orch.cost_usd"], 0.25);
    // Gates (the command gate `tests` timed on its own) and the deploy steps.
    assert!(!named("gate verdict").is_empty(), "{spans:#?}");
    let tests = one("gate tests");
    assert_eq!(tests.attributes["orch.gate.passed"], true);
    let staging = one("deploy staging");
    assert_eq!(staging.attributes["orch.staging.passed"], true);
    let promote = one("deploy promote");
    assert_eq!(promote.attributes["orch.deploy.step"], "promote");
    // Nothing from the prompts or the artifacts travels.
    for s in &spans {
        for (key, value) in &s.attributes {
            let text = value.to_string();
            assert!(
                !text.contains("analysis_status") && !text.contains("---"),
                "{key} carries artifact text: {text}"
            );
        }
    }
}
