//! The Codex adapter: runs `codex exec --json --sandbox <mode>` in the worktree, with the prompt
//! on standard input, and reads its usage from `turn.completed` events. The mode is
//! `danger-full-access` inside orch's sandbox (which is the boundary, and refuses the nested
//! namespaces Codex's own would need) and `workspace-write` when the project opted out.
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

use crate::cli::{self, StreamParser};
use crate::codex_stream::CodexStream;
pub use crate::price::TokenPrice;
use crate::price::{InputCount, Pricing};
use crate::settings::{self, CliSettings, Launch};
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
    /// The shared settings: `base_url` is a Responses API endpoint, such as
    /// `http://127.0.0.1:8080/v1`; the key named by `api_key_env` keeps its name.
    pub cli: CliSettings,
    /// Prices to compute a cost from, as Codex reports none.
    pub pricing: Pricing,
}

impl Default for CodexAgent {
    fn default() -> Self {
        Self {
            cli: CliSettings::new(DEFAULT_PROGRAM),
            pricing: Pricing::default(),
        }
    }
}

impl CodexAgent {
    fn args(&self, req: &AgentRequest) -> Vec<String> {
        // Inside orch's sandbox, Codex's own (bubblewrap or Landlock) would nest namespaces that
        // orch's forbids (`--disable-userns`) and fail every command while Codex exits 0: orch's
        // sandbox is the boundary, so Codex's is off there. Unconfined, Codex keeps its own.
        let own_sandbox = if req.sandbox.is_confined() {
            "danger-full-access"
        } else {
            "workspace-write"
        };
        let mut args: Vec<String> = [
            "exec",
            "--json",
            "--sandbox",
            own_sandbox,
            "--skip-git-repo-check",
        ]
        .map(str::to_owned)
        .into();
        self.cli.extend_args(&mut args);
        // `-`: the prompt is read from standard input, which has no size limit, unlike arguments.
        args.push("-".to_owned());
        args
    }

    /// The generated `config.toml`.
    fn config_toml(&self, req: &AgentRequest) -> Result<String, String> {
        let mut config = toml::Table::new();
        if let Some(model) = self.cli.model(req) {
            config.insert("model".into(), model.into());
        }
        if self.cli.base_url.is_some() || self.cli.api_key_env.is_some() {
            let mut provider = toml::Table::new();
            provider.insert("name".into(), PROVIDER.into());
            let base_url = self.cli.base_url.as_deref().unwrap_or(OPENAI_BASE_URL);
            provider.insert("base_url".into(), base_url.into());
            provider.insert("wire_api".into(), "responses".into());
            if let Some(name) = &self.cli.api_key_env {
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
        let mut env = settings::base_env(req);
        let home = cli::private_dir(&req.log, "codex-home");
        let config = self.config_toml(req)?;
        std::fs::create_dir_all(&home)
            .and_then(|()| std::fs::write(home.join("config.toml"), config))
            .map_err(|e| format!("cannot prepare CODEX_HOME {}: {e}", home.display()))?;
        cli::set_env(&mut env, "CODEX_HOME", home.display().to_string());
        self.cli.pass_api_key(&mut env, None)?;
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
        crate::bridge::run_bridged(&self.cli, Some(OPENAI_BASE_URL), req, async |cli, req| {
            Self {
                cli,
                ..self.clone()
            }
            .run_here(req, cancel, observer)
            .await
        })
        .await
    }
}

impl CodexAgent {
    /// The run itself, with the settings and request the sandbox (if any) gives.
    async fn run_here(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun {
        let launch = Launch {
            cli: self.kind(),
            install: INSTALL,
            args: self.args(req),
            env: self.env(req),
            stdin: req.prompt.clone().into_bytes(),
            no_resume: Some("its sessions live in a CODEX_HOME private to each attempt"),
        };
        let mut stream = CodexStream::default();
        let finished = match self
            .cli
            .run(launch, &mut stream, req, cancel, observer)
            .await
        {
            Ok(finished) => finished,
            Err(failed) => return failed,
        };
        let counted = stream.usage_so_far().unwrap_or_default();
        let mut usage = Usage {
            duration_ms: cli::millis(finished.duration),
            session_id: stream.thread_id,
            ..counted
        };
        self.pricing.estimate(
            &mut usage,
            self.cli.model(req),
            InputCount::IncludesCacheRead,
        );
        cli::ran(req, finished.outcome, usage, stream.model_error)
    }
}
