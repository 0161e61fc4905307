//! Self-deploy in phases (contract 8): prod's hook runs detached, orch is SIGKILLed while it
//! runs, and the orch started afterwards finds the hook's exit code, judges prod by its health
//! probe, writes `14-deploy-log.md` and drives the item on: once, and without a second hook.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Orch, assert_clean_history, git};

/// A self-deploying hook project: staging only runs the checks; prod counts its runs in
/// `<orch dir>/prod-runs` (outside the worktree, so nothing of it is committed), sleeps, then
/// does `prod_tail`.
pub(crate) fn self_deploying(prod_tail: &str) -> Orch {
    let orch = Orch::new(None);
    let script = orch.repo().join("deploy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$TARGET_SERVICE\" = staging ] && exit 0\n\
             out=\"$BUILD_CONTEXT/../../..\"\n\
             echo \"$GIT_SHA\" >> \"$out/prod-runs\"\n\
             sleep 2\n{prod_tail}\n"
        ),
    )
    .expect("hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    std::fs::write(
        orch.repo().join(".orch/deploy.toml"),
        "kind = \"hook\"\n\n[hook]\ncommand = [\"./deploy.sh\"]\ntimeout_secs = 60\nself_deploy = true\n\n\
         [health]\npath = \"/healthz\"\ntries = 100\ninterval_ms = 50\ntimeout_ms = 1000\n\n\
         [[staging.checks]]\nid = \"smoke\"\nkind = \"command\"\nrun = \"true\"\ntries = 1\n",
    )
    .expect("deploy.toml");
    git(&orch.repo(), &["add", "-A"]);
    git(&orch.repo(), &["commit", "-qm", "test: self-deploy hook"]);
    orch
}

/// Starts the app on the prod port in the background and exits 0, as a real self-deploy would.
pub(crate) const START_APP: &str = "PORT=$TARGET_PORT python3 app.py > \"$out/prod-app.log\" 2>&1 &\n\
                         echo $! > \"$out/prod-app.pid\"\nexit 0";

/// Holds the prod hook until the test writes `<orch dir>/release` (at most 60 s).
pub(crate) const HOLD_UNTIL_RELEASED: &str = "i=0; while [ ! -f \"$out/release\" ] && [ $i -lt 1200 ]; do \
                                   sleep 0.05; i=$((i+1)); done";

/// Holds the SQLite store's write lock (python3's sqlite3, `BEGIN EXCLUSIVE`) until dropped:
/// an orch process started meanwhile cannot get past its first write (its busy timeout is 10 s).
struct StoreLock(std::process::Child);

impl StoreLock {
    fn take(orch: &Orch) -> Self {
        use std::io::BufRead as _;
        let db = orch.path().join("orch.db");
        assert!(db.exists(), "the store is {}", db.display());
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import sqlite3, sys\n\
                 c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)\n\
                 c.execute('BEGIN EXCLUSIVE')\n\
                 print('locked', flush=True)\n\
                 sys.stdin.readline()\n\
                 c.execute('COMMIT')\n",
            )
            .arg(&db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "locked", "the store lock was taken");
        Self(child)
    }

    fn release(mut self) {
        use std::io::Write as _;
        let _ = self.0.stdin.take().expect("stdin").write_all(b"\n");
        let status = self.0.wait().expect("wait");
        assert!(status.success(), "the store lock was released: {status:?}");
    }
}

/// Kills the app a hook left on the prod port.
pub(crate) struct ProdApp(pub(crate) PathBuf);

