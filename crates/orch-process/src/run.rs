//! [`run`]: one child program from start to a [`Finished`] with its whole process group gone.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use orch_core::gate::ExitOutcome;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::output::{Chunk, LineReader, Transcript};
use crate::signal::{
    checked_group, deadline_after, deliver_to_group, group_is_alive, wait_until_group_gone,
};
use crate::spec::{Finished, Observer, Spec, Stream};

/// How long output is still read after the child exited and its group is dead. Only a process
/// that left the group (its own session) and kept the pipe open makes this wait expire.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);
const AFTER_SIGKILL: Duration = Duration::from_secs(1);

type Output = LineReader<Box<dyn AsyncRead + Unpin + Send>>;

/// Why orch ended the run itself.
#[derive(Debug, Clone, Copy)]
enum Ending {
    TimedOut,
    Stalled,
    Cancelled,
}

enum Event {
    Output(Stream, Option<Chunk>),
    LeaderExited(io::Result<ExitStatus>),
    End(Ending),
    EscalateToKill,
    StopDraining,
}

/// Runs `spec` to its end, reporting lines and the pid to `observer` as they come.
///
/// The child is killed with its whole process group on timeout, on stall, on `cancel`, and when
/// this future is dropped. Processes of the group that outlive the child itself are killed too:
/// they would hold the output pipes open and nothing would ever wait for them. Never panics;
/// every failure is an [`ExitOutcome`].
pub async fn run(spec: &Spec, cancel: &CancellationToken, observer: &mut dyn Observer) -> Finished {
    let original = spec;
    if spec.sandbox == crate::Sandbox::OptedOut
        && let Some(log) = &spec.log
    {
        append_line(log, crate::sandbox::UNCONFINED_WARNING);
    }
    // The egress proxy, the pids cgroup and the container live as long as the run.
    let mut proxy = None;
    let mut cgroup = None;
    let mut container = None;
    let prepared;
    let spec = match spec.sandbox.policy() {
        Some(policy) => {
            let mut policy = policy.clone();
            let not_started = |reason: String| Finished {
                outcome: ExitOutcome::FailedToStart(format!("`{}`: {reason}", spec.program)),
                tail: String::new(),
                pid: None,
                duration: Duration::ZERO,
            };
            if let (None, Some(hosts)) = (&policy.egress, &policy.allow_hosts) {
                match crate::egress::EgressProxy::start(hosts, spec.log.as_deref()) {
                    Ok(started) => {
                        policy.egress = Some(started.dir());
                        proxy = Some(started);
                    }
                    Err(e) => {
                        return not_started(format!(
                            "cannot start the sandbox's egress proxy: {e}"
                        ));
                    }
                }
            }
            if let crate::Sandbox::Docker(_) = spec.sandbox {
                // The container's own cgroup (`--pids-limit`) limits its processes.
                match crate::docker::Container::prepare(&policy, spec).await {
                    Ok((wrapped, started)) => {
                        container = Some(started);
                        prepared = Spec {
                            sandbox: crate::Sandbox::Trusted,
                            ..wrapped
                        };
                    }
                    Err(e) => return not_started(e.to_string()),
                }
            } else {
                if let (None, Some(processes)) = (&policy.cgroup_procs, policy.limits.processes) {
                    cgroup = crate::cgroup::RunCgroup::create(processes);
                    policy.cgroup_procs = cgroup.as_ref().map(crate::cgroup::RunCgroup::procs);
                }
                prepared = Spec {
                    sandbox: spec.sandbox.with_policy(policy),
                    ..spec.clone()
                };
            }
            &prepared
        }
        None => spec,
    };
    let limits = original.sandbox.policy().map(|p| p.limits);
    let mut finished = run_spec(spec, cancel, observer).await;
    if let Some(container) = container {
        container.remove().await;
    }
    if let Some(cgroup) = cgroup {
        cgroup.remove().await;
    }
    // The run's processes are gone: nothing can reach the proxy any more.
    if let Some(refused) = proxy.as_ref().map(crate::egress::EgressProxy::refusals)
        && !refused.is_empty()
    {
        observer.egress_refused(&refused);
    }
    if let Some(limits) = limits
        && let Some(note) = crate::limits::limit_hit(&finished, limits).or_else(|| {
            matches!(original.sandbox, crate::Sandbox::Docker(_))
                .then(|| crate::limits::container_oom(&finished, limits))
                .flatten()
        })
    {
        crate::limits::record(&mut finished, &note, spec.log.as_deref());
    }
    finished
}

