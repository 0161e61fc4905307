//! The Codex adapter: runs `codex exec --json --sandbox workspace-write` in the worktree, with the
//! prompt on standard input, and reads its usage from `turn.completed` events.
//!
//! Each run gets a private `CODEX_HOME` beside the run log holding a generated `config.toml`
//! (model, and a model provider when an endpoint or key is configured), so the user's own Codex
//! configuration neither applies nor changes. The API key is read from the variable the config
//! names and passed to this child only, under that same name, which the provider's `env_key`
//! points at. Codex reports no cost: `cost_usd` is computed only from a configured price (see
//! [`crate::price`]). The thread id is recorded as the session id, but sessions are not resumed:
//! they live in `CODEX_HOME`, which is private to each attempt.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::cli::{self, CliInvocation, StreamParser};
use crate::codex_stream::CodexStream;
pub use crate::price::TokenPrice;
use crate::price::{InputCount, Pricing};
use crate::{Agent, AgentRequest, AgentRun, RunObserver, Usage};

/// The program run when the config names none.
pub const DEFAULT_PROGRAM: &str = "codex";
/// The endpoint used when only an API key is configured.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const INSTALL: &str = "npm install -g @openai/codex";
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
    /// Prices to compute a cost from, as Codex reports none.
    pub pricing: Pricing,
}

impl Default for CodexAgent {
    fn default() -> Self {
        Self {
            program: DEFAULT_PROGRAM.to_owned(),
            extra_args: Vec::new(),
            model: None,
            base_url: None,
            api_key_env: None,
            pricing: Pricing::default(),
        }
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
        let mut set = |name: &str, value: String| cli::set_env(&mut env, name, value);
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
        cli::cannot_resume(
            req,
            "codex",
            "its sessions live in a CODEX_HOME private to each attempt",
        );
        let invocation = CliInvocation {
            install: INSTALL,
            program: self.program.clone(),
            args: self.args(),
            env,
            stdin: req.prompt.clone().into_bytes(),
        };
        let mut stream = CodexStream::default();
        let finished = cli::run_cli(invocation, &mut stream, req, cancel, observer).await;
        let counted = stream.usage_so_far().unwrap_or_default();
        let mut usage = Usage {
            duration_ms: cli::millis(finished.duration),
            session_id: stream.thread_id,
            ..counted
        };
        let model = self.model.as_ref().or(req.model.as_ref());
        self.pricing.estimate(
            &mut usage,
            model.map(String::as_str),
            InputCount::IncludesCacheRead,
        );
        cli::ran(req, finished.outcome, usage, stream.model_error)
    }
}
