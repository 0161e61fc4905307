//! `orch worker` on the default SQLite store: it picks up filed items without `orch run`, and
//! stops cleanly on SIGTERM.

use std::time::{Duration, Instant};

use crate::harness::Orch;

#[test]
fn worker_runs_items_until_sigterm() {
    let orch = Orch::new(None);
    orch.ok(&["item", "add", "--title", "picked up by a worker"]);
    let mut child = orch
        .command(&["worker", "--poll-secs", "1"])
        .spawn()
        .expect("worker starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while orch.item("QUICK-1")["status"] != "awaiting-approval" {
        assert!(
            Instant::now() < deadline,
            "the worker never brought the item to confirm-deploy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    orch.ok(&["approve", "QUICK-1", "--by", "tester"]);
    while orch.item("QUICK-1")["status"] != "done" {
        assert!(
            Instant::now() < deadline,
            "the worker never finished the item after approval"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let stop = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > stop {
            let _ = child.kill();
            panic!("the worker did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "the worker exits 0 on SIGTERM: {status:?}"
    );
    crate::harness::assert_clean_history(&orch.item("QUICK-1"));
}
