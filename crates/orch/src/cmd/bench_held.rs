//! `orch bench --held N`: N items in flight at once in one `orch serve` (this binary, a loopback
//! port, SQLite), their agents asleep. Items are made ready one after another through the JSON
//! API, each waiting for its agent to start. Reports orch's resident memory (VmRSS of the serve
//! process alone, not its children) and open file descriptors idle, with one item held and with
//! N held, and ready -> agent started at that load (p50, p99), against the first item's.
//!
//! It must leave no process behind: after stopping serve it checks every agent it started is
//! gone (and kills, by pid, any that is not, reporting the failure).

use std::time::Duration;

use anyhow::Context as _;

use super::bench_serve::{
    self as serve, STAMP, Secrets, Serve, fd_count, now_ns, percentile, rss_kib, still_running,
    wait_stamp,
};
use crate::cli::BenchArgs;

/// The target for N = 500: orch's own resident memory.
const TARGET_RSS_MIB: u64 = 150;
/// How long one item may take to start its agent before the bench gives up.
const START_LIMIT: Duration = Duration::from_secs(120);
/// Latency "at load" is over the last items made ready (each with all before it held).
const AT_LOAD: usize = 50;

/// orch's footprint at one moment.
struct Reading {
    label: String,
    rss_kib: u64,
    /// `None` when /proc/PID/fd is not readable (not root).
    fds: Option<usize>,
    p50_ms: f64,
    p99_ms: f64,
}

pub async fn run(a: &BenchArgs) -> anyhow::Result<i32> {
    let n = a.held.context("--held N is required")?;
    let (dir, root, stamps) = serve::scratch("orch-bench-held-")?;
    println!(
        "bench: {n} items held at once (agents asleep) in one orch serve; directory {}",
        root.display()
    );
    // `exec`: the stamp's pid is the sleeping agent itself, which the end checks is gone.
    let agent = format!("{STAMP}\nexec sleep 600\n");
    let orch_dir = root.join("orch");
    std::fs::create_dir_all(&orch_dir)?;
    // Every item must run at once: room for all of them, and a few more.
    let parallel = usize::try_from(n)? + 4;
    let config = serve::write_project(&orch_dir, &agent, &stamps, parallel, None).await?;
    let secrets = Secrets::new();
    let server = Serve::start(&config, &orch_dir, &secrets).await?;

    let mut pids = Vec::new();
    let measured = measure(n, &server, &secrets, &stamps, &mut pids).await;
    let stopped = server.stop().await;
    // Whatever happened above, no agent may outlive the bench.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let left = still_running(&pids, "sleep");
    for pid in &left {
        if let Ok(pid) = i32::try_from(*pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let readings = measured?;
    stopped.context("stopping orch serve")?;

    println!();
    println!("| orch serve | RSS (MiB) | open fds | ready -> agent started p50 (ms) | p99 (ms) |");
    println!("|---|---:|---:|---:|---:|");
    for r in &readings {
        let ms = |v: f64| {
            if v.is_nan() {
                "-".to_owned()
            } else {
                format!("{v:.1}")
            }
        };
        println!(
            "| {} | {:.1} | {} | {} | {} |",
            r.label,
            r.rss_kib as f64 / 1024.0,
            r.fds.map_or("-".to_owned(), |n| n.to_string()),
            ms(r.p50_ms),
            ms(r.p99_ms)
        );
    }
    if readings.iter().any(|r| r.fds.is_none()) {
        println!("(open fds: -, /proc/PID/fd of a non-dumpable orch is readable by root only)");
    }
    let last = readings.last().context("no reading")?;
    println!();
    println!(
        "orch RSS with {n} held: {:.1} MiB (target <= {TARGET_RSS_MIB} MiB for 500)",
        last.rss_kib as f64 / 1024.0
    );
    println!(
        "agents left running after orch stopped: {} of {}",
        left.len(),
        pids.len()
    );
    if a.keep {
        println!("kept {}", dir.keep().display());
    }
    Ok(if left.is_empty() && pids.len() == n as usize {
        0
    } else {
        1
    })
}

/// Makes the items ready one by one; readings idle, at one held and at `n` held.
async fn measure(
    n: u32,
    server: &Serve,
    secrets: &Secrets,
    stamps: &std::path::Path,
    pids: &mut Vec<u32>,
) -> anyhow::Result<Vec<Reading>> {
    let reading = |label: String, latencies: &[f64]| -> anyhow::Result<Reading> {
        Ok(Reading {
            label,
            rss_kib: rss_kib(server.pid)?,
            fds: fd_count(server.pid),
            p50_ms: percentile(latencies, 50.0),
            p99_ms: percentile(latencies, 99.0),
        })
    };
    // Idle: the server up, its first engine pass over.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut readings = vec![reading("idle, 0 held".into(), &[])?];
    let mut latencies = Vec::new();
    for i in 1..=n {
        let t0 = now_ns();
        let id = server
            .create_item(&secrets.api_token, &format!("bench held item {i}"))
            .await?;
        let stamp = wait_stamp(stamps, &id, START_LIMIT).await?;
        pids.push(stamp.pid);
        latencies.push(stamp.ns.saturating_sub(t0) as f64 / 1e6);
        if i == 1 {
            readings.push(reading("1 held".into(), &latencies)?);
        }
        if i % 100 == 0 {
            println!("  {i}/{n} held");
        }
    }
    // Let the last runs settle into their steady state (leases renewed, logs open).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tail = &latencies[latencies.len().saturating_sub(AT_LOAD)..];
    readings.push(reading(format!("{n} held"), tail)?);
    Ok(readings)
}
