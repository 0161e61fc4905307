//! `orch bench`: N items through the full default pipeline with instant scripted agents on
//! SQLite, next to a shell script doing the same git and process work without orch, measured in
//! the same run. Reports throughput, orch's overhead per stage transition (sandbox off, as the
//! baseline has none), the sandbox's own cost per transition and peak memory.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use orch_core::transition::ItemStatus;
use tokio_util::sync::CancellationToken;

use crate::cli::{BenchArgs, BenchSandbox};
use crate::context::Context;
use crate::kit;
use crate::settings::{ConfigFile, EngineSection, ProjectEntry, SandboxEntry, StoreSection};

/// Stage transitions per item in the default pipeline: eight stages and the merge.
pub(super) const TRANSITIONS_PER_ITEM: u32 = 9;

/// What one side of the bench measured.
pub(super) struct Side {
    pub secs: f64,
    pub done: usize,
    /// CPU seconds orch's own process spent (every thread: the engine, SQLite, tokio), and
    /// those of the processes it started and waited for (git, gates, deploys), during the run.
    pub cpu: Option<(f64, f64)>,
    /// Staging runs beyond one per item: 0 when the items ran one after another.
    pub revalidations: usize,
    /// Files in the default branch at the end: equal on both sides when the baseline did the
    /// same file work (every git step costs more with more files).
    pub files: usize,
}

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
    if a.sandbox != BenchSandbox::On {
        println!(
            "bench: the comparison run is NOT sandboxed (as the baseline); its per-run warnings \
             are not printed"
        );
    }
    // The sides take turns, a few items each, so that a change in what else the machine does
    // falls on all of them alike instead of on whichever ran at that moment.
    let mut unconfined = match a.sandbox {
        BenchSandbox::On => None,
        _ => Some(OrchSide::open(&root.join("orch"), a.parallel, false, None).await?),
    };
    let mut sandboxed = match a.sandbox {
        BenchSandbox::Off => None,
        _ => Some(OrchSide::open(&root.join("orch-sandbox"), a.parallel, true, None).await?),
    };
    let mut baseline = BaselineSide::open(&root.join("baseline"), None).await?;
    let mut left = a.items;
    while left > 0 {
        let round = left.min(ROUND);
        for side in [unconfined.as_mut(), sandboxed.as_mut()]
            .into_iter()
            .flatten()
        {
            side.run(round).await?;
        }
        baseline.run(round).await?;
        left -= round;
    }
    let peak_kib = peak_rss_kib();
    let unconfined = match unconfined {
        Some(side) => Some(side.finish().await?),
        None => None,
    };
    let sandboxed = match sandboxed {
        Some(side) => Some(side.finish().await?),
        None => None,
    };
    let base = baseline.finish().await?;

    let n = f64::from(a.items);
    let transitions = n * f64::from(TRANSITIONS_PER_ITEM);
    let per_transition = |secs: f64| secs * 1000.0 / transitions;
    let sides: Vec<(&str, &Side)> = [
        ("orch", unconfined.as_ref()),
        ("orch+sandbox", sandboxed.as_ref()),
        ("baseline", Some(&base)),
    ]
    .into_iter()
    .filter_map(|(name, side)| side.map(|s| (name, s)))
    .collect();
    println!();
    let row = |label: &str, cells: Vec<String>| {
        let cells: String = cells.iter().map(|c| format!(" {c:>12}")).collect();
        println!("{label:<34}{cells}");
    };
    row("", sides.iter().map(|(n, _)| (*n).to_owned()).collect());
    row(
        "items done",
        sides.iter().map(|(_, s)| s.done.to_string()).collect(),
    );
    row(
        "files on main at the end",
        sides.iter().map(|(_, s)| s.files.to_string()).collect(),
    );
    row(
        "staging re-validations",
        sides
            .iter()
            .map(|(_, s)| s.revalidations.to_string())
            .collect(),
    );
    row(
        "wall time (s)",
        sides
            .iter()
            .map(|(_, s)| format!("{:.2}", s.secs))
            .collect(),
    );
    row(
        "items per second",
        sides
            .iter()
            .map(|(_, s)| format!("{:.2}", n / s.secs))
            .collect(),
    );
    row(
        "ms per stage transition",
        sides
            .iter()
            .map(|(_, s)| format!("{:.1}", per_transition(s.secs)))
            .collect(),
    );
    // CPU time, unlike wall time, hardly moves with what else the machine runs. A sandboxed
    // run's processes are partly outside what orch waits for, so they show less than they use.
    let cpu_row = |label: &str, pick: fn((f64, f64)) -> f64| {
        let cells = sides.iter().map(|(_, s)| match s.cpu {
            Some(cpu) => format!("{:.1}", per_transition(pick(cpu))),
            None => "-".into(),
        });
        row(label, cells.collect());
    };
    cpu_row("CPU ms per transition, own", |(own, _)| own);
    cpu_row("CPU ms per transition, processes", |(_, children)| children);
    println!();
    // The comparison is made without the sandbox (the baseline has none); with only the
    // sandboxed run, that one is compared and said so.
    let (compared, label) = match (&unconfined, &sandboxed) {
        (Some(u), _) => (u, "sandbox off"),
        (None, Some(s)) => (s, "sandbox on"),
        (None, None) => unreachable!("--sandbox makes at least one orch run"),
    };
    println!(
        "ratio orch / baseline wall time:     {:.2} ({label})",
        compared.secs / base.secs
    );
    println!(
        "orch overhead per stage transition:  {:.1} ms ({label})",
        per_transition(compared.secs - base.secs)
    );
    if let (Some(u), Some(s)) = (&unconfined, &sandboxed) {
        println!(
            "sandbox cost per stage transition:   {:.1} ms (orch+sandbox - orch)",
            per_transition(s.secs - u.secs)
        );
    }
    println!(
        "orch peak memory (VmHWM):            {} MiB{}",
        peak_kib / 1024,
        if a.sandbox == BenchSandbox::Both {
            " (both orch runs, in one process)"
        } else {
            ""
        }
    );
    if a.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    let all_done = sides.iter().all(|(_, s)| s.done == a.items as usize);
    Ok(if all_done { 0 } else { 1 })
}

