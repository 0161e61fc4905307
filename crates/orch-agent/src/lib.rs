//! orch-agent: the programs that do a role's work, behind one port, [`Agent`].
//!
//! An agent gets a worktree, a rendered prompt and a few documented environment variables; it
//! reports only how it ended and what it spent. It never decides a verdict: the engine's gates
//! read what it left on disk.
//!
//! Agents: [`scripted::ScriptedAgent`] (no model, for the demo and tests),
//! [`command::CommandAgent`] (any program), and the CLI adapters [`claude::ClaudeAgent`] (Claude
//! Code), [`codex::CodexAgent`] (the Codex CLI), [`aider::AiderAgent`], [`gemini::GeminiAgent`]
//! (the Gemini CLI) and [`opencode::OpenCodeAgent`], chosen per role by [`AgentsConfig`]; each
//! embeds the same [`CliSettings`] (program, arguments, model, endpoint, key variable). The CLI
//! adapters report only the usage their CLI printed: a number it did not give stays unknown, and a
//! cost computed from a configured [`price::PriceTable`] is marked as estimated.
//!
//! Invariants: no tracker or forge secret reaches an agent's environment (children start from
//! `orch_process::safe_env`); a timed-out, stalled or cancelled agent is killed with its whole
//! process group.

pub mod aider;
mod aider_output;
pub mod bridge;
pub mod claude;
mod claude_stream;
mod cli;
pub mod codex;
mod codex_stream;
pub mod command;
pub mod config;
mod confine;
pub mod gemini;
mod gemini_stream;
pub mod model_error;
pub mod opencode;
mod opencode_stream;
pub mod price;
pub mod prompt;
pub mod scripted;
pub mod settings;
pub mod tested;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::gate::ExitOutcome;
use orch_core::{ItemId, StageName};
use tokio_util::sync::CancellationToken;

pub use config::{AgentKind, AgentsConfig, ConfigError};
pub use settings::CliSettings;

/// Environment variables every agent process gets, naming its work. Declared once, here.
pub mod env {
    pub const ITEM_ID: &str = "ORCH_ITEM_ID";
    pub const ITEM_TITLE: &str = "ORCH_ITEM_TITLE";
    pub const STAGE: &str = "ORCH_STAGE";
    pub const ATTEMPT: &str = "ORCH_ATTEMPT";
    /// Relative to the worktree: `docs/work-items/<ID>/`.
    pub const ARTIFACT_DIR: &str = "ORCH_ARTIFACT_DIR";
    /// The stage's artifact file name, such as `03-dev-notes.md`.
    pub const ARTIFACT: &str = "ORCH_ARTIFACT";
    pub const WORKTREE: &str = "ORCH_WORKTREE";
    /// A file holding the rendered prompt (the prompt is also given on standard input).
    pub const PROMPT_FILE: &str = "ORCH_PROMPT_FILE";
}

/// Everything an agent needs for one run.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub item: ItemId,
    pub title: String,
    pub stage: StageName,
    pub attempt: u32,
    pub worktree: PathBuf,
    /// `docs/work-items/<ID>/`, relative to the worktree.
    pub artifact_dir: String,
    pub artifact: Option<String>,
    pub prompt: String,
    pub model: Option<String>,
    /// The role's tools (`Read`, `Write`, `Bash`...), for agents that can restrict theirs.
    pub tools: Vec<String>,
    pub timeout: Duration,
    pub stall: Duration,
    /// The run log; the agent's output is appended here.
    pub log: PathBuf,
    /// The rendered prompt, written beside the log by the engine before the run.
    pub prompt_file: PathBuf,
    /// The CLI session of an earlier attempt to continue ([`Usage::session_id`] of its run), for
    /// the CLIs that can resume one (Claude Code, Codex, Gemini CLI, OpenCode); the others start
    /// a new session and say so in the run log.
    pub resume_session: Option<String>,
    /// Where the agent's program runs ([`orch_process::Sandbox::Trusted`] only for orch's own
    /// built-in agents); each adapter adds what its program needs to see (see `confine`).
    pub sandbox: orch_process::Sandbox,
}

impl AgentRequest {
    /// The variables of [`mod@env`] for this request.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        let prompt_file = &self.prompt_file;
        vec![
            (env::ITEM_ID.to_owned(), self.item.to_string()),
            (env::ITEM_TITLE.to_owned(), self.title.clone()),
            (env::STAGE.to_owned(), self.stage.to_string()),
            (env::ATTEMPT.to_owned(), self.attempt.to_string()),
            (env::ARTIFACT_DIR.to_owned(), self.artifact_dir.clone()),
            (
                env::ARTIFACT.to_owned(),
                self.artifact.clone().unwrap_or_default(),
            ),
            (
                env::WORKTREE.to_owned(),
                self.worktree.display().to_string(),
            ),
            (
                env::PROMPT_FILE.to_owned(),
                prompt_file.display().to_string(),
            ),
        ]
    }
}

