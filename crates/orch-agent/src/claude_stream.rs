//! Reads Claude Code's `--output-format stream-json` lines: readable log lines as they come, the
//! usage of the final `result` event, and the usage of each assistant message on the way (the
//! only usage there is before the end, and all of it when a run is killed before its result).
//!
//! The events read are `system` (subtype `init`), `assistant` (text and tool calls), `user`
//! (tool results, of which only errors are logged) and `result`. Anything else is skipped
//! quietly; a line that is not JSON is logged as such and skipped.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Usage;
use crate::cli::{StreamParser, quote};

/// What the final `result` event said. Every field is `None` when missing or of the wrong type.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ClaudeResult {
    pub is_error: Option<bool>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    pub turns: Option<u32>,
    /// The model API error the result text names, when the result is an error.
    pub model_error: Option<crate::model_error::ModelError>,
}

#[derive(Debug, Default)]
pub(crate) struct ClaudeStream {
    /// The last `result` event seen; `None` when the run ended without one.
    pub result: Option<ClaudeResult>,
    /// The session id of the `system` `init` or `result` event, to resume the session later.
    pub session_id: Option<String>,
    /// Token counts (input, output, cache read, cache write) of each assistant message by its id.
    /// Claude Code repeats a message's usage on every event of that message, so it is kept
    /// once per id; a message without an id counts on its own.
    messages: BTreeMap<String, [u64; 4]>,
}

impl StreamParser for ClaudeStream {
    fn parse_line(&mut self, line: &str) -> Vec<String> {
        if line.trim().is_empty() {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return vec![format!(
                "claude: unreadable output line skipped: {}",
                quote(line)
            )];
        };
        if let Some(id) = event["session_id"].as_str() {
            self.session_id = Some(id.to_owned());
        }
        match event["type"].as_str() {
            Some("system") if event["subtype"] == "init" => vec![format!(
                "claude: session {} started, model {}, in {}",
                text_or(&event["session_id"], "?"),
                text_or(&event["model"], "?"),
                text_or(&event["cwd"], "?"),
            )],
            Some("assistant") => {
                self.count_message(&event["message"]);
                content(&event)
                    .filter_map(describe_assistant_block)
                    .collect()
            }
            Some("user") => content(&event).filter_map(describe_tool_error).collect(),
            Some("result") => {
                let result = read_result(&event);
                let line = describe_result(&event, &result);
                self.result = Some(result);
                vec![line]
            }
            _ => Vec::new(),
        }
    }

    fn usage_so_far(&self) -> Option<Usage> {
        if self.messages.is_empty() {
            return None;
        }
        let sum = |i: usize| Some(self.messages.values().map(|m| m[i]).sum::<u64>());
        Some(Usage {
            input_tokens: sum(0),
            output_tokens: sum(1),
            cache_read_tokens: sum(2),
            cache_write_tokens: sum(3),
            ..Usage::default()
        })
    }
}

impl ClaudeStream {
    fn count_message(&mut self, message: &Value) {
        let usage = &message["usage"];
        if !usage.is_object() {
            return;
        }
        let key = message["id"]
            .as_str()
            .map_or_else(|| format!("#{}", self.messages.len()), str::to_owned);
        let read = |k: &str| usage[k].as_u64().unwrap_or(0);
        self.messages.insert(
            key,
            [
                read("input_tokens"),
                read("output_tokens"),
                read("cache_read_input_tokens"),
                read("cache_creation_input_tokens"),
            ],
        );
    }
}

fn content(event: &Value) -> impl Iterator<Item = &Value> {
    event["message"]["content"]
        .as_array()
        .map(|blocks| blocks.iter())
        .into_iter()
        .flatten()
}

fn describe_assistant_block(block: &Value) -> Option<String> {
    match block["type"].as_str()? {
        "text" => {
            let text = block["text"].as_str()?;
            (!text.trim().is_empty()).then(|| format!("assistant: {}", quote(text)))
        }
        "tool_use" => {
            let name = text_or(&block["name"], "?");
            let input = &block["input"];
            // The argument a reader wants to see first: which file, which command, which search.
            let target = ["file_path", "path", "command", "pattern", "url"]
                .iter()
                .find_map(|key| input[*key].as_str())
                .map_or_else(|| quote(&input.to_string()), quote);
            Some(format!("tool {name}: {target}"))
        }
        _ => None,
    }
}

