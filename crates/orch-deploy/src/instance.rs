//! Running instances: start a build as a detached process on an env's port, record it, stop it.
//!
//! An instance runs in its own session (it must outlive orch: orch may restart while prod keeps
//! serving) with its output in `<env>/instance.log`. Its record, `<env>/current.json`, is the only
//! way orch finds it again, so it is written as soon as the process exists. The record also keeps
//! the process's start time: a pid that was reused by an unrelated program after a reboot or a
//! crash is never signalled.
//!
//! A confined instance (the default; see `confine`) is started as `setsid bwrap ... -- program`:
//! the recorded pid is bwrap's, which leads the session and the process group holding the
//! program, so the liveness check, the group kill and the start marker all work on it.

use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use orch_process::DetachedSpec;
use serde::{Deserialize, Serialize};

use crate::build::Build;
use crate::config::RunSpec;
use crate::error::DeployError;
use crate::layout::{Layout, read_record, remove_file, write_record};
use crate::template;

/// Between SIGTERM and SIGKILL when an instance is stopped.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a stopped instance's port may take to become free again.
const PORT_RELEASE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Env {
    Staging,
    Prod,
}

impl Env {
    pub fn as_str(self) -> &'static str {
        match self {
            Env::Staging => "staging",
            Env::Prod => "prod",
        }
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The loopback ports of a project's two envs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub staging: u16,
    pub prod: u16,
}

impl Ports {
    pub fn of(self, env: Env) -> u16 {
        match env {
            Env::Staging => self.staging,
            Env::Prod => self.prod,
        }
    }
}

/// `<env>/current.json`: the instance orch started for an env.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceRecord {
    /// Also its process group id: the instance leads its own session.
    pub pid: u32,
    pub sha: String,
    pub digest: String,
    pub port: u16,
    pub build_dir: PathBuf,
    pub started_at: String,
    /// The kernel's start time of `pid` (clock ticks since boot), to tell it from a reused pid.
    pub start_ticks: Option<u64>,
    /// Set once the health probe passed: only a healthy prod instance is a restore target.
    #[serde(default)]
    pub healthy: bool,
}

impl InstanceRecord {
    /// Whether the recorded process still runs (and is the same process, not a reused pid).
    pub fn is_running(&self) -> bool {
        orch_process::is_alive(self.pid)
            && (self.start_ticks.is_none() || start_ticks(self.pid) == self.start_ticks)
    }
}

/// Starts `build` on `port` for `env` and records it. The port must have been checked free.
pub(crate) fn start(
    layout: &Layout,
    env: Env,
    build: &Build,
    port: u16,
    run: &RunSpec,
    hidden: Option<&[PathBuf]>,
) -> Result<InstanceRecord, DeployError> {
    let artifact = build.artifact.to_string_lossy();
    let port_text = port.to_string();
    let values = [
        ("artifact", artifact.as_ref()),
        ("port", port_text.as_str()),
    ];
    let fill = |text: &str| {
        template::fill(text, &values).map_err(|name| DeployError::StartFailed {
            env,
            detail: format!("unknown placeholder `{{{name}}}` in run settings"),
        })
    };
    let argv = run
        .command
        .iter()
        .map(|arg| fill(arg))
        .collect::<Result<Vec<_>, _>>()?;
    let Some((program, args)) = argv.split_first() else {
        return Err(DeployError::StartFailed {
            env,
            detail: "run.command is empty".to_owned(),
        });
    };
    let mut child_env = orch_process::safe_env();
    for (name, value) in &run.env {
        child_env.retain(|(existing, _)| existing != name);
        child_env.push((name.clone(), fill(value)?));
    }
    let log = layout.instance_log(env);
    std::fs::create_dir_all(layout.env_dir(env))
        .map_err(DeployError::io("create", layout.env_dir(env)))?;
    // Marked before the spawn: a crash before the record is written still finds the process.
    let marker = Starting::new(env);
    let marked = (INSTANCE_MARKER.to_owned(), marker.token.clone());
    child_env.push(marked.clone());
    let mut spec = DetachedSpec {
        program: program.clone(),
        args: args.to_vec(),
        cwd: build.dir.clone(),
        env: child_env,
        log,
    };
    if let Some(hidden) = hidden {
        spec = confined(spec, hidden, &build.dir, env)?;
        // bwrap, whose pid is recorded and whose group is signalled, carries the marker too.
        spec.env.push(marked);
    }
    write_record(&layout.starting(env), &marker)?;
    let pid = orch_process::spawn_detached(&spec).map_err(|e| DeployError::StartFailed {
        env,
        detail: e.to_string(),
    })?;
    let record = InstanceRecord {
        pid,
        sha: build.sha.clone(),
        digest: build.digest.clone(),
        port,
        build_dir: build.dir.clone(),
        started_at: chrono::Utc::now().to_rfc3339(),
        start_ticks: start_ticks(pid),
        healthy: false,
    };
    write_record(&layout.current(env), &record)?;
    remove_file(&layout.starting(env))?;
    Ok(record)
}

