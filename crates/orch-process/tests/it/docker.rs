//! What the docker runtime must do besides the hostile suite it shares with bubblewrap
//! (`sandbox.rs`): leave no container behind whatever ends the run, keep the child's environment
//! off every command line, give the folders it handed to the sandbox's uid back.

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use orch_process::{ExitOutcome, Finished, Limits, Policy, Sandbox, Spec};
use tokio_util::sync::CancellationToken;

use crate::{Recorder, docker_here};

fn docker_sandbox() -> Sandbox {
    Sandbox::Docker(Policy {
        limits: Limits {
            memory_mib: Some(256),
            processes: Some(64),
            file_mib: Some(64),
        },
        ..Policy::default()
    })
}

/// The containers (running or not) whose command holds `marker`: the test's own, even where
/// other tests of this process start containers at the same time.
fn containers_running(marker: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.Names}} {{.Command}}",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(marker))
        .map(str::to_owned)
        .collect()
}

/// Every command line on the host, each with its arguments joined by spaces.
fn command_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let mut raw = Vec::new();
        if std::fs::File::open(entry.path().join("cmdline"))
            .and_then(|mut f| f.read_to_end(&mut raw))
            .is_ok()
            && !raw.is_empty()
        {
            lines.push(String::from_utf8_lossy(&raw).replace('\0', " "));
        }
    }
    lines
}

async fn run(spec: &Spec) -> (Finished, String) {
    let mut recorder = Recorder::default();
    let finished = orch_process::run(spec, &CancellationToken::new(), &mut recorder).await;
    (finished, recorder.stdout().join("\n"))
}

#[tokio::test]
async fn a_run_that_times_out_leaves_no_container_and_no_process() {
    if !docker_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The shell, pid 1, ignores SIGTERM: only removing the container ends it.
    let seconds = 4000 + std::process::id() % 1000;
    let marker = format!("sleep {seconds}");
    let spec = Spec {
        timeout: Duration::from_secs(3),
        kill_grace: Duration::from_millis(300),
        ..Spec::new("sh", dir.path())
    }
    .args(["-c", &format!("echo started; {marker}; echo never")])
    .sandbox(docker_sandbox());
    let (finished, out) = run(&spec).await;
    assert_eq!(finished.outcome, ExitOutcome::TimedOut { secs: 3 }, "{out}");
    assert!(out.contains("started"), "{out}");
    let left = containers_running(&marker);
    assert!(left.is_empty(), "{left:?}");
    let alive = command_lines()
        .into_iter()
        .filter(|l| l.contains(&marker))
        .collect::<Vec<_>>();
    assert!(alive.is_empty(), "still running: {alive:?}");
}

