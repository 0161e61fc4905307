//! orch's own process is not dumpable: a process of the same user (an agent run without a
//! sandbox, a deploy hook) cannot read its memory or `/proc/<pid>/environ`, where the API token
//! and the forge tokens are.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{BIN, Orch, free_port};

const SECRET: &str = "dumpable-test-secret";
/// The user both processes run as when the test runs as root (root reads every environ).
const NOBODY: &str = "65534";

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` as the unprivileged test user (as root) or as it is.
fn as_user(program: &str) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            program,
        ]);
        c
    } else {
        Command::new(program)
    }
}

/// What a same-user process gets reading `/proc/<pid>/environ`: the text, or `None` if refused.
fn read_environ(pid: u32) -> Option<String> {
    let out = as_user("cat")
        .arg(format!("/proc/{pid}/environ"))
        .output()
        .expect("cat runs");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn a_same_user_process_cannot_read_orchs_environment() {
    // The check can fail: a dumpable process of the same user is readable.
    let mut sleeper = as_user("sleep")
        .arg("30")
        .env("SLEEPER_SECRET", SECRET)
        .spawn()
        .expect("sleep");
    std::thread::sleep(Duration::from_millis(200));
    let seen = read_environ(sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(
        seen.is_some_and(|s| s.contains(SECRET)),
        "precondition: a dumpable process's environ is readable by its user"
    );

    let orch = Orch::new(None);
    if is_root() {
        let chown = Command::new("chown")
            .args(["-R", &format!("{NOBODY}:{NOBODY}")])
            .arg(orch.path())
            .status()
            .expect("chown");
        assert!(chown.success());
    }
    let port = free_port();
    let mut child = as_user(BIN)
        .arg("--config")
        .arg(orch.path().join("orch.toml"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("ORCH_API_TOKEN", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orch serve starts");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "orch serve never listened"
        );
        assert!(
            child.try_wait().expect("try_wait").is_none(),
            "orch serve exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = read_environ(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.is_none(),
        "orch's environment was readable: {:?}",
        seen.map(|s| s.contains(SECRET))
    );
}
