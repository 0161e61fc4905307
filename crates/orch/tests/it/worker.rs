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

/// Two workers, each allowed two runs at once, share `[engine] max_running = 1`: the store lets
/// only one run be held at a time across both processes, so no two runs' lifetimes overlap.
/// (Without the limit, the first two items' analysis runs overlap.)
#[test]
fn a_global_limit_holds_across_worker_processes() {
    const ITEMS: usize = 4;
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let text = std::fs::read_to_string(&config).expect("orch.toml");
    std::fs::write(
        &config,
        text.replace("max_parallel = 2\n", "max_parallel = 2\nmax_running = 1\n"),
    )
    .expect("orch.toml");
    for n in 0..ITEMS {
        orch.ok(&["item", "add", "--title", &format!("limited {n}")]);
    }
    let mut workers: Vec<_> = (0..2)
        .map(|_| {
            orch.command(&["worker", "--poll-secs", "1"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("worker starts")
        })
        .collect();
    let ids: Vec<String> = (1..=ITEMS).map(|n| format!("QUICK-{n}")).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ids
        .iter()
        .all(|id| orch.item(id)["status"] == "awaiting-approval")
    {
        if Instant::now() > deadline {
            for w in &mut workers {
                let _ = w.kill();
            }
            panic!("the workers did not bring every item to confirm-deploy in 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let mut spans: Vec<(i64, i64, String)> = Vec::new();
    for id in &ids {
        for run in orch.item(id)["runs"].as_array().expect("runs") {
            if let (Some(start), Some(end)) =
                (run["started_at"].as_i64(), run["finished_at"].as_i64())
            {
                spans.push((start, end, format!("{id} {}", run["stage"])));
            }
        }
    }
    spans.sort();
    assert!(
        spans.len() >= ITEMS * 5,
        "every item ran its stages: {spans:?}"
    );
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two runs were held at once despite max_running = 1: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}