fn describe_tool_error(block: &Value) -> Option<String> {
    if block["type"] != "tool_result" || block["is_error"] != true {
        return None;
    }
    let message = match &block["content"] {
        Value::String(text) => quote(text),
        other => quote(&other.to_string()),
    };
    Some(format!("tool error: {message}"))
}

fn read_result(event: &Value) -> ClaudeResult {
    let usage = &event["usage"];
    let is_error = event["is_error"].as_bool();
    ClaudeResult {
        model_error: (is_error == Some(true))
            .then(|| {
                event["result"]
                    .as_str()
                    .and_then(crate::model_error::classify)
            })
            .flatten(),
        is_error,
        input_tokens: usage["input_tokens"].as_u64(),
        output_tokens: usage["output_tokens"].as_u64(),
        cache_read_tokens: usage["cache_read_input_tokens"].as_u64(),
        cache_write_tokens: usage["cache_creation_input_tokens"].as_u64(),
        cost_usd: event["total_cost_usd"].as_f64(),
        turns: event["num_turns"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok()),
    }
}

fn describe_result(event: &Value, result: &ClaudeResult) -> String {
    let shown = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
    let mut line = format!(
        "claude: finished ({}{}), {} turns, {} input / {} output / {} cache-read / {} cache-write tokens, cost {}, {} ms",
        text_or(&event["subtype"], "?"),
        if result.is_error == Some(true) {
            ", error"
        } else {
            ""
        },
        shown(result.turns.map(u64::from)),
        shown(result.input_tokens),
        shown(result.output_tokens),
        shown(result.cache_read_tokens),
        shown(result.cache_write_tokens),
        result
            .cost_usd
            .map_or_else(|| "?".to_owned(), |c| format!("${c:.4}")),
        shown(event["duration_ms"].as_u64()),
    );
    if let (Some(true), Some(text)) = (result.is_error, event["result"].as_str()) {
        line.push_str(&format!(": {}", quote(text)));
    }
    line
}

