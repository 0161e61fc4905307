//! `orch bench`: N items through the full default pipeline with instant scripted agents on
//! SQLite, next to a shell script doing the same git and process work without orch, measured in
//! the same run. Reports throughput, orch's overhead per stage transition and peak memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use orch_core::transition::ItemStatus;
use tokio_util::sync::CancellationToken;

use crate::cli::BenchArgs;
use crate::context::Context;
use crate::kit;
use crate::settings::{ConfigFile, EngineSection, ProjectEntry, StoreSection};

/// Stage transitions per item in the default pipeline: eight stages and the merge.
const TRANSITIONS_PER_ITEM: u32 = 9;

pub async fn run(a: BenchArgs) -> anyhow::Result<i32> {
    if a.items == 0 {
        return Err(crate::error::UsageError("--items must be at least 1".into()).into());
    }
    let dir = tempfile::Builder::new()
        .prefix("orch-bench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let root = dir.path().to_path_buf();
    println!(
        "bench: {} items, {} stage run(s) at once, directory {}",
        a.items,
        a.parallel.max(1),
        root.display()
    );

    let (staging, prod) = (free_port()?, free_port()?);
    let repo = root.join("orch/repo");
    write_bench_repo(&repo).await?;
    let config = root.join("orch/orch.toml");
    write_bench_config(&config, staging, prod, a.parallel)?;
    let ctx = Context::open(&config, Arc::new(orch_engine::Silent)).await?;
    let project = orch_core::ProjectId::parse("bench")?;

    let t0 = Instant::now();
    for i in 1..=a.items {
        ctx.engine
            .create_item(&project, &format!("bench item {i}"), "")
            .await?;
    }
    let cancel = CancellationToken::new();
    loop {
        ctx.engine.run_until_idle(&cancel).await?;
        let items = ctx.engine.store().list_items(None).await?;
        let waiting: Vec<_> = items
            .iter()
            .filter(|i| i.progress.status == ItemStatus::AwaitingApproval)
            .collect();
        if waiting.is_empty() {
            break;
        }
        for i in waiting {
            ctx.engine.approve(&i.id, "bench").await?;
        }
    }
    let orch_secs = t0.elapsed().as_secs_f64();
    let items = ctx.engine.store().list_items(None).await?;
    let done = items
        .iter()
        .filter(|i| i.progress.status == ItemStatus::Done)
        .count();
    // Anything not done is shown with its reason: a bench that hides failures measures nothing.
    for i in items
        .iter()
        .filter(|i| i.progress.status != ItemStatus::Done)
        .take(5)
    {
        println!(
            "not done: {} at {} ({}): {}",
            i.id,
            i.progress.stage,
            i.progress.status.as_str(),
            i.blocked_reason.as_deref().unwrap_or("-")
        );
    }
    let peak_kib = peak_rss_kib();
    // The bench's directory goes away; its staging and prod instances must not outlive it.
    super::demo::stop_instances(&ctx, ctx.engine.project(&project)?).await;

    let base_repo = root.join("baseline/repo");
    write_bench_repo(&base_repo).await?;
    let script = root.join("baseline/baseline.sh");
    std::fs::write(&script, include_str!("../../kit/bench/baseline.sh"))?;
    let wts = root.join("baseline/worktrees");
    std::fs::create_dir_all(&wts)?;
    let t1 = Instant::now();
    let status = tokio::process::Command::new("sh")
        .arg(&script)
        .arg(&base_repo)
        .arg(&wts)
        .arg(a.items.to_string())
        .arg(free_port()?.to_string())
        .status()
        .await
        .context("cannot run the baseline script")?;
    let base_secs = t1.elapsed().as_secs_f64();
    if !status.success() {
        anyhow::bail!("the baseline script failed ({status}); nothing to compare against");
    }

    let n = f64::from(a.items);
    let transitions = n * f64::from(TRANSITIONS_PER_ITEM);
    println!();
    println!("{:<34} {:>12} {:>12}", "", "orch", "baseline");
    println!("{:<34} {:>12} {:>12}", "items done", done, a.items);
    println!(
        "{:<34} {:>12.2} {:>12.2}",
        "wall time (s)", orch_secs, base_secs
    );
    println!(
        "{:<34} {:>12.2} {:>12.2}",
        "items per second",
        n / orch_secs,
        n / base_secs
    );
    println!(
        "{:<34} {:>12.1} {:>12.1}",
        "ms per stage transition",
        orch_secs * 1000.0 / transitions,
        base_secs * 1000.0 / transitions
    );
    println!();
    println!(
        "ratio orch / baseline wall time:     {:.2}",
        orch_secs / base_secs
    );
    println!(
        "orch overhead per stage transition:  {:.1} ms",
        (orch_secs - base_secs) * 1000.0 / transitions
    );
    println!(
        "orch peak memory (VmHWM):            {} MiB",
        peak_kib / 1024
    );
    if a.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(if done == a.items as usize { 0 } else { 1 })
}

/// Writes the `orch.toml` of a bench: one project `bench` on SQLite, short health probes, and
/// `parallel` stage runs at once.
pub(super) fn write_bench_config(
    path: &Path,
    staging_port: u16,
    prod_port: u16,
    parallel: usize,
) -> anyhow::Result<()> {
    let file = ConfigFile {
        server: Default::default(),
        telemetry: Default::default(),
        store: StoreSection {
            url: "sqlite://orch.db".into(),
        },
        engine: EngineSection {
            max_parallel: parallel.max(1),
            ..EngineSection::default()
        },
        projects: vec![ProjectEntry {
            name: "bench".into(),
            repo: "repo".into(),
            staging_port,
            prod_port,
            health_tries: Some(200),
            health_interval_ms: Some(20),
            approvers: Vec::new(),
            approval_ttl_secs: None,
            reapprove_on_reintegration: false,
            sandbox: None,
            notify: Vec::new(),
            tracker: None,
            forge: None,
        }],
    };
    std::fs::write(path, toml::to_string_pretty(&file)?)?;
    Ok(())
}

pub(super) async fn write_bench_repo(repo: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo)?;
    let mut files = kit::orch_files(
        include_str!("../../kit/bench/agents.toml"),
        include_str!("../../kit/bench/deploy.toml"),
    );
    for (path, text) in &mut files {
        if path == ".orch/pipeline.toml" {
            *text = text.replace("run = \"cargo test --quiet\"", "run = \"true\"");
        }
    }
    files.push((
        ".orch/scenario.toml".into(),
        include_str!("../../kit/bench/scenario.toml").into(),
    ));
    files.push((
        "app.py".into(),
        include_str!("../../kit/bench/app.py").into(),
    ));
    files.push(("CHANGELOG.md".into(), "# Changelog\n".into()));
    kit::write_files(repo, &files, true)?;
    let git = orch_git::Repo::init(repo, "main").await?;
    git.commit_all(repo, "bench: initial").await?;
    Ok(())
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// Peak resident memory of this process, from /proc (Linux).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
