//! Reads what aider prints (plain text, with `--no-pretty`) and the JSON lines of its
//! `--analytics-log`, which hold the exact token counts of each model call.
//!
//! Aider prints a usage line after every model call, `Tokens: 1.2k sent, 45 received.`, followed
//! by `Cost: $0.01 message, $0.02 session.` only when it knows the model's price. The printed
//! counts are rounded above 1000 (`1.2k`), so the counts come from the analytics log's
//! `message_send` events (`prompt_tokens`, `completion_tokens`, `cost`), and the printed lines
//! only tell whether aider knew a cost: its events say `cost: 0` when it did not.
//!
//! Aider reports model API errors as printed lines (`litellm.RateLimitError: ... Error code:
//! 429 ...`), retries the retryable ones for about a minute, and then exits 0 regardless.

use serde_json::Value;

use crate::cli::{StreamParser, quote};
use crate::model_error::{self, ModelError};

/// What aider's printed lines said.
#[derive(Debug, Default)]
pub(crate) struct AiderOutput {
    /// `Tokens: ...` lines, one per model call.
    pub usage_lines: u32,
    /// Those of them that also gave a cost.
    pub costed_lines: u32,
    /// The last model API error printed.
    pub model_error: Option<ModelError>,
}

impl StreamParser for AiderOutput {
    fn parse_line(&mut self, line: &str) -> Vec<String> {
        let text = line.trim();
        if text.is_empty() || text.starts_with("```") {
            return Vec::new();
        }
        if text.starts_with("Tokens: ") {
            self.usage_lines += 1;
            if text.contains("Cost: $") {
                self.costed_lines += 1;
            }
        }
        if let Some(error) = api_error(text) {
            self.model_error = Some(error);
        }
        vec![format!("aider: {}", quote(text))]
    }
}

/// The model client's exceptions, as aider prints them (`litellm.<Name>: ...`), with the HTTP
/// status each stands for and whether aider retries it (its own table, aider/exceptions.py).
/// Their messages often carry no status (`litellm.BadRequestError: OpenAIException - ...`).
const EXCEPTIONS: [(&str, Option<u16>, bool); 13] = [
    ("APIConnectionError", None, true),
    ("Timeout", Some(408), true),
    ("RateLimitError", Some(429), true),
    ("InternalServerError", Some(500), true),
    ("BadGatewayError", Some(502), true),
    ("ServiceUnavailableError", Some(503), true),
    ("APIError", None, true),
    ("BadRequestError", Some(400), false),
    ("ContextWindowExceededError", Some(400), false),
    ("AuthenticationError", Some(401), false),
    ("PermissionDeniedError", Some(403), false),
    ("NotFoundError", Some(404), false),
    ("UnprocessableEntityError", Some(422), true),
];

/// The model API error a printed line reports. Only the client's exceptions count: the model's
/// own text can say anything.
fn api_error(text: &str) -> Option<ModelError> {
    let rest = text.strip_prefix("litellm.")?;
    let name = rest.split(':').next().unwrap_or_default();
    match EXCEPTIONS.iter().find(|(known, _, _)| *known == name) {
        Some((_, status, retryable)) => Some(ModelError {
            status: model_error::classify(text)
                .and_then(|e| e.status)
                .or(*status),
            retryable: *retryable,
            message: quote(text),
        }),
        None => model_error::classify(text),
    }
}

/// The usage summed over the `message_send` events of an analytics log.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct AiderUsage {
    pub calls: u32,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// Aider's own cost, summed; meaningful only when it printed a cost for every call.
    pub cost_usd: Option<f64>,
    /// Lines of the log that were not JSON (a log cut short by a kill): skipped.
    pub unreadable_lines: u32,
}

impl AiderUsage {
    /// Reads the analytics log's text. A count missing from any call makes the sum unknown.
    pub(crate) fn from_analytics(text: &str) -> Self {
        let mut usage = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(event) = serde_json::from_str::<Value>(line) else {
                usage.unreadable_lines += 1;
                continue;
            };
            if event["event"] != "message_send" {
                continue;
            }
            let properties = &event["properties"];
            let first = usage.calls == 0;
            usage.calls += 1;
            add(
                &mut usage.prompt_tokens,
                properties["prompt_tokens"].as_u64(),
                first,
            );
            add(
                &mut usage.completion_tokens,
                properties["completion_tokens"].as_u64(),
                first,
            );
            usage.cost_usd = match (first, usage.cost_usd, properties["cost"].as_f64()) {
                (true, _, cost) => cost,
                (false, Some(sum), Some(cost)) => Some(sum + cost),
                _ => None,
            };
        }
        usage
    }
}