fn text_or<'a>(value: &'a Value, default: &'a str) -> &'a str {
    value.as_str().unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the lines and returns the log lines and the result.
    fn check(lines: &[&str]) -> (Vec<String>, Option<ClaudeResult>) {
        let mut stream = ClaudeStream::default();
        let log = lines.iter().flat_map(|l| stream.parse_line(l)).collect();
        (log, stream.result)
    }

    const INIT: &str = r#"{"type":"system","subtype":"init","cwd":"/wt","session_id":"s-1","tools":["Write"],"model":"claude-test","permissionMode":"acceptEdits"}"#;
    const TOOL_CALL: &str = r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Writing the analysis.\nNow."},{"type":"tool_use","id":"t1","name":"Write","input":{"file_path":"/wt/docs/a.md","content":"x"}}]}}"#;
    const TOOL_FAILED: &str = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"permission denied"}]}}"#;
    const TOOL_OK: &str = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}"#;
    const RESULT: &str = r#"{"type":"result","subtype":"success","is_error":false,"num_turns":2,"duration_ms":1500,"session_id":"s-1","total_cost_usd":0.0123,"usage":{"input_tokens":123,"output_tokens":45,"cache_creation_input_tokens":11,"cache_read_input_tokens":7},"result":"done"}"#;

    #[test]
    fn a_whole_run_gives_readable_lines_and_the_result() {
        let (log, result) = check(&[INIT, TOOL_CALL, TOOL_OK, TOOL_FAILED, RESULT]);
        assert_eq!(
            log,
            [
                "claude: session s-1 started, model claude-test, in /wt",
                "assistant: Writing the analysis. ⏎ Now.",
                "tool Write: /wt/docs/a.md",
                "tool error: permission denied",
                "claude: finished (success), 2 turns, 123 input / 45 output / 7 cache-read / 11 cache-write tokens, cost $0.0123, 1500 ms",
            ]
        );
        assert_eq!(
            result,
            Some(ClaudeResult {
                is_error: Some(false),
                input_tokens: Some(123),
                output_tokens: Some(45),
                cache_read_tokens: Some(7),
                cache_write_tokens: Some(11),
                cost_usd: Some(0.0123),
                turns: Some(2),
                model_error: None,
            })
        );
    }

    #[test]
    fn assistant_messages_add_up_once_per_message_before_any_result() {
        let message = |id: &str, input: u64, output: u64| {
            format!(
                r#"{{"type":"assistant","message":{{"id":"{id}","usage":{{"input_tokens":{input},"output_tokens":{output},"cache_read_input_tokens":5,"cache_creation_input_tokens":1}},"content":[]}}}}"#
            )
        };
        let mut stream = ClaudeStream::default();
        assert_eq!(stream.usage_so_far(), None);
        // The second event of message m1 repeats its usage (one event per content block).
        for line in [
            message("m1", 10, 2),
            message("m1", 10, 3),
            message("m2", 20, 4),
        ] {
            stream.parse_line(&line);
        }
        let seen = stream.usage_so_far().expect("usage");
        assert_eq!(
            (
                seen.input_tokens,
                seen.output_tokens,
                seen.cache_read_tokens,
                seen.cache_write_tokens
            ),
            (Some(30), Some(7), Some(10), Some(2))
        );
        assert_eq!(seen.run_spend().tokens, Some(49));
    }

    #[test]
    fn the_session_id_is_kept_and_an_api_error_result_is_classified() {
        let (_, result) = check(&[
            INIT,
            r#"{"type":"result","subtype":"success","is_error":true,"session_id":"s-2","result":"API Error: 529 {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}"}"#,
        ]);
        let error = result.and_then(|r| r.model_error).expect("a model error");
        assert_eq!((error.status, error.retryable), (Some(529), true));
        let mut stream = ClaudeStream::default();
        stream.parse_line(INIT);
        assert_eq!(stream.session_id.as_deref(), Some("s-1"));
        stream.parse_line(RESULT);
        assert_eq!(stream.session_id.as_deref(), Some("s-1"));
        // A plain error result names no model API error.
        let (_, result) = check(&[
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"result":"Reached 100 turns"}"#,
        ]);
        assert_eq!(result.and_then(|r| r.model_error), None);
    }

    #[test]
    fn malformed_and_truncated_lines_are_logged_and_skipped() {
        let truncated_result = &RESULT[..RESULT.len() / 2];
        let (log, result) = check(&[INIT, "not json at all", truncated_result, "", TOOL_CALL]);
        assert_eq!(log.len(), 5, "{log:?}");
        assert_eq!(
            log[1],
            "claude: unreadable output line skipped: not json at all"
        );
        assert!(log[2].starts_with("claude: unreadable output line skipped: {\"type\":\"result\""));
        // A result cut in half is no result: nothing is invented.
        assert_eq!(result, None);
    }

    #[test]
    fn a_result_with_wrong_types_leaves_those_fields_unknown() {
        let (log, result) = check(&[
            r#"{"type":"result","subtype":"error_max_turns","is_error":true,"num_turns":"many","total_cost_usd":null,"usage":{"input_tokens":-1,"output_tokens":9},"result":"hit the turn limit"}"#,
        ]);
        assert_eq!(
            result,
            Some(ClaudeResult {
                is_error: Some(true),
                output_tokens: Some(9),
                ..ClaudeResult::default()
            })
        );
        assert_eq!(
            log,
            [
                "claude: finished (error_max_turns, error), ? turns, ? input / 9 output / ? cache-read / ? cache-write tokens, cost ?, ? ms: hit the turn limit"
            ]
        );
    }

    #[test]
    fn unknown_events_and_tool_inputs_without_a_path_are_handled() {
        let (log, result) = check(&[
            r#"{"type":"stream_event","event":{}}"#,
            r#"{"type":"system","subtype":"hook_response"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"TodoWrite","input":{"todos":[]}},{"type":"thinking","thinking":"hmm"}]}}"#,
            r#"{"type":"assistant","message":"not an object"}"#,
        ]);
        assert_eq!(log, [r#"tool TodoWrite: {"todos":[]}"#]);
        assert_eq!(result, None);
    }
}
