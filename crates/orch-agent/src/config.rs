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
//!
//! [roles.developer]
//! kind = "claude"                   # or "codex", "aider", "gemini", "opencode"
//! model = "sonnet"                  # overrides the role file's model
//! api_key_env = "ANTHROPIC_API_KEY" # the NAME of orch's variable holding the key
//! # program = "/opt/claude/bin/claude", args = [...], base_url = "...", max_turns = 50,
//! # private_home = true (claude), price = { input_per_mtok = 1.25, output_per_mtok = 10 }
//!
//! [prices."gpt-5-codex"]            # per model, for CLIs that report no cost (see `price`)
//! input_per_mtok = 1.25
//! cache_read_per_mtok = 0.125
//! output_per_mtok = 10.0
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::Agent;
use crate::aider::AiderAgent;
use crate::claude::ClaudeAgent;
use crate::codex::CodexAgent;
use crate::command::CommandAgent;
use crate::gemini::GeminiAgent;
use crate::opencode::OpenCodeAgent;
use crate::price::{PriceTable, Pricing, TokenPrice};
use crate::scripted::{Scenario, ScriptedAgent};
use crate::settings::CliSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentKind {
    Scripted,
    Command,
    /// Claude Code (`claude -p`).
    Claude,
    /// The Codex CLI (`codex exec`).
    Codex,
    /// aider (`aider --message-file`).
    Aider,
    /// The Gemini CLI (`gemini --output-format stream-json`).
    Gemini,
    /// OpenCode (`opencode run --format json`).
    #[serde(rename = "opencode")]
    OpenCode,
}

impl AgentKind {
    /// The agents that run a model CLI, which share most settings.
    pub const CLIS: [AgentKind; 5] = [
        AgentKind::Claude,
        AgentKind::Codex,
        AgentKind::Aider,
        AgentKind::Gemini,
        AgentKind::OpenCode,
    ];
    /// The word `.orch/agents.toml` names this kind by.
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Scripted => "scripted",
            AgentKind::Command => "command",
            AgentKind::Claude => "claude",
            AgentKind::Codex => "codex",
            AgentKind::Aider => "aider",
            AgentKind::Gemini => "gemini",
            AgentKind::OpenCode => "opencode",
        }
    }

    /// The program run when the config names none; `None` for agents that run no model CLI.
    pub fn default_program(self) -> Option<&'static str> {
        match self {
            AgentKind::Scripted | AgentKind::Command => None,
            AgentKind::Claude => Some(crate::claude::DEFAULT_PROGRAM),
            AgentKind::Codex => Some(crate::codex::DEFAULT_PROGRAM),
            AgentKind::Aider => Some(crate::aider::DEFAULT_PROGRAM),
            AgentKind::Gemini => Some(crate::gemini::DEFAULT_PROGRAM),
            AgentKind::OpenCode => Some(crate::opencode::DEFAULT_PROGRAM),
        }
    }

    /// The CLIs that report no cost of their own for some runs, which a price can give.
    const PRICED: [AgentKind; 4] = [
        AgentKind::Codex,
        AgentKind::Aider,
        AgentKind::Gemini,
        AgentKind::OpenCode,
    ];
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub kind: AgentKind,
    pub scenario: Option<String>,
    pub command: Option<Vec<String>>,
    pub stall_secs: Option<u64>,
    /// The CLIs: the CLI to run, a name on PATH or a path.
    pub program: Option<String>,
    /// The CLIs: arguments added after orch's own.
    pub args: Option<Vec<String>>,
    /// The CLIs: the model, overriding the role file's.
    pub model: Option<String>,
    /// The CLIs: the model endpoint.
    pub base_url: Option<String>,
    /// The CLIs: the NAME of the environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// claude: `--max-turns`.
    pub max_turns: Option<u32>,
    /// claude: run with a private `HOME` beside the run log.
    pub private_home: Option<bool>,
    /// codex, aider, gemini, opencode: this agent's token prices, whatever the model, to compute
    /// a cost when the CLI reports none; wins over the `[prices]` table.
    pub price: Option<TokenPrice>,
}

impl AgentSpec {
    /// The model CLI this agent runs (the configured `program`, else the kind's default), or
    /// `None` for the scripted and command agents.
    pub fn cli_program(&self) -> Option<String> {
        let default = self.kind.default_program()?;
        Some(self.program.clone().unwrap_or_else(|| default.to_owned()))
    }

    /// The CLI settings this spec gives, `default_program` when it names no program.
    fn cli_settings(&self, default_program: &str) -> CliSettings {
        CliSettings {
            program: self
                .program
                .clone()
                .unwrap_or_else(|| default_program.to_owned()),
            extra_args: self.args.clone().unwrap_or_default(),
            model: self.model.clone(),
            base_url: self.base_url.clone(),
            api_key_env: self.api_key_env.clone(),
        }
    }

