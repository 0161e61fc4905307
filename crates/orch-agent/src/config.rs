//! `.orch/agents.toml`: which agent does each role. One default, optional per-role overrides.
//!
//! ```toml
//! [default]
//! kind = "scripted"                 # scripted | command
//! scenario = ".orch/scenario.toml"  # for scripted
//! stall_secs = 300
//!
//! [roles.reviewer]
//! kind = "command"
//! command = ["my-review-bot", "--strict"]
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::Agent;
use crate::command::CommandAgent;
use crate::scripted::{Scenario, ScriptedAgent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    Scripted,
    Command,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub kind: AgentKind,
    pub scenario: Option<String>,
    pub command: Option<Vec<String>>,
    pub stall_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    pub default: AgentSpec,
    #[serde(default)]
    pub roles: BTreeMap<String, AgentSpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("agents file is not valid: {0}")]
    Parse(String),
    #[error("agent for {who}: {message}")]
    Spec { who: String, message: String },
    #[error("cannot read scenario file {path}: {reason}")]
    ScenarioRead { path: String, reason: String },
    #[error("scenario file {path}: {source}")]
    Scenario {
        path: String,
        source: crate::scripted::ScenarioError,
    },
}

/// The default stall period: an agent that prints nothing for this long is killed.
pub const DEFAULT_STALL: Duration = Duration::from_secs(10 * 60);

/// A built agent with its stall period.
#[derive(Debug, Clone)]
pub struct BuiltAgent {
    pub agent: Arc<dyn Agent>,
    pub stall: Duration,
}

impl AgentsConfig {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let c: AgentsConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        check(&c.default, "the default")?;
        for (role, spec) in &c.roles {
            orch_core::RoleName::parse(role).map_err(|e| ConfigError::Spec {
                who: format!("role `{role}`"),
                message: e.to_string(),
            })?;
            check(spec, &format!("role `{role}`"))?;
        }
        Ok(c)
    }

    /// Builds every agent once: the default and each role override, keyed by role (`""` = default).
    /// `repo` is the project's checkout, where relative scenario paths are read from.
    pub fn build(&self, repo: &Path) -> Result<BTreeMap<String, BuiltAgent>, ConfigError> {
        let mut out = BTreeMap::new();
        out.insert(String::new(), build_one(&self.default, repo)?);
        for (role, spec) in &self.roles {
            out.insert(role.clone(), build_one(spec, repo)?);
        }
        Ok(out)
    }
}

fn check(spec: &AgentSpec, who: &str) -> Result<(), ConfigError> {
    let err = |message: &str| {
        Err(ConfigError::Spec {
            who: who.to_owned(),
            message: message.to_owned(),
        })
    };
    match spec.kind {
        AgentKind::Scripted if spec.scenario.is_none() => {
            err("a scripted agent needs `scenario` (a TOML file)")
        }
        AgentKind::Command if spec.command.as_ref().is_none_or(|c| c.is_empty()) => {
            err("a command agent needs `command`, such as [\"my-agent\", \"--flag\"]")
        }
        _ if spec.stall_secs == Some(0) => err("stall_secs must be at least 1"),
        _ => Ok(()),
    }
}

fn build_one(spec: &AgentSpec, repo: &Path) -> Result<BuiltAgent, ConfigError> {
    let stall = spec
        .stall_secs
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_STALL);
    let agent: Arc<dyn Agent> = match spec.kind {
        AgentKind::Scripted => {
            let rel = spec.scenario.clone().unwrap_or_default();
            let path = repo.join(&rel);
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::ScenarioRead {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let scenario = Scenario::from_toml(&text)
                .map_err(|source| ConfigError::Scenario { path: rel, source })?;
            Arc::new(ScriptedAgent::new(scenario))
        }
        AgentKind::Command => {
            let mut argv = spec.command.clone().unwrap_or_default().into_iter();
            let program = argv.next().unwrap_or_default();
            Arc::new(CommandAgent {
                program,
                args: argv.collect(),
            })
        }
    };
    Ok(BuiltAgent { agent, stall })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_name_the_problem() {
        let cases = [
            (
                "[default]\nkind = \"scripted\"\n",
                "agent for the default: a scripted agent needs `scenario` (a TOML file)",
            ),
            (
                "[default]\nkind = \"command\"\ncommand = []\n",
                "agent for the default: a command agent needs `command`, such as [\"my-agent\", \"--flag\"]",
            ),
            (
                "[default]\nkind = \"command\"\ncommand = [\"x\"]\n[roles.Bad]\nkind = \"command\"\ncommand = [\"y\"]\n",
                "agent for role `Bad`: invalid role name `Bad`: may hold only lowercase letters, digits and `-`",
            ),
        ];
        for (text, expect) in cases {
            assert_eq!(
                AgentsConfig::from_toml(text)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(expect.to_owned())
            );
        }
        let unknown = AgentsConfig::from_toml("[default]\nkind = \"robot\"\n")
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            unknown
                .as_ref()
                .is_err_and(|e| e.contains("unknown variant `robot`")),
            "{unknown:?}"
        );
    }

    #[test]
    fn builds_overrides_per_role() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("s.toml"), "[[steps]]\nstage = \"qa\"\n").expect("write");
        let c = AgentsConfig::from_toml(
            "[default]\nkind = \"scripted\"\nscenario = \"s.toml\"\n[roles.reviewer]\nkind = \"command\"\ncommand = [\"true\"]\nstall_secs = 5\n",
        )
        .expect("valid");
        let built = c.build(dir.path()).expect("builds");
        assert_eq!(built.get("").map(|b| b.agent.kind()), Some("scripted"));
        assert_eq!(
            built.get("reviewer").map(|b| (b.agent.kind(), b.stall)),
            Some(("command", Duration::from_secs(5)))
        );
        let missing =
            AgentsConfig::from_toml("[default]\nkind = \"scripted\"\nscenario = \"nope.toml\"\n")
                .expect("valid")
                .build(dir.path());
        assert!(matches!(missing, Err(ConfigError::ScenarioRead { .. })));
    }
}
