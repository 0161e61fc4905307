//! Reads the Gemini CLI's `--output-format stream-json` lines: readable log lines, the session id
//! of `init`, and the usage of the final `result` event.
//!
//! The events, as documented in the CLI's headless mode reference (docs/cli/headless.md) and
//! emitted by its `StreamJsonFormatter` (0.61.0): `init` (`session_id`, `model`), `message`
//! (`role`, `content`, `delta`), `tool_use` (`tool_name`, `tool_id`, `parameters`),
//! `tool_result` (`tool_id`, `status`, `output`, `error.message`), `error` (`severity`,
//! `message`) and `result` (`status`, `error`, and `stats`: `total_tokens`, `input_tokens`, which
//! include the cached ones, `output_tokens`, `cached`, `input`, `duration_ms`, `tool_calls`,
//! `models`). Assistant text comes in deltas, gathered into one log line per message.

use serde_json::Value;

use crate::cli::{StreamParser, quote};
use crate::model_error::{self, ModelError};

/// What the final `result` event said. Counts are `None` when missing or of the wrong type.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GeminiResult {
    /// `status` was not `success`.
    pub failed: bool,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub tool_calls: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct GeminiStream {
    pub session_id: Option<String>,
    /// The last `result` event; `None` when the run ended without one.
    pub result: Option<GeminiResult>,
    pub model_error: Option<ModelError>,
    /// Assistant text not yet logged.
    text: String,
}

impl StreamParser for GeminiStream {
    fn parse_line(&mut self, line: &str) -> Vec<String> {
        if line.trim().is_empty() {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return vec![format!(
                "gemini: unreadable output line skipped: {}",
                quote(line)
            )];
        };
        let kind = event["type"].as_str();
        if kind == Some("message") && event["role"] == "assistant" {
            self.text
                .push_str(event["content"].as_str().unwrap_or_default());
            return Vec::new();
        }
        let mut lines: Vec<String> = self.flush_text().into_iter().collect();
        lines.extend(self.describe(kind, &event));
        lines
    }

    fn finish(&mut self) -> Vec<String> {
        self.flush_text().into_iter().collect()
    }
}

impl GeminiStream {
    fn flush_text(&mut self) -> Option<String> {
        let text = std::mem::take(&mut self.text);
        (!text.trim().is_empty()).then(|| format!("assistant: {}", quote(&text)))
    }

    fn describe(&mut self, kind: Option<&str>, event: &Value) -> Option<String> {
        let text = |key: &str| event[key].as_str().unwrap_or("?");
        match kind? {
            "init" => {
                self.session_id = event["session_id"].as_str().map(str::to_owned);
                Some(format!(
                    "gemini: session {} started, model {}",
                    text("session_id"),
                    text("model")
                ))
            }
            "tool_use" => {
                let parameters = &event["parameters"];
                let target = ["file_path", "absolute_path", "path", "command", "pattern"]
                    .iter()
                    .find_map(|key| parameters[*key].as_str())
                    .map_or_else(|| quote(&parameters.to_string()), quote);
                Some(format!("tool {}: {target}", text("tool_name")))
            }
            "tool_result" if event["status"] != "success" => Some(format!(
                "tool error: {}",
                quote(event["error"]["message"].as_str().unwrap_or("(no message)"))
            )),
            "error" => {
                let message = event["message"].as_str().unwrap_or("(no message)");
                self.note_error(message);
                Some(format!("gemini: {}: {}", text("severity"), quote(message)))
            }
            "result" => Some(self.read_result(event)),
            _ => None,
        }
    }

    fn note_error(&mut self, message: &str) {
        if let Some(error) = model_error::classify(message) {
            self.model_error = Some(error);
        }
    }

