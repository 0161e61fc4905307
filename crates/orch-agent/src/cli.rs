//! What the agent CLI adapters share: finding the program, handing an API key to the child only,
//! and running it through `orch_process` while turning its JSON lines into a readable run log.
//!
//! The CLI's raw stream is kept beside the run log (`<run>.stream.jsonl`, capped by
//! `orch_process`); the run log itself gets one readable line per event worth reading.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use orch_core::gate::ExitOutcome;
use orch_process::{Finished, Stream};
use tokio_util::sync::CancellationToken;

use crate::{AgentRequest, AgentRun, RunObserver, Usage};

/// Turns a CLI's output lines into readable log lines, keeping what it needs to report usage.
pub(crate) trait StreamParser: Send {
    /// The readable lines for one line of the CLI's standard output (often none).
    fn parse_line(&mut self, line: &str) -> Vec<String>;

    /// What the run has spent so far by the stream's own reports, for live spend checks;
    /// `None` until the CLI reported any.
    fn usage_so_far(&self) -> Option<Usage> {
        None
    }

    /// The readable lines of what the parser still holds when the output ends.
    fn finish(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The readable run log stops growing past this size, with one line saying so.
const READABLE_LOG_CAP_BYTES: u64 = 5 * 1024 * 1024;
/// Text quoted from the stream (assistant messages, tool inputs) is cut at this many characters.
const QUOTE_CHARS: usize = 400;

/// One CLI run, ready to start.
#[derive(Debug)]
pub(crate) struct CliInvocation {
    /// How the user installs the program when it is missing, such as `npm install -g
    /// @openai/codex`.
    pub install: &'static str,
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment of the child.
    pub env: Vec<(String, String)>,
    /// Written to the child's standard input (the prompt).
    pub stdin: Vec<u8>,
}

/// Runs the CLI to its end with `parser` reading its standard output, and returns how it ended.
pub(crate) async fn run_cli(
    invocation: CliInvocation,
    parser: &mut dyn StreamParser,
    req: &AgentRequest,
    cancel: &CancellationToken,
    observer: &mut dyn RunObserver,
) -> Finished {
    let mut log = ReadableLog::open(&req.log);
    if let Err(reason) = find_program(&invocation.program, &invocation.env) {
        let message = format!(
            "{reason}; install it with `{}` or set `program` in .orch/agents.toml",
            invocation.install
        );
        log.write(&format!("orch: {message}"));
        return Finished {
            outcome: ExitOutcome::FailedToStart(message),
            tail: String::new(),
            pid: None,
            duration: std::time::Duration::ZERO,
        };
    }
    let sandbox = crate::confine::sandbox_for(req, &invocation.program, &invocation.env);
    let spec = orch_process::Spec {
        sandbox,
        program: invocation.program.clone(),
        args: invocation.args,
        cwd: req.worktree.clone(),
        env: invocation.env,
        stdin: Some(invocation.stdin),
        timeout: req.timeout,
        stall: Some(req.stall),
        log: Some(raw_stream_path(&req.log)),
        ..orch_process::Spec::new(&invocation.program, &req.worktree)
    };
    // Cancelled by the watcher when the observer says a spend limit was reached.
    let stop = cancel.child_token();
    let mut watcher = StreamWatcher {
        observer,
        parser,
        log,
        reported: None,
        stop: stop.clone(),
    };
    let finished = orch_process::run(&spec, &stop, &mut watcher).await;
    for line in watcher.parser.finish() {
        watcher.log.write(&line);
    }
    if let ExitOutcome::FailedToStart(message) = &finished.outcome {
        watcher.log.write(&format!("orch: {message}"));
    }
    finished
}

/// The run of an agent that could not even be started, with the reason in its run log.
pub(crate) fn failed_to_start(req: &AgentRequest, message: String) -> AgentRun {
    log_line(&req.log, &format!("orch: {message}"));
    AgentRun::ended(ExitOutcome::FailedToStart(message))
}

/// The run of a CLI that ran: a model API error it reported is also written to the run log, with
/// its classification, where `orch logs` shows it.
pub(crate) fn ran(
    req: &AgentRequest,
    outcome: ExitOutcome,
    usage: crate::Usage,
    model_error: Option<crate::model_error::ModelError>,
) -> AgentRun {
    if let Some(error) = &model_error {
        log_line(&req.log, &format!("orch: {error}"));
    }
    AgentRun {
        outcome,
        usage,
        model_error,
    }
}

/// Notes in the run log that `cli` starts a new session although the request asked to resume
/// one, and why.
pub(crate) fn cannot_resume(req: &AgentRequest, cli: &str, why: &str) {
    if let Some(session) = &req.resume_session {
        log_line(
            &req.log,
            &format!("orch: {cli} does not resume session {session} ({why}); starting a new one"),
        );
    }
}

/// A CLI that exited 0 although its output said the run failed: counted as exit code 1, with a
/// line in the run log saying why. Any other outcome is kept.
pub(crate) fn fail_clean_exit(
    outcome: ExitOutcome,
    failed: Option<&str>,
    req: &AgentRequest,
) -> ExitOutcome {
    match (outcome, failed) {
        (ExitOutcome::Exited(0), Some(why)) => {
            log_line(
                &req.log,
                &format!("orch: the CLI exited 0 but {why}; counted as exit code 1"),
            );
            ExitOutcome::Exited(1)
        }
        (outcome, _) => outcome,
    }
}

/// Sets `name` in `env`, replacing an earlier value.
pub(crate) fn set_env(env: &mut Vec<(String, String)>, name: &str, value: String) {
    env.retain(|(n, _)| n != name);
    env.push((name.to_owned(), value));
}

/// Appends one line to the run log.
pub(crate) fn log_line(log: &Path, line: &str) {
    ReadableLog::open(log).write(line);
}

pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Where the CLI's raw output is kept: beside the run log.
pub(crate) fn raw_stream_path(log: &Path) -> PathBuf {
    log.with_extension("stream.jsonl")
}

/// A directory private to this run, beside the run log (a HOME, a CODEX_HOME).
pub(crate) fn private_dir(log: &Path, name: &str) -> PathBuf {
    log.with_extension(name)
}

/// The value of the variable `name` in orch's own environment, for one child only.
pub(crate) fn secret_from_env(name: &str) -> Result<String, String> {
    if name == crate::bridge::PLACEHOLDER_VAR {
        return Ok(crate::bridge::PLACEHOLDER_KEY.to_owned());
    }
    std::env::var(name).map_err(|_| {
        format!(
            "the environment variable `{name}` (named by `api_key_env` in .orch/agents.toml) is not \
             set or not UTF-8; export it where orch runs"
        )
    })
}

/// `text` cut to a readable length, on one line.
pub(crate) fn quote(text: &str) -> String {
    let one_line = text.trim().replace('\n', " ⏎ ");
    match one_line.char_indices().nth(QUOTE_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// Looks `program` up as the child will: as a path when it has a `/`, else on the child's PATH.
fn find_program(program: &str, env: &[(String, String)]) -> Result<(), String> {
    if program.contains('/') {
        return if is_executable(Path::new(program)) {
            Ok(())
        } else {
            Err(format!("`{program}` is not an executable file"))
        };
    }
    let path = env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map_or("", |(_, value)| value.as_str());
    let found = path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .any(|dir| is_executable(&Path::new(dir).join(program)));
    if found {
        Ok(())
    } else {
        Err(format!("`{program}` was not found on PATH"))
    }
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Feeds standard output to the parser and writes readable lines (and standard error) to the log.
/// Each change of the parser's usage goes to the observer, which may stop the run.
struct StreamWatcher<'a> {
    observer: &'a mut dyn RunObserver,
    parser: &'a mut dyn StreamParser,
    log: ReadableLog,
    /// The usage last given to the observer.
    reported: Option<Usage>,
    stop: CancellationToken,
}

impl StreamWatcher<'_> {
    fn report_usage(&mut self) {
        let Some(usage) = self.parser.usage_so_far() else {
            return;
        };
        if self.reported.as_ref() == Some(&usage) {
            return;
        }
        let go_on = self.observer.usage_so_far(&usage);
        self.reported = Some(usage);
        if !go_on && !self.stop.is_cancelled() {
            self.log
                .write("orch: stopping the agent: a spend limit was reached");
            self.stop.cancel();
        }
    }
}

impl orch_process::Observer for StreamWatcher<'_> {
    fn started(&mut self, pid: u32) {
        self.observer.started(pid);
    }

    fn line(&mut self, stream: Stream, line: &str) {
        match stream {
            Stream::Stdout => {
                for readable in self.parser.parse_line(line) {
                    self.log.write(&readable);
                }
                self.report_usage();
            }
            Stream::Stderr => self.log.write(&format!("[stderr] {}", quote(line))),
        }
    }

    fn egress_refused(&mut self, refused: &orch_process::EgressRefusals) {
        // The proxy wrote each refusal into the raw stream's log; the readable one says it too.
        for (to, count) in &refused.destinations {
            self.log.write(&format!(
                "orch: the sandbox refused {count} connection(s) to {}:{} (not in allow_hosts)",
                to.host, to.port
            ));
        }
        if refused.unlisted > 0 {
            self.log.write(&format!(
                "orch: the sandbox refused {} more connection(s) to other destinations",
                refused.unlisted
            ));
        }
        self.observer.egress_refused(refused);
    }
}

/// The readable run log. Written synchronously because `Observer::line` is not async; the lines
/// are short and the file is local. A log that cannot be written does not fail the run (the
/// gates decide), so write errors only stop the logging.
struct ReadableLog {
    file: Option<File>,
    written: u64,
}

impl ReadableLog {
    fn open(path: &Path) -> Self {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        Self { file, written: 0 }
    }

    fn write(&mut self, line: &str) {
        let Some(file) = &mut self.file else { return };
        let entry = format!("{line}\n");
        self.written += entry.len() as u64;
        let result = if self.written > READABLE_LOG_CAP_BYTES {
            let note =
                "orch: the run log reached its size cap; the rest is in the .stream.jsonl file";
            let written = writeln!(file, "{note}");
            self.file = None;
            written
        } else {
            file.write_all(entry.as_bytes())
        };
        if result.is_err() {
            self.file = None;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Counts output lines as tokens: one per line.
    struct LineTokens(u64);

    impl StreamParser for LineTokens {
        fn parse_line(&mut self, _line: &str) -> Vec<String> {
            self.0 += 1;
            Vec::new()
        }

        fn usage_so_far(&self) -> Option<Usage> {
            Some(Usage {
                input_tokens: Some(self.0),
                output_tokens: Some(0),
                ..Usage::default()
            })
        }
    }

    /// Says stop once the run's tokens reach its limit; records the tokens it was told of.
    struct Limit(u64, Vec<u64>);

    impl RunObserver for Limit {
        fn started(&mut self, _pgid: u32) {}

        fn usage_so_far(&mut self, usage: &Usage) -> bool {
            let tokens = usage.run_spend().tokens.unwrap_or(0);
            self.1.push(tokens);
            tokens < self.0
        }
    }

    /// A request running in `dir`, logging to `dir/run.log`.
    pub(crate) fn request(dir: &Path) -> AgentRequest {
        AgentRequest {
            item: orch_core::ItemId::parse("A-1").expect("valid"),
            title: "t".into(),
            stage: orch_core::StageName::parse("dev").expect("valid"),
            attempt: 1,
            worktree: dir.to_path_buf(),
            artifact_dir: "docs/work-items/A-1/".into(),
            artifact: None,
            prompt: String::new(),
            model: None,
            tools: Vec::new(),
            timeout: std::time::Duration::from_secs(60),
            stall: std::time::Duration::from_secs(60),
            log: dir.join("run.log"),
            prompt_file: dir.join("run.prompt.md"),
            resume_session: None,
            sandbox: orch_process::Sandbox::Trusted,
        }
    }

    /// An executable shell script in `dir` that reads its input, prints `line`, then would work
    /// for a minute.
    fn slow_cli(dir: &Path, line: &str) -> String {
        let path = dir.join("slow-cli");
        std::fs::write(
            &path,
            format!("#!/bin/sh\ncat >/dev/null\necho '{line}'\nsleep 60\n"),
        )
        .expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    #[tokio::test]
    async fn an_observer_that_says_stop_kills_the_cli_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let req = request(dir.path());
        let invocation = CliInvocation {
            install: "nothing to install",
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo a; echo b; echo c; sleep 60; echo d".into(),
            ],
            env: orch_process::safe_env(),
            stdin: Vec::new(),
        };
        let mut observer = Limit(2, Vec::new());
        let started = std::time::Instant::now();
        let finished = run_cli(
            invocation,
            &mut LineTokens(0),
            &req,
            &CancellationToken::new(),
            &mut observer,
        )
        .await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the CLI ran on"
        );
        assert_eq!(finished.outcome, ExitOutcome::Signaled(15));
        // Told of each change until it said stop; the line after that changed nothing.
        assert_eq!(observer.1[..2], [1, 2]);
        assert!(!observer.1.contains(&4), "{:?}", observer.1);
        let log = std::fs::read_to_string(&req.log).expect("log");
        assert!(log.contains("a spend limit was reached"), "{log}");
    }

    #[tokio::test]
    async fn claude_codex_and_opencode_are_stopped_by_the_usage_they_stream() {
        use crate::Agent;
        let claude_message = r#"{"type":"assistant","message":{"id":"m1","usage":{"input_tokens":600,"output_tokens":100},"content":[]}}"#;
        let codex_turn = r#"{"type":"turn.completed","usage":{"input_tokens":600,"cached_input_tokens":0,"output_tokens":100}}"#;
        let opencode_step = r#"{"type":"step_finish","sessionID":"ses_1","part":{"type":"step-finish","reason":"tool-calls","cost":0,"tokens":{"input":600,"output":100,"reasoning":0,"cache":{"read":0,"write":0}}}}"#;
        let dirs: Vec<_> = (0..4)
            .map(|_| tempfile::tempdir().expect("tempdir"))
            .collect();
        let claude = crate::claude::ClaudeAgent {
            cli: crate::CliSettings::new(slow_cli(dirs[0].path(), claude_message)),
            ..Default::default()
        };
        let codex = crate::codex::CodexAgent {
            cli: crate::CliSettings::new(slow_cli(dirs[1].path(), codex_turn)),
            ..Default::default()
        };
        let opencode = crate::opencode::OpenCodeAgent {
            cli: crate::CliSettings::new(slow_cli(dirs[2].path(), opencode_step)),
            ..Default::default()
        };
        let run_dir = &dirs[3];
        for agent in [&claude as &dyn Agent, &codex, &opencode] {
            let req = request(run_dir.path());
            let mut observer = Limit(500, Vec::new());
            let started = std::time::Instant::now();
            let run = agent
                .run(&req, &CancellationToken::new(), &mut observer)
                .await;
            let kind = agent.kind();
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "{kind} ran on"
            );
            assert_eq!(run.outcome, ExitOutcome::Signaled(15), "{kind}");
            assert_eq!(observer.1, [700], "{kind}");
            // Killed before any final result: the usage streamed so far is what it spent.
            assert_eq!(
                (run.usage.input_tokens, run.usage.output_tokens),
                (Some(600), Some(100)),
                "{kind}"
            );
        }
    }

    #[test]
    fn quotes_are_one_line_and_cut_on_a_char_boundary() {
        assert_eq!(quote("  two\nlines "), "two ⏎ lines");
        let long = "é".repeat(QUOTE_CHARS + 5);
        let quoted = quote(&long);
        assert_eq!(quoted.chars().count(), QUOTE_CHARS + 1);
        assert!(quoted.ends_with('…'));
    }

    #[test]
    fn programs_are_looked_up_on_the_childs_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        let path = vec![("PATH".to_owned(), dir.path().display().to_string())];
        // Not executable yet: not found, as execvp would not run it either.
        assert_eq!(
            find_program("tool", &path),
            Err("`tool` was not found on PATH".to_owned())
        );
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(find_program("tool", &path), Ok(()));
        assert_eq!(find_program(&tool.display().to_string(), &[]), Ok(()));
        assert_eq!(
            find_program("tool", &[]),
            Err("`tool` was not found on PATH".to_owned())
        );
    }
}
