//! The Claude Code adapter: runs `claude -p --output-format stream-json` in the worktree, with
//! the prompt on standard input, and reads its usage from the final `result` event.
//!
//! The child gets `safe_env`, the request's `ORCH_*` variables and only what the CLI needs: the
//! model endpoint and API key when configured (the key read from the variable the config names,
//! never logged), switches that stop its non-essential traffic and self-update, and optionally a
//! private `HOME` beside the run log. The session id is recorded; a request to resume a session
//! passes `--resume <id>`, which finds the session only where the earlier attempt left it: not
//! with `private_home`, which gives every attempt a new home (that case starts a new session).

use std::path::Path;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::claude_stream::ClaudeStream;
use crate::cli::{self, StreamParser};
use crate::settings::{self, CliSettings, Launch};
use crate::{Agent, AgentRequest, AgentRun, RunObserver, Usage};

/// The program run when the config names none.
pub const DEFAULT_PROGRAM: &str = "claude";
/// The turn limit when the config sets none: room for a development stage's edit-test loops.
pub const DEFAULT_MAX_TURNS: u32 = 100;
const INSTALL: &str = "npm install -g @anthropic-ai/claude-code";

#[derive(Debug, Clone)]
pub struct ClaudeAgent {
    /// The shared settings: `base_url` is given as `ANTHROPIC_BASE_URL`, the key named by
    /// `api_key_env` as `ANTHROPIC_API_KEY`.
    pub cli: CliSettings,
    pub max_turns: u32,
    /// Runs with `HOME` set to a fresh directory beside the run log, so the user's own Claude
    /// settings, sessions and login neither apply nor change.
    pub private_home: bool,
}

impl Default for ClaudeAgent {
    fn default() -> Self {
        Self {
            cli: CliSettings::new(DEFAULT_PROGRAM),
            max_turns: DEFAULT_MAX_TURNS,
            private_home: false,
        }
    }
}

impl ClaudeAgent {
    fn args(&self, req: &AgentRequest) -> Vec<String> {
        let mut args: Vec<String> = [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
        ]
        .map(str::to_owned)
        .into();
        if !req.tools.is_empty() {
            // One comma-separated value: the option takes several, and would swallow what follows.
            args.extend(["--allowedTools".to_owned(), req.tools.join(",")]);
        }
        args.extend(["--max-turns".to_owned(), self.max_turns.to_string()]);
        if let (Some(session), false) = (&req.resume_session, self.private_home) {
            args.extend(["--resume".to_owned(), session.clone()]);
        }
        args.extend(self.cli.model_option(req));
        self.cli.extend_args(&mut args);
        args
    }

    fn env(&self, req: &AgentRequest) -> Result<Vec<(String, String)>, String> {
        let mut env = settings::base_env(req);
        let mut set = |name: &str, value: String| cli::set_env(&mut env, name, value);
        set("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned());
        set("DISABLE_AUTOUPDATER", "1".to_owned());
        if let Some(url) = &self.cli.base_url {
            set("ANTHROPIC_BASE_URL", url.clone());
        }
        self.cli.pass_api_key(&mut env, Some("ANTHROPIC_API_KEY"))?;
        if self.private_home {
            let home = cli::private_dir(&req.log, "home");
            create_dir(&home)?;
            cli::set_env(&mut env, "HOME", home.display().to_string());
        }
        Ok(env)
    }
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the directory {}: {e}", dir.display()))
}

#[async_trait]
impl Agent for ClaudeAgent {
    fn kind(&self) -> &'static str {
        "claude"
    }

    async fn run(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun {
        crate::bridge::run_bridged(
            &self.cli,
            Some("https://api.anthropic.com"),
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

impl ClaudeAgent {
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
            no_resume: self
                .private_home
                .then_some("private_home gives every attempt a new home"),
        };
        let mut stream = ClaudeStream::default();
        let finished = match self
            .cli
            .run(launch, &mut stream, req, cancel, observer)
            .await
        {
            Ok(finished) => finished,
            Err(failed) => return failed,
        };
        // A run killed before its result (a timeout, a spend limit) spent what its messages said.
        let messages = stream.usage_so_far().filter(|_| stream.result.is_none());
        let result = stream.result.unwrap_or_default();
        // The CLI said its run failed: a clean exit must not make that a pass.
        let outcome = cli::fail_clean_exit(
            finished.outcome,
            (result.is_error == Some(true)).then_some("it reported an error result"),
            req,
        );
        let usage = Usage {
            input_tokens: result.input_tokens,
            output_tokens: result.output_tokens,
            cache_read_tokens: result.cache_read_tokens,
            cache_write_tokens: result.cache_write_tokens,
            reasoning_tokens: None,
            cost_usd: result.cost_usd,
            cost_estimated: false,
            turns: result.turns,
            duration_ms: cli::millis(finished.duration),
            session_id: stream.session_id,
            // Claude Code reports cached input beside `input_tokens`, not inside it.
            input_includes_cache: false,
            reporting: orch_core::spend::Reporting::Reports,
        };
        // Killed before its result: what the messages reported is what is known.
        let usage = match messages {
            Some(seen) => Usage {
                duration_ms: usage.duration_ms,
                session_id: usage.session_id,
                ..seen
            },
            None => usage,
        };
        cli::ran(req, outcome, usage, result.model_error)
    }
}
