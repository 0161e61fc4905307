//! What to run and what came of it.

use std::path::PathBuf;
use std::time::Duration;

use orch_core::gate::ExitOutcome;

use crate::sandbox::Sandbox;

/// How long a process group gets between SIGTERM and SIGKILL by default.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(2);
/// The default cap of a run's log file.
pub const DEFAULT_LOG_CAP_BYTES: u64 = 20 * 1024 * 1024;
/// The default timeout of [`Spec::new`]: long enough for an agent's whole session.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// One program to run with [`crate::run`].
#[derive(Debug, Clone)]
pub struct Spec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The child's whole environment: orch's own is cleared. Build it from [`crate::safe_env`].
    pub env: Vec<(String, String)>,
    /// Written to the child's standard input, which is then closed; `None` gives it `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// The longest the run may take; then the group is killed and the run is `TimedOut`.
    pub timeout: Duration,
    /// The longest the child may print nothing (on either stream); then it is `Stalled`.
    pub stall: Option<Duration>,
    /// A file the output is appended to (stderr lines prefixed `[stderr] `).
    pub log: Option<PathBuf>,
    /// The log file stops growing past this many bytes written by this run.
    pub log_cap_bytes: u64,
    /// The time between SIGTERM and SIGKILL when the group is killed.
    pub kill_grace: Duration,
    /// How the program is confined: [`Sandbox::Trusted`] unless it runs code an agent wrote.
    pub sandbox: Sandbox,
}

impl Spec {
    /// A run of `program` without arguments in `cwd`, with [`crate::safe_env`] as its environment,
    /// no standard input, no stall limit, no log and the default timeout, grace and log cap.
    pub fn new(program: impl Into<String>, cwd: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: crate::safe_env(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            stall: None,
            log: None,
            log_cap_bytes: DEFAULT_LOG_CAP_BYTES,
            kill_grace: DEFAULT_KILL_GRACE,
            sandbox: Sandbox::Trusted,
        }
    }

    /// A run of `sh -c command` in `cwd` (see [`crate::shell`]).
    pub fn shell(command: &str, cwd: impl Into<PathBuf>) -> Self {
        let (program, args) = crate::shell(command);
        Self {
            args,
            ..Self::new(program, cwd)
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable, replacing an earlier value of the same name.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.env.retain(|(n, _)| *n != name);
        self.env.push((name, value.into()));
        self
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn stall(mut self, stall: Duration) -> Self {
        self.stall = Some(stall);
        self
    }

    pub fn sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = sandbox;
        self
    }

    pub fn log(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }
}

/// Which stream of the child a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Watches a run as it happens. Called from the task that awaits [`crate::run`].
pub trait Observer: Send {
    /// The child started with this pid, which is also its process group id.
    fn started(&mut self, _pid: u32) {}
    /// One line of output, without its line end, lossily decoded, at most 64 KiB.
    fn line(&mut self, _stream: Stream, _line: &str) {}
    /// What the run's egress proxy refused, once, after the run's processes are gone; not
    /// called when it refused nothing.
    fn egress_refused(&mut self, _refused: &crate::EgressRefusals) {}
}

/// An observer that ignores everything.
impl Observer for () {}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub outcome: ExitOutcome,
    /// The last lines of output (at most 40 lines and 8 KiB), stderr lines prefixed `[stderr] `.
    pub tail: String,
    /// The child's pid; `None` when it never started.
    pub pid: Option<u32>,
    pub duration: Duration,
}

/// A process for [`crate::spawn_detached`]: it runs in its own session and outlives orch.
#[derive(Debug, Clone)]
pub struct DetachedSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    /// The whole environment, as for [`Spec::env`].
    pub env: Vec<(String, String)>,
    /// Both output streams are appended to this file.
    pub log: PathBuf,
}