    /// The settings given that `kind` does not read, by name.
    fn settings_not_for_kind(&self) -> Vec<&'static str> {
        use AgentKind::{Claude, Command, Scripted};
        let clis = &AgentKind::CLIS[..];
        let given = [
            ("scenario", self.scenario.is_some(), &[Scripted][..]),
            ("command", self.command.is_some(), &[Command]),
            ("program", self.program.is_some(), clis),
            ("args", self.args.is_some(), clis),
            ("model", self.model.is_some(), clis),
            ("base_url", self.base_url.is_some(), clis),
            ("api_key_env", self.api_key_env.is_some(), clis),
            ("max_turns", self.max_turns.is_some(), &[Claude]),
            ("private_home", self.private_home.is_some(), &[Claude]),
            ("price", self.price.is_some(), &AgentKind::PRICED),
        ];
        given
            .into_iter()
            .filter(|(_, set, kinds)| *set && !kinds.contains(&self.kind))
            .map(|(name, _, _)| name)
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    pub default: AgentSpec,
    #[serde(default)]
    pub roles: BTreeMap<String, AgentSpec>,
    /// Token prices per model name, for the CLIs that report no cost.
    #[serde(default)]
    pub prices: PriceTable,
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
        let c: AgentsConfig = orch_core::toml_error::parse(text).map_err(ConfigError::Parse)?;
        check(&c.default, "the default")?;
        check_prices(&c.prices)?;
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
        out.insert(String::new(), build_one(&self.default, repo, &self.prices)?);
        for (role, spec) in &self.roles {
            out.insert(role.clone(), build_one(spec, repo, &self.prices)?);
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
        AgentKind::Claude if spec.max_turns == Some(0) => err("max_turns must be at least 1"),
        _ if spec.price.as_ref().is_some_and(|p| !is_valid_price(p)) => err(BAD_PRICE),
        _ if spec.program.as_ref().is_some_and(|p| p.is_empty()) => {
            err("`program` must not be empty; leave it out to use the CLI on PATH")
        }
        _ if spec
            .api_key_env
            .as_ref()
            .is_some_and(|name| !is_variable_name(name)) =>
        {
            err(
                "`api_key_env` must be the NAME of an environment variable, such as \"ANTHROPIC_API_KEY\", not the key itself",
            )
        }
        _ if spec
            .api_key_env
            .as_ref()
            .is_some_and(|name| name.to_ascii_uppercase().starts_with("ORCH_")) =>
        {
            err(
                "`api_key_env` may not name an `ORCH_*` variable: those hold orch's own secrets, which no model endpoint may receive",
            )
        }
        _ => match spec.settings_not_for_kind().as_slice() {
            [] => Ok(()),
            names => {
                let kind = format!("{:?}", spec.kind).to_lowercase();
                let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                };
                err(&format!(
                    "{} not used by {article} {kind} agent; remove {}",
                    names.join(", "),
                    if names.len() == 1 { "it" } else { "them" }
                ))
            }
        },
    }
}

const BAD_PRICE: &str = "prices must be zero or more US dollars per million tokens";

/// Prices are finite and not negative: a typo must not make costs meaningless.
fn is_valid_price(price: &TokenPrice) -> bool {
    [
        Some(price.input_per_mtok),
        price.cache_read_per_mtok,
        Some(price.output_per_mtok),
    ]
    .into_iter()
    .flatten()
    .all(|v| v.is_finite() && v >= 0.0)
}

fn check_prices(prices: &PriceTable) -> Result<(), ConfigError> {
    match prices.iter().find(|(_, price)| !is_valid_price(price)) {
        Some((model, _)) => Err(ConfigError::Spec {
            who: format!("the price of model `{model}`"),
            message: BAD_PRICE.to_owned(),
        }),
        None => Ok(()),
    }
}

