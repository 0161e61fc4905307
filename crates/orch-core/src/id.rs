//! Identifiers that are checked once, at the boundary, so the rest of orch can trust them.
//!
//! A work item id ends up in branch names, directory names and URLs, so it can never hold
//! `/`, `..`, whitespace or anything outside a small alphabet.

use std::fmt;

use thiserror::Error;

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid {what} `{input}`: {why}")]
pub struct IdError {
    pub what: &'static str,
    pub input: String,
    pub why: &'static str,
}

fn err(what: &'static str, input: &str, why: &'static str) -> IdError {
    IdError {
        what,
        input: input.chars().take(80).collect(),
        why,
    }
}

/// A lowercase slug: `[a-z0-9]` words joined by single `-`, 1 to 63 characters.
fn check_slug(what: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() || s.len() > 63 {
        return Err(err(what, s, "must be 1 to 63 characters"));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(err(
            what,
            s,
            "may hold only lowercase letters, digits and `-`",
        ));
    }
    if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return Err(err(what, s, "`-` may only join two words"));
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A project's name in the registry: a slug such as `demo` or `billing-api`.
    ProjectId
);
string_id!(
    /// A stage's name in a pipeline: a slug such as `development` or `deploy-staging`.
    StageName
);
string_id!(
    /// A role's name: a slug such as `developer`; names the prompt file `.orch/agents/<role>.md`.
    RoleName
);
string_id!(
    /// A work item id: an uppercase key, `-`, and a number, such as `DEMO-12`.
    ItemId
);

impl ProjectId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_slug("project name", s)?;
        if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(err("project name", s, "must start with a letter"));
        }
        Ok(Self(s.to_owned()))
    }

    /// The prefix of this project's item ids: `billing-api` gives `BILLINGAPI`.
    pub fn item_prefix(&self) -> String {
        let p: String = self
            .0
            .chars()
            .filter(|c| *c != '-')
            .collect::<String>()
            .to_ascii_uppercase();
        p.chars().take(12).collect()
    }
}

impl StageName {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_slug("stage name", s)?;
        Ok(Self(s.to_owned()))
    }
}

impl RoleName {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        check_slug("role name", s)?;
        Ok(Self(s.to_owned()))
    }
}

impl ItemId {
    /// Accepts `KEY-N`: KEY is 1 to 12 uppercase ASCII letters or digits starting with a letter,
    /// N is a decimal number without leading zeros.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        const WHAT: &str = "work item id";
        const SHAPE: &str = "expected KEY-N such as DEMO-12 (KEY: uppercase letters and digits)";
        let Some((key, num)) = s.split_once('-') else {
            return Err(err(WHAT, s, SHAPE));
        };
        let key_ok = !key.is_empty()
            && key.len() <= 12
            && key.starts_with(|c: char| c.is_ascii_uppercase())
            && key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        let num_ok = !num.is_empty()
            && num.len() <= 9
            && num.bytes().all(|b| b.is_ascii_digit())
            && !(num.starts_with('0'));
        if !key_ok || !num_ok {
            return Err(err(WHAT, s, SHAPE));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn new(prefix: &str, number: u32) -> Result<Self, IdError> {
        Self::parse(&format!("{prefix}-{number}"))
    }

    /// The number after the `-`.
    pub fn number(&self) -> u32 {
        self.0
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_ids() {
        for ok in ["DEMO-1", "A-9", "BILLING2-123456789"] {
            assert_eq!(ItemId::parse(ok).map(|i| i.to_string()), Ok(ok.to_owned()));
        }
        for bad in [
            "",
            "DEMO",
            "DEMO-",
            "-1",
            "demo-1",
            "DEMO-01",
            "DE/MO-1",
            "../DEMO-1",
            "DEMO-1/..",
            "DEMO-1 ",
            "DEMO-..",
            "DEMO-1-2",
            "1DEMO-1",
            "DEMO-1234567890",
            "ÄDEMO-1",
        ] {
            assert!(ItemId::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(ItemId::parse("DEMO-42").map(|i| i.number()), Ok(42));
    }

    #[test]
    fn slugs() {
        for ok in ["demo", "deploy-staging", "a1-b2"] {
            assert!(StageName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Demo",
            "a--b",
            "-a",
            "a-",
            "a/b",
            "..",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(ProjectId::parse(bad).is_err(), "{bad:?} must be refused");
        }
        let p = ProjectId::parse("billing-api").map(|p| p.item_prefix());
        assert_eq!(p, Ok("BILLINGAPI".to_owned()));
    }
}
