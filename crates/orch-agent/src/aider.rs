//! The aider adapter: runs `aider --message-file <prompt> --yes-always --no-auto-commits ...` in
//! the worktree, with the stage's artifact as a file in the chat, and reads its usage from its
//! analytics log (see [`crate::aider_output`]).
//!
//! Everything aider would otherwise write into the worktree or the user's home goes to a
//! directory private to the run, beside the run log (`<run>.aider/`): the prompt file, the chat
//! and input histories, the analytics log, and `HOME` (aider's caches and settings). The repo map
//! is off (`--map-tokens 0`): it would write a tags cache into the worktree, which the
//! write-allowlist gate would fail. Aider commits nothing (`--no-auto-commits`,
//! `--no-dirty-commits`); the engine commits what the gates pass.
//!
//! The prompt goes in a file rather than `--message`: one argument is limited to 128 KiB on Linux,
//! a prompt carrying earlier artifacts may not be. Aider cannot resume a session.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::aider_output::{AiderOutput, AiderUsage};
use crate::cli;
use crate::price::{InputCount, Pricing};
use crate::settings::{self, CliSettings, Launch};
use crate::{Agent, AgentRequest, AgentRun, RunObserver, Usage};

/// The program run when the config names none.
pub const DEFAULT_PROGRAM: &str = "aider";
const INSTALL: &str = "pip install aider-chat";

#[derive(Debug, Clone)]
pub struct AiderAgent {
    /// The shared settings. `extra_args` go before the file names; `model` is a name aider knows
    /// (`sonnet`, `gpt-4o`) or a provider-prefixed one (`openai/<name>` for any OpenAI-compatible
    /// endpoint); `base_url` is such an endpoint, given as `--openai-api-base`. The key named by
    /// `api_key_env` is given as `OPENAI_API_KEY` with `base_url`, else under the same name, which
    /// should then be the one its provider reads (`ANTHROPIC_API_KEY`, `GEMINI_API_KEY`...).
    pub cli: CliSettings,
    /// Prices for models aider has no price for.
    pub pricing: Pricing,
}

impl Default for AiderAgent {
    fn default() -> Self {
        Self {
            cli: CliSettings::new(DEFAULT_PROGRAM),
            pricing: Pricing::default(),
        }
    }
}

/// The files of one run's private directory.
struct RunFiles {
    dir: PathBuf,
}

impl RunFiles {
    fn new(log: &Path) -> Self {
        Self {
            dir: cli::private_dir(log, "aider"),
        }
    }

    fn message(&self) -> PathBuf {
        self.dir.join("message.md")
    }

    fn analytics(&self) -> PathBuf {
        self.dir.join("analytics.jsonl")
    }

    fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// Creates the directory and writes the prompt. An analytics log of an earlier run with the
    /// same log path is removed, so its counts are not read as this run's.
    fn prepare(&self, prompt: &str) -> Result<(), String> {
        let analytics = self.analytics();
        std::fs::create_dir_all(self.home())
            .and_then(|()| std::fs::write(self.message(), prompt))
            .and_then(|()| match std::fs::remove_file(&analytics) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            })
            .map_err(|e| {
                format!(
                    "cannot prepare aider's directory {}: {e}",
                    self.dir.display()
                )
            })
    }
}

impl AiderAgent {
    fn args(&self, req: &AgentRequest, files: &RunFiles) -> Vec<String> {
        let path = |p: PathBuf| p.display().to_string();
        let mut args: Vec<String> = [
            "--yes-always",
            "--no-auto-commits",
            "--no-dirty-commits",
            "--no-check-update",
            "--no-show-model-warnings",
            "--no-analytics",
            "--no-pretty",
            "--no-stream",
            "--no-fancy-input",
            "--no-gitignore",
            "--no-restore-chat-history",
            "--no-suggest-shell-commands",
            "--no-detect-urls",
            "--map-tokens",
            "0",
        ]
        .map(str::to_owned)
        .into();
        for (option, file) in [
            ("--message-file", files.message()),
            ("--analytics-log", files.analytics()),
            ("--chat-history-file", files.dir.join("chat-history.md")),
            ("--input-history-file", files.dir.join("input-history")),
        ] {
            args.extend([option.to_owned(), path(file)]);
        }
        args.extend(self.cli.model_option(req));
        if let Some(url) = &self.cli.base_url {
            args.extend(["--openai-api-base".to_owned(), url.clone()]);
        }
        self.cli.extend_args(&mut args);
        if let Some(artifact) = &req.artifact {
            args.push(format!("{}{artifact}", req.artifact_dir));
        }
        args
    }

    fn env(&self, req: &AgentRequest, files: &RunFiles) -> Result<Vec<(String, String)>, String> {
        let mut env = settings::base_env(req);
        cli::set_env(&mut env, "HOME", files.home().display().to_string());
        // The model client would otherwise fetch its price list from the internet at start.
        cli::set_env(&mut env, "LITELLM_LOCAL_MODEL_COST_MAP", "True".to_owned());
        // An OpenAI-compatible endpoint takes the key OpenAI's client reads; else the key keeps
        // its name, which is the one its provider's client reads.
        let child_name = self.cli.base_url.as_ref().map(|_| "OPENAI_API_KEY");
        self.cli.pass_api_key(&mut env, child_name)?;
        Ok(env)
    }

    /// The usage record: counts from the analytics log, aider's cost only when it printed one for
    /// every call, else an estimate from the configured prices.
    fn usage(&self, req: &AgentRequest, files: &RunFiles, output: &AiderOutput) -> Usage {
        let text = std::fs::read_to_string(files.analytics()).unwrap_or_default();
        let counted = AiderUsage::from_analytics(&text);
        if counted.unreadable_lines > 0 {
            cli::log_line(
                &req.log,
                &format!(
                    "orch: {} unreadable line(s) of aider's analytics log skipped",
                    counted.unreadable_lines
                ),
            );
        }
        let cost_reported = counted.calls > 0 && output.costed_lines == counted.calls;
        let mut usage = Usage {
            input_tokens: counted.prompt_tokens,
            output_tokens: counted.completion_tokens,
            cost_usd: counted.cost_usd.filter(|_| cost_reported),
            turns: (counted.calls > 0).then_some(counted.calls),
            ..Usage::default()
        };
        self.pricing.estimate(
            &mut usage,
            self.cli.model(req),
            InputCount::IncludesCacheRead,
        );
        usage
    }
}

#[async_trait]
impl Agent for AiderAgent {
    fn kind(&self) -> &'static str {
        "aider"
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

impl AiderAgent {
    /// The run itself, with the settings and request the sandbox (if any) gives.
    async fn run_here(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun {
        let files = RunFiles::new(&req.log);
        let launch = Launch {
            cli: self.kind(),
            install: INSTALL,
            args: self.args(req, &files),
            env: files
                .prepare(&req.prompt)
                .and_then(|()| self.env(req, &files)),
            stdin: Vec::new(),
            no_resume: Some("it has no sessions to resume"),
        };
        let mut output = AiderOutput::default();
        let finished = match self
            .cli
            .run(launch, &mut output, req, cancel, observer)
            .await
        {
            Ok(finished) => finished,
            Err(failed) => return failed,
        };
        let mut usage = self.usage(req, &files, &output);
        usage.duration_ms = cli::millis(finished.duration);
        // Aider exits 0 after giving up on a failing model API: that is no pass.
        let failed = (output.model_error.is_some() && usage.turns.is_none())
            .then_some("the model API failed and no answer came");
        let outcome = cli::fail_clean_exit(finished.outcome, failed, req);
        cli::ran(req, outcome, usage, output.model_error)
    }
}
