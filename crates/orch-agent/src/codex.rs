//! The Codex adapter: runs `codex exec --json --sandbox workspace-write` in the worktree, with the
//! prompt on standard input, and reads its usage from `turn.completed` events.
//!
//! Each run gets a private `CODEX_HOME` beside the run log holding a generated `config.toml`
//! (model, and a model provider when an endpoint or key is configured), so the user's own Codex
//! configuration neither applies nor changes. The API key is read from the variable the config
//! names and passed to this child only, under that same name, which the provider's `env_key`
//! points at. Codex reports no cost: `cost_usd` is computed only from a configured price table.
//! Every attempt starts a new session: sessions are not resumed.

use async_trait::async_trait;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::cli::{self, CliInvocation};
use crate::codex_stream::{CodexStream, CodexUsage};
use crate::{Agent, AgentRequest, AgentRun, RunObserver, Usage};

/// The program run when the config names none.
pub const DEFAULT_PROGRAM: &str = "codex";
/// The endpoint used when only an API key is configured.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const NPM_PACKAGE: &str = "@openai/codex";
/// The name of the model provider orch writes into the generated `config.toml`.
const PROVIDER: &str = "orch";

#[derive(Debug, Clone)]
pub struct CodexAgent {
    /// A name looked up on PATH, or a path.
    pub program: String,
    /// Added after orch's own arguments.
    pub extra_args: Vec<String>,
    /// Overrides the role's model.
    pub model: Option<String>,
    /// The Responses API endpoint, such as `http://127.0.0.1:8080/v1`.
    pub base_url: Option<String>,
    /// The NAME of orch's environment variable holding the API key.
    pub api_key_env: Option<String>,
    pub price: Option<TokenPrice>,
}

impl Default for CodexAgent {
    fn default() -> Self {
        Self {
            program: DEFAULT_PROGRAM.to_owned(),
            extra_args: Vec::new(),
            model: None,
            base_url: None,
            api_key_env: None,
            price: None,
        }
    }
}

/// US dollars per million tokens, to compute a run's cost, which Codex does not report.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPrice {
    pub input_per_mtok: f64,
    /// Cached input; the input price when not given.
    pub cached_input_per_mtok: Option<f64>,
    /// Reasoning tokens are output tokens and priced as such.
    pub output_per_mtok: f64,
}

impl TokenPrice {
    /// The cost of `usage`, or `None` when a count it needs is unknown.
    fn cost(&self, usage: &CodexUsage) -> Option<f64> {
        let input = usage.input_tokens?;
        let cached = usage.cached_input_tokens?.min(input);
        let output = usage.output_tokens?;
        let per_token = |price_per_mtok: f64, tokens: u64| price_per_mtok * tokens as f64 / 1e6;
        let cached_price = self.cached_input_per_mtok.unwrap_or(self.input_per_mtok);
        Some(
            per_token(self.input_per_mtok, input - cached)
                + per_token(cached_price, cached)
                + per_token(self.output_per_mtok, output),
        )
    }
}

impl CodexAgent {
    fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "exec",
            "--json",
            "--sandbox",
            "workspace-write",
            "--skip-git-repo-check",
        ]
        .map(str::to_owned)
        .into();
        args.extend(self.extra_args.iter().cloned());
        // `-`: the prompt is read from standard input, which has no size limit, unlike arguments.
        args.push("-".to_owned());
        args
    }

    /// The generated `config.toml`.
    fn config_toml(&self, req: &AgentRequest) -> Result<String, String> {
        let mut config = toml::Table::new();
        if let Some(model) = self.model.as_ref().or(req.model.as_ref()) {
            config.insert("model".into(), model.clone().into());
        }
        if self.base_url.is_some() || self.api_key_env.is_some() {
            let mut provider = toml::Table::new();
            provider.insert("name".into(), PROVIDER.into());
            let base_url = self.base_url.as_deref().unwrap_or(OPENAI_BASE_URL);
            provider.insert("base_url".into(), base_url.into());
            provider.insert("wire_api".into(), "responses".into());
            if let Some(name) = &self.api_key_env {
                provider.insert("env_key".into(), name.clone().into());
            }
            let mut providers = toml::Table::new();
            providers.insert(PROVIDER.into(), provider.into());
            config.insert("model_provider".into(), PROVIDER.into());
            config.insert("model_providers".into(), providers.into());
        }
        toml::to_string(&config).map_err(|e| format!("cannot write Codex's config.toml: {e}"))
    }

    fn env(&self, req: &AgentRequest) -> Result<Vec<(String, String)>, String> {
        let mut env = orch_process::safe_env();
        env.extend(req.env_vars());
        let home = cli::private_dir(&req.log, "codex-home");
        let config = self.config_toml(req)?;
        std::fs::create_dir_all(&home)
            .and_then(|()| std::fs::write(home.join("config.toml"), config))
            .map_err(|e| format!("cannot prepare CODEX_HOME {}: {e}", home.display()))?;
        let mut set = |name: &str, value: String| {
            env.retain(|(n, _)| n != name);
            env.push((name.to_owned(), value));
        };
        set("CODEX_HOME", home.display().to_string());
        if let Some(name) = &self.api_key_env {
            set(name, cli::secret_from_env(name)?);
        }
        Ok(env)
    }
}

#[async_trait]
impl Agent for CodexAgent {
    fn kind(&self) -> &'static str {
        "codex"
    }

    async fn run(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun {
        let env = match self.env(req) {
            Ok(env) => env,
            Err(message) => return cli::failed_to_start(req, message),
        };
        let invocation = CliInvocation {
            npm_package: NPM_PACKAGE,
            program: self.program.clone(),
            args: self.args(),
            env,
            stdin: req.prompt.clone().into_bytes(),
        };
        let mut stream = CodexStream::default();
        let finished = cli::run_cli(invocation, &mut stream, req, cancel, observer).await;
        let usage = stream.usage;
        AgentRun {
            outcome: finished.outcome,
            usage: Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read_tokens: usage.cached_input_tokens,
                cache_write_tokens: None,
                reasoning_tokens: usage.reasoning_tokens,
                cost_usd: self.price.and_then(|p| p.cost(&usage)),
                turns: (usage.turns > 0).then_some(usage.turns),
                duration_ms: cli::millis(finished.duration),
                input_includes_cache: true,
            },
        }
    }
}