/// Items each side runs before the next side takes its turn.
const ROUND: u32 = 5;

/// Time and CPU spent so far by one side.
#[derive(Default)]
struct Spent {
    secs: f64,
    cpu: Option<(f64, f64)>,
}

impl Spent {
    /// Runs `work`, adding its wall time and the CPU it cost (this process, and the processes
    /// it waited for).
    async fn measure<T>(&mut self, work: impl Future<Output = T>) -> T {
        let cpu0 = cpu_secs();
        let t0 = Instant::now();
        let out = work.await;
        self.secs += t0.elapsed().as_secs_f64();
        if let (Some((own, children)), Some((own0, children0))) = (cpu_secs(), cpu0) {
            let (o, c) = self.cpu.unwrap_or_default();
            self.cpu = Some((o + own - own0, c + children - children0));
        }
        out
    }
}

/// orch's side of the overhead bench: one project in `root`, items run a few at a time,
/// approved as they arrive, with the agents and gates in the default sandbox or unconfined.
pub(super) struct OrchSide {
    ctx: Context,
    repo: std::path::PathBuf,
    project: orch_core::ProjectId,
    parallel: usize,
    filed: u32,
    spent: Spent,
}

impl OrchSide {
    /// The repository is a copy of `template` when given (`orch bench --repo-files`), else the
    /// bench's small one.
    pub(super) async fn open(
        root: &Path,
        parallel: usize,
        sandbox: bool,
        template: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let (staging, prod) = (free_port()?, free_port()?);
        bench_repo(&root.join("repo"), template).await?;
        let config = root.join("orch.toml");
        let sandbox = (!sandbox).then(|| SandboxEntry {
            mode: Some("none".into()),
            ..SandboxEntry::default()
        });
        write_bench_config(&config, staging, prod, parallel, sandbox)?;
        Ok(Self {
            ctx: Context::open(&config, Arc::new(orch_engine::Silent)).await?,
            repo: root.join("repo"),
            project: orch_core::ProjectId::parse("bench")?,
            parallel,
            filed: 0,
            spent: Spent::default(),
        })
    }

    /// Runs the next `items` items to the end.
    pub(super) async fn run(&mut self, items: u32) -> anyhow::Result<()> {
        let (ctx, project, first) = (&self.ctx, &self.project, self.filed + 1);
        self.filed += items;
        let last = self.filed;
        let cancel = CancellationToken::new();
        let file = |i: u32| async move {
            ctx.engine
                .create_item(project, &format!("bench item {i}"), "")
                .await
        };
        let together = self.parallel > 1;
        self.spent
            .measure(async {
                // With one stage run at a time, items go one after another as in the baseline:
                // filed together, each would be integrated and re-validated on staging behind
                // the one before, which is the promotion queue's cost (`orch bench --queue`),
                // not the same work.
                if together {
                    for i in first..=last {
                        file(i).await?;
                    }
                    super::bench_queue::drive(ctx, &cancel).await
                } else {
                    for i in first..=last {
                        file(i).await?;
                        super::bench_queue::drive(ctx, &cancel).await?;
                    }
                    Ok(())
                }
            })
            .await
    }

    /// What the side measured; its staging and prod instances are stopped.
    pub(super) async fn finish(self) -> anyhow::Result<Side> {
        let ctx = &self.ctx;
        let all = ctx.engine.store().list_items(None).await?;
        let done = all
            .iter()
            .filter(|i| i.progress.status == ItemStatus::Done)
            .count();
        let revalidations = super::bench_queue::stagings(ctx, &all)
            .await?
            .saturating_sub(all.len());
        // Anything not done is shown with its reason: a bench that hides failures measures
        // nothing.
        for i in all
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
        // The bench's directory goes away; its staging and prod instances must not outlive it.
        super::demo::stop_instances(ctx, ctx.engine.project(&self.project)?).await;
        Ok(Side {
            secs: self.spent.secs,
            done,
            cpu: self.spent.cpu,
            revalidations,
            files: files_on_main(&self.repo).await?,
        })
    }
}