fn add(total: &mut Option<u64>, call: Option<u64>, first: bool) {
    *total = if first {
        call
    } else {
        total.zip(call).map(|(sum, n)| sum.saturating_add(n))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as aider 0.86.2 printed them in a run against a scripted model (see
    /// tests/it/real_cli.rs), and the error lines of its retry loop.
    const RUN: &[&str] = &[
        "Creating empty file /wt/docs/work-items/DEMO-1/01-analysis.md",
        "Aider v0.86.2",
        "Model: openai/scripted-model with whole edit format",
        "",
        "```diff",
        "+# Analysis",
        "```",
        "Tokens: 1.2k sent, 45 received.",
        "Applied edit to docs/work-items/DEMO-1/01-analysis.md",
    ];

    fn parse(lines: &[&str]) -> (Vec<String>, AiderOutput) {
        let mut output = AiderOutput::default();
        let log = lines.iter().flat_map(|l| output.parse_line(l)).collect();
        (log, output)
    }

    #[test]
    fn printed_lines_are_logged_and_usage_lines_counted() {
        let (log, output) = parse(RUN);
        assert_eq!(
            log,
            [
                "aider: Creating empty file /wt/docs/work-items/DEMO-1/01-analysis.md",
                "aider: Aider v0.86.2",
                "aider: Model: openai/scripted-model with whole edit format",
                "aider: +# Analysis",
                "aider: Tokens: 1.2k sent, 45 received.",
                "aider: Applied edit to docs/work-items/DEMO-1/01-analysis.md",
            ]
        );
        assert_eq!((output.usage_lines, output.costed_lines), (1, 0));
        assert_eq!(output.model_error, None);
        let (_, costed) =
            parse(&["Tokens: 12k sent, 3 received. Cost: $0.04 message, $0.04 session."]);
        assert_eq!((costed.usage_lines, costed.costed_lines), (1, 1));
    }

    #[test]
    fn a_rate_limit_is_a_retryable_model_error_and_a_mention_is_not() {
        let (_, output) = parse(&[
            "The analysis mentions Error 429 handling.",
            "litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - {'error': {'message': 'slow down'}}",
            "Retrying in 0.2 seconds...",
        ]);
        let error = output.model_error.expect("the rate limit is noted");
        assert_eq!((error.status, error.retryable), (Some(429), true));
        let (_, quiet) = parse(&["We handle Error code: 429 in the client."]);
        assert_eq!(quiet.model_error, None);
        // As aider 0.86.2 printed a 400 answer: no status in the message, the exception names it.
        let (_, refused) = parse(&[
            "litellm.BadRequestError: OpenAIException - the scripted model refuses this",
            "request",
        ]);
        let error = refused.model_error.expect("the refusal is noted");
        assert_eq!((error.status, error.retryable), (Some(400), false));
        let (_, down) = parse(&["litellm.APIConnectionError: Connection refused"]);
        let error = down.model_error.expect("the connection error is noted");
        assert_eq!((error.status, error.retryable), (None, true));
    }

    #[test]
    fn the_analytics_log_gives_exact_counts() {
        let log = concat!(
            r#"{"event": "launched", "properties": {}, "user_id": "u", "time": 1}"#,
            "\n",
            r#"{"event": "message_send", "properties": {"edit_format": "whole", "prompt_tokens": 1234, "completion_tokens": 45, "total_tokens": 1279, "cost": 0.01, "total_cost": 0.01}, "user_id": "u", "time": 2}"#,
            "\n",
            r#"{"event": "message_send", "properties": {"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.5}, "user_id": "u", "time": 3}"#,
            "\n",
            r#"{"event": "exit", "prop"#,
        );
        assert_eq!(
            AiderUsage::from_analytics(log),
            AiderUsage {
                calls: 2,
                prompt_tokens: Some(1244),
                completion_tokens: Some(50),
                cost_usd: Some(0.51),
                unreadable_lines: 1,
            }
        );
    }

    #[test]
    fn a_malformed_or_missing_count_is_unknown_not_zero() {
        let log = concat!(
            r#"{"event": "message_send", "properties": {"prompt_tokens": 7, "completion_tokens": 2, "cost": 0}}"#,
            "\n",
            r#"{"event": "message_send", "properties": {"prompt_tokens": "many", "cost": null}}"#,
        );
        let usage = AiderUsage::from_analytics(log);
        assert_eq!(
            (
                usage.calls,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cost_usd
            ),
            (2, None, None, None)
        );
        assert_eq!(AiderUsage::from_analytics(""), AiderUsage::default());
    }
}
