//! The settings every CLI adapter shares, and the steps they take from them the same way: the
//! model (the config's, else the role's), the child's base environment, the API key handed to
//! that child only, and the launch: failing to start on an environment that could not be
//! prepared, noting a session it cannot resume, naming how to install a missing program.
//!
//! `.orch/agents.toml` keeps its flat keys (`program`, `args`, `model`, `base_url`,
//! `api_key_env`); [`crate::config`] gathers them into one [`CliSettings`], which each adapter
//! embeds beside its own settings.

use orch_process::Finished;
use tokio_util::sync::CancellationToken;

use crate::cli::{self, CliInvocation, StreamParser};
use crate::{AgentRequest, AgentRun, RunObserver};

/// One model CLI's settings from `.orch/agents.toml`, the same keys for every CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliSettings {
    /// A name looked up on PATH, or a path.
    pub program: String,
    /// Added after orch's own arguments (`args` in the config).
    pub extra_args: Vec<String>,
    /// Overrides the role's model.
    pub model: Option<String>,
    /// The model endpoint; each CLI takes it its own way (a variable, an option, a config file).
    pub base_url: Option<String>,
    /// The NAME of orch's environment variable holding the API key, never the key: the value is
    /// read when a run starts and given to that run's child only.
    pub api_key_env: Option<String>,
}

impl CliSettings {
    /// The settings of a CLI run as `program` with nothing else configured.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            extra_args: Vec::new(),
            model: None,
            base_url: None,
            api_key_env: None,
        }
    }

    /// The model to run: the config's, else the role's, else none (the CLI's own default).
    pub(crate) fn model<'a>(&'a self, req: &'a AgentRequest) -> Option<&'a str> {
        self.model.as_deref().or(req.model.as_deref())
    }

    /// Gives the child the configured API key as `child_name` (`None`: under the name the config
    /// gives, which the CLI's provider then reads). Nothing when no key is configured; an error
    /// naming the variable when orch's own environment lacks it.
    pub(crate) fn pass_api_key(
        &self,
        env: &mut Vec<(String, String)>,
        child_name: Option<&str>,
    ) -> Result<(), String> {
        if let Some(name) = &self.api_key_env {
            let value = cli::secret_from_env(name)?;
            cli::set_env(env, child_name.unwrap_or(name), value);
        }
        Ok(())
    }

    /// `--model <model>` for the CLIs that take the model so, or nothing when none is set.
    pub(crate) fn model_option(&self, req: &AgentRequest) -> Vec<String> {
        self.model(req)
            .map(|model| vec!["--model".to_owned(), model.to_owned()])
            .unwrap_or_default()
    }

    /// The arguments orch adds after its own: the configured ones.
    pub(crate) fn extend_args(&self, args: &mut Vec<String>) {
        args.extend(self.extra_args.iter().cloned());
    }

    /// Runs this program as `launch` says, to its end. `Err` is the run that failed to start as
    /// its environment could not be prepared, with the reason in its run log; a missing program
    /// is a finished run that failed to start, its log naming how to install it.
    pub(crate) async fn run(
        &self,
        launch: Launch,
        parser: &mut dyn StreamParser,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> Result<Finished, AgentRun> {
        let env = launch
            .env
            .map_err(|message| cli::failed_to_start(req, message))?;
        if let Some(why) = launch.no_resume {
            cli::cannot_resume(req, launch.cli, why);
        }
        let invocation = CliInvocation {
            install: launch.install,
            program: self.program.clone(),
            args: launch.args,
            env,
            stdin: launch.stdin,
        };
        Ok(cli::run_cli(invocation, parser, req, cancel, observer).await)
    }
}

/// What one adapter gives to run its CLI; the program comes from [`CliSettings`].
pub(crate) struct Launch {
    /// The CLI's name in the run log (the agent's kind).
    pub cli: &'static str,
    /// How the user installs the program, named when it is missing, such as `npm install -g
    /// @openai/codex`.
    pub install: &'static str,
    pub args: Vec<String>,
    /// The child's whole environment, or why it could not be prepared.
    pub env: Result<Vec<(String, String)>, String>,
    /// Written to the child's standard input (the prompt, for most CLIs).
    pub stdin: Vec<u8>,
    /// Why the CLI starts a new session when the request asks to resume one; `None` when it
    /// resumes it.
    pub no_resume: Option<&'static str>,
}

/// The environment every CLI child starts from: the safe variables of orch's own environment
/// and the request's `ORCH_*` variables. The adapter adds what its CLI needs.
pub(crate) fn base_env(req: &AgentRequest) -> Vec<(String, String)> {
    let mut env = orch_process::safe_env();
    env.extend(req.env_vars());
    env
}

#[cfg(test)]
mod tests {
    use orch_core::gate::ExitOutcome;