/// The baseline's side: `kit/bench/baseline.sh` doing the same git, process and deploy work
/// in a shell loop, a few items at a time.
pub(super) struct BaselineSide {
    repo: std::path::PathBuf,
    worktrees: std::path::PathBuf,
    script: std::path::PathBuf,
    port: u16,
    done: u32,
    spent: Spent,
}

impl BaselineSide {
    pub(super) async fn open(root: &Path, template: Option<&Path>) -> anyhow::Result<Self> {
        let repo = root.join("repo");
        bench_repo(&repo, template).await?;
        let script = root.join("baseline.sh");
        std::fs::write(&script, include_str!("../../kit/bench/baseline.sh"))?;
        let worktrees = root.join("worktrees");
        std::fs::create_dir_all(&worktrees)?;
        Ok(Self {
            repo,
            worktrees,
            script,
            port: free_port()?,
            done: 0,
            spent: Spent::default(),
        })
    }

    /// Runs the next `items` items.
    pub(super) async fn run(&mut self, items: u32) -> anyhow::Result<()> {
        let (first, last) = (self.done + 1, self.done + items);
        let mut command = tokio::process::Command::new("sh");
        command
            .arg(&self.script)
            .arg(&self.repo)
            .arg(&self.worktrees)
            .arg(first.to_string())
            .arg(last.to_string())
            .arg(self.port.to_string());
        let status = self
            .spent
            .measure(command.status())
            .await
            .context("cannot run the baseline script")?;
        if !status.success() {
            anyhow::bail!("the baseline script failed ({status}); nothing to compare against");
        }
        self.done = last;
        Ok(())
    }

    pub(super) async fn finish(self) -> anyhow::Result<Side> {
        Ok(Side {
            secs: self.spent.secs,
            done: self.done as usize,
            cpu: self.spent.cpu,
            revalidations: 0,
            files: files_on_main(&self.repo).await?,
        })
    }
}

/// Writes the `orch.toml` of a bench: one project `bench` on SQLite, short health probes, and
/// `parallel` stage runs at once, in `sandbox` (`None`: the default one).
pub(super) fn write_bench_config(
    path: &Path,
    staging_port: u16,
    prod_port: u16,
    parallel: usize,
    sandbox: Option<SandboxEntry>,
) -> anyhow::Result<()> {
    let file = bench_config(staging_port, prod_port, parallel, sandbox);
    std::fs::write(path, toml::to_string_pretty(&file)?)?;
    Ok(())
}

/// The configuration every bench starts from (see [`write_bench_config`]).
pub(super) fn bench_config(
    staging_port: u16,
    prod_port: u16,
    parallel: usize,
    sandbox: Option<SandboxEntry>,
) -> ConfigFile {
    ConfigFile {
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
            sandbox,
            notify: Vec::new(),
            tracker: None,
            forge: None,
        }],
    }
}

/// The bench's small repository at `repo`, or a copy of `template` (its `.git` and files).
async fn bench_repo(repo: &Path, template: Option<&Path>) -> anyhow::Result<()> {
    let Some(template) = template else {
        return write_bench_repo(repo).await;
    };
    if let Some(parent) = repo.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = tokio::process::Command::new("cp")
        .arg("-a")
        .arg(template)
        .arg(repo)
        .status()
        .await
        .context("cannot run cp")?;
    anyhow::ensure!(
        status.success(),
        "copying the generated repository failed ({status})"
    );
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

/// How many files the `main` branch of `repo` holds.
async fn files_on_main(repo: &Path) -> anyhow::Result<usize> {
    let out = tokio::process::Command::new("git")
        .args(["ls-tree", "-r", "-z", "--name-only", "main"])
        .current_dir(repo)
        .output()
        .await
        .context("cannot run git ls-tree")?;
    anyhow::ensure!(
        out.status.success(),
        "git ls-tree in {} failed: {}",
        repo.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(out.stdout.iter().filter(|b| **b == 0).count())
}

pub(super) fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot find a free port")?;
    Ok(l.local_addr()?.port())
}

/// CPU seconds of this process (all its threads) and of its waited-for children so far, from
/// /proc/self/stat (Linux; fields 14-17, in clock ticks of 1/100 s, the kernel's USER_HZ).
fn cpu_secs() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces and parentheses: fields are counted after its `)`.
    let rest = &stat[stat.rfind(')')? + 1..];
    let ticks: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    let [utime, stime, cutime, cstime] = ticks[..] else {
        return None;
    };
    Some(((utime + stime) / 100.0, (cutime + cstime) / 100.0))
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
