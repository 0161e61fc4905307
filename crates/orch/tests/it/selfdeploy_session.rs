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

/// Every live process of session `sid`.
fn session_members(sid: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| session_and_group(*pid).is_some_and(|(s, _)| s == sid))
        .collect()
}

/// The wrapper's pid file of the one detached deploy, once it exists.
fn wrapper_pid_file(orch: &Orch) -> PathBuf {
    let base = orch.path().join("deploy/quick/selfdeploy");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = std::fs::read_dir(&base).ok().and_then(|dirs| {
            dirs.filter_map(Result::ok)
                .map(|d| d.path().join("pid"))
                .find(|p| p.is_file())
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

#[test]
fn the_detached_deploy_outlives_a_kill_of_orchs_whole_group_and_session() {
    let orch = self_deploying(&format!("{HOLD_UNTIL_RELEASED}\n{START_APP}"));
    let _app = ProdApp(orch.path().to_owned());
    orch.ok(&["item", "add", "--title", "ship orch"]);
    orch.ok(&["run"]);
    assert_eq!(orch.item("QUICK-1")["status"], "awaiting-approval");
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);

    // `setsid` execs orch in place: orch leads a new session and process group.
    let mut service = std::process::Command::new("setsid")
        .arg(BIN)
        .arg("--config")
        .arg(orch.path().join("orch.toml"))
        .arg("run")
        .env_remove("ORCH_CRASHPOINT")
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("setsid orch run");
    let orch_pid = i32::try_from(service.id()).expect("pid");
    let _orch_group = KillGroupOnDrop(orch_pid);
    let pid_file = wrapper_pid_file(&orch);
    let wrapper = read_pid(&pid_file);
    let _deploy_group = KillGroupOnDrop(wrapper);
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
    assert!(
        session_members(orch_sid).is_empty(),
        "orch's session is gone"
    );
    assert!(
        kill(Pid::from_raw(wrapper), None).is_ok(),
        "the detached deploy still runs"
    );
    let item = orch.item("QUICK-1");
    assert_eq!(deploy_run(&item)["state"], "running", "{item:#}");

    // The hook ends by itself, exit 0; the next orch judges the deploy by that exit.
    std::fs::write(orch.path().join("release"), "").expect("release the hook");
    wait_for(&pid_file.with_file_name("exit"));
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    assert_clean_history(&item);
    assert_eq!(prod_runs(&orch), 1, "the hook ran once");
    assert_eq!(count_events(&item, "stage.passed", "deploy"), 1);
    let log = deploy_log(&orch);
    assert!(log.contains("deploy_status: SUCCESS"), "{log}");
    assert!(log.contains("prod: the hook exited 0"), "{log}");
}
