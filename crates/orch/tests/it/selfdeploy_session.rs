//! Phase B outlives orch's whole process group and session, not only orch: a service manager
//! or a container runtime that stops orch kills everything in its group and session. Here orch
//! runs in a session of its own (as a service manager starts it); the test SIGKILLs every
//! process of that session and group while the detached hook runs, and the next orch judges the
//! deploy by the hook's own exit. (Where systemd runs, the hook is in a unit of its own as well;
//! this machine has no systemd, so this is the fallback: a new session and process group.)

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::harness::{BIN, Orch, assert_clean_history};
use crate::selfdeploy::{
    HOLD_UNTIL_RELEASED, ProdApp, START_APP, count_events, deploy_log, deploy_run, prod_runs,
    self_deploying, wait_for,
};

/// (session id, process group id) of `pid`, from `/proc/<pid>/stat`.
fn session_and_group(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state, ppid, pgrp, session.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(3)?.parse().ok()?, fields.get(2)?.parse().ok()?))
}

/// Whether `pid` is a zombie (killed, not yet reaped by its new parent) or gone.
fn dead(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            rest.split_whitespace()
                .next()
                .map(|state| matches!(state, "Z" | "X"))
        })
        .unwrap_or(true)
}

/// Every live process of session `sid` (zombies left by the kill do not count: they run
/// nothing, and their reaping is their new parent's business).
fn session_members(sid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| session_and_group(*pid).is_some_and(|(s, _)| s == sid) && !dead(*pid))
        .collect()
}

/// The wrapper's pid file of the one detached deploy, once it and the deploy's record exist
/// (the kill then comes after the start was recorded, not between the two).
fn wrapper_pid_file(orch: &Orch) -> PathBuf {
    let base = orch.path().join("deploy/quick/selfdeploy");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = std::fs::read_dir(&base).ok().and_then(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("pid"))
                .find(|p| p.is_file() && p.with_file_name("deploy.json").is_file())
        });
        if let Some(pid_file) = found {
            return pid_file;
        }
        assert!(Instant::now() < deadline, "no detached deploy started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills a process group when dropped, so a failing test leaves no orch behind.
struct KillGroupOnDrop(i32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.0), Signal::SIGKILL);
    }
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// Brings the item to its deploy, approves it, runs `orch run` in a session and process group
/// of its own (with `path` as its `PATH` when given) and, once the detached hook has written its
/// pid, SIGKILLs every process of orch's group and session. Returns the wrapper's pid file.
fn kill_orchs_session_during_the_deploy(orch: &Orch, path: Option<&str>) -> PathBuf {
    orch.ok(&["item", "add", "--title", "ship orch"]);
    orch.ok(&["run"]);
    assert_eq!(orch.item("QUICK-1")["status"], "awaiting-approval");
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);

    // `setsid` execs orch in place: orch leads a new session and process group.
    let mut command = std::process::Command::new("setsid");
    command
        .arg(BIN)
        .arg("--config")
        .arg(orch.path().join("orch.toml"))
        .arg("run")
        .env_remove("ORCH_CRASHPOINT")
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut service = command.spawn().expect("setsid orch run");
    let orch_pid = i32::try_from(service.id()).expect("pid");
    let _orch_group = KillGroupOnDrop(orch_pid);
    let pid_file = wrapper_pid_file(orch);
    let wrapper = read_pid(&pid_file);
    let (orch_sid, orch_pgid) = session_and_group(orch_pid).expect("orch runs");
    assert_eq!(
        (orch_sid, orch_pgid),
        (orch_pid, orch_pid),
        "orch leads its session"
    );
    let (wrapper_sid, wrapper_pgid) = session_and_group(wrapper).expect("the wrapper runs");
    assert_ne!(
        wrapper_sid, orch_sid,
        "the deploy is outside orch's session"
    );
    assert_ne!(
        wrapper_pgid, orch_pgid,
        "the deploy is outside orch's process group"
    );

    // What `systemctl stop` (KillMode=mixed) or a container's end does to everything of orch.
    let _ = killpg(Pid::from_raw(orch_pgid), Signal::SIGKILL);
    for pid in session_members(orch_sid) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let status = service.wait().expect("wait");
    assert_eq!(status.signal(), Some(9), "orch was killed: {status:?}");
    // SIGKILL is delivered at once, but a process is only marked dead when the kernel gets to
    // it: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !session_members(orch_sid).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = session_members(orch_sid);
    assert!(left.is_empty(), "orch's session is gone: {left:?}");
    assert!(
        kill(Pid::from_raw(wrapper), None).is_ok(),
        "the detached deploy still runs"
    );
    let item = orch.item("QUICK-1");
    assert_eq!(deploy_run(&item)["state"], "running", "{item:#}");
    pid_file
}