/// `spec` started through bwrap in its own PID namespace, `hidden` empty and `build_dir`
/// visible read-only (see `orch_process::confine_instance`).
fn confined(
    spec: DetachedSpec,
    hidden: &[PathBuf],
    build_dir: &std::path::Path,
    env: Env,
) -> Result<DetachedSpec, DeployError> {
    let view = orch_process::InstanceView {
        hidden: hidden.to_vec(),
        read_only: vec![build_dir.to_owned()],
    };
    orch_process::confine_instance(&spec, &view).map_err(|e| DeployError::StartFailed {
        env,
        detail: format!("cannot confine the instance: {e}"),
    })
}

/// The variable whose value marks the processes of one instance start.
const INSTANCE_MARKER: &str = "ORCH_INSTANCE_START";

/// `<env>/starting.json`: an instance start in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Starting {
    token: String,
}

impl Starting {
    fn new(env: Env) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Self {
            token: format!("{env}-{}-{nanos}", std::process::id()),
        }
    }
}

/// Kills the processes of a start that never got its record (orch died between the spawn and
/// the record): found by the marker variable of the start in `<env>/starting.json`, so nothing
/// orch does not track is left on the env's port. Returns how many process groups it killed.
pub(crate) async fn reap_unrecorded(layout: &Layout, env: Env) -> Result<usize, DeployError> {
    let path = layout.starting(env);
    let Some(marker) = read_record::<Starting>(&path)? else {
        return Ok(0);
    };
    let needle = format!("{INSTANCE_MARKER}={}", marker.token);
    let mut killed = 0;
    for pid in processes_with_env(&needle)
        .into_iter()
        .filter(|pid| leads_its_group(*pid))
    {
        // The instance leads its own session and group; its children (bwrap's, the program)
        // are in that group too and go with it.
        if orch_process::kill_group(pid, STOP_GRACE).await.is_ok() {
            killed += 1;
        }
    }
    remove_file(&path)?;
    Ok(killed)
}

/// The pids whose environment holds the entry `needle` (`NAME=value`), among the processes
/// this user may read.
fn processes_with_env(needle: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|b| *b == 0)
                    .any(|entry| entry == needle.as_bytes())
            })
        })
        .collect()
}

/// The recorded instance of `env`, if any.
pub(crate) fn current(layout: &Layout, env: Env) -> Result<Option<InstanceRecord>, DeployError> {
    read_record(&layout.current(env))
}

/// Stops the recorded instance of `env` (its whole process group) and removes its record.
/// Returns the record it stopped; `None` when nothing was recorded.
pub(crate) async fn stop(layout: &Layout, env: Env) -> Result<Option<InstanceRecord>, DeployError> {
    reap_unrecorded(layout, env).await?;
    let Some(record) = current(layout, env)? else {
        return Ok(None);
    };
    kill(&record, env).await?;
    remove_file(&layout.current(env))?;
    Ok(Some(record))
}

/// Kills a recorded instance's process group unless the pid now belongs to another process.
pub(crate) async fn kill(record: &InstanceRecord, env: Env) -> Result<(), DeployError> {
    if record.is_running() {
        orch_process::kill_group(record.pid, STOP_GRACE)
            .await
            .map_err(|e| DeployError::StopFailed {
                env,
                pid: record.pid,
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

/// Whether nothing listens on the loopback `port` (binding it succeeds).
pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Waits until `port` is free, for at most a few seconds; `false` when it stays taken.
pub(crate) async fn wait_for_free_port(port: u16) -> bool {
    let deadline = tokio::time::Instant::now() + PORT_RELEASE_WAIT;
    let mut backoff = orch_process::Backoff::up_to(Duration::from_millis(25));
    loop {
        if port_is_free(port) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        backoff.sleep().await;
    }
}

/// Whether `pid` is the leader of its process group (field 5 of `/proc/<pid>/stat`).
fn leads_its_group(pid: u32) -> bool {
    stat_field(pid, 2).is_some_and(|pgrp| pgrp == u64::from(pid))
}

/// Field 22 of `/proc/<pid>/stat`: when the process started, in clock ticks since boot.
fn start_ticks(pid: u32) -> Option<u64> {
    stat_field(pid, 19)
}

/// The `n`th field after the command name of `/proc/<pid>/stat` (0: the state, field 3).
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and `)`, so count from after its last `)`.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(n)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_identify_this_process() {
        let mine = start_ticks(std::process::id());
        assert!(mine.is_some());
        assert_eq!(
            start_ticks(std::process::id()),
            mine,
            "stable for one process"
        );
        assert_eq!(start_ticks(0), None);
    }

    #[test]
    fn a_record_whose_pid_was_reused_is_not_running() {
        let record = |start_ticks| InstanceRecord {
            pid: std::process::id(),
            sha: "a".repeat(40),
            digest: "sha256:x".into(),
            port: 1,
            build_dir: PathBuf::from("/nowhere"),
            started_at: "2026-01-01T00:00:00Z".into(),
            start_ticks,
            healthy: true,
        };
        assert!(record(start_ticks(std::process::id())).is_running());
        assert!(
            !record(Some(1)).is_running(),
            "another process's start time: the pid was reused"
        );
    }

    #[test]
    fn a_bound_port_is_not_free() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert!(!port_is_free(port));
        drop(listener);
        assert!(port_is_free(port));
    }
}
