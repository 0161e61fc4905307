//! Reads `opencode run --format json` lines: readable log lines, the session id, and the usage
//! of every `step_finish` event (summed over the steps).
//!
//! Every event is `{type, timestamp, sessionID, ...}`, with the message part under `part`, as
//! OpenCode's CLI documentation and its message-part schema (`step-start`, `text`, `tool`,
//! `step-finish`) give them: `text` (`part.text`), `tool_use` (`part.tool`, `part.state.status`,
//! `part.state.input`, `part.state.output` or `part.state.error`), `step_finish` (`part.reason`,
//! `part.cost` in USD, `part.tokens.input` (without cached input), `.output`, `.reasoning`,
//! `.cache.read`, `.cache.write`) and `error` (`error.name`, `error.data.message`,
//! `.statusCode`, `.isRetryable`). opencode-ai 1.18.33 printed exactly these shapes against the
//! scripted model server (tests/it/real_cli.rs), including an `error` event for a refused request.
//!
//! OpenCode reports a cost of 0 for a model it has no price for, so a zero cost is read as
//! unknown; a configured price then gives an estimate.

use serde_json::Value;

use crate::Usage;
use crate::cli::{StreamParser, quote};
use crate::model_error::{self, ModelError};

/// The summed usage of the steps. Counts are `None` when no step finished, or when one step
/// lacked the count (unknown rather than low).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OpenCodeUsage {
    pub steps: u32,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    /// The summed cost when every step gave one above zero.
    pub cost_usd: Option<f64>,
}

#[derive(Debug, Default)]
pub(crate) struct OpenCodeStream {
    pub session_id: Option<String>,
    pub usage: OpenCodeUsage,
    /// An `error` event was seen.
    pub failed: bool,
    pub model_error: Option<ModelError>,
}

impl StreamParser for OpenCodeStream {
    fn parse_line(&mut self, line: &str) -> Vec<String> {
        if line.trim().is_empty() {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return vec![format!(
                "opencode: unreadable output line skipped: {}",
                quote(line)
            )];
        };
        if let (None, Some(id)) = (&self.session_id, event["sessionID"].as_str()) {
            self.session_id = Some(id.to_owned());
        }
        let part = &event["part"];
        let line = match event["type"].as_str() {
            Some("text") => part["text"]
                .as_str()
                .filter(|t| !t.trim().is_empty())
                .map(|t| format!("assistant: {}", quote(t))),
            Some("tool_use") => Some(describe_tool(part)),
            Some("step_finish") => Some(self.add_step(part)),
            Some("error") => Some(self.note_error(&event["error"])),
            _ => None,
        };
        line.into_iter().collect()
    }

    /// The finished steps' usage, as the run's record has it (its cost too when OpenCode gave
    /// one); `None` before the first step finished.
    fn usage_so_far(&self) -> Option<Usage> {
        let u = &self.usage;
        (u.steps > 0).then(|| Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cache_read_tokens,
            cache_write_tokens: u.cache_write_tokens,
            reasoning_tokens: u.reasoning_tokens,
            cost_usd: u.cost_usd,
            turns: Some(u.steps),
            ..Usage::default()
        })
    }
}

impl OpenCodeStream {
    fn add_step(&mut self, part: &Value) -> String {
        let tokens = &part["tokens"];
        let (input, output, reasoning, read, write) = (
            tokens["input"].as_u64(),
            tokens["output"].as_u64(),
            tokens["reasoning"].as_u64(),
            tokens["cache"]["read"].as_u64(),
            tokens["cache"]["write"].as_u64(),
        );
        let cost = part["cost"].as_f64().filter(|c| *c > 0.0);
        let u = &mut self.usage;
        let first = u.steps == 0;
        u.steps += 1;
        add(&mut u.input_tokens, input, first);
        add(&mut u.output_tokens, output, first);
        add(&mut u.reasoning_tokens, reasoning, first);
        add(&mut u.cache_read_tokens, read, first);
        add(&mut u.cache_write_tokens, write, first);
        u.cost_usd = if first {
            cost
        } else {
            u.cost_usd.zip(cost).map(|(sum, c)| sum + c)
        };
        let shown = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        format!(
            "opencode: step finished ({}), {} input / {} output ({} reasoning) / {} cache-read / {} cache-write tokens, cost {}",
            part["reason"].as_str().unwrap_or("?"),
            shown(input),
            shown(output),
            shown(reasoning),
            shown(read),
            shown(write),
            cost.map_or_else(|| "?".to_owned(), |c| format!("${c:.4}")),
        )
    }

    fn note_error(&mut self, error: &Value) -> String {
        self.failed = true;
        let data = &error["data"];
        let message = data["message"].as_str().unwrap_or("(no message)");
        let name = error["name"].as_str().unwrap_or("error");
        let status = data["statusCode"].as_u64();
        let described = match status {
            Some(status) => format!("{name}: status {status}: {message}"),
            None => format!("{name}: {message}"),
        };
        if let Some(mut found) = model_error::classify(&described) {
            // OpenCode says itself whether the provider's error may pass.
            if let Some(retryable) = data["isRetryable"].as_bool() {
                found.retryable = retryable;
            }
            self.model_error = Some(found);
        }
        format!("opencode: error: {}", quote(&described))
    }
}

fn describe_tool(part: &Value) -> String {
    let state = &part["state"];
    let input = &state["input"];
    let target = ["filePath", "path", "command", "pattern", "url"]
        .iter()
        .find_map(|key| input[*key].as_str())
        .map_or_else(|| quote(&input.to_string()), quote);
    let tool = part["tool"].as_str().unwrap_or("?");
    match state["status"].as_str() {
        Some("error") => format!(
            "tool {tool}: {target} → error: {}",
            quote(state["error"].as_str().unwrap_or("(no message)"))
        ),
        _ => format!("tool {tool}: {target}"),
    }
}