/// Appends one line to a log file, creating it; a log that cannot be written is reported by the
/// run itself when it opens it.
fn append_line(path: &std::path::Path, line: &str) {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

async fn run_spec(
    spec: &Spec,
    cancel: &CancellationToken,
    observer: &mut dyn Observer,
) -> Finished {
    let started = Instant::now();
    let not_started = |reason: String| Finished {
        outcome: ExitOutcome::FailedToStart(reason),
        tail: String::new(),
        pid: None,
        duration: started.elapsed(),
    };
    if cancel.is_cancelled() {
        return not_started(format!(
            "`{}`: cancelled before it was started",
            spec.program
        ));
    }
    if !spec.cwd.is_dir() {
        return not_started(format!(
            "`{}`: the working directory {} does not exist",
            spec.program,
            spec.cwd.display()
        ));
    }
    let confined;
    let spec = match spec.sandbox.wrap(spec) {
        Ok(Some(wrapped)) => {
            confined = wrapped;
            &confined
        }
        Ok(None) => spec,
        Err(e) => return not_started(format!("`{}`: {e}", spec.program)),
    };
    let mut transcript = match Transcript::open(spec.log.as_deref(), spec.log_cap_bytes).await {
        Ok(transcript) => transcript,
        Err(e) => return not_started(format!("`{}`: {e}", spec.program)),
    };
    let mut command = match command(spec) {
        Ok(command) => command,
        Err(reason) => return not_started(reason),
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return not_started(describe_spawn_error(&spec.program, &e)),
    };
    // The pid is known until the child is reaped, which has not happened yet.
    let pid = child.id();
    let group = pid.and_then(|pid| checked_group(pid).ok());
    let mut guard = GroupGuard(group);
    if let Some(pid) = pid {
        observer.started(pid);
    }
    let stdin_writer = match (spec.stdin.clone(), child.stdin.take()) {
        // A child that never reads its input must not block us: the writer is a task of its
        // own, and a broken pipe is the child's choice, not an error.
        (Some(bytes), Some(mut pipe)) => Some(tokio::spawn(async move {
            let _ = pipe.write_all(&bytes).await;
        })),
        _ => None,
    };
    let mut stdout = output(child.stdout.take());
    let mut stderr = output(child.stderr.take());

    let deadline = deadline_after(spec.timeout);
    let mut stall_deadline = spec.stall.and_then(deadline_after);
    let mut ending: Option<Ending> = None;
    let mut leader: Option<io::Result<ExitStatus>> = None;
    let mut kill_at: Option<Instant> = None;
    let mut last_signal: Option<Signal> = None;
    let mut drain_until: Option<Instant> = None;

    while leader.is_none() || !stdout.is_done() || !stderr.is_done() {
        let running = leader.is_none() && ending.is_none();
        let event = tokio::select! {
            chunk = stdout.next(), if !stdout.is_done() => Event::Output(Stream::Stdout, chunk),
            chunk = stderr.next(), if !stderr.is_done() => Event::Output(Stream::Stderr, chunk),
            status = child.wait(), if leader.is_none() => Event::LeaderExited(status),
            () = sleep_until(deadline), if running => Event::End(Ending::TimedOut),
            () = sleep_until(stall_deadline), if running => Event::End(Ending::Stalled),
            () = cancel.cancelled(), if running => Event::End(Ending::Cancelled),
            () = sleep_until(kill_at), if kill_at.is_some() => Event::EscalateToKill,
            () = sleep_until(drain_until), if drain_until.is_some() => Event::StopDraining,
        };
        match event {
            Event::Output(stream, Some(chunk)) => {
                if let Some(stall) = spec.stall {
                    stall_deadline = deadline_after(stall);
                }
                if let Chunk::Line(line) = chunk {
                    observer.line(stream, &line);
                    transcript.record(stream, &line).await;
                }
            }
            Event::Output(_, None) => {}
            Event::LeaderExited(status) => {
                leader = Some(status);
                let stragglers = group.is_some_and(|g| group_is_alive(pid_of(g)));
                if kill_at.is_none() && last_signal.is_none() && stragglers {
                    last_signal = signal_group(group, Signal::SIGTERM).or(last_signal);
                    kill_at = deadline_after(spec.kill_grace);
                }
                let from = kill_at.unwrap_or_else(Instant::now);
                drain_until = from.checked_add(DRAIN_AFTER_EXIT);
            }
            Event::End(why) => {
                ending = Some(why);
                last_signal = signal_group(group, Signal::SIGTERM).or(last_signal);
                kill_at = deadline_after(spec.kill_grace);
                if group.is_none() {
                    // Without a group id (never seen in practice) the child alone can be killed.
                    let _ = child.start_kill();
                }
            }
            Event::EscalateToKill => {
                last_signal = signal_group(group, Signal::SIGKILL).or(last_signal);
                kill_at = None;
            }
            Event::StopDraining => break,
        }
    }

    // Members that closed their output but still run get the rest of their grace, then SIGKILL.
    if let Some(g) = group {
        if kill_at.is_some() {
            wait_until_group_gone(pid_of(g), kill_at).await;
        }
        if group_is_alive(pid_of(g)) {
            last_signal = signal_group(group, Signal::SIGKILL).or(last_signal);
            wait_until_group_gone(pid_of(g), deadline_after(AFTER_SIGKILL)).await;
        }
    }
    guard.disarm();
    if let Some(writer) = stdin_writer {
        writer.abort();
    }
    Finished {
        outcome: outcome(spec, ending, leader, last_signal),
        tail: transcript.finish().await,
        pid,
        duration: started.elapsed(),
    }
}

fn command(spec: &Spec) -> Result<Command, String> {
    let mut command = Command::new(program_path(spec)?);
    command
        .arg0(&spec.program)
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(name, value)| (name, value)))
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    Ok(command)
}

