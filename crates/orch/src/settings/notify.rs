//! A project's notification receivers from its `[[projects.notify]]` tables. Part of the one
//! registry parser: every error names the project and the field, and never repeats a secret or
//! a receiver's URL (a Slack URL is the credential itself).

use std::collections::BTreeSet;

use orch_core::ProjectId;
use orch_engine::notify::{
    ATTEMPT_TIMEOUT, DEFAULT_FIRST_RETRY, DEFAULT_MAX_ATTEMPTS, NotifyEvent, NotifyFormat,
    NotifyTarget,
};
use orch_integrations::Token;
use orch_integrations::notify::{Receiver, ReceiverUrl};
use serde::{Deserialize, Serialize};

/// `[[projects.notify]]`: one receiver of a project's notifications.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyEntry {
    /// Unique within the project (default `notify-1`, `notify-2`... by position). Keep it
    /// stable: pending notifications are kept under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The receiver's URL, or `url_env`: the environment variable holding it (for URLs that
    /// carry a token, as Slack's do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_env: Option<String>,
    /// `json` (default, signed) or `slack`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The events to send (`approval`, `blocked`, `deployed`, `prod-restored`, `spend-limit`);
    /// absent or empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// The environment variable holding the HMAC-SHA256 secret; required for `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// Attempts before giving up (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Milliseconds before the first retry (default 10000); each later wait doubles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_retry_ms: Option<u64>,
}

/// The value of the environment variable `name`, which `field` names; never from the file.
fn from_env(id: &ProjectId, field: &str, name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "project `{id}`, field `{field}`: must name an environment variable (letters, digits, `_`), not hold the value"
        ));
    }
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            format!("project `{id}`, field `{field}`: the environment variable `{name}` is not set")
        })
}

pub fn targets(id: &ProjectId, entries: &[NotifyEntry]) -> Result<Vec<NotifyTarget>, String> {
    let mut names = BTreeSet::new();
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let target = target(id, index, entry)?;
            if !names.insert(target.name.clone()) {
                return Err(format!(
                    "project `{id}`, field `notify[{index}].name`: `{}` is used twice; give each receiver its own name",
                    target.name
                ));
            }
            Ok(target)
        })
        .collect()
}