fn add(total: &mut Option<u64>, step: Option<u64>, first: bool) {
    *total = if first {
        step
    } else {
        total.zip(step).map(|(sum, n)| sum.saturating_add(n))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run in the documented shapes: a step that writes a file, a step that answers.
    const RUN: &[&str] = &[
        r#"{"type":"step_start","timestamp":1795300000000,"sessionID":"ses_1","part":{"id":"prt_1","sessionID":"ses_1","messageID":"msg_1","type":"step-start"}}"#,
        r#"{"type":"tool_use","timestamp":1795300000100,"sessionID":"ses_1","part":{"id":"prt_2","type":"tool","tool":"write","callID":"call_1","state":{"status":"completed","input":{"filePath":"/wt/docs/a.md","content":"x"},"output":"Wrote file","title":"docs/a.md"}}}"#,
        r#"{"type":"tool_use","timestamp":1795300000150,"sessionID":"ses_1","part":{"id":"prt_3","type":"tool","tool":"bash","callID":"call_2","state":{"status":"error","input":{"command":"rm -rf /"},"error":"permission denied"}}}"#,
        r#"{"type":"step_finish","timestamp":1795300000200,"sessionID":"ses_1","part":{"id":"prt_4","type":"step-finish","reason":"tool-calls","cost":0,"tokens":{"input":123,"output":45,"reasoning":0,"cache":{"read":7,"write":11}}}}"#,
        r#"{"type":"text","timestamp":1795300000300,"sessionID":"ses_1","part":{"id":"prt_5","type":"text","text":"The analysis is written."}}"#,
        r#"{"type":"step_finish","timestamp":1795300000400,"sessionID":"ses_1","part":{"id":"prt_6","type":"step-finish","reason":"stop","cost":0,"tokens":{"input":200,"output":30,"reasoning":5,"cache":{"read":0,"write":0}}}}"#,
    ];

    fn parse(lines: &[&str]) -> (Vec<String>, OpenCodeStream) {
        let mut stream = OpenCodeStream::default();
        let log = lines.iter().flat_map(|l| stream.parse_line(l)).collect();
        (log, stream)
    }

    #[test]
    fn a_whole_run_gives_readable_lines_the_session_and_summed_usage() {
        let (log, stream) = parse(RUN);
        assert_eq!(
            log,
            [
                "tool write: /wt/docs/a.md",
                "tool bash: rm -rf / → error: permission denied",
                "opencode: step finished (tool-calls), 123 input / 45 output (0 reasoning) / 7 cache-read / 11 cache-write tokens, cost ?",
                "assistant: The analysis is written.",
                "opencode: step finished (stop), 200 input / 30 output (5 reasoning) / 0 cache-read / 0 cache-write tokens, cost ?",
            ]
        );
        assert_eq!(stream.session_id.as_deref(), Some("ses_1"));
        assert_eq!(
            stream.usage,
            OpenCodeUsage {
                steps: 2,
                input_tokens: Some(323),
                output_tokens: Some(75),
                reasoning_tokens: Some(5),
                cache_read_tokens: Some(7),
                cache_write_tokens: Some(11),
                // Zero means OpenCode had no price for the model: unknown.
                cost_usd: None,
            }
        );
        assert!(!stream.failed);
    }

    #[test]
    fn reported_costs_are_summed() {
        let (_, stream) = parse(&[
            r#"{"type":"step_finish","sessionID":"s","part":{"type":"step-finish","cost":0.25,"tokens":{"input":1,"output":1,"reasoning":0,"cache":{"read":0,"write":0}}}}"#,
            r#"{"type":"step_finish","sessionID":"s","part":{"type":"step-finish","cost":0.5,"tokens":{"input":1,"output":1,"reasoning":0,"cache":{"read":0,"write":0}}}}"#,
        ]);
        assert_eq!(stream.usage.cost_usd, Some(0.75));
    }

    #[test]
    fn an_api_error_event_fails_the_run_with_opencodes_own_retry_flag() {
        let (log, stream) = parse(&[
            r#"{"type":"error","timestamp":1,"sessionID":"ses_1","error":{"name":"APIError","data":{"message":"Too Many Requests","statusCode":429,"isRetryable":true}}}"#,
        ]);
        assert_eq!(
            log,
            ["opencode: error: APIError: status 429: Too Many Requests"]
        );
        assert!(stream.failed);
        let error = stream.model_error.expect("a model error");
        assert_eq!((error.status, error.retryable), (Some(429), true));
        let (_, refused) = parse(&[
            r#"{"type":"error","sessionID":"s","error":{"name":"APIError","data":{"message":"Internal","statusCode":500,"isRetryable":false}}}"#,
        ]);
        assert_eq!(refused.model_error.map(|e| e.retryable), Some(false));
    }

    #[test]
    fn malformed_truncated_and_partial_usage_invent_nothing() {
        let step = RUN[3];
        let (log, stream) = parse(&[
            "INFO  starting server",
            &step[..step.len() - 20],
            r#"{"type":"step_finish","sessionID":"s","part":{"type":"step-finish","tokens":{"input":5}}}"#,
            RUN[5],
        ]);
        assert!(log[0].starts_with("opencode: unreadable output line skipped: INFO"));
        assert!(log[1].starts_with("opencode: unreadable output line skipped: {"));
        assert_eq!(
            stream.usage,
            OpenCodeUsage {
                steps: 2,
                input_tokens: Some(205),
                ..OpenCodeUsage::default()
            }
        );
    }
}