/// The program by its full path (see [`crate::detached::on_path`]): named by a path, the
/// standard library also starts the child with `posix_spawn` (a `vfork`) instead of a `fork`
/// copying orch's page tables.
fn program_path(spec: &Spec) -> Result<std::path::PathBuf, String> {
    if spec.program.contains('/') {
        return Ok(std::path::PathBuf::from(&spec.program));
    }
    crate::detached::on_path(&spec.program, &spec.env)
        .ok_or_else(|| format!("`{}`: not found on PATH", spec.program))
}

fn output<R: AsyncRead + Unpin + Send + 'static>(pipe: Option<R>) -> Output {
    match pipe {
        Some(pipe) => LineReader::new(Box::new(pipe)),
        None => LineReader::new(Box::new(tokio::io::empty())),
    }
}

fn outcome(
    spec: &Spec,
    ending: Option<Ending>,
    leader: Option<io::Result<ExitStatus>>,
    last_signal: Option<Signal>,
) -> ExitOutcome {
    let status = match leader {
        Some(Ok(status)) => Some(status),
        Some(Err(e)) => {
            return ExitOutcome::FailedToStart(format!(
                "`{}`: lost track of it: {e}",
                spec.program
            ));
        }
        None => None,
    };
    match ending {
        Some(Ending::TimedOut) => ExitOutcome::TimedOut {
            secs: spec.timeout.as_secs(),
        },
        Some(Ending::Stalled) => ExitOutcome::Stalled {
            secs: spec.stall.unwrap_or_default().as_secs(),
        },
        Some(Ending::Cancelled) => {
            let got = status
                .and_then(|s| s.signal())
                .or(last_signal.map(|s| s as i32));
            ExitOutcome::Signaled(got.unwrap_or(Signal::SIGTERM as i32))
        }
        None => match status {
            Some(status) => match (status.code(), status.signal()) {
                (Some(code), _) => ExitOutcome::Exited(code),
                (None, Some(signal)) => ExitOutcome::Signaled(signal),
                (None, None) => {
                    ExitOutcome::FailedToStart(format!("`{}`: ended with {status}", spec.program))
                }
            },
            None => ExitOutcome::FailedToStart(format!(
                "`{}`: its exit was never observed",
                spec.program
            )),
        },
    }
}

fn describe_spawn_error(program: &str, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound if !program.contains('/') => {
            format!("`{program}`: not found on PATH")
        }
        io::ErrorKind::NotFound => {
            format!("`{program}`: no such file (or its interpreter is missing)")
        }
        io::ErrorKind::PermissionDenied => {
            format!("`{program}`: permission denied (is it executable?)")
        }
        _ => format!("`{program}`: {error}"),
    }
}

/// Signals the group, returning the signal when it was delivered to someone.
fn signal_group(group: Option<Pid>, signal: Signal) -> Option<Signal> {
    match deliver_to_group(group?, signal) {
        Ok(true) => Some(signal),
        Ok(false) => None,
        Err(error) => {
            tracing::warn!(%error, "cannot signal a child's process group");
            None
        }
    }
}

fn pid_of(group: Pid) -> u32 {
    group.as_raw().unsigned_abs()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Kills the group if [`run`]'s future is dropped before the run finished, so that an aborted
/// caller cannot leave a process tree behind.
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = deliver_to_group(group, Signal::SIGKILL);
        }
    }
}
