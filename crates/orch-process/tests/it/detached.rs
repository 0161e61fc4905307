use std::os::unix::process::CommandExt;
use std::time::Duration;

use orch_process::{
    DetachedSpec, ProcessError, group_is_alive, is_alive, kill_group, kill_pid, safe_env,
    spawn_detached,
};

use crate::eventually;

fn detached(program: &str, args: &[&str], dir: &std::path::Path) -> DetachedSpec {
    DetachedSpec {
        program: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        cwd: dir.to_owned(),
        env: safe_env(),
        log: dir.join("detached.log"),
    }
}

/// The session id field of `/proc/<pid>/stat`.
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

#[tokio::test]
async fn a_detached_process_leads_its_own_session_and_outlives_its_spawner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid = spawn_detached(&detached("sleep", &["1000"], dir.path())).expect("spawned");
    // spawn_detached returned and kept no handle: the process runs on by itself.
    assert!(is_alive(pid));
    // `setsid` makes the session, then execs the program in the same process, just after spawning.
    let is_sleep =
        || std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"));
    assert!(
        eventually(|| is_sleep() && session_of(pid) == Some(pid)),
        "session {:?}",
        session_of(pid)
    );
    assert!(is_alive(pid));

    kill_pid(pid, Duration::from_millis(300))
        .await
        .expect("killed");
    assert!(eventually(|| !is_alive(pid)));
}

#[tokio::test]
async fn a_detached_process_writes_both_streams_to_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = detached("sh", &["-c", "echo out; echo err >&2"], dir.path());
    spawn_detached(&spec).expect("spawned");
    let log = dir.path().join("detached.log");
    assert!(eventually(
        || std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() == 2)
    ));
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "out\nerr\n");
}

#[test]
fn a_missing_program_is_an_error_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = spawn_detached(&detached("orch-test-no-such-program", &[], dir.path()))
        .expect_err("missing");
    assert!(
        matches!(&err, ProcessError::Start { reason, .. } if reason.contains("not found on PATH")),
        "{err}"
    );
}

#[tokio::test]
async fn kill_group_ends_every_member_of_the_group() {
    let mut child = std::process::Command::new("sh")
        .args(["-c", "trap '' TERM; sleep 1000 & sleep 1000 & wait"])
        .process_group(0)
        .spawn()
        .expect("spawned");
    let pgid = child.id();
    assert!(eventually(|| group_is_alive(pgid)));
    kill_group(pgid, Duration::from_millis(200))
        .await
        .expect("killed");
    let _ = child.wait();
    assert!(!group_is_alive(pgid));
}

#[tokio::test]
async fn orchs_own_group_is_never_signalled() {
    let own = nix::unistd::getpgrp().as_raw().unsigned_abs();
    let err = kill_group(own, Duration::ZERO).await.expect_err("refused");
    assert!(matches!(err, ProcessError::Refused { .. }), "{err}");
    assert!(matches!(
        kill_pid(std::process::id(), Duration::ZERO).await,
        Err(ProcessError::Refused { .. })
    ));
    assert!(matches!(
        kill_pid(0, Duration::ZERO).await,
        Err(ProcessError::Refused { .. })
    ));
}