fn target(id: &ProjectId, index: usize, entry: &NotifyEntry) -> Result<NotifyTarget, String> {
    let field = |name: &str| format!("notify[{index}].{name}");
    let name = match &entry.name {
        Some(name) => name.trim().to_owned(),
        None => format!("notify-{}", index + 1),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "project `{id}`, field `{}`: use letters, digits, `-` and `_`",
            field("name")
        ));
    }
    let url = match (&entry.url, &entry.url_env) {
        (Some(url), None) => url.clone(),
        (None, Some(var)) => from_env(id, &field("url_env"), var)?,
        _ => {
            return Err(format!(
                "project `{id}`, field `{}`: give exactly one of `url` and `url_env`",
                field("url")
            ));
        }
    };
    let url = ReceiverUrl::parse(&url)
        .map_err(|e| format!("project `{id}`, field `{}`: {e}", field("url")))?;
    let format = match entry.format.as_deref().map(str::trim) {
        None => NotifyFormat::Json,
        Some(f) => NotifyFormat::parse(f).ok_or_else(|| {
            format!(
                "project `{id}`, field `{}`: `{f}` is not a format; use `json` or `slack`",
                field("format")
            )
        })?,
    };
    let secret = match &entry.secret_env {
        Some(var) => Some(
            Token::new(from_env(id, &field("secret_env"), var)?).ok_or_else(|| {
                format!("project `{id}`, field `{}`: is blank", field("secret_env"))
            })?,
        ),
        None if format == NotifyFormat::Json => {
            return Err(format!(
                "project `{id}`, field `{}`: a `json` receiver's notifications are signed; name the environment variable holding its secret",
                field("secret_env")
            ));
        }
        None => None,
    };
    let events = entry
        .events
        .iter()
        .map(|e| {
            NotifyEvent::parse(e.trim()).ok_or_else(|| {
                format!(
                    "project `{id}`, field `{}`: `{e}` is not an event; use {}",
                    field("events"),
                    NotifyEvent::ALL
                        .iter()
                        .map(|e| format!("`{}`", e.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let max_attempts = entry.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if max_attempts == 0 {
        return Err(format!(
            "project `{id}`, field `{}`: must be at least 1",
            field("max_attempts")
        ));
    }
    let receiver = Receiver::new(url, secret, ATTEMPT_TIMEOUT)
        .map_err(|e| format!("project `{id}`, field `{}`: {e}", field("url")))?;
    Ok(NotifyTarget {
        name,
        format,
        events,
        receiver,
        max_attempts,
        first_retry: entry
            .first_retry_ms
            .map_or(DEFAULT_FIRST_RETRY, std::time::Duration::from_millis),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment variable every test process has, so the tests need not set one.
    const SET_VAR: &str = "PATH";

    fn entry(url: &str) -> NotifyEntry {
        NotifyEntry {
            name: None,
            url: Some(url.to_owned()),
            url_env: None,
            format: None,
            events: Vec::new(),
            secret_env: Some(SET_VAR.to_owned()),
            max_attempts: None,
            first_retry_ms: None,
        }
    }

    fn parse(entries: &[NotifyEntry]) -> Result<Vec<NotifyTarget>, String> {
        targets(&ProjectId::parse("web").expect("id"), entries)
    }

    #[test]
    fn omissions_take_their_defaults() {
        let got = parse(&[entry("https://hooks.example.com/orch")]).expect("parses");
        let t = &got[0];
        assert_eq!(t.name, "notify-1");
        assert_eq!(t.format, NotifyFormat::Json);
        assert!(t.events.is_empty(), "all events");
        assert_eq!(t.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(t.first_retry, DEFAULT_FIRST_RETRY);
    }

    #[test]
    fn mistakes_are_refused_naming_the_field_and_never_the_url() {
        let secret_url = "https://hooks.slack.com/services/T0/B0/TOKENPART";
        let cases: Vec<(NotifyEntry, &str)> = vec![
            (
                NotifyEntry {
                    format: Some("teams".into()),
                    ..entry(secret_url)
                },
                "notify[0].format",
            ),
            (
                NotifyEntry {
                    events: vec!["deploy".into()],
                    ..entry(secret_url)
                },
                "notify[0].events",
            ),
            (
                NotifyEntry {
                    secret_env: None,
                    ..entry(secret_url)
                },
                "notify[0].secret_env",
            ),
            (
                NotifyEntry {
                    secret_env: Some("s3cr3t-value!".into()),
                    ..entry(secret_url)
                },
                "notify[0].secret_env",
            ),
            (
                NotifyEntry {
                    secret_env: Some("ORCH_TEST_SURELY_UNSET_VARIABLE".into()),
                    ..entry(secret_url)
                },
                "is not set",
            ),
            (entry("ftp://host/TOKENPART"), "notify[0].url"),
            (
                NotifyEntry {
                    url_env: Some(SET_VAR.into()),
                    ..entry(secret_url)
                },
                "exactly one of `url` and `url_env`",
            ),
            (
                NotifyEntry {
                    max_attempts: Some(0),
                    ..entry(secret_url)
                },
                "notify[0].max_attempts",
            ),
            (
                NotifyEntry {
                    name: Some("a b".into()),
                    ..entry(secret_url)
                },
                "notify[0].name",
            ),
        ];
        for (bad, names) in cases {
            let err = parse(&[bad]).expect_err(names);
            assert!(err.contains(names), "{err} should name {names}");
            assert!(err.contains("project `web`"), "{err}");
            assert!(!err.contains("TOKENPART"), "the URL leaked: {err}");
            assert!(!err.contains("s3cr3t"), "a secret leaked: {err}");
        }
        let twice = parse(&[entry(secret_url), {
            let mut e = entry(secret_url);
            e.name = Some("notify-1".into());
            e
        }])
        .expect_err("duplicate name");
        assert!(twice.contains("notify[1].name"), "{twice}");
    }

    #[test]
    fn a_slack_receiver_needs_no_secret_and_its_url_may_come_from_the_environment() {
        let slack = NotifyEntry {
            format: Some("slack".into()),
            secret_env: None,
            url: None,
            url_env: Some("ORCH_TEST_SURELY_UNSET_VARIABLE".into()),
            ..entry("")
        };
        let err = parse(std::slice::from_ref(&slack)).expect_err("unset url variable");
        assert!(
            err.contains("notify[0].url_env") && err.contains("is not set"),
            "{err}"
        );
        let inline = NotifyEntry {
            url: Some("https://hooks.slack.com/services/T/B/X".into()),
            url_env: None,
            events: vec!["blocked".into(), "deployed".into()],
            ..slack
        };
        let got = parse(&[inline]).expect("parses");
        assert_eq!(got[0].format, NotifyFormat::Slack);
        assert_eq!(got[0].events, [NotifyEvent::Blocked, NotifyEvent::Deployed]);
    }
}
