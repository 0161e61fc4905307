//! Reads `codex exec --json` lines: readable log lines for finished items, and the token usage of
//! every `turn.completed` event (summed, should a run hold several turns).
//!
//! Codex reports no cost: the adapter computes one only from a configured price table.

use serde_json::Value;

use crate::Usage;
use crate::cli::{StreamParser, quote};

/// The summed usage of the turns. All `None` when no turn completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CodexUsage {
    pub turns: u32,
    pub input_tokens: Option<u64>,
    pub cached_input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub reasoning_tokens: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct CodexStream {
    pub usage: CodexUsage,
    /// The id of `thread.started`: Codex's session.
    pub thread_id: Option<String>,
    /// The last model API error an `error` event or a failed turn named.
    pub model_error: Option<crate::model_error::ModelError>,
}

impl StreamParser for CodexStream {
    fn parse_line(&mut self, line: &str) -> Vec<String> {
        if line.trim().is_empty() {
            return Vec::new();
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return vec![format!(
                "codex: unreadable output line skipped: {}",
                quote(line)
            )];
        };
        match event["type"].as_str() {
            Some("thread.started") => {
                self.thread_id = event["thread_id"].as_str().map(str::to_owned);
                vec![format!(
                    "codex: thread {} started",
                    self.thread_id.as_deref().unwrap_or("?")
                )]
            }
            Some("item.completed") => describe_item(&event["item"]).into_iter().collect(),
            Some("turn.completed") => vec![self.add_turn(&event["usage"])],
            Some("turn.failed") => {
                let message = event["error"]["message"].as_str().unwrap_or("(no message)");
                self.note_error(message);
                vec![format!("codex: turn failed: {}", quote(message))]
            }
            Some("error") => {
                let message = event["message"].as_str().unwrap_or("(no message)");
                self.note_error(message);
                vec![format!("codex: error: {}", quote(message))]
            }
            _ => Vec::new(),
        }
    }

    /// The completed turns' tokens, as the run's record has them; the cost comes from the price
    /// table at the run's end. `None` before the first turn completed.
    fn usage_so_far(&self) -> Option<Usage> {
        let u = &self.usage;
        (u.turns > 0).then(|| Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_tokens: u.cached_input_tokens,
            reasoning_tokens: u.reasoning_tokens,
            turns: Some(u.turns),
            input_includes_cache: true,
            ..Usage::default()
        })
    }
}

impl CodexStream {
    fn note_error(&mut self, message: &str) {
        if let Some(error) = crate::model_error::classify(message) {
            self.model_error = Some(error);
        }
    }

    fn add_turn(&mut self, usage: &Value) -> String {
        let u = &mut self.usage;
        u.turns += 1;
        let read = |key: &str| usage[key].as_u64();
        let (input, cached, output, reasoning) = (
            read("input_tokens"),
            read("cached_input_tokens"),
            read("output_tokens"),
            read("reasoning_output_tokens"),
        );
        let first = u.turns == 1;
        add(&mut u.input_tokens, input, first);
        add(&mut u.cached_input_tokens, cached, first);
        add(&mut u.output_tokens, output, first);
        add(&mut u.reasoning_tokens, reasoning, first);
        let shown = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
        format!(
            "codex: turn completed, {} input ({} cached) / {} output ({} reasoning) tokens",
            shown(input),
            shown(cached),
            shown(output),
            shown(reasoning)
        )
    }
}

/// Adds a turn's count; a count missing from any turn makes the sum unknown rather than low.
fn add(total: &mut Option<u64>, turn: Option<u64>, first_turn: bool) {
    *total = if first_turn {
        turn
    } else {
        total.zip(turn).map(|(sum, n)| sum.saturating_add(n))
    };
}