    use super::*;

    fn request(model: Option<&str>) -> AgentRequest {
        AgentRequest {
            model: model.map(str::to_owned),
            ..cli::tests::request(std::path::Path::new("/nonexistent"))
        }
    }

    #[test]
    fn the_configured_model_wins_over_the_roles() {
        let mut settings = CliSettings::new("cli");
        assert_eq!(settings.model(&request(None)), None);
        assert_eq!(settings.model(&request(Some("role"))), Some("role"));
        settings.model = Some("mine".to_owned());
        assert_eq!(settings.model(&request(Some("role"))), Some("mine"));
        assert_eq!(settings.model_option(&request(None)), ["--model", "mine"]);
        assert!(
            CliSettings::new("cli")
                .model_option(&request(None))
                .is_empty()
        );
    }

    #[test]
    fn an_api_key_is_passed_only_when_configured_and_set() {
        let mut env = vec![("PATH".to_owned(), "/bin".to_owned())];
        let mut settings = CliSettings::new("cli");
        assert_eq!(settings.pass_api_key(&mut env, Some("CHILD_KEY")), Ok(()));
        assert_eq!(env, [("PATH".to_owned(), "/bin".to_owned())]);
        // PATH is set wherever tests run: it stands in for a key variable.
        let path = std::env::var("PATH").expect("PATH is set");
        settings.api_key_env = Some("PATH".to_owned());
        assert_eq!(settings.pass_api_key(&mut env, Some("CHILD_KEY")), Ok(()));
        assert_eq!(env[1], ("CHILD_KEY".to_owned(), path.clone()));
        assert_eq!(settings.pass_api_key(&mut env, None), Ok(()));
        assert_eq!(
            env,
            [
                ("CHILD_KEY".to_owned(), path.clone()),
                ("PATH".to_owned(), path)
            ]
        );
        settings.api_key_env = Some("ORCH_TEST_VARIABLE_NEVER_SET".to_owned());
        let missing = settings.pass_api_key(&mut env, None);
        assert!(
            missing
                .as_ref()
                .is_err_and(|e| e.contains("`ORCH_TEST_VARIABLE_NEVER_SET`")),
            "{missing:?}"
        );
    }

    /// Reads nothing: these runs never start a program.
    struct NoOutput;

    impl StreamParser for NoOutput {
        fn parse_line(&mut self, _line: &str) -> Vec<String> {
            Vec::new()
        }
    }

    fn launch(env: Result<Vec<(String, String)>, String>) -> Launch {
        Launch {
            cli: "some-cli",
            install: "npm install -g some-cli",
            args: Vec::new(),
            env,
            stdin: Vec::new(),
            no_resume: Some("its sessions are private"),
        }
    }

    async fn run(
        settings: &CliSettings,
        launch: Launch,
        req: &AgentRequest,
    ) -> Result<Finished, AgentRun> {
        settings
            .run(
                launch,
                &mut NoOutput,
                req,
                &CancellationToken::new(),
                &mut (),
            )
            .await
    }

    #[tokio::test]
    async fn an_environment_not_prepared_fails_the_start_before_anything_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let req = AgentRequest {
            resume_session: Some("s-1".to_owned()),
            ..cli::tests::request(dir.path())
        };
        let failed = run(
            &CliSettings::new("sh"),
            launch(Err("no home".to_owned())),
            &req,
        )
        .await;
        assert_eq!(
            failed.map(|finished| finished.outcome),
            Err(AgentRun::ended(ExitOutcome::FailedToStart(
                "no home".to_owned()
            )))
        );
        let log = std::fs::read_to_string(&req.log).expect("run log");
        assert_eq!(log, "orch: no home\n");
    }

    #[tokio::test]
    async fn a_missing_program_names_its_package_after_the_resume_note() {
        let dir = tempfile::tempdir().expect("tempdir");
        let req = AgentRequest {
            resume_session: Some("s-1".to_owned()),
            ..cli::tests::request(dir.path())
        };
        let settings = CliSettings::new("orch-test-no-such-cli");
        let finished = run(&settings, launch(Ok(Vec::new())), &req).await;
        let message = "`orch-test-no-such-cli` was not found on PATH; install it with `npm install -g some-cli` or set `program` in .orch/agents.toml";
        assert_eq!(
            finished
                .map(|finished| finished.outcome)
                .map_err(|run| run.outcome),
            Ok(ExitOutcome::FailedToStart(message.to_owned()))
        );
        let log = std::fs::read_to_string(&req.log).expect("run log");
        assert_eq!(
            log.lines().collect::<Vec<_>>(),
            [
                "orch: some-cli does not resume session s-1 (its sessions are private); starting a new one",
                &format!("orch: {message}"),
            ]
        );
    }
}