/// What a run spent, as the agent reported it. Unknown fields stay `None`: never invented.
///
/// Token counts keep each CLI's convention: Claude Code's and OpenCode's `input_tokens` exclude
/// cached input; Codex's, the Gemini CLI's and aider's include it (their `cache_read_tokens`, when
/// reported, are a part of their `input_tokens`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cache_read_tokens: Option<u64>,
    pub cache_write_tokens: Option<u64>,
    /// Reasoning tokens, a part of `output_tokens` (Codex reports them).
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// `cost_usd` was computed by orch from a configured price table, not reported by the CLI.
    #[serde(default)]
    pub cost_estimated: bool,
    pub turns: Option<u32>,
    pub duration_ms: u64,
    /// The CLI's session id, to resume it in a later attempt ([`AgentRequest::resume_session`]).
    #[serde(default)]
    pub session_id: Option<String>,
    /// True when `input_tokens` already include `cache_read_tokens` (Codex's convention).
    #[serde(default)]
    pub input_includes_cache: bool,
    /// Whether the agent reports spend at all: the scripted and command agents do not, by
    /// design, and their runs read as "—" rather than unknown. Records written before this
    /// field read as reporting (unknown stays unknown).
    #[serde(default)]
    pub reporting: orch_core::spend::Reporting,
}

impl Usage {
    /// What the run spent in the terms budgets use: every token the model processed (input,
    /// cached or not, plus output) and the cost. A count the agent did not report stays unknown.
    pub fn run_spend(&self) -> orch_core::spend::RunSpend {
        let tokens = match (self.input_tokens, self.output_tokens) {
            (Some(input), Some(output)) => {
                let cached = if self.input_includes_cache {
                    0
                } else {
                    self.cache_read_tokens.unwrap_or(0) + self.cache_write_tokens.unwrap_or(0)
                };
                Some(input.saturating_add(output).saturating_add(cached))
            }
            _ => None,
        };
        orch_core::spend::RunSpend {
            tokens,
            cost: self.cost_usd.and_then(orch_core::spend::usd_to_micro),
            reporting: self.reporting,
        }
    }

    /// The spend of a usage record as the store keeps it (JSON). A record that does not read as
    /// a [`Usage`] is a run of unknown spend, never zero.
    pub fn run_spend_of_json(record: Option<&serde_json::Value>) -> orch_core::spend::RunSpend {
        record
            .and_then(|v| serde_json::from_value::<Usage>(v.clone()).ok())
            .map(|u| u.run_spend())
            .unwrap_or_default()
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRun {
    pub outcome: ExitOutcome,
    pub usage: Usage,
    /// The last error the model API returned, as the CLI reported it.
    pub model_error: Option<model_error::ModelError>,
}

impl AgentRun {
    /// A run that ended with `outcome`, with nothing else known.
    pub fn ended(outcome: ExitOutcome) -> Self {
        Self {
            outcome,
            usage: Usage::default(),
            model_error: None,
        }
    }

    /// How the run ended, for people and events: the exit, then the model API's error if the CLI
    /// reported one, saying whether trying again later may help.
    pub fn describe(&self) -> String {
        match &self.model_error {
            Some(error) => format!("{}; {error}", self.outcome.describe()),
            None => self.outcome.describe(),
        }
    }
}

/// Watches a run for the engine: where its process group is, and what it has spent so far.
pub trait RunObserver: Send {
    /// Called when the agent's process starts, with its process group id, so the engine can
    /// record it and kill or adopt it after a crash.
    fn started(&mut self, pgid: u32);

    /// Called whenever the agent reports what the run has spent so far (Claude Code per
    /// assistant message, Codex per turn, OpenCode per step, the scripted agent once). `false` stops the run: the
    /// agent is killed with its process group, as on a cancel. Spend limits are enforced here.
    fn usage_so_far(&mut self, _usage: &Usage) -> bool {
        true
    }

    /// Called once after the run when the sandbox's egress proxy refused connections, with
    /// where they tried to go, so the engine can record them on the item.
    fn egress_refused(&mut self, _refused: &orch_process::EgressRefusals) {}
}

impl RunObserver for () {
    fn started(&mut self, _pgid: u32) {}
}

/// A program that does a role's work.
#[async_trait]
pub trait Agent: Send + Sync + std::fmt::Debug {
    /// A short name for logs: `scripted`, `command`, `claude`...
    fn kind(&self) -> &'static str;
    /// Runs to the end, a timeout, a stall, or `cancel`. Never returns an error: a failure to
    /// start is an [`ExitOutcome::FailedToStart`], which the gates read as FAILED.
    async fn run(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun;
}

#[cfg(test)]
mod usage_tests {
    use super::Usage;
    use orch_core::spend::RunSpend;

    #[test]
    fn spend_counts_cached_input_once_whatever_the_convention() {
        // Claude Code: cached input is reported beside input_tokens.
        let claude = Usage {
            input_tokens: Some(323),
            output_tokens: Some(75),
            cache_read_tokens: Some(7),
            cache_write_tokens: Some(11),
            cost_usd: Some(0.00356),
            ..Usage::default()
        };
        assert_eq!(
            claude.run_spend(),
            RunSpend {
                tokens: Some(416),
                cost: Some(3560),
                ..RunSpend::default()
            }
        );
        // Codex: cached input is a part of input_tokens.
        let codex = Usage {
            input_tokens: Some(323),
            output_tokens: Some(75),
            cache_read_tokens: Some(7),
            input_includes_cache: true,
            ..Usage::default()
        };
        assert_eq!(
            codex.run_spend(),
            RunSpend {
                tokens: Some(398),
                cost: None,
                ..RunSpend::default()
            }
        );
    }

    #[test]
    fn an_unreadable_record_is_unknown_spend_never_zero() {
        let bogus = serde_json::json!({ "input_tokens": "many" });
        assert_eq!(Usage::run_spend_of_json(Some(&bogus)), RunSpend::default());
        assert_eq!(Usage::run_spend_of_json(None), RunSpend::default());
        let partial = serde_json::json!({ "output_tokens": 5, "duration_ms": 1 });
        assert_eq!(Usage::run_spend_of_json(Some(&partial)).tokens, None);
    }
}