fn is_variable_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn build_one(
    spec: &AgentSpec,
    repo: &Path,
    prices: &PriceTable,
) -> Result<BuiltAgent, ConfigError> {
    let pricing = Pricing {
        price: spec.price,
        table: prices.clone(),
    };
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
        AgentKind::Claude => {
            let default = ClaudeAgent::default();
            Arc::new(ClaudeAgent {
                cli: spec.cli_settings(crate::claude::DEFAULT_PROGRAM),
                max_turns: spec.max_turns.unwrap_or(default.max_turns),
                private_home: spec.private_home.unwrap_or(default.private_home),
            })
        }
        AgentKind::Codex => Arc::new(CodexAgent {
            cli: spec.cli_settings(crate::codex::DEFAULT_PROGRAM),
            pricing,
        }),
        AgentKind::Aider => Arc::new(AiderAgent {
            cli: spec.cli_settings(crate::aider::DEFAULT_PROGRAM),
            pricing,
        }),
        AgentKind::Gemini => Arc::new(GeminiAgent {
            cli: spec.cli_settings(crate::gemini::DEFAULT_PROGRAM),
            pricing,
        }),
        AgentKind::OpenCode => Arc::new(OpenCodeAgent {
            cli: spec.cli_settings(crate::opencode::DEFAULT_PROGRAM),
            pricing,
        }),
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
            (
                "[default]\nkind = \"claude\"\nprice = { input_per_mtok = 1.0, output_per_mtok = 2.0 }\nscenario = \"s.toml\"\n",
                "agent for the default: scenario, price not used by a claude agent; remove them",
            ),
            (
                "[default]\nkind = \"codex\"\nmax_turns = 3\n",
                "agent for the default: max_turns not used by a codex agent; remove it",
            ),
            (
                "[default]\nkind = \"claude\"\napi_key_env = \"sk-ant-123\"\n",
                "agent for the default: `api_key_env` must be the NAME of an environment variable, such as \"ANTHROPIC_API_KEY\", not the key itself",
            ),
            (
                "[default]\nkind = \"codex\"\napi_key_env = \"ORCH_API_TOKEN\"\n",
                "agent for the default: `api_key_env` may not name an `ORCH_*` variable: those hold orch's own secrets, which no model endpoint may receive",
            ),
            (
                "[default]\nkind = \"claude\"\nmax_turns = 0\n",
                "agent for the default: max_turns must be at least 1",
            ),
            (
                "[default]\nkind = \"aider\"\nmax_turns = 3\n",
                "agent for the default: max_turns not used by an aider agent; remove it",
            ),
            (
                "[default]\nkind = \"opencode\"\n[prices.m]\ninput_per_mtok = -1.0\noutput_per_mtok = 1.0\n",
                "agent for the price of model `m`: prices must be zero or more US dollars per million tokens",
            ),
            (
                "[default]\nkind = \"gemini\"\nprice = { input_per_mtok = 1.0, output_per_mtok = -2.0 }\n",
                "agent for the default: prices must be zero or more US dollars per million tokens",
            ),
            (
                "[default]\nkind = \"codex\"\nprogram = \"\"\n",
                "agent for the default: `program` must not be empty; leave it out to use the CLI on PATH",
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
    fn the_documented_examples_are_valid() {
        let pages = [
            include_str!("../../../docs/agents/claude-code.md"),
            include_str!("../../../docs/agents/codex.md"),
            include_str!("../../../docs/agents/aider.md"),
            include_str!("../../../docs/agents/gemini.md"),
            include_str!("../../../docs/agents/opencode.md"),
        ];
        for page in pages {
            let example = page
                .split("```toml\n")
                .nth(1)
                .and_then(|rest| rest.split("```").next())
                .expect("the page has a TOML example");
            let built = AgentsConfig::from_toml(example)
                .and_then(|c| c.build(Path::new(".")))
                .map(|agents| agents.len());
            assert_eq!(built.map_err(|e| e.to_string()), Ok(2), "{example}");
        }
    }

    #[test]
    fn the_cli_keys_become_the_shared_cli_settings() {
        let c = AgentsConfig::from_toml(
            "[default]\nkind = \"gemini\"\nprogram = \"/opt/gemini\"\nargs = [\"--debug\"]\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:1\"\napi_key_env = \"KEY\"\n[roles.qa]\nkind = \"aider\"\n",
        )
        .expect("valid");
        assert_eq!(
            c.default.cli_settings(crate::gemini::DEFAULT_PROGRAM),
            CliSettings {
                program: "/opt/gemini".to_owned(),
                extra_args: vec!["--debug".to_owned()],
                model: Some("m".to_owned()),
                base_url: Some("http://127.0.0.1:1".to_owned()),
                api_key_env: Some("KEY".to_owned()),
            }
        );
        assert_eq!(
            c.roles
                .get("qa")
                .map(|spec| spec.cli_settings(crate::aider::DEFAULT_PROGRAM)),
            Some(CliSettings::new("aider"))
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
        let clis = AgentsConfig::from_toml(
            "[default]\nkind = \"claude\"\nmodel = \"opus\"\napi_key_env = \"MY_KEY\"\nmax_turns = 7\n[roles.qa]\nkind = \"codex\"\nbase_url = \"http://127.0.0.1:1/v1\"\nprice = { input_per_mtok = 1.25, output_per_mtok = 10.0 }\n",
        )
        .expect("valid")
        .build(dir.path())
        .expect("builds");
        assert_eq!(clis.get("").map(|b| b.agent.kind()), Some("claude"));
        assert_eq!(clis.get("qa").map(|b| b.agent.kind()), Some("codex"));
        let more = AgentsConfig::from_toml(
            "[default]\nkind = \"aider\"\nmodel = \"sonnet\"\n[roles.qa]\nkind = \"gemini\"\nprice = { input_per_mtok = 1.0, output_per_mtok = 2.0 }\n[roles.reviewer]\nkind = \"opencode\"\n[prices.\"sonnet\"]\ninput_per_mtok = 3.0\ncached_input_per_mtok = 0.3\noutput_per_mtok = 15.0\n",
        )
        .expect("valid");
        assert_eq!(
            more.prices
                .get("sonnet")
                .and_then(|p| p.cache_read_per_mtok),
            Some(0.3)
        );
        let more = more.build(dir.path()).expect("builds");
        let kinds: Vec<_> = more.values().map(|b| b.agent.kind()).collect();
        assert_eq!(kinds, ["aider", "gemini", "opencode"]);
        let missing =
            AgentsConfig::from_toml("[default]\nkind = \"scripted\"\nscenario = \"nope.toml\"\n")
                .expect("valid")
                .build(dir.path());
        assert!(matches!(missing, Err(ConfigError::ScenarioRead { .. })));
    }
}