#[tokio::test]
async fn the_environment_is_on_no_command_line_and_its_file_is_deleted() {
    if !docker_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = format!("secret-value-{}", std::process::id());
    let spec = Spec {
        timeout: Duration::from_secs(20),
        ..Spec::new("sh", dir.path())
    }
    .args(["-c", "sleep 2; echo \"inside: $ORCH_TEST_SECRET\""])
    .env("ORCH_TEST_SECRET", &secret)
    .sandbox(docker_sandbox());
    let watching = secret.clone();
    // This run's docker CLI: the one whose arguments hold this script.
    let mine = "inside: $ORCH_TEST_SECRET";
    let watcher = std::thread::spawn(move || {
        // Every command line while the run lasts: none may hold the value; the docker CLI's
        // names the environment file.
        let until = std::time::Instant::now() + Duration::from_secs(4);
        let (mut leaked, mut env_file, mut cli) = (Vec::new(), None, None);
        while std::time::Instant::now() < until {
            for line in command_lines() {
                if line.contains(&watching) {
                    leaked.push(line.clone());
                }
                if !line.contains(mine) {
                    continue;
                }
                cli = Some(line.clone());
                if let Some(rest) = line.split("--env-file ").nth(1) {
                    env_file = rest.split(' ').next().map(PathBuf::from);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (leaked, env_file, cli)
    });
    let (finished, out) = run(&spec).await;
    let (leaked, env_file, cli) = watcher.join().expect("watcher");
    assert_eq!(finished.outcome, ExitOutcome::Exited(0), "{out}");
    assert!(out.contains(&format!("inside: {secret}")), "{out}");
    assert!(leaked.is_empty(), "on a command line: {leaked:?}");
    // The flags the sandbox's containment rests on, and never a registry.
    let cli = cli.expect("the docker CLI was seen");
    for flag in [
        "--pull never",
        "--network none",
        "--cap-drop ALL",
        "--security-opt no-new-privileges",
        "--read-only",
    ] {
        assert!(cli.contains(flag), "{flag} missing: {cli}");
    }
    assert!(!cli.contains("docker.sock"), "{cli}");
    let env_file = env_file.expect("the docker CLI was seen with its --env-file");
    assert!(!env_file.exists(), "{} was left", env_file.display());
}

#[tokio::test]
async fn what_the_sandbox_wrote_is_given_back_to_the_work_trees_owner() {
    use std::os::unix::fs::MetadataExt;
    if !docker_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let owner = std::fs::metadata(dir.path()).expect("meta").uid();
    let spec = Spec::new("sh", dir.path())
        .args(["-c", "mkdir -p sub && echo x > sub/file && id -u"])
        .sandbox(docker_sandbox());
    let (finished, out) = run(&spec).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0), "{out}");
    // Not root inside, whoever runs orch.
    assert_ne!(out.trim(), "0", "{out}");
    for path in [dir.path().to_owned(), dir.path().join("sub/file")] {
        let uid = std::fs::metadata(&path).expect("meta").uid();
        assert_eq!(uid, owner, "{} belongs to {uid}", path.display());
    }
}

#[tokio::test]
async fn the_container_of_a_gone_orch_is_removed_by_the_next_run() {
    if !docker_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec::new("true", dir.path()).sandbox(docker_sandbox());
    let (finished, _) = run(&spec).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    // A container as an orch killed mid-run leaves it: its pid (above the kernel's pid_max)
    // runs nothing.
    let images = Command::new("docker")
        .args([
            "images",
            "orch-sandbox",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .output()
        .expect("docker images");
    let image = String::from_utf8_lossy(&images.stdout)
        .lines()
        .next()
        .expect("the sandbox's image")
        .to_owned();
    let stale = format!("orch-sandbox-99999999-{}-0", std::process::id());
    let started = Command::new("docker")
        .args(["run", "-d", "--rm", "--network", "none", "--name", &stale])
        .args(["--mount", "type=bind,src=/usr,dst=/usr,readonly", &image])
        .args(["/usr/bin/sleep", "600"])
        .output()
        .expect("docker run");
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let exists = |name: &str| {
        let out = Command::new("docker")
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|n| n == name)
    };
    assert!(exists(&stale));
    let (finished, _) = run(&spec).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    let gone = crate::eventually(|| !exists(&stale));
    if !gone {
        let _ = Command::new("docker").args(["rm", "-f", &stale]).output();
    }
    assert!(gone, "{stale} was not removed");
}

#[tokio::test]
async fn a_dropped_run_removes_its_container_and_gives_the_tree_back() {
    use std::os::unix::fs::MetadataExt;
    if !docker_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let owner = std::fs::metadata(dir.path()).expect("meta").uid();
    let marker = format!("sleep {}", 5000 + std::process::id() % 1000);
    let spec = Spec::new("sh", dir.path())
        .args(["-c", &format!("echo x > early; {marker}")])
        .sandbox(docker_sandbox());
    // The caller gives up on the run (its future is dropped) while the container runs.
    let early = dir.path().join("early");
    let cancel = CancellationToken::new();
    let mut observer = ();
    let dropped = tokio::time::timeout(Duration::from_secs(20), async {
        let run = orch_process::run(&spec, &cancel, &mut observer);
        tokio::pin!(run);
        loop {
            tokio::select! {
                _ = &mut run => panic!("the run ended by itself"),
                () = tokio::time::sleep(Duration::from_millis(50)) => {
                    if early.exists() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(dropped.is_ok(), "the container never started");
    assert!(
        crate::eventually(|| containers_running(&marker).is_empty()),
        "{:?}",
        containers_running(&marker)
    );
    assert!(
        crate::eventually(|| std::fs::metadata(&early).is_ok_and(|m| m.uid() == owner)),
        "the tree was not given back"
    );
}

#[tokio::test]
async fn processes_that_fill_the_containers_memory_together_are_stopped_and_named() {
    if !docker_here() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Two processes, each within the per-process limit (RLIMIT_DATA 256 MiB), together past
    // the container's 256 MiB: the kernel's OOM killer ends one of them.
    // (Bytes written, not a zeroed allocation: untouched pages use no memory.)
    let fill = "python3 -c 'import time; b = b\"x\" * (180 << 20); time.sleep(5)'";
    // The shell exits with the status of the one that was killed (128 + 9), as a test runner
    // whose worker was killed would fail.
    let script = format!(
        "{fill} & bg=$!; {fill}; fg=$?; wait $bg; bgs=$?; \
         [ $fg = 0 ] && [ $bgs = 0 ] && echo ESCAPED both allocated; \
         [ $fg != 0 ] && exit $fg; exit $bgs"
    );
    let spec = Spec {
        timeout: Duration::from_secs(30),
        ..Spec::new("sh", dir.path())
    }
    .args(["-c", &script])
    .sandbox(docker_sandbox());
    let (finished, out) = run(&spec).await;
    assert!(!out.contains("ESCAPED"), "{finished:?}\n{out}");
    assert!(
        finished
            .tail
            .contains("container's memory limit of 256 MiB"),
        "{finished:?}"
    );
}