fn describe_item(item: &Value) -> Option<String> {
    let text = |key: &str| item[key].as_str().unwrap_or_default();
    match item["type"].as_str()? {
        "agent_message" => Some(format!("assistant: {}", quote(text("text")))),
        "reasoning" => Some(format!("reasoning: {}", quote(text("text")))),
        "command_execution" => {
            let exit = item["exit_code"]
                .as_i64()
                .map_or_else(|| text("status").to_owned(), |c| format!("exit {c}"));
            let mut line = format!("command ({exit}): {}", quote(text("command")));
            let output = text("aggregated_output");
            if item["exit_code"].as_i64() != Some(0) && !output.trim().is_empty() {
                line.push_str(&format!(" → {}", quote(output)));
            }
            Some(line)
        }
        "file_change" => {
            let changes = item["changes"].as_array()?;
            let files: Vec<String> = changes
                .iter()
                .map(|c| format!("{} {}", text_of(&c["kind"]), text_of(&c["path"])))
                .collect();
            Some(format!("files changed: {}", files.join(", ")))
        }
        "error" => Some(format!("codex: error: {}", quote(text("message")))),
        other => Some(format!("codex: {other} item")),
    }
}

fn text_of(value: &Value) -> &str {
    value.as_str().unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(lines: &[&str]) -> (Vec<String>, CodexUsage) {
        let mut stream = CodexStream::default();
        let log = lines.iter().flat_map(|l| stream.parse_line(l)).collect();
        (log, stream.usage)
    }

    const TURN: &str = r#"{"type":"turn.completed","usage":{"input_tokens":300,"cached_input_tokens":100,"output_tokens":45,"reasoning_output_tokens":5}}"#;

    #[test]
    fn a_whole_run_gives_readable_lines_and_usage() {
        let (log, usage) = check(&[
            r#"{"type":"thread.started","thread_id":"th-1"}"#,
            r#"{"type":"turn.started"}"#,
            r#"{"type":"item.started","item":{"id":"i0","type":"command_execution","command":"printf x > a.md","status":"in_progress"}}"#,
            r#"{"type":"item.completed","item":{"id":"i0","type":"command_execution","command":"printf x > a.md","aggregated_output":"","exit_code":0,"status":"completed"}}"#,
            r#"{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"false","aggregated_output":"boom\n","exit_code":1,"status":"failed"}}"#,
            r#"{"type":"item.completed","item":{"id":"i2","type":"file_change","changes":[{"path":"src/a.rs","kind":"update"}]}}"#,
            r#"{"type":"item.completed","item":{"id":"i3","type":"error","message":"model not found"}}"#,
            r#"{"type":"item.completed","item":{"id":"i4","type":"agent_message","text":"Done."}}"#,
            TURN,
        ]);
        assert_eq!(
            log,
            [
                "codex: thread th-1 started",
                "command (exit 0): printf x > a.md",
                "command (exit 1): false → boom",
                "files changed: update src/a.rs",
                "codex: error: model not found",
                "assistant: Done.",
                "codex: turn completed, 300 input (100 cached) / 45 output (5 reasoning) tokens",
            ]
        );
        assert_eq!(
            usage,
            CodexUsage {
                turns: 1,
                input_tokens: Some(300),
                cached_input_tokens: Some(100),
                output_tokens: Some(45),
                reasoning_tokens: Some(5),
            }
        );
    }

    #[test]
    fn turns_are_summed_and_a_count_missing_from_one_turn_is_unknown() {
        let (_, usage) = check(&[
            TURN,
            r#"{"type":"turn.completed","usage":{"input_tokens":1,"cached_input_tokens":0,"output_tokens":2}}"#,
        ]);
        assert_eq!(
            usage,
            CodexUsage {
                turns: 2,
                input_tokens: Some(301),
                cached_input_tokens: Some(100),
                output_tokens: Some(47),
                reasoning_tokens: None,
            }
        );
    }

    #[test]
    fn malformed_truncated_and_missing_usage_invent_nothing() {
        let (log, usage) = check(&[
            "Reading prompt from stdin...",
            &TURN[..TURN.len() - 10],
            r#"{"type":"turn.failed","error":{"message":"stream disconnected"}}"#,
            r#"{"type":"error","message":"reconnecting"}"#,
        ]);
        assert_eq!(
            log,
            [
                "codex: unreadable output line skipped: Reading prompt from stdin...",
                &format!(
                    "codex: unreadable output line skipped: {}",
                    &TURN[..TURN.len() - 10]
                ),
                "codex: turn failed: stream disconnected",
                "codex: error: reconnecting",
            ]
        );
        assert_eq!(usage, CodexUsage::default());
    }
}
