//! The Gemini CLI adapter: runs `gemini --output-format stream-json --approval-mode <mode>` in
//! the worktree with the prompt on standard input (headless mode, as standard input is not a
//! terminal), and reads its usage from the final `result` event (see [`crate::gemini_stream`]).
//!
//! The approval mode follows the role's tools: `yolo` (every tool, shell included) when the role
//! may use `Bash`, else `auto_edit` (file edits only); the worktree is trusted
//! (`GEMINI_CLI_TRUST_WORKSPACE`), else the CLI would fall back to asking. The child runs with a
//! private `HOME` beside the run log holding orch's `.gemini/settings.json`, so the user's own
//! Gemini settings and login neither apply nor change; the API key is given as `GEMINI_API_KEY`,
//! an endpoint as `GOOGLE_GEMINI_BASE_URL`. The Gemini CLI
//! reports tokens but no cost: a cost comes only from configured prices. The session id is
//! recorded, but sessions are not resumed: they live in that home, private to each attempt.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::cli;
use crate::gemini_stream::GeminiStream;
use crate::price::{InputCount, Pricing};
use crate::settings::{self, CliSettings, Launch};
use crate::{Agent, AgentRequest, AgentRun, RunObserver, Usage};

/// The program run when the config names none.
pub const DEFAULT_PROGRAM: &str = "gemini";
const INSTALL: &str = "npm install -g @google/gemini-cli";
/// The private home's `.gemini/settings.json`: authenticate with `GEMINI_API_KEY` (even with an
/// endpoint set, which alone would select the CLI's "gateway" method), and no usage statistics,
/// update checks or update notices.
const SETTINGS: &str = r#"{
  "security": { "auth": { "selectedType": "gemini-api-key" } },
  "privacy": { "usageStatisticsEnabled": false },
  "general": { "enableAutoUpdate": false, "enableAutoUpdateNotification": false }
}
"#;

#[derive(Debug, Clone)]
pub struct GeminiAgent {
    /// The shared settings: `base_url` is given as `GOOGLE_GEMINI_BASE_URL`, the key named by
    /// `api_key_env` as `GEMINI_API_KEY`.
    pub cli: CliSettings,
    pub pricing: Pricing,
}

impl Default for GeminiAgent {
    fn default() -> Self {
        Self {
            cli: CliSettings::new(DEFAULT_PROGRAM),
            pricing: Pricing::default(),
        }
    }
}

impl GeminiAgent {
    fn args(&self, req: &AgentRequest) -> Vec<String> {
        let may_run_commands = req.tools.iter().any(|tool| tool == "Bash");
        let mode = if may_run_commands {
            "yolo"
        } else {
            "auto_edit"
        };
        let mut args: Vec<String> = ["--output-format", "stream-json", "--approval-mode", mode]
            .map(str::to_owned)
            .into();
        args.extend(self.cli.model_option(req));
        self.cli.extend_args(&mut args);
        args
    }

    fn env(&self, req: &AgentRequest) -> Result<Vec<(String, String)>, String> {
        let mut env = settings::base_env(req);
        let home = cli::private_dir(&req.log, "gemini-home");
        let settings_dir = home.join(".gemini");
        let tmp = home.join("tmp");
        std::fs::create_dir_all(&settings_dir)
            .and_then(|()| std::fs::create_dir_all(&tmp))
            .and_then(|()| std::fs::write(settings_dir.join("settings.json"), SETTINGS))
            .map_err(|e| format!("cannot prepare {}: {e}", home.display()))?;
        cli::set_env(&mut env, "HOME", home.display().to_string());
        // The CLI writes a report of every API error to the temporary directory: keep them with
        // the run rather than in the machine's /tmp.
        cli::set_env(&mut env, "TMPDIR", tmp.display().to_string());
        // The worktree is orch's: without trust the CLI would drop the approval mode to
        // `default`, which refuses every edit in headless mode.
        cli::set_env(&mut env, "GEMINI_CLI_TRUST_WORKSPACE", "true".to_owned());
        if let Some(url) = &self.cli.base_url {
            cli::set_env(&mut env, "GOOGLE_GEMINI_BASE_URL", url.clone());
        }
        self.cli.pass_api_key(&mut env, Some("GEMINI_API_KEY"))?;
        Ok(env)
    }
}

#[async_trait]
impl Agent for GeminiAgent {
    fn kind(&self) -> &'static str {
        "gemini"
    }

    async fn run(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun {
        crate::bridge::run_bridged(
            &self.cli,
            Some("https://generativelanguage.googleapis.com"),
            req,
            async |cli, req| {
                Self {
                    cli,
                    ..self.clone()
                }
                .run_here(req, cancel, observer)
                .await
            },
        )
        .await
    }
}

impl GeminiAgent {
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
        let mut stream = GeminiStream::default();
        let finished = match self
            .cli
            .run(launch, &mut stream, req, cancel, observer)
            .await
        {
            Ok(finished) => finished,
            Err(failed) => return failed,
        };
        let result = stream.result.clone().unwrap_or_default();
        let mut usage = Usage {
            input_tokens: result.input_tokens,
            output_tokens: result.output_tokens,
            cache_read_tokens: result.cached_tokens,
            duration_ms: cli::millis(finished.duration),
            session_id: stream.session_id.clone(),
            ..Usage::default()
        };
        self.pricing.estimate(
            &mut usage,
            self.cli.model(req),
            InputCount::IncludesCacheRead,
        );
        let failed = result
            .failed
            .then_some("its result event says the run failed");
        let outcome = cli::fail_clean_exit(finished.outcome, failed, req);
        cli::ran(req, outcome, usage, stream.model_error)
    }
}
