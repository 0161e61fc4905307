//! Role files: `.orch/agents/<role>.md`, a markdown prompt with YAML frontmatter naming the role,
//! what it is for, its model, its tools and its write allowlist.

use serde::Deserialize;
use thiserror::Error;

use crate::frontmatter;
use crate::id::RoleName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub name: RoleName,
    pub description: String,
    /// The model the agent should use; `None` leaves it to the agent's default.
    pub model: Option<String>,
    /// Tools the agent may use (adapters map these to their CLI's flags).
    pub tools: Vec<String>,
    /// Path patterns (see [`crate::glob`]) the role may write; checked on the diff after a run.
    pub writes: Vec<String>,
    /// The prompt: the markdown after the frontmatter.
    pub prompt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RoleError {
    #[error("role file has no frontmatter: {0}")]
    Frontmatter(#[from] frontmatter::FrontmatterError),
    #[error("role frontmatter: {0}")]
    Fields(String),
    #[error("role file names `{found}` but is the file of role `{expected}`")]
    NameMismatch { expected: String, found: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    name: String,
    description: String,
    model: Option<String>,
    #[serde(default)]
    tools: Vec<String>,
    writes: Vec<String>,
}

impl Role {
    /// Parses a role file's text; `expected` is the role name its path promises.
    pub fn parse(expected: &RoleName, text: &str) -> Result<Self, RoleError> {
        // Validate the fence and YAML with the same fail-closed reader the gates use.
        frontmatter::Frontmatter::parse(Some(text))?;
        let normalized = text.replace("\r\n", "\n");
        let rest = normalized.strip_prefix("---\n").unwrap_or(&normalized);
        let (yaml, prompt) = match rest.split_once("\n---\n") {
            Some((y, p)) => (y, p),
            None => (rest.strip_suffix("\n---").unwrap_or(rest), ""),
        };
        let raw: RawRole =
            yaml_serde::from_str(yaml).map_err(|e| RoleError::Fields(e.to_string()))?;
        let name = RoleName::parse(&raw.name).map_err(|e| RoleError::Fields(e.to_string()))?;
        if &name != expected {
            return Err(RoleError::NameMismatch {
                expected: expected.to_string(),
                found: raw.name,
            });
        }
        if raw
            .writes
            .iter()
            .any(|w| w.starts_with('/') || w.split('/').any(|s| s == ".."))
        {
            return Err(RoleError::Fields(
                "`writes` patterns are relative paths without `..`".to_owned(),
            ));
        }
        Ok(Self {
            name,
            description: raw.description,
            model: raw.model,
            tools: raw.tools,
            writes: raw.writes,
            prompt: prompt.trim_start_matches('\n').to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> RoleName {
        RoleName::parse(name).expect("valid")
    }

    #[test]
    fn parses_a_role() {
        let text = "---\nname: reviewer\ndescription: Reviews.\nmodel: sonnet\ntools: [Read, Write]\nwrites: [\"docs/work-items/*/04-review.md\"]\n---\n# Reviewer\nBe strict.\n";
        let r = Role::parse(&role("reviewer"), text).expect("parses");
        assert_eq!(r.writes, ["docs/work-items/*/04-review.md"]);
        assert_eq!(r.tools, ["Read", "Write"]);
        assert_eq!(r.prompt, "# Reviewer\nBe strict.\n");
    }

    #[test]
    fn refuses_bad_roles() {
        let cases = [
            (
                "# no frontmatter\n",
                "role file has no frontmatter: artifact does not start with a `---` line (no frontmatter)",
            ),
            (
                "---\nname: reviewer\ndescription: x\n---\n",
                "role frontmatter: missing field `writes`",
            ),
            (
                "---\nname: developer\ndescription: x\nwrites: []\n---\n",
                "role file names `developer` but is the file of role `reviewer`",
            ),
            (
                "---\nname: reviewer\ndescription: x\nwrites: [\"../x\"]\n---\n",
                "role frontmatter: `writes` patterns are relative paths without `..`",
            ),
        ];
        for (text, expect) in cases {
            let got = Role::parse(&role("reviewer"), text)
                .map(|_| ())
                .map_err(|e| e.to_string());
            assert_eq!(got, Err(expect.to_owned()), "{text}");
        }
    }
}
