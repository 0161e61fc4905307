//! The OpenCode adapter: runs `opencode run --format json [--model <provider/model>]` in the
//! worktree with the prompt on standard input, and reads its usage from its `step_finish` events
//! (see [`crate::opencode_stream`]).
//!
//! The child runs with a private `HOME` beside the run log (OpenCode keeps its settings, sessions
//! and caches under it), so the user's own configuration neither applies nor changes. When an
//! endpoint is configured, orch writes an OpenCode configuration file there (`OPENCODE_CONFIG`)
//! declaring a provider `orch` for any OpenAI-compatible endpoint, with the model, and the API key
//! read by OpenCode from the variable the config names. The session id is recorded, but sessions
//! are not resumed: they live in that home, private to each attempt.

use async_trait::async_trait;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cli::{self, StreamParser};
use crate::opencode_stream::OpenCodeStream;
use crate::price::{InputCount, Pricing};
use crate::settings::{self, CliSettings, Launch};
use crate::{Agent, AgentRequest, AgentRun, RunObserver, Usage};

/// The program run when the config names none.
pub const DEFAULT_PROGRAM: &str = "opencode";
const INSTALL: &str = "npm install -g opencode-ai";
/// The provider orch declares for a configured endpoint.
const PROVIDER: &str = "orch";

#[derive(Debug, Clone)]
pub struct OpenCodeAgent {
    /// The shared settings: `model` is `provider/model`, or a bare name with `base_url`, an
    /// OpenAI-compatible endpoint declared as the provider `orch`; the key named by `api_key_env`
    /// keeps its name (the variable its provider reads, or the one orch's provider names).
    pub cli: CliSettings,
    pub pricing: Pricing,
}

impl Default for OpenCodeAgent {
    fn default() -> Self {
        Self {
            cli: CliSettings::new(DEFAULT_PROGRAM),
            pricing: Pricing::default(),
        }
    }
}

impl OpenCodeAgent {
    /// The model as OpenCode names it: under orch's provider when an endpoint is configured.
    fn model_argument(&self, req: &AgentRequest) -> Option<String> {
        let model = self.cli.model(req)?;
        Some(match &self.cli.base_url {
            Some(_) => format!("{PROVIDER}/{model}"),
            None => model.to_owned(),
        })
    }

    fn args(&self, req: &AgentRequest) -> Vec<String> {
        let mut args: Vec<String> = ["run", "--format", "json"].map(str::to_owned).into();
        if let Some(model) = self.model_argument(req) {
            args.extend(["--model".to_owned(), model]);
        }
        self.cli.extend_args(&mut args);
        args
    }

    /// OpenCode's configuration declaring orch's provider, for a configured endpoint.
    fn config(&self, req: &AgentRequest) -> Option<serde_json::Value> {
        let url = self.cli.base_url.as_ref()?;
        let mut options = json!({ "baseURL": url });
        if let Some(name) = &self.cli.api_key_env {
            // OpenCode substitutes `{env:NAME}` itself: the key is never written to the file.
            options["apiKey"] = format!("{{env:{name}}}").into();
        }
        let mut models = serde_json::Map::new();
        if let Some(model) = self.cli.model(req) {
            models.insert(model.to_owned(), json!({ "name": model }));
        }
        Some(json!({
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": false,
            "share": "disabled",
            "provider": { PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": PROVIDER,
                "options": options,
                "models": models,
            } },
        }))
    }

    fn env(&self, req: &AgentRequest) -> Result<Vec<(String, String)>, String> {
        let mut env = settings::base_env(req);
        let home = cli::private_dir(&req.log, "opencode-home");
        let prepare = |config: Option<serde_json::Value>| -> std::io::Result<()> {
            std::fs::create_dir_all(&home)?;
            match config {
                Some(config) => std::fs::write(home.join("opencode.json"), config.to_string()),
                None => Ok(()),
            }
        };
        let config = self.config(req);
        let has_config = config.is_some();
        prepare(config).map_err(|e| format!("cannot prepare {}: {e}", home.display()))?;
        cli::set_env(&mut env, "HOME", home.display().to_string());
        if has_config {
            let file = home.join("opencode.json").display().to_string();
            cli::set_env(&mut env, "OPENCODE_CONFIG", file);
        }
        self.cli.pass_api_key(&mut env, None)?;
        Ok(env)
    }
}

#[async_trait]
impl Agent for OpenCodeAgent {
    fn kind(&self) -> &'static str {
        "opencode"
    }

    async fn run(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun {
        crate::bridge::run_bridged(&self.cli, None, req, async |cli, req| {
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

impl OpenCodeAgent {
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
            no_resume: Some("its sessions live in a home private to each attempt"),
        };
        let mut stream = OpenCodeStream::default();
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
            session_id: stream.session_id.clone(),
            ..counted
        };
        self.pricing.estimate(
            &mut usage,
            self.cli.model(req),
            InputCount::ExcludesCacheRead,
        );
        let failed = stream.failed.then_some("it reported an error");
        let outcome = cli::fail_clean_exit(finished.outcome, failed, req);
        cli::ran(req, outcome, usage, stream.model_error)
    }
}
