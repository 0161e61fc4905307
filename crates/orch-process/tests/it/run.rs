use std::time::Duration;

use orch_process::{ExitOutcome, Observer, Spec, Stream, group_is_alive, is_alive, run};
use tokio_util::sync::CancellationToken;

use crate::{Recorder, eventually, sh};

/// Records, and cancels the run when the child prints `ready`: a cancel at a known point.
struct CancelWhenReady {
    token: CancellationToken,
    recorder: Recorder,
}

impl Observer for CancelWhenReady {
    fn started(&mut self, pid: u32) {
        self.recorder.started(pid);
    }

    fn line(&mut self, stream: Stream, line: &str) {
        if line == "ready" {
            self.token.cancel();
        }
        self.recorder.line(stream, line);
    }
}

/// The pids a script printed with `echo $!`.
fn printed_pids(recorder: &Recorder) -> Vec<u32> {
    recorder
        .stdout()
        .iter()
        .filter_map(|l| l.parse().ok())
        .collect()
}

async fn run_sh(script: &str) -> (orch_process::Finished, Recorder) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut recorder = Recorder::default();
    let finished = run(
        &sh(script, dir.path()),
        &CancellationToken::new(),
        &mut recorder,
    )
    .await;
    (finished, recorder)
}

#[tokio::test]
async fn reports_exit_codes_and_keeps_both_streams_in_the_tail() {
    let (finished, recorder) = run_sh("echo out; echo err >&2; exit 3").await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(3));
    assert!(
        finished.tail.lines().any(|l| l == "out"),
        "{}",
        finished.tail
    );
    assert!(
        finished.tail.lines().any(|l| l == "[stderr] err"),
        "{}",
        finished.tail
    );
    assert!(recorder.lines.contains(&(Stream::Stderr, "err".to_owned())));
    assert_eq!(finished.pid, recorder.pid);
    assert!(finished.pid.is_some());

    let (finished, _) = run_sh("true").await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
}

#[tokio::test]
async fn reports_the_signal_that_killed_the_child() {
    let (finished, _) = run_sh("kill -KILL $$").await;
    assert_eq!(finished.outcome, ExitOutcome::Signaled(9));
}

#[tokio::test]
async fn timeout_kills_the_whole_group_including_grandchildren() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec {
        timeout: Duration::from_secs(1),
        ..sh(
            "sleep 1000 & echo $!; sleep 1000 & echo $!; wait",
            dir.path(),
        )
    };
    let mut recorder = Recorder::default();
    let finished = run(&spec, &CancellationToken::new(), &mut recorder).await;
    assert!(
        matches!(finished.outcome, ExitOutcome::TimedOut { .. }),
        "{:?}",
        finished.outcome
    );
    let grandchildren = printed_pids(&recorder);
    assert_eq!(grandchildren.len(), 2, "{:?}", recorder.lines);
    assert!(grandchildren.iter().all(|&pid| !is_alive(pid)));
    assert!(!group_is_alive(finished.pid.expect("started")));
}

#[tokio::test]
async fn timeout_is_measured_from_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec {
        timeout: Duration::from_millis(300),
        ..sh("sleep 1000", dir.path())
    };
    let finished = run(&spec, &CancellationToken::new(), &mut ()).await;
    assert_eq!(finished.outcome, ExitOutcome::TimedOut { secs: 0 });
    assert!(
        finished.duration < Duration::from_secs(10),
        "{:?}",
        finished.duration
    );
}

#[tokio::test]
async fn cancel_terminates_the_group_and_reports_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = CancellationToken::new();
    let mut observer = CancelWhenReady {
        token: token.clone(),
        recorder: Recorder::default(),
    };
    let spec = sh("sleep 1000 & echo $!; echo ready; wait", dir.path());
    let finished = run(&spec, &token, &mut observer).await;
    assert_eq!(finished.outcome, ExitOutcome::Signaled(15));
    assert!(
        printed_pids(&observer.recorder)
            .iter()
            .all(|&pid| !is_alive(pid))
    );
    assert!(!group_is_alive(finished.pid.expect("started")));
}

#[tokio::test]
async fn a_group_that_ignores_sigterm_gets_sigkill_after_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = CancellationToken::new();
    let mut observer = CancelWhenReady {
        token: token.clone(),
        recorder: Recorder::default(),
    };
    // An ignored signal stays ignored across fork and exec, so `sleep` ignores SIGTERM too.
    let spec = sh(
        "trap '' TERM; sleep 1000 & echo $!; echo ready; wait",
        dir.path(),
    );
    let finished = run(&spec, &token, &mut observer).await;
    assert_eq!(finished.outcome, ExitOutcome::Signaled(9));
    let grandchildren = printed_pids(&observer.recorder);
    assert_eq!(grandchildren.len(), 1);
    assert!(!is_alive(grandchildren[0]));
    assert!(!group_is_alive(finished.pid.expect("started")));
}

#[tokio::test]
async fn a_cancelled_token_starts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = CancellationToken::new();
    token.cancel();
    let marker = dir.path().join("ran");
    let spec = sh(&format!("touch '{}'", marker.display()), dir.path());
    let finished = run(&spec, &token, &mut ()).await;
    assert!(
        matches!(finished.outcome, ExitOutcome::FailedToStart(ref m) if m.contains("cancelled"))
    );
    assert_eq!(finished.pid, None);
    assert!(!marker.exists());
}

#[tokio::test]
async fn a_silent_child_is_stalled_and_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = sh("echo hi; sleep 1000", dir.path()).stall(Duration::from_millis(300));
    let mut recorder = Recorder::default();
    let finished = run(&spec, &CancellationToken::new(), &mut recorder).await;
    assert_eq!(finished.outcome, ExitOutcome::Stalled { secs: 0 });
    assert_eq!(recorder.stdout(), ["hi"]);
    assert!(!group_is_alive(finished.pid.expect("started")));
}

