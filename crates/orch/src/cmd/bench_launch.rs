//! `orch bench --launch N`: how long from an item made ready to its agent process started, in a
//! real `orch serve` (this binary, a loopback port, SQLite). N items are made ready one after
//! another through the JSON API (`POST /api/v1/items`) and N through a signed Gitea webhook
//! (an issue labelled `state/Ready`), each waiting for its agent's first act: writing the clock
//! to a stamp file. The floor, measured in the same run and interleaved with them, is what no
//! orchestrator can avoid: `git worktree add` plus spawning the same command. Prints p50, p99
//! and the ratio of orch's p99 to the floor's.
//!
//! It never reaches beyond loopback (the tracker the webhooks name is a local stand-in) and
//! leaves no process behind.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};

use super::bench_serve::{self as serve, STAMP, Secrets, Serve, now_ns, percentile, wait_stamp};
use crate::cli::BenchArgs;

/// The target: orch's p99 at most this many times the floor's.
const TARGET_RATIO: f64 = 1.2;
/// How long one item may take to start its agent before the bench gives up.
const START_LIMIT: Duration = Duration::from_secs(60);

/// ready -> started, in milliseconds, per path.
#[derive(Debug, Default)]
struct Samples {
    api: Vec<f64>,
    webhook: Vec<f64>,
    floor: Vec<f64>,
}

pub async fn run(a: &BenchArgs) -> anyhow::Result<i32> {
    let n = a.launch.context("--launch N is required")?;
    let (dir, root, stamps) = serve::scratch("orch-bench-launch-")?;
    println!(
        "bench: {n} items made ready through the API, {n} through a signed webhook, {n} floor launches; directory {}",
        root.display()
    );

    let agent = format!(
        "{STAMP}\nmkdir -p \"$ORCH_ARTIFACT_DIR\"\nprintf -- '---\\nanalysis_status: READY\\n---\\n' > \"$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT\"\n"
    );
    let tracker = serve::start_tracker_stand_in().await?;
    let orch_dir = root.join("orch");
    std::fs::create_dir_all(&orch_dir)?;
    let config = serve::write_project(
        &orch_dir,
        &agent,
        &stamps,
        a.parallel.max(4),
        Some(&tracker),
    )
    .await?;
    let floor = Floor::new(&root, &orch_dir.join("repo"), &agent, &stamps).await?;
    let secrets = Secrets::new();
    let server = Serve::start(&config, &orch_dir, &secrets).await?;

    let measured = measure(n, &server, &secrets, &floor, &stamps).await;
    let stopped = server.stop().await;
    let samples = measured?;
    stopped.context("stopping orch serve")?;

    let floor_p99 = percentile(&samples.floor, 99.0);
    println!();
    println!("| path | items | p50 (ms) | p99 (ms) | max (ms) | p99 / floor p99 |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, values) in [
        ("JSON API", &samples.api),
        ("signed webhook (Gitea)", &samples.webhook),
        ("floor: git worktree add + spawn", &samples.floor),
    ] {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {:.2} |",
            values.len(),
            percentile(values, 50.0),
            percentile(values, 99.0),
            percentile(values, 100.0),
            percentile(values, 99.0) / floor_p99
        );
    }
    let worst = percentile(&samples.api, 99.0).max(percentile(&samples.webhook, 99.0));
    println!();
    println!(
        "ratio p99 / floor p99 (the worse path): {:.2} (target <= {TARGET_RATIO})",
        worst / floor_p99
    );
    if a.keep {
        println!("kept {}", dir.keep().display());
    }
    Ok(0)
}

/// Makes item `i` ready through the API, then through the webhook, then launches the floor's
/// `i`-th command: the three paths see the same moment of the machine's load.
async fn measure(
    n: u32,
    server: &Serve,
    secrets: &Secrets,
    floor: &Floor,
    stamps: &Path,
) -> anyhow::Result<Samples> {
    let mut s = Samples::default();
    let ms = |from: u128, to: u128| (to.saturating_sub(from)) as f64 / 1e6;
    for i in 1..=n {
        let t0 = now_ns();
        let id = server
            .create_item(&secrets.api_token, &format!("bench api item {i}"))
            .await?;
        let stamp = wait_stamp(stamps, &id, START_LIMIT).await?;
        s.api.push(ms(t0, stamp.ns));
        server
            .wait_finished(&secrets.api_token, &id, START_LIMIT)
            .await?;

        let before = list_stamps(stamps)?;
        let t0 = now_ns();
        server.ready_by_webhook(&secrets.webhook_secret, i).await?;
        let id = new_stamp(stamps, &before).await?;
        let stamp = wait_stamp(stamps, &id, START_LIMIT).await?;
        s.webhook.push(ms(t0, stamp.ns));
        server
            .wait_finished(&secrets.api_token, &id, START_LIMIT)
            .await?;

        floor.sync().await?;
        let t0 = now_ns();
        let name = floor.launch(i).await?;
        let stamp = wait_stamp(stamps, &name, START_LIMIT).await?;
        s.floor.push(ms(t0, stamp.ns));
        floor.remove(&name).await?;
        if i % 50 == 0 {
            println!("  {i}/{n}");
        }
    }
    Ok(s)
}

