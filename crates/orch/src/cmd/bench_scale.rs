//! `orch bench --workers 1,2,4 [--postgres URL]`: how throughput scales with `orch worker`
//! processes. The same items (four projects, the default pipeline up to QA with instant scripted
//! agents, then the merge) are run by one worker on SQLite (the baseline) and by 1, 2, 4...
//! workers on a fresh PostgreSQL database each, all in one run. Reports items per second, the
//! speed-up over the baseline, claim latency (p50/p99, timed inside the workers) and each
//! worker's peak memory.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use orch_core::transition::ItemStatus;
use sqlx::Connection as _;

use crate::cli::BenchArgs;
use crate::settings::{ConfigFile, EngineSection, ProjectEntry, StoreSection};

const PROJECTS: [&str; 4] = ["bench-a", "bench-b", "bench-c", "bench-d"];
/// The stages kept from the default pipeline: deploys would serialize on each project's ports
/// and measure the deployer, not the claiming.
const STAGES: [&str; 5] = ["analysis", "architecture", "development", "review", "qa"];
const DRIVE_LIMIT: Duration = Duration::from_secs(30 * 60);

/// One measured configuration.
#[derive(Debug)]
struct Row {
    store: &'static str,
    workers: usize,
    done: usize,
    secs: f64,
    claim_p50_ms: Option<f64>,
    claim_p99_ms: Option<f64>,
    peak_rss_mib: u64,
}