#[tokio::test]
async fn steady_output_even_without_line_ends_is_not_a_stall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = sh("for i in 1 2 3 4 5; do echo $i; sleep 0.2; done; for i in 1 2 3 4 5; do printf .; sleep 0.2; done", dir.path())
        .stall(Duration::from_millis(900));
    let mut recorder = Recorder::default();
    let finished = run(&spec, &CancellationToken::new(), &mut recorder).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    assert_eq!(recorder.stdout(), ["1", "2", "3", "4", "5", "....."]);
}

#[tokio::test]
async fn background_processes_left_by_a_finished_child_are_killed() {
    let (finished, recorder) = run_sh("sleep 1000 & echo $!; echo done").await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    let straggler = printed_pids(&recorder);
    assert_eq!(straggler.len(), 1);
    assert!(!is_alive(straggler[0]));
    assert!(
        finished.duration < Duration::from_secs(10),
        "{:?}",
        finished.duration
    );
}

#[tokio::test]
async fn dropping_the_run_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = sh("sleep 1000 & wait", dir.path());
    let mut recorder = Recorder::default();
    let token = CancellationToken::new();
    let cut_short = tokio::time::timeout(
        Duration::from_millis(300),
        run(&spec, &token, &mut recorder),
    )
    .await;
    assert!(cut_short.is_err(), "the run should still have been going");
    let pid = recorder.pid.expect("started");
    assert!(eventually(|| !group_is_alive(pid)));
}

#[tokio::test]
async fn stdin_is_written_then_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = sh("cat", dir.path()).stdin("hello\nworld\n");
    let mut recorder = Recorder::default();
    let finished = run(&spec, &CancellationToken::new(), &mut recorder).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    assert_eq!(recorder.stdout(), ["hello", "world"]);
}

#[tokio::test]
async fn a_child_that_never_reads_stdin_does_not_block_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Far more than a pipe buffer holds.
    let spec = sh("echo ignored", dir.path()).stdin(vec![b'x'; 4 * 1024 * 1024]);
    let finished = run(&spec, &CancellationToken::new(), &mut ()).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
}

#[tokio::test]
async fn programs_that_cannot_start_are_named_in_the_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = Spec::new("orch-test-no-such-program", dir.path());
    let finished = run(&missing, &CancellationToken::new(), &mut ()).await;
    assert_eq!(
        finished.outcome,
        ExitOutcome::FailedToStart("`orch-test-no-such-program`: not found on PATH".to_owned())
    );

    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
    let program = script.display().to_string();
    let finished = run(
        &Spec::new(&program, dir.path()),
        &CancellationToken::new(),
        &mut (),
    )
    .await;
    assert!(
        matches!(&finished.outcome, ExitOutcome::FailedToStart(m) if m.contains(&program) && m.contains("permission denied")),
        "{:?}",
        finished.outcome
    );

    let nowhere = dir.path().join("gone");
    let finished = run(
        &Spec::new("true", &nowhere),
        &CancellationToken::new(),
        &mut (),
    )
    .await;
    assert!(
        matches!(&finished.outcome, ExitOutcome::FailedToStart(m) if m.contains("working directory")),
        "{:?}",
        finished.outcome
    );
}

#[tokio::test]
async fn the_child_sees_exactly_the_given_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec {
        env: vec![("ONLY".to_owned(), "this".to_owned())],
        ..Spec::new("/usr/bin/env", dir.path())
    };
    let mut recorder = Recorder::default();
    let finished = run(&spec, &CancellationToken::new(), &mut recorder).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    assert_eq!(recorder.stdout(), ["ONLY=this"]);
}

#[tokio::test]
async fn the_default_environment_holds_no_variable_outside_the_allowlist() {
    // cargo gives every test process CARGO_PKG_NAME: present here, it must not reach the child.
    assert!(std::env::var("CARGO_PKG_NAME").is_ok());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut recorder = Recorder::default();
    let finished = run(
        &Spec::new("env", dir.path()),
        &CancellationToken::new(),
        &mut recorder,
    )
    .await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    let names: Vec<&str> = recorder
        .stdout()
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(n, _)| n)
        .collect();
    assert!(names.contains(&"PATH"), "{names:?}");
    assert!(!names.contains(&"CARGO_PKG_NAME"), "{names:?}");
}

#[tokio::test]
async fn a_bare_program_is_never_found_through_a_relative_path_entry() {
    // An agent's work tree is the child's working directory: a `.` (or empty) entry in PATH must
    // not make a program it planted there run in place of the real one.
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let planted = dir.path().join("tool");
    std::fs::write(&planted, "#!/bin/sh\necho PLANTED\n").expect("write");
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let real = tempfile::tempdir().expect("tempdir");
    let tool = real.path().join("tool");
    std::fs::write(&tool, "#!/bin/sh\necho REAL\n").expect("write");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let path = format!(".::{}", real.path().display());
    let mut recorder = Recorder::default();
    let finished = run(
        &Spec::new("tool", dir.path()).env("PATH", path),
        &CancellationToken::new(),
        &mut recorder,
    )
    .await;
    assert_eq!(
        finished.outcome,
        ExitOutcome::Exited(0),
        "{}",
        finished.tail
    );
    assert_eq!(recorder.stdout(), ["REAL"]);

    let mut recorder = Recorder::default();
    let finished = run(
        &Spec::new("tool", dir.path()).env("PATH", "."),
        &CancellationToken::new(),
        &mut recorder,
    )
    .await;
    assert!(
        matches!(finished.outcome, ExitOutcome::FailedToStart(_)),
        "{:?} {:?}",
        finished.outcome,
        recorder.stdout()
    );
}