impl Drop for ProdApp {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(self.0.join("prod-app.pid"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|pid| *pid > 1);
        if let Some(pid) = pid {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Drives the item to its approval, approves, then runs orch with a crashpoint right after the
/// detached start: orch dies while the hook still runs. Returns the deploy's exit file.
fn kill_orch_during_the_detached_deploy(orch: &Orch) -> PathBuf {
    orch.ok(&["item", "add", "--title", "ship orch"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    let out = orch
        .command(&["run"])
        .env("ORCH_CRASHPOINT", "after-detached-start")
        .output()
        .expect("runs");
    assert_eq!(out.status.signal(), Some(9), "orch must die: {out:?}");
    let item = orch.item("QUICK-1");
    let deploy = deploy_run(&item);
    assert_eq!(deploy["state"], "running", "{deploy:#}");
    let exit_file = deploy["checkpoint"]["detached_deploy"]["exit_file"]
        .as_str()
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("the checkpoint records the detached deploy: {deploy:#}"));
    assert!(
        !exit_file.exists(),
        "orch died while the hook still ran (it sleeps 2 s)"
    );
    exit_file
}

pub(crate) fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn deploy_run(item: &Value) -> &Value {
    item["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["stage"] == "deploy"))
        .unwrap_or_else(|| panic!("a deploy run: {item:#}"))
}

pub(crate) fn prod_runs(orch: &Orch) -> usize {
    std::fs::read_to_string(orch.path().join("prod-runs"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

pub(crate) fn count_events(item: &Value, kind: &str, stage: &str) -> usize {
    item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == kind && e["data"]["stage"] == stage)
        .count()
}

/// The deploy log orch wrote for the item (beside its run logs, never committed).
pub(crate) fn deploy_log(orch: &Orch) -> String {
    std::fs::read_to_string(orch.path().join("logs/quick/QUICK-1/14-deploy-log.md"))
        .expect("the deploy log")
}

#[test]
fn a_self_deploy_survives_orch_being_killed_and_is_finalized_by_the_next_orch() {
    let orch = self_deploying(START_APP);
    let _app = ProdApp(orch.path().to_owned());
    let exit_file = kill_orch_during_the_detached_deploy(&orch);
    wait_for(&exit_file);
    orch.ok(&["run"]);

    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    assert_clean_history(&item);
    assert_eq!(prod_runs(&orch), 1, "the detached hook ran exactly once");
    assert_eq!(
        count_events(&item, "run.claimed", "deploy"),
        2,
        "claimed again after the kill"
    );
    assert_eq!(count_events(&item, "stage.passed", "deploy"), 1);
    let log = deploy_log(&orch);
    assert!(log.contains("deploy_status: SUCCESS"), "{log}");
    assert!(
        log.contains("prod: healthy after"),
        "the verdict came from the probe: {log}"
    );
    let merges = git(&orch.repo(), &["log", "--merges", "--oneline", "main"]);
    assert_eq!(merges.lines().count(), 1, "merged once: {merges}");
}

/// The next orch starts while the detached hook still runs: it reclaims the run, finds the
/// recorded deploy, waits for it instead of starting another, and finalizes it. The hook holds
/// until the test has seen the run reclaimed, so the two provably overlap (no bet on its sleep).
#[test]
fn a_run_reclaimed_while_its_detached_hook_runs_waits_for_it_and_never_starts_another() {
    let orch = self_deploying(&format!("{HOLD_UNTIL_RELEASED}\n{START_APP}"));
    let _app = ProdApp(orch.path().to_owned());
    let exit_file = kill_orch_during_the_detached_deploy(&orch);
    let mut next = orch.command(&["run"]).spawn().expect("spawn orch run");
    // The event: the deploy run claimed a second time, by the orch just started.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_events(&orch.item("QUICK-1"), "run.claimed", "deploy") < 2 {
        assert!(
            Instant::now() < deadline,
            "the next orch never reclaimed the deploy run"
        );
        assert!(
            next.try_wait().expect("poll").is_none(),
            "orch run ended early"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !exit_file.exists(),
        "the hook still runs while the next orch holds the run: they overlap"
    );
    std::fs::write(orch.path().join("release"), "").expect("release the hook");
    let status = next.wait().expect("wait");
    assert!(status.success(), "orch run: {status:?}");
    assert!(exit_file.exists(), "orch waited for the hook to end");

    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    assert_clean_history(&item);
    assert_eq!(prod_runs(&orch), 1, "the detached hook ran exactly once");
    assert!(deploy_log(&orch).contains("deploy_status: SUCCESS"));
}

/// A hook that failed: FAILED, and the pipeline's fail edge sends the item back to development.
fn a_failed_self_deploy(prod_tail: &str, reason: &str) {
    let orch = self_deploying(prod_tail);
    let exit_file = kill_orch_during_the_detached_deploy(&orch);
    wait_for(&exit_file);
    orch.ok(&["run"]);

    let item = orch.item("QUICK-1");
    assert_clean_history(&item);
    assert_eq!(prod_runs(&orch), 1, "the detached hook ran exactly once");
    let deploy = deploy_run(&item);
    assert_eq!(deploy["state"], "failed", "{deploy:#}");
    let reasons = deploy["verdict"]["reasons"].to_string();
    assert!(reasons.contains("deploy_status is FAILED"), "{reasons}");
    let log = deploy_log(&orch);
    assert!(log.contains("deploy_status: FAILED"), "{log}");
    assert!(log.contains(reason), "{log}");
    let deploy_id = deploy["id"].as_i64().expect("run id");
    let after_deploy: Vec<&Value> = item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["id"].as_i64() > Some(deploy_id))
        .collect();
    assert_eq!(
        after_deploy.first().map(|r| &r["stage"]),
        Some(&Value::from("development")),
        "the fail edge leads back to development: {after_deploy:#?}"
    );
    assert_ne!(item["status"], "done", "{item:#}");
}

#[test]
fn a_self_deploy_hook_that_exits_1_fails_the_deploy() {
    a_failed_self_deploy("exit 1", "exited 1: the deploy failed");
}

#[test]
fn a_self_deploy_hook_killed_by_a_signal_fails_the_deploy() {
    a_failed_self_deploy("kill -9 $$", "was killed by signal 9");
}

/// Exit 2 is a misused or misconfigured hook, not the change: the item is blocked for a person
/// instead of going back to development.
#[test]
fn a_self_deploy_hook_that_exits_2_blocks_the_item() {
    let orch = self_deploying("exit 2");
    let exit_file = kill_orch_during_the_detached_deploy(&orch);
    wait_for(&exit_file);
    orch.ok(&["run"]);

    let item = orch.item("QUICK-1");
    assert_clean_history(&item);
    assert_eq!(item["status"], "blocked", "{item:#}");
    let why = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(
        why.contains("exited 2") && why.contains("not the change"),
        "{why}"
    );
    let deploy_id = deploy_run(&item)["id"].as_i64();
    let later = item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["id"].as_i64() > deploy_id)
        .count();
    assert_eq!(later, 0, "nothing runs after a blocked deploy");
    assert_eq!(prod_runs(&orch), 1);
}

/// Two orch processes start at once after the crash: the store's lease lets one of them
/// finalize the deploy, and its verdict is recorded once.
#[test]
fn two_orch_processes_finalize_a_detached_deploy_once() {
    let orch = self_deploying(START_APP);
    let _app = ProdApp(orch.path().to_owned());
    let exit_file = kill_orch_during_the_detached_deploy(&orch);
    wait_for(&exit_file);
    // Both start while the store is locked: neither can claim anything before the lock goes,
    // so both are alive at once and race for the run when it does.
    let lock = StoreLock::take(&orch);
    let mut runs: Vec<_> = (0..2)
        .map(|_| orch.command(&["run"]).spawn().expect("spawn orch run"))
        .collect();
    for child in &mut runs {
        assert!(
            child.try_wait().expect("poll").is_none(),
            "both orch processes are running at the same time"
        );
    }
    lock.release();
    for mut child in runs {
        let status = child.wait().expect("wait");
        assert!(status.success(), "orch run: {status:?}");
    }
    orch.ok(&["run"]);

    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    assert_clean_history(&item);
    assert_eq!(prod_runs(&orch), 1, "the detached hook ran exactly once");
    assert_eq!(count_events(&item, "stage.passed", "deploy"), 1);
    let prod_events = item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "deploy.prod")
        .count();
    assert_eq!(prod_events, 1, "one verdict on prod");
}
