//! Who acts on an item, as orch established it: never as a caller says.
//!
//! A person is named by their API token, their dashboard session, a tracker account linked to
//! them (by the tracker's user id, never a display name), or, at the machine itself, the CLI's
//! `--by` (whoever can run `orch` there can read the store anyway). The server's global API
//! token is automation: a service, which may stop and retry but approves only when a project's
//! `approvers` name it. A tracker account linked to nobody is only that account.
//!
//! Must never: turn a name taken from a request body or a webhook's display name into a person.

use serde_json::{Value, json};

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person, by their name in orch.
    Person(String),
    /// Automation acting with the server's global API token, under the name it was given.
    Service(String),
    /// A tracker account no person is linked to: `account` is `kind:user-id` (`gitea:7`),
    /// `login` what the tracker showed (for messages only).
    TrackerAccount { account: String, login: String },
}

impl Actor {
    /// The name events record as `by`.
    pub fn name(&self) -> &str {
        match self {
            Actor::Person(name) | Actor::Service(name) => name,
            Actor::TrackerAccount { account, .. } => account,
        }
    }

    /// `person`, `service` or `tracker`: recorded as `by_kind` beside `by`.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Person(_) => "person",
            Actor::Service(_) => "service",
            Actor::TrackerAccount { .. } => "tracker",
        }
    }

    /// The `by`, `by_kind` (and `by_login`) fields of an event about what this actor did.
    pub(crate) fn fields(&self) -> Value {
        let mut fields = json!({ "by": self.name().trim(), "by_kind": self.kind() });
        if let Actor::TrackerAccount { login, .. } = self {
            fields["by_login"] = json!(login);
        }
        fields
    }
}

/// Whether `name` may name a person: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or a
/// digit, so that it reads the same in a list, an event and `approvers`.
pub fn valid_person_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a person's name: use 1 to 64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or a digit"
        ))
    }
}

/// Whether `account` is a tracker account as orch links them: `plane:<id>`, `gitea:<id>` or
/// `github:<id>`, the id being the tracker's user id.
pub fn valid_tracker_account(account: &str) -> Result<(), String> {
    let ok = account.split_once(':').is_some_and(|(kind, id)| {
        matches!(kind, "plane" | "gitea" | "github")
            && !id.is_empty()
            && id.len() <= 100
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{account}` is not a tracker account: use plane:<user uuid>, gitea:<user id> or github:<user id> (the tracker's user id, not a login or display name)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_accounts_are_checked() {
        assert!(valid_person_name("ada").is_ok());
        assert!(valid_person_name("grace.hopper-2").is_ok());
        for bad in ["", "Ada", "-x", "a b", "agent/x", &"a".repeat(65)] {
            assert!(valid_person_name(bad).is_err(), "{bad:?}");
        }
        assert!(valid_tracker_account("github:583231").is_ok());
        assert!(valid_tracker_account("plane:0c7ef2c4-0000-4000-8000-00000000a11c").is_ok());
        for bad in ["583231", "jira:1", "github:", "gitea:../x", "plane:a b"] {
            assert!(valid_tracker_account(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_record_the_kind_beside_the_name() {
        let service = Actor::Service("automation".into());
        assert_eq!(
            service.fields(),
            json!({ "by": "automation", "by_kind": "service" })
        );
        let account = Actor::TrackerAccount {
            account: "gitea:101".into(),
            login: "grace".into(),
        };
        assert_eq!(account.fields()["by"], "gitea:101");
        assert_eq!(account.fields()["by_login"], "grace");
    }
}