pub async fn run(a: &BenchArgs, workers: &[usize]) -> anyhow::Result<i32> {
    if a.items == 0 || workers.contains(&0) {
        return Err(crate::error::UsageError(
            "--items and every --workers count must be at least 1".into(),
        )
        .into());
    }
    let dir = tempfile::Builder::new()
        .prefix("orch-bench-scale-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let root = dir.path().to_path_buf();
    let template = root.join("template");
    write_template(&template).await?;
    println!(
        "bench: {} items over {} projects, stages {} then merge; directory {}",
        a.items,
        PROJECTS.len(),
        STAGES.join(" > "),
        root.display()
    );

    let mut rows = Vec::new();
    rows.push(measure(a, &root, &template, "sqlite", None, 1).await?);
    match &a.postgres {
        Some(server) => {
            for &n in workers {
                let db = Database::create(server, n).await?;
                let row = measure(a, &root, &template, "postgres", Some(db.url.clone()), n).await;
                db.drop_now().await;
                rows.push(row?);
            }
        }
        None => println!(
            "no --postgres URL (or ORCH_BENCH_POSTGRES_URL): measuring SQLite only; PostgreSQL rows need a server"
        ),
    }

    let base = rows[0].secs;
    println!();
    println!(
        "| store | workers | items done | wall (s) | items/s | speed-up vs SQLite x1 | claim p50 (ms) | claim p99 (ms) | peak RSS per worker (MiB) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    for r in &rows {
        println!(
            "| {} | {} | {}/{} | {:.1} | {:.2} | {:.2} | {} | {} | {} |",
            r.store,
            r.workers,
            r.done,
            a.items,
            r.secs,
            f64::from(a.items) / r.secs,
            base / r.secs,
            ms(r.claim_p50_ms),
            ms(r.claim_p99_ms),
            r.peak_rss_mib
        );
    }
    if a.keep {
        println!("kept {}", dir.keep().display());
    }
    let all_done = rows.iter().all(|r| r.done == a.items as usize);
    Ok(if all_done { 0 } else { 1 })
}

/// Runs every item of a fresh data directory with `workers` worker processes.
async fn measure(
    a: &BenchArgs,
    root: &Path,
    template: &Path,
    store: &'static str,
    postgres_url: Option<String>,
    workers: usize,
) -> anyhow::Result<Row> {
    let data = root.join(format!("{store}-x{workers}"));
    std::fs::create_dir_all(&data)?;
    let mut file = ConfigFile {
        server: Default::default(),
        telemetry: Default::default(),
        store: StoreSection {
            url: postgres_url.unwrap_or_else(|| "sqlite://orch.db".into()),
        },
        engine: EngineSection {
            max_parallel: 1,
            lease_secs: 30,
            ..EngineSection::default()
        },
        projects: Vec::new(),
    };
    for (n, name) in PROJECTS.iter().enumerate() {
        let repo = format!("repo-{name}");
        copy_repo(template, &data.join(&repo)).await?;
        // Ports are required by the registry but never used: the bench pipeline does not deploy.
        let port = 40_000 + u16::try_from(n).unwrap_or(0) * 2;
        file.projects.push(ProjectEntry {
            name: (*name).into(),
            repo,
            staging_port: port,
            prod_port: port + 1,
            health_tries: None,
            health_interval_ms: None,
            approvers: Vec::new(),
            approval_ttl_secs: None,
            reapprove_on_reintegration: false,
            sandbox: None,
            notify: Vec::new(),
            tracker: None,
            forge: None,
        });
    }
    let config = data.join("orch.toml");
    std::fs::write(&config, toml::to_string_pretty(&file)?)?;

    let ctx =
        crate::context::Context::open(&config, std::sync::Arc::new(orch_engine::Silent)).await?;
    for i in 0..a.items {
        let project = orch_core::ProjectId::parse(PROJECTS[i as usize % PROJECTS.len()])?;
        ctx.engine
            .create_item(&project, &format!("bench item {}", i + 1), "")
            .await?;
    }
    let items_store = std::sync::Arc::clone(ctx.engine.store());
    drop(ctx);

    print!("{store} x{workers}: ");
    let exe = std::env::current_exe().context("cannot find the orch binary")?;
    let started = Instant::now();
    let mut children = Vec::new();
    for n in 1..=workers {
        let out = std::fs::File::create(data.join(format!("worker-{n}.out")))?;
        let err = std::fs::File::create(data.join(format!("worker-{n}.err")))?;
        children.push(
            tokio::process::Command::new(&exe)
                .arg("--config")
                .arg(&config)
                .args(["worker", "--poll-secs", "1"])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .kill_on_drop(true)
                .spawn()
                .context("cannot start orch worker")?,
        );
    }
    let mut done = 0;
    let mut last_note = Instant::now();
    while started.elapsed() < DRIVE_LIMIT {
        let items = items_store.list_items(None).await?;
        done = items
            .iter()
            .filter(|i| i.progress.status == ItemStatus::Done)
            .count();
        let stuck = items
            .iter()
            .filter(|i| {
                matches!(
                    i.progress.status,
                    ItemStatus::Blocked | ItemStatus::NeedsInfo | ItemStatus::Cancelled
                )
            })
            .count();
        if done + stuck == items.len() {
            break;
        }
        if last_note.elapsed() >= Duration::from_secs(5) {
            print!("{done}.. ");
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{done} done in {secs:.1} s");

    let mut peak_rss_mib = 0;
    for child in &children {
        if let Some(pid) = child.id() {
            peak_rss_mib = peak_rss_mib.max(peak_rss_kib(pid) / 1024);
        }
    }
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for (n, mut child) in children.into_iter().enumerate() {
        if let Some(pid) = child.id().filter(|p| *p > 1) {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
        let out =
            std::fs::read_to_string(data.join(format!("worker-{}.out", n + 1))).unwrap_or_default();
        if let Some((p50, p99)) = out.lines().rev().find_map(parse_claims) {
            p50s.push(p50);
            p99s.push(p99);
        }
    }
    p50s.sort_by(f64::total_cmp);
    Ok(Row {
        store,
        workers,
        done,
        secs,
        // The median of the workers' medians, and the worst worker's p99.
        claim_p50_ms: p50s.get(p50s.len() / 2).copied(),
        claim_p99_ms: p99s.into_iter().reduce(f64::max),
        peak_rss_mib,
    })
}

/// Reads `p50 1.2 ms, p99 8.4 ms` from a worker's last line.
fn parse_claims(line: &str) -> Option<(f64, f64)> {
    let rest = line.strip_prefix("orch worker: stopped after ")?;
    let number_after = |key: &str| -> Option<f64> {
        rest.split(key)
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some((number_after("p50 ")?, number_after("p99 ")?))
}

async fn write_template(repo: &Path) -> anyhow::Result<()> {
    super::bench::write_bench_repo(repo).await?;
    let path = repo.join(".orch/pipeline.toml");
    let text = std::fs::read_to_string(&path)?;
    let mut doc: toml::Table = toml::from_str(&text)?;
    let Some(toml::Value::Array(stages)) = doc.get_mut("stages") else {
        bail!("the bench pipeline has no stages");
    };
    stages.retain(|s| {
        s.get("name")
            .and_then(|n| n.as_str())
            .is_some_and(|n| STAGES.contains(&n))
    });
    for stage in stages.iter_mut() {
        if stage.get("name").and_then(|n| n.as_str()) == Some("qa")
            && let Some(t) = stage.as_table_mut()
        {
            t.insert("on_pass".into(), toml::Value::String("done".into()));
        }
    }
    std::fs::write(&path, toml::to_string(&doc)?)?;
    let git = orch_git::Repo::open(repo).await?;
    git.commit_all(repo, "bench: stop after qa").await?;
    Ok(())
}

async fn copy_repo(template: &Path, to: &Path) -> anyhow::Result<()> {
    let status = tokio::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(template)
        .arg(to)
        .status()
        .await
        .context("cannot run git clone")?;
    if !status.success() {
        bail!("git clone of the bench repository failed ({status})");
    }
    Ok(())
}

/// Peak resident memory of process `pid`, from /proc (Linux); 0 when unknown.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A database of its own on the server, for one configuration.
struct Database {
    server: String,
    name: String,
    url: String,
}

impl Database {
    async fn create(server: &str, workers: usize) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("orch_bench_x{workers}_{}_{nanos}", std::process::id());
        let mut conn = sqlx::PgConnection::connect(server)
            .await
            .with_context(|| format!("cannot connect to {}", orch_store::masked_url(server)))?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .context("cannot create the bench database")?;
        conn.close().await.ok();
        let url = with_database(server, &name);
        Ok(Self {
            server: server.to_owned(),
            name,
            url,
        })
    }

    async fn drop_now(&self) {
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.server).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// `url` naming database `name` instead of its own.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_claim_line_of_a_worker() {
        assert_eq!(
            parse_claims("orch worker: stopped after 40 claims, p50 1.2 ms, p99 8.4 ms"),
            Some((1.2, 8.4))
        );
        assert_eq!(
            parse_claims("orch worker: stopped after 0 claims, p50 -, p99 -"),
            None
        );
        assert_eq!(
            with_database("postgres://orch@127.0.0.1:55432/orch?sslmode=disable", "b1"),
            "postgres://orch@127.0.0.1:55432/b1?sslmode=disable"
        );
    }
}