    fn read_result(&mut self, event: &Value) -> String {
        let stats = &event["stats"];
        let result = GeminiResult {
            failed: event["status"] != "success",
            input_tokens: stats["input_tokens"].as_u64(),
            output_tokens: stats["output_tokens"].as_u64(),
            cached_tokens: stats["cached"].as_u64(),
            tool_calls: stats["tool_calls"].as_u64(),
        };
        let shown = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let mut line = format!(
            "gemini: finished ({}), {} input ({} cached) / {} output tokens, {} tool calls, {} ms",
            event["status"].as_str().unwrap_or("?"),
            shown(result.input_tokens),
            shown(result.cached_tokens),
            shown(result.output_tokens),
            shown(result.tool_calls),
            shown(stats["duration_ms"].as_u64()),
        );
        if let Some(message) = event["error"]["message"].as_str() {
            self.note_error(message);
            line.push_str(&format!(": {}", quote(message)));
        }
        self.result = Some(result);
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run in the documented shapes: the prompt echoed, text deltas, a file write, a result.
    const RUN: &[&str] = &[
        r#"{"type":"init","timestamp":"2026-11-22T01:00:00.000Z","session_id":"5f0c-1","model":"gemini-2.5-pro"}"#,
        r#"{"type":"message","timestamp":"2026-11-22T01:00:00.100Z","role":"user","content":"Write the analysis."}"#,
        r#"{"type":"message","timestamp":"2026-11-22T01:00:01.000Z","role":"assistant","content":"Writing ","delta":true}"#,
        r#"{"type":"message","timestamp":"2026-11-22T01:00:01.100Z","role":"assistant","content":"it now.","delta":true}"#,
        r#"{"type":"tool_use","timestamp":"2026-11-22T01:00:02.000Z","tool_name":"write_file","tool_id":"write_file-1","parameters":{"file_path":"docs/a.md","content":"x"}}"#,
        r#"{"type":"tool_result","timestamp":"2026-11-22T01:00:02.100Z","tool_id":"write_file-1","status":"success","output":"Wrote docs/a.md"}"#,
        r#"{"type":"tool_result","timestamp":"2026-11-22T01:00:02.200Z","tool_id":"run_shell_command-2","status":"error","output":"","error":{"type":"TOOL_EXECUTION_ERROR","message":"command not allowed"}}"#,
        r#"{"type":"message","timestamp":"2026-11-22T01:00:03.000Z","role":"assistant","content":"Done.","delta":true}"#,
        r#"{"type":"result","timestamp":"2026-11-22T01:00:03.100Z","status":"success","stats":{"total_tokens":368,"input_tokens":323,"output_tokens":45,"cached":7,"input":316,"duration_ms":3100,"tool_calls":2,"models":{"gemini-2.5-pro":{"total_tokens":368,"input_tokens":323,"output_tokens":45,"cached":7,"input":316}}}}"#,
    ];

    fn parse(lines: &[&str]) -> (Vec<String>, GeminiStream) {
        let mut stream = GeminiStream::default();
        let mut log: Vec<String> = lines.iter().flat_map(|l| stream.parse_line(l)).collect();
        log.extend(stream.finish());
        (log, stream)
    }

    #[test]
    fn a_whole_run_gives_readable_lines_the_session_and_usage() {
        let (log, stream) = parse(RUN);
        assert_eq!(
            log,
            [
                "gemini: session 5f0c-1 started, model gemini-2.5-pro",
                "assistant: Writing it now.",
                "tool write_file: docs/a.md",
                "tool error: command not allowed",
                "assistant: Done.",
                "gemini: finished (success), 323 input (7 cached) / 45 output tokens, 2 tool calls, 3100 ms",
            ]
        );
        assert_eq!(stream.session_id.as_deref(), Some("5f0c-1"));
        assert_eq!(
            stream.result,
            Some(GeminiResult {
                failed: false,
                input_tokens: Some(323),
                output_tokens: Some(45),
                cached_tokens: Some(7),
                tool_calls: Some(2),
            })
        );
        assert_eq!(stream.model_error, None);
    }

    #[test]
    fn an_api_error_result_is_a_failure_with_a_model_error() {
        let (log, stream) = parse(&[
            r#"{"type":"error","timestamp":"t","severity":"error","message":"[API Error: got status: 429 Too Many Requests. Quota exceeded]"}"#,
            r#"{"type":"result","timestamp":"t","status":"error","error":{"type":"Error","message":"[API Error: got status: 503 Service Unavailable]"},"stats":{"total_tokens":0,"input_tokens":0,"output_tokens":0,"cached":0,"input":0,"duration_ms":0,"tool_calls":0,"models":{}}}"#,
        ]);
        assert_eq!(log.len(), 2, "{log:?}");
        assert!(log[0].starts_with("gemini: error: [API Error"), "{log:?}");
        let result = stream.result.expect("a result");
        assert!(result.failed);
        let error = stream.model_error.expect("a model error");
        assert_eq!((error.status, error.retryable), (Some(503), true));
    }

    #[test]
    fn malformed_truncated_and_wrongly_typed_lines_invent_nothing() {
        let result = RUN[RUN.len() - 1];
        let (log, stream) = parse(&[
            "Loaded cached credentials.",
            &result[..result.len() / 2],
            r#"{"type":"result","status":"success","stats":{"input_tokens":"many","output_tokens":-3}}"#,
        ]);
        assert!(log[0].starts_with("gemini: unreadable output line skipped: Loaded"));
        assert!(log[1].starts_with("gemini: unreadable output line skipped: {"));
        assert_eq!(
            stream.result,
            Some(GeminiResult::default()),
            "wrong types are unknown"
        );
    }
}