/// Lets the held hook end (exit 0), runs the next orch, and checks the deploy was judged by
/// that exit: SUCCESS once, the hook run once.
fn release_and_finish(orch: &Orch, pid_file: &Path) {
    std::fs::write(orch.path().join("release"), "").expect("release the hook");
    wait_for(&pid_file.with_file_name("exit"));
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    assert_clean_history(&item);
    assert_eq!(prod_runs(orch), 1, "the hook ran once");
    assert_eq!(count_events(&item, "stage.passed", "deploy"), 1);
    let log = deploy_log(orch);
    assert!(log.contains("deploy_status: SUCCESS"), "{log}");
    assert!(log.contains("prod: the hook exited 0"), "{log}");
}

#[test]
fn the_detached_deploy_outlives_a_kill_of_orchs_whole_group_and_session() {
    let orch = self_deploying(&format!("{HOLD_UNTIL_RELEASED}\n{START_APP}"));
    let _app = ProdApp(orch.path().to_owned());
    let pid_file = kill_orchs_session_during_the_deploy(&orch, None);
    let _deploy_group = KillGroupOnDrop(read_pid(&pid_file));
    release_and_finish(&orch, &pid_file);
}

/// A stand-in for `systemd-run` where no systemd runs: it records its arguments, then starts
/// the command as systemd starts a transient service (its own session, the given working
/// directory, only the `--setenv` environment, output appended to the given log).
const FAKE_SYSTEMD_RUN: &str = r#"#!/bin/bash
echo "$*" >> "$(dirname "$0")/calls"
cwd=/; log=/dev/null; envs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --working-directory=*) cwd="${1#*=}" ;;
    --property=StandardOutput=append:*) log="${1#--property=StandardOutput=append:}" ;;
    --setenv=*) envs+=("${1#--setenv=}") ;;
    --) shift; break ;;
  esac
  shift
done
cd "$cwd" || exit 1
setsid env -i "${envs[@]}" "$@" </dev/null >>"$log" 2>&1 &
exit 0
"#;

/// `detach = "systemd-run"`: the wrapper is started as a transient unit (through the stand-in,
/// since systemd cannot run here), the record names the unit and has no pid of its own (the
/// wrapper's pid file gives it), and the deploy survives orch's session as before.
#[test]
fn a_unit_deploy_is_recorded_by_its_unit_and_judged_by_its_own_exit() {
    let orch = self_deploying(&format!("{HOLD_UNTIL_RELEASED}\n{START_APP}"));
    let _app = ProdApp(orch.path().to_owned());
    let deploy_toml = orch.repo().join(".orch/deploy.toml");
    let text = std::fs::read_to_string(&deploy_toml).expect("deploy.toml");
    std::fs::write(
        &deploy_toml,
        text.replace(
            "self_deploy = true",
            "self_deploy = true\ndetach = \"systemd-run\"",
        ),
    )
    .expect("write deploy.toml");
    crate::harness::git(
        &orch.repo(),
        &["commit", "-qam", "test: detach with systemd-run"],
    );
    let bin = orch.path().join("fake-bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    let fake = bin.join("systemd-run");
    std::fs::write(&fake, FAKE_SYSTEMD_RUN).expect("fake systemd-run");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let pid_file = kill_orchs_session_during_the_deploy(&orch, Some(&path));
    let _deploy_group = KillGroupOnDrop(read_pid(&pid_file));
    let calls = std::fs::read_to_string(bin.join("calls")).expect("systemd-run was called");
    assert_eq!(calls.matches("--unit=").count(), 1, "one unit: {calls}");
    for part in [
        "--unit=orch-self-deploy-run-",
        "--collect",
        "--property=KillMode=process",
        "--setenv=TARGET_SERVICE=prod",
        "-- sh -c",
    ] {
        assert!(calls.contains(part), "{part}: {calls}");
    }
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(pid_file.with_file_name("deploy.json")).expect("deploy.json"),
    )
    .expect("json");
    assert!(
        record["unit"]
            .as_str()
            .is_some_and(|u| u.starts_with("orch-self-deploy-run-")),
        "{record:#}"
    );
    assert!(record["pid"].is_null(), "{record:#}");
    release_and_finish(&orch, &pid_file);
}
