//! Errors of the model API that a CLI reports in its output (a 429, a 500, a refused key), read
//! from the CLI's error messages and classified: may trying again later help or not.
//!
//! The CLIs word these differently (`litellm.RateLimitError: ... Error code: 429`, `API Error:
//! 429 {...}`, `RESOURCE_EXHAUSTED`, `unexpected status 503 Service Unavailable`), so a message is
//! read for an HTTP status in the 4xx/5xx range and for the few names providers give the
//! retryable cases. A message that names neither is not a model API error.

use std::fmt;

/// One model API error, as the CLI reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    /// The HTTP status, when the message gives one (or names a status, such as a rate limit).
    pub status: Option<u16>,
    /// Trying again later may succeed: rate limits, overload, server errors, timeouts.
    pub retryable: bool,
    /// The CLI's message, cut to one readable line.
    pub message: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the model API failed")?;
        if let Some(status) = self.status {
            write!(f, " with HTTP {status}")?;
        }
        let class = if self.retryable {
            "retryable"
        } else {
            "not retryable"
        };
        write!(f, " ({class}): {}", self.message)
    }
}

/// Names that mean "try again later" without always carrying the status.
const RETRYABLE_NAMES: [(&str, u16); 8] = [
    ("ratelimit", 429),
    ("rate limit", 429),
    ("rate_limit", 429),
    ("too many requests", 429),
    ("resource_exhausted", 429),
    ("overloaded", 529),
    ("service unavailable", 503),
    ("internal server error", 500),
];

/// The model API error `message` reports, or `None` when it reports none.
pub fn classify(message: &str) -> Option<ModelError> {
    let lower = message.to_ascii_lowercase();
    let status = http_status(&lower).or_else(|| {
        RETRYABLE_NAMES
            .iter()
            .find(|(name, _)| lower.contains(name))
            .map(|(_, status)| *status)
    })?;
    Some(ModelError {
        status: Some(status),
        retryable: is_retryable(status),
        message: crate::cli::quote(message),
    })
}

/// Statuses after which the same request may succeed later.
fn is_retryable(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429) || status >= 500
}

/// The first HTTP error status named in `lower`: a 4xx/5xx number standing alone and preceded
/// within a few characters by a word that introduces a status (`status`, `code`, `error`, `http`).
fn http_status(lower: &str) -> Option<u16> {
    let bytes = lower.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let Some(offset) = bytes[start..].iter().position(u8::is_ascii_digit) else {
            break;
        };
        let begin = start + offset;
        let end = bytes[begin..]
            .iter()
            .position(|b| !b.is_ascii_digit())
            .map_or(bytes.len(), |len| begin + len);
        start = end;
        if end - begin != 3 || (begin > 0 && bytes[begin - 1].is_ascii_alphanumeric()) {
            continue;
        }
        let Ok(status) = lower[begin..end].parse::<u16>() else {
            continue;
        };
        let mut from = begin.saturating_sub(16);
        while !lower.is_char_boundary(from) {
            from -= 1;
        }
        let before = &lower[from..begin];
        let introduced = ["status", "code", "error", "http", "exception"]
            .iter()
            .any(|word| before.contains(word));
        if (400..600).contains(&status) && introduced {
            return Some(status);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(message: &str) -> Option<(Option<u16>, bool)> {
        classify(message).map(|e| (e.status, e.retryable))
    }

    #[test]
    fn the_wordings_of_the_clis_are_classified() {
        let cases = [
            // aider (litellm)
            (
                "litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - {'error': 'slow down'}",
                Some((Some(429), true)),
            ),
            (
                "litellm.InternalServerError: OpenAIException - Error code: 500",
                Some((Some(500), true)),
            ),
            // Claude Code
            (
                r#"API Error: 401 {"type":"error","error":{"type":"authentication_error"}}"#,
                Some((Some(401), false)),
            ),
            // Codex
            (
                "unexpected status 503 Service Unavailable: overloaded",
                Some((Some(503), true)),
            ),
            // Gemini CLI, without a number
            (
                "Quota exceeded: RESOURCE_EXHAUSTED",
                Some((Some(429), true)),
            ),
            ("Error code: 400 - bad request", Some((Some(400), false))),
            // Not model API errors: numbers that are not statuses, or no error at all.
            ("wrote 429 lines to src/a.rs", None),
            ("tool Write: /wt/docs/500.md", None),
            ("error code: 4290", None),
            ("all good", None),
            // Text of any script around the number: no slicing inside a character.
            ("错误错误错误 429 ééééé status 503", Some((Some(503), true))),
            ("错误错误错误429", None),
        ];
        for (message, expected) in cases {
            assert_eq!(class(message), expected, "{message}");
        }
    }

    #[test]
    fn the_description_says_whether_to_retry() {
        let error = classify("Error code: 429 - slow down").expect("an error");
        assert_eq!(
            error.to_string(),
            "the model API failed with HTTP 429 (retryable): Error code: 429 - slow down"
        );
        let run = crate::AgentRun {
            model_error: Some(error),
            ..crate::AgentRun::ended(orch_core::gate::ExitOutcome::Exited(1))
        };
        assert_eq!(
            run.describe(),
            "exited with code 1; the model API failed with HTTP 429 (retryable): Error code: 429 - slow down"
        );
        let refused = classify("API Error: 403 forbidden").expect("an error");
        assert!(refused.to_string().contains("(not retryable)"));
    }
}
