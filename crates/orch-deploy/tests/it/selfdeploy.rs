//! The detached prod deploy of a self-deploying hook project (contract 8): real `setsid`, real
//! shell hooks, a real app on the prod port, the verdict from a real health probe.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orch_core::gate::ExitOutcome;
use orch_deploy::{
    DeployConfig, DeployError, DeployReport, DeployStatus, Deployer, DetachedDeploy, DetachedState,
    HookDeployer, Ports, SelfDeploy,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::free_ports;

const SHA: &str = "cccccccccccccccccccccccccccccccccccccccc";
const APP: &str = include_str!("app.py");

struct Fixture {
    dir: TempDir,
    ports: Ports,
    deployer: HookDeployer,
}

impl Fixture {
    /// A self-deploying hook project whose hook does `prod_body` on prod (staging just passes),
    /// after counting its prod runs in `prod-runs`.
    async fn staged(prod_body: &str, hook_toml: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let worktree = dir.path().join("worktree");
        std::fs::create_dir_all(&worktree).expect("mkdir");
        std::fs::write(worktree.join("app.py"), APP).expect("app");
        std::fs::write(worktree.join("greeting.txt"), "Hello self\n").expect("greeting");
        let script = worktree.join("deploy.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n[ \"$TARGET_SERVICE\" = staging ] && exit 0\n\
                 echo \"$TARGET_SERVICE $GIT_SHA $TARGET_PORT\" >> \"$BUILD_CONTEXT/prod-runs\"\n{prod_body}\n"
            ),
        )
        .expect("hook");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        let toml = format!(
            "kind = \"hook\"\n[hook]\ncommand = [\"./deploy.sh\"]\nself_deploy = true\n{hook_toml}\n\
             [health]\npath = \"/healthz\"\ntries = 40\ninterval_ms = 50\ntimeout_ms = 1000\n\
             [[staging.checks]]\nid = \"smoke\"\nkind = \"command\"\nrun = \"true\"\ntries = 1\n"
        );
        let DeployConfig::Hook(spec) = DeployConfig::from_toml(&toml).expect("valid config") else {
            panic!("a hook config");
        };
        let ports = free_ports();
        let deployer =
            HookDeployer::new(dir.path().join("deploy"), "orch", spec, ports).expect("deployer");
        let staged = deployer
            .deploy_staging(&worktree, SHA, true, &CancellationToken::new())
            .await;
        assert!(staged.verdict.is_success(), "{:#?}", staged.lines);
        Fixture {
            dir,
            ports,
            deployer,
        }
    }

    fn worktree(&self) -> PathBuf {
        self.dir.path().join("worktree")
    }

    fn own(&self) -> &dyn SelfDeploy {
        self.deployer
            .self_deploy()
            .expect("self_deploy = true makes a detached deployer")
    }

    fn prod_runs(&self) -> Vec<String> {
        std::fs::read_to_string(self.worktree().join("prod-runs"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Polls until the hook ended, then has the outcome judged.
    async fn finish(&self, deploy: &DetachedDeploy) -> DeployReport {
        let ended = wait_until_ended(self.own(), deploy).await;
        self.own()
            .conclude(deploy, ended, &CancellationToken::new())
            .await
    }
}

impl Drop for Fixture {
    /// Kills the app a hook started on the prod port.
    fn drop(&mut self) {
        if let Some(pid) = read_pid(&self.worktree().join("app.pid")) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    (pid > 1).then_some(pid)
}

/// Waits for the wrapper's pid file: only then has `setsid` made it a session leader (the pid
/// `start_detached` returns is `setsid`'s, which becomes the wrapper by `exec`).
async fn wait_for_wrapper(deploy: &DetachedDeploy) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !deploy.pid_file.exists() {
        assert!(Instant::now() < deadline, "the wrapper never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deploy.pid.expect("the wrapper's pid")
}

async fn wait_until_ended(
    own: &dyn SelfDeploy,
    deploy: &DetachedDeploy,
) -> Result<ExitOutcome, DeployError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match own.poll(deploy).await {
            DetachedState::Ended(ended) => return ended,
            DetachedState::Running => {
                assert!(Instant::now() < deadline, "the detached hook never ended");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn reason(report: &DeployReport) -> &str {
    match &report.status {
        DeployStatus::Failed { reason } => reason,
        DeployStatus::Success => panic!("expected FAILED: {:#?}", report.lines),
    }
}

/// Starts the app on the prod port in the background, as a real deploy would, and exits 0.
const START_APP: &str =
    "sleep 0.3\nPORT=$TARGET_PORT python3 app.py > app.log 2>&1 &\necho $! > app.pid\nexit 0";

#[tokio::test]
async fn a_hook_that_exits_0_is_success_once_prod_answers_its_health_probe() {
    let f = Fixture::staged(START_APP, "").await;
    let deploy = f.own().start_detached("run-7", SHA).expect("started");
    let pid = wait_for_wrapper(&deploy).await;
    assert_eq!(
        std::fs::read_to_string(&deploy.pid_file).ok(),
        Some(format!("{pid}\n")),
        "the wrapper recorded its own pid"
    );
    let session = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(
        i32::try_from(pid).expect("pid"),
    )));
    assert_eq!(
        session.map(nix::unistd::Pid::as_raw).ok(),
        i32::try_from(pid).ok(),
        "the hook leads a session of its own"
    );
    let again = f
        .own()
        .start_detached("run-7", SHA)
        .expect("the same deploy");
    assert_eq!(again, deploy, "a second start returns the first deploy");
    let report = f.finish(&deploy).await;
    assert_eq!(report.status, DeployStatus::Success, "{:#?}", report.lines);
    assert_eq!(
        f.prod_runs(),
        [format!("prod {SHA} {}", f.ports.prod)],
        "the hook ran once, for prod, with the documented environment"
    );
    assert_eq!(
        std::fs::read_to_string(&deploy.exit_file).ok().as_deref(),
        Some("0\n")
    );
    let log = report.log_markdown("t");
    assert!(log.contains("deploy_status: SUCCESS"), "{log}");
    assert!(log.contains("prod: healthy after"), "{log}");
}

#[tokio::test]
async fn exit_0_without_a_healthy_prod_is_failed() {
    let f = Fixture::staged("exit 0", "").await;
    let deploy = f.own().start_detached("run-8", SHA).expect("started");
    let report = f.finish(&deploy).await;
    assert!(
        reason(&report).contains("the prod instance never became healthy"),
        "{}",
        reason(&report)
    );
}

#[tokio::test]
async fn every_other_ending_is_failed_and_says_which() {
    // Only exit 2 (misuse, configuration) is not the change's fault.
    for (body, expected, not_the_change) in [
        ("exit 1", "exited 1: the deploy failed", false),
        ("exit 2", "exited 2: misuse or configuration error", true),
        (
            "exit 5",
            "exited 5, which the hook contract does not define",
            false,
        ),
        ("kill -9 $$", "was killed by signal 9", false),
    ] {
        let f = Fixture::staged(body, "").await;
        let deploy = f.own().start_detached("run-9", SHA).expect("started");
        let report = f.finish(&deploy).await;
        assert!(
            reason(&report).contains(expected),
            "{body}: {}",
            reason(&report)
        );
        assert_eq!(report.infra_error, not_the_change, "{body}");
    }
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_killed_with_its_group() {
    let f = Fixture::staged("sleep 30 &\necho $! > app.pid\nwait", "timeout_secs = 1").await;
    let deploy = f.own().start_detached("run-10", SHA).expect("started");
    let started = Instant::now();
    let ended = wait_until_ended(f.own(), &deploy).await;
    assert!(
        matches!(ended, Ok(ExitOutcome::TimedOut { secs: 1 })),
        "{ended:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let wrapper = deploy.pid.expect("pid");
    assert!(
        !orch_process::group_is_alive(wrapper),
        "the hook's group is gone"
    );
}

#[tokio::test]
async fn a_hook_killed_with_its_wrapper_leaves_no_exit_code_and_is_failed() {
    let f = Fixture::staged("sleep 30", "").await;
    let deploy = f.own().start_detached("run-11", SHA).expect("started");
    let wrapper = wait_for_wrapper(&deploy).await;
    orch_process::kill_group(wrapper, Duration::from_millis(100))
        .await
        .expect("kill");
    let report = f.finish(&deploy).await;
    assert!(
        reason(&report).contains("ended without recording its exit code"),
        "{}",
        reason(&report)
    );
    assert!(
        report.infra_error,
        "a vanished deploy needs a person, not a new development"
    );
}

#[tokio::test]
async fn an_unvalidated_sha_or_a_bad_id_starts_nothing() {
    let f = Fixture::staged(START_APP, "").await;
    let other = "dddddddddddddddddddddddddddddddddddddddd";
    assert!(matches!(
        f.own().start_detached("run-12", other),
        Err(DeployError::NotValidated { .. })
    ));
    assert!(matches!(
        f.own().start_detached("../escape", SHA),
        Err(DeployError::InvalidDeployId { .. })
    ));
    assert!(f.prod_runs().is_empty(), "no hook ran");
}

#[tokio::test]
async fn a_self_deployed_app_that_dies_during_the_soak_is_failed() {
    let f = Fixture::staged(START_APP, "[soak]\nsecs = 3\ninterval_ms = 100").await;
    let deploy = f.own().start_detached("run-13", SHA).expect("started");
    let ended = wait_until_ended(f.own(), &deploy).await;
    let app_pid = f.worktree().join("app.pid");
    let port = f.ports.prod;
    // Once the app answers (and orch's probe with it), it dies during the soak.
    let killer = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while crate::support::get(port, "/healthz").await.is_err() {
            assert!(Instant::now() < deadline, "the app never answered");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let pid = read_pid(&app_pid).expect("the hook recorded the app's pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("kill the app");
    });
    let report = f
        .own()
        .conclude(&deploy, ended, &CancellationToken::new())
        .await;
    killer.await.expect("killer");
    let why = reason(&report);
    assert!(why.contains("3s soak window"), "{why}");
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("prod: healthy after")),
        "it was healthy before it died: {:#?}",
        report.lines
    );
}

#[tokio::test]
async fn a_self_deployed_app_that_stays_up_passes_its_soak() {
    let f = Fixture::staged(START_APP, "[soak]\nsecs = 1\ninterval_ms = 100").await;
    let deploy = f.own().start_detached("run-14", SHA).expect("started");
    let report = f.finish(&deploy).await;
    assert_eq!(report.status, DeployStatus::Success, "{:#?}", report.lines);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.contains("stayed healthy through its 1s soak window")),
        "{:#?}",
        report.lines
    );
}

#[tokio::test]
async fn a_new_detached_deploy_waits_until_the_previous_one_ended() {
    let f = Fixture::staged("sleep 30", "").await;
    let first = f.own().start_detached("run-20", SHA).expect("started");
    let busy = f.own().start_detached("run-21", SHA);
    assert!(
        matches!(&busy, Err(DeployError::DetachedBusy { id, .. }) if id == "run-20"),
        "{busy:?}"
    );
    assert_eq!(
        f.own()
            .start_detached("run-20", SHA)
            .expect("its own deploy"),
        first,
        "a deploy never waits for itself"
    );
    let wrapper = wait_for_wrapper(&first).await;
    orch_process::kill_group(wrapper, Duration::from_millis(100))
        .await
        .expect("kill");
    let second = f
        .own()
        .start_detached("run-21", SHA)
        .expect("the first one is gone");
    let next = wait_for_wrapper(&second).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.prod_runs().len() < 2 {
        assert!(Instant::now() < deadline, "the second hook never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    orch_process::kill_group(next, Duration::from_millis(100))
        .await
        .expect("kill");
}

/// `detach = "systemd-run"` insists on a unit of its own: without a running systemd (this
/// machine) the deploy does not start, and it is not the change's fault. `auto` falls back to a
/// new session and process group here, and the record says there is no unit.
#[tokio::test]
async fn a_deploy_that_needs_a_unit_does_not_start_without_systemd_and_auto_uses_setsid() {
    if orch_process::systemd_is_running() {
        return;
    }
    let f = Fixture::staged("exit 0", "detach = \"systemd-run\"").await;
    let error = f
        .own()
        .start_detached("run-1", SHA)
        .expect_err("no systemd here");
    assert!(error.to_string().contains("systemd-run"), "{error}");
    assert!(!error.caused_by_change(), "{error}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(f.prod_runs().is_empty(), "the hook never ran");

    let f = Fixture::staged("exit 0", "detach = \"auto\"").await;
    let deploy = f.own().start_detached("run-2", SHA).expect("started");
    assert_eq!(deploy.unit, None);
    assert!(deploy.pid.is_some());
    let report = f.finish(&deploy).await;
    assert_eq!(f.prod_runs().len(), 1, "{report:#?}");
}