fn list_stamps(stamps: &Path) -> anyhow::Result<std::collections::BTreeSet<String>> {
    Ok(std::fs::read_dir(stamps)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect())
}

/// The name of the stamp that appears beside `before` (the webhook's item id is orch's choice).
async fn new_stamp(
    stamps: &Path,
    before: &std::collections::BTreeSet<String>,
) -> anyhow::Result<String> {
    let started = std::time::Instant::now();
    loop {
        if let Some(name) = list_stamps(stamps)?
            .into_iter()
            .find(|s| !before.contains(s))
        {
            return Ok(name);
        }
        if started.elapsed() > START_LIMIT {
            bail!(
                "no agent started for the webhook's item within {} s",
                START_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// The floor: a clone of the bench repository where each launch is `git worktree add` of a
/// new branch, then the agent's command spawned in it. Before each launch (untimed) it fetches
/// orch's default branch, so its checkout holds the same tree as orch's (which grows by one
/// artifact per item merged).
struct Floor {
    origin: std::path::PathBuf,
    repo: std::path::PathBuf,
    worktrees: std::path::PathBuf,
    agent: String,
    stamps: std::path::PathBuf,
}

impl Floor {
    async fn new(root: &Path, template: &Path, agent: &str, stamps: &Path) -> anyhow::Result<Self> {
        let repo = root.join("floor/repo");
        let status = tokio::process::Command::new("git")
            .args(["clone", "-q"])
            .arg(template)
            .arg(&repo)
            .status()
            .await
            .context("cannot run git clone")?;
        if !status.success() {
            bail!("git clone of the bench repository failed ({status})");
        }
        let worktrees = root.join("floor/worktrees");
        std::fs::create_dir_all(&worktrees)?;
        Ok(Self {
            origin: template.to_owned(),
            repo,
            worktrees,
            agent: agent.to_owned(),
            stamps: stamps.to_owned(),
        })
    }

    /// Fetches orch's default branch into `refs/remotes/orch/main`, the floor's start point.
    async fn sync(&self) -> anyhow::Result<()> {
        let status = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(["fetch", "-q"])
            .arg(&self.origin)
            .arg("+main:refs/remotes/orch/main")
            .status()
            .await
            .context("cannot run git fetch")?;
        if !status.success() {
            bail!("git fetch of orch's default branch failed ({status})");
        }
        Ok(())
    }

    /// Removes launch `name`'s work tree (untimed), as orch removes a finished item's.
    async fn remove(&self, name: &str) -> anyhow::Result<()> {
        let status = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(["worktree", "remove", "--force"])
            .arg(self.worktrees.join(name))
            .status()
            .await
            .context("cannot run git worktree remove")?;
        if !status.success() {
            bail!("git worktree remove failed ({status})");
        }
        Ok(())
    }

    /// Launch `i`; returns the name its stamp will have.
    async fn launch(&self, i: u32) -> anyhow::Result<String> {
        let name = format!("floor-{i}");
        let worktree = self.worktrees.join(&name);
        let status = tokio::process::Command::new("git")
            .arg("-C")
            .arg(&self.repo)
            .args(["worktree", "add", "-q", "--no-track", "-b", &name])
            .arg(&worktree)
            .arg("refs/remotes/orch/main")
            .status()
            .await
            .context("cannot run git worktree add")?;
        if !status.success() {
            bail!("git worktree add failed ({status})");
        }
        let artifacts = worktree.join("docs/work-items").join(&name);
        let status = tokio::process::Command::new("sh")
            .args(["-c", &self.agent, "sh"])
            .arg(&self.stamps)
            .current_dir(&worktree)
            .env("ORCH_ITEM_ID", &name)
            .env("ORCH_ARTIFACT_DIR", &artifacts)
            .env("ORCH_ARTIFACT", "01-analysis.md")
            .stdin(std::process::Stdio::null())
            .status()
            .await
            .context("cannot spawn the floor's command")?;
        if !status.success() {
            bail!("the floor's command failed ({status})");
        }
        Ok(name)
    }
}
