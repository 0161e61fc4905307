//! `orch demo`: create a demo project, file one item and drive it through the whole pipeline.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orch_core::transition::ItemStatus;
use tokio_util::sync::CancellationToken;

use crate::cli::DemoArgs;
use crate::context::Context;
use crate::error::UsageError;
use crate::kit;
use crate::output::{ProgressPrinter, millis, table};
use crate::settings::{ConfigFile, EngineSection, ProjectEntry, StoreSection};

const PROJECT: &str = "demo";

pub async fn run(a: DemoArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    for port in [a.staging_port, a.prod_port] {
        if port == 8500 {
            return Err(UsageError(
                "port 8500 is kept for orch's own server; choose another".into(),
            )
            .into());
        }
    }
    if a.staging_port == a.prod_port {
        return Err(UsageError("--staging-port and --prod-port must differ".into()).into());
    }
    preflight(&a).await?;
    if a.dir.join("orch.toml").exists() {
        return Err(UsageError(format!(
            "{} already holds a demo; remove it (rm -rf {}) or pass --dir OTHER",
            a.dir.display(),
            a.dir.display()
        ))
        .into());
    }
    let many = a.items > 1;
    let config = create_demo(&a.dir, a.staging_port, a.prod_port, many).await?;
    println!("Demo project created in {}", a.dir.display());
    if many {
        println!(
            "Filing {} work items at once; they pass through the promotion queue one after another.\n",
            a.items
        );
    } else {
        println!("Filing one work item and driving it through the pipeline.\n");
    }

    let ctx = Context::open(&config, Arc::new(ProgressPrinter::new())).await?;
    if ctx.settings.sandboxes.values().all(|s| s.is_confined()) {
        println!(
            "Command gates and builds run in a bubblewrap sandbox, instances in their own PID namespace (docs/security.md); the scripted agent runs inside orch.\n"
        );
    }
    let project = orch_core::ProjectId::parse(PROJECT)?;
    let mut items = Vec::new();
    if many {
        for k in 1..=a.items {
            let route = format!("/DEMO-{k}");
            let item = ctx
                .engine
                .create_item(
                    &project,
                    &format!("Add {route}"),
                    &format!("`GET {route}` should answer who delivered it."),
                )
                .await?;
            println!("Filed {}: {}", item.id, item.title);
            items.push(item);
        }
    } else {
        let item = ctx
            .engine
            .create_item(
                &project,
                "Change the greeting",
                "`GET /` answers \"Hello, world!\". Make it answer \"Hello from orch!\".",
            )
            .await?;
        println!("Filed {}: {}", item.id, item.title);
        items.push(item);
    }

    let cancel = CancellationToken::new();
    let dashboard = serve_dashboard(&ctx, a.dashboard, &cancel).await?;
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let statuses = drive(&ctx, &items, &config, a.yes, &cancel).await?;
    let status = if statuses.iter().all(|s| *s == ItemStatus::Done) {
        ItemStatus::Done
    } else {
        statuses
            .iter()
            .copied()
            .find(|s| *s != ItemStatus::Done)
            .unwrap_or(ItemStatus::Done)
    };
    let item = &items[0];
    for item in &items {
        print_summary(&ctx, &item.id).await?;
    }
    let prod = format!("http://127.0.0.1:{}/", a.prod_port);
    if status == ItemStatus::Done {
        let paths: Vec<String> = if many {
            items.iter().map(|i| format!("{}", i.id)).collect()
        } else {
            vec![String::new()]
        };
        for path in paths {
            let url = format!("{prod}{path}");
            match orch_deploy::http_get(&url, Duration::from_secs(2)).await {
                Ok((code, body)) => println!("\nprod {url} answers {code}: {}", body.trim()),
                Err(e) => println!("\nprod {url} did not answer: {e}"),
            }
        }
        if many && let Ok(repo) = orch_git::Repo::open(&a.dir.join("repo")).await {
            let tip = repo.default_tip().await.unwrap_or_default();
            println!(
                "main is at {}: the very commit prod runs, holding all {} changes.",
                tip.get(..12).unwrap_or(&tip),
                items.len()
            );
        }
    }
    let cfg = config.display();
    println!("\nWhere to look:");
    println!(
        "  history:    orch --config {cfg} item show {} --events",
        item.id
    );
    println!("  agent logs: orch --config {cfg} logs {}", item.id);
    println!(
        "  artifacts:  {}/repo/docs/work-items/{}/",
        a.dir.display(),
        item.id
    );
    println!(
        "  merged:     git -C {}/repo log --oneline",
        a.dir.display()
    );
    if a.keep_running {
        println!(
            "  staging:    http://127.0.0.1:{}/   prod: {prod}  (left running)",
            a.staging_port
        );
    } else if let Some(p) = ctx.engine.projects().next() {
        stop_instances(&ctx, p).await;
        println!("  (staging and prod were stopped; --keep-running leaves them up)");
    }
    let which = if many {
        format!("{} items", items.len())
    } else {
        item.id.to_string()
    };
    println!(
        "\nDemo finished in {} with {which} {}.",
        millis(started.elapsed().as_millis() as i64),
        status.as_str()
    );
    if let Some(server) = dashboard {
        if a.keep_running && !cancel.is_cancelled() {
            println!(
                "Dashboard still at {}; Ctrl-C stops it (staging and prod stay up).",
                server.url
            );
            cancel.cancelled().await;
        }
        server.stop(&cancel).await;
    }
    Ok(if status == ItemStatus::Done { 0 } else { 1 })
}

/// Runs the engine until every item is done or waits for something the demo does not give
/// (an answer, a retry); approves what waits when `yes`, else tells how and waits. Returns each
/// item's final status, in the order given.
async fn drive(
    ctx: &Context,
    items: &[orch_store::ItemRecord],
    config: &Path,
    yes: bool,
    cancel: &CancellationToken,
) -> anyhow::Result<Vec<ItemStatus>> {
    let mut told = std::collections::BTreeSet::new();
    loop {
        ctx.engine.run_until_idle(cancel).await?;
        let mut statuses = Vec::new();
        let mut waiting = false;
        for item in items {
            let current = ctx
                .engine
                .store()
                .get_item(&item.id)
                .await?
                .context("a demo item vanished")?;
            let status = current.progress.status;
            if status == ItemStatus::AwaitingApproval {
                if yes {
                    println!("--yes: approving {} for deploy", item.id);
                    ctx.engine.approve(&item.id, "orch demo --yes").await?;
                } else {
                    if told.insert(item.id.clone()) {
                        println!(
                            "\n{} waits for approval. In another terminal run:\n  orch --config {} approve {}\n",
                            item.id,
                            config.display(),
                            item.id
                        );
                    }
                    waiting = true;
                }
            }
            statuses.push(status);
        }
        let settled = statuses
            .iter()
            .all(|s| s.is_terminal() || matches!(s, ItemStatus::Blocked | ItemStatus::NeedsInfo));
        if settled || cancel.is_cancelled() {
            return Ok(statuses);
        }
        if waiting {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = cancel.cancelled() => return Ok(statuses),
            }
        }
    }
}

/// The dashboard served beside the demo.
struct Dashboard {
    url: String,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Dashboard {
    async fn stop(self, cancel: &CancellationToken) {
        cancel.cancel();
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("the dashboard stopped with an error: {e}"),
            Err(e) => eprintln!("the dashboard task failed: {e}"),
        }
    }
}

/// What the demo needs, checked as `orch doctor` checks it before anything is created: on a
/// miss, the findings with their fixes, and a usage error (exit 2). The dashboard's address is
/// left out: without it the demo still runs.
async fn preflight(a: &DemoArgs) -> anyhow::Result<()> {
    let ports = [
        ("staging", a.staging_port, "--staging-port"),
        ("prod", a.prod_port, "--prod-port"),
    ];
    let failed: Vec<_> = crate::cmd::doctor::demo_preflight(&ports)
        .await
        .into_iter()
        .filter(|f| f.status == crate::cmd::doctor::Status::Fail)
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    eprint!("{}", crate::cmd::doctor::render(&failed));
    Err(UsageError(format!(
        "orch demo cannot start: {} check(s) failed; apply the fix named above (`orch doctor` checks everything)",
        failed.len()
    ))
    .into())
}

/// Serves the dashboard on `addr` until `cancel`; prints its URL. A taken address is not fatal:
/// the demo runs without a dashboard and says how to choose another.
async fn serve_dashboard(
    ctx: &Context,
    addr: std::net::SocketAddr,
    cancel: &CancellationToken,
) -> anyhow::Result<Option<Dashboard>> {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            println!("No dashboard: cannot listen on {addr} ({e}); pass --dashboard ADDR.");
            return Ok(None);
        }
    };
    let url = format!("http://{}/", listener.local_addr()?);
    let (state, _) = super::serve::app_state(Arc::clone(&ctx.engine))?;
    let access = if super::serve::secret(crate::env::API_TOKEN)?.is_some() {
        "log in with ORCH_API_TOKEN to approve from it"
    } else {
        "read-only; set ORCH_API_TOKEN to approve from it"
    };
    println!("Dashboard: {url}  ({access})");
    let task = tokio::spawn(orch_server::serve(
        listener,
        state,
        cancel.clone().cancelled_owned(),
    ));
    Ok(Some(Dashboard { url, task }))
}

/// Stops the project's staging and prod instances (the demo's and the bench's).
pub(super) async fn stop_instances(ctx: &Context, project: &orch_engine::Project) {
    let root = project
        .settings
        .data_dir
        .join("deploy")
        .join(project.id().as_str());
    let text = std::fs::read_to_string(
        project
            .settings
            .repo
            .join(orch_engine::project::files::DEPLOY),
    )
    .unwrap_or_default();
    let Ok(spec) = orch_deploy::DeploySpec::from_toml(&text) else {
        return;
    };
    let ports = orch_deploy::Ports {
        staging: project.settings.staging_port,
        prod: project.settings.prod_port,
    };
    if let Ok(d) = orch_deploy::ProcessDeployer::new(root, spec, ports) {
        let _ = d.stop(orch_deploy::Env::Staging).await;
        let _ = d.stop(orch_deploy::Env::Prod).await;
    }
    let _ = ctx;
}

async fn print_summary(ctx: &Context, id: &orch_core::ItemId) -> anyhow::Result<()> {
    let runs = ctx.engine.store().list_runs(id).await?;
    let mut rows = vec![vec![
        "STAGE".into(),
        "ATTEMPT".into(),
        "RESULT".into(),
        "TOOK".into(),
    ]];
    for r in &runs {
        let took = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => millis(f - s),
            (None, Some(_)) => "approval".into(),
            _ => "-".into(),
        };
        let verdict = r.verdict.as_ref();
        let field = |k: &str| verdict.and_then(|v| v.get(k));
        let conflicts = field("conflicts").and_then(|c| c.as_array()).map(|paths| {
            paths
                .iter()
                .filter_map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        });
        let value = match (field("class").and_then(|c| c.as_str()), conflicts) {
            (Some("revalidate"), _) => "main moved: integrate again".to_owned(),
            (_, Some(paths)) => format!("conflict in {paths}: to the developer"),
            (Some("block"), _) => "blocked".to_owned(),
            _ => field("value")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned(),
        };
        rows.push(vec![
            r.stage.to_string(),
            r.attempt.to_string(),
            format!("{} {value}", r.state.as_str()),
            took,
        ]);
    }
    println!("\nSummary of {id}:\n{}", table(&rows));
    Ok(())
}

/// Writes the demo repository and `orch.toml`; returns the configuration path.
async fn create_demo(
    dir: &Path,
    staging_port: u16,
    prod_port: u16,
    many: bool,
) -> anyhow::Result<std::path::PathBuf> {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).with_context(|| format!("cannot create {}", repo.display()))?;
    let mut files = kit::demo_files();
    if many {
        for (path, text) in &mut files {
            if path == ".orch/scenario.toml" {
                *text = kit::DEMO_MANY_SCENARIO.to_owned();
            }
        }
    }
    kit::write_files(&repo, &files, true)?;
    let git = orch_git::Repo::init(&repo, "main").await?;
    git.commit_all(&repo, "demo-app: initial version").await?;
    let config = ConfigFile {
        server: Default::default(),
        telemetry: Default::default(),
        store: StoreSection {
            url: "sqlite://orch.db".into(),
        },
        engine: EngineSection::default(),
        projects: vec![ProjectEntry {
            name: PROJECT.into(),
            repo: "repo".into(),
            staging_port,
            prod_port,
            health_tries: Some(40),
            health_interval_ms: Some(250),
            approvers: Vec::new(),
            approval_ttl_secs: None,
            reapprove_on_reintegration: false,
            sandbox: None,
            notify: Vec::new(),
            tracker: None,
            forge: None,
        }],
    };
    let path = dir.join("orch.toml");
    let text = format!(
        "# orch configuration written by `orch demo`. Paths are relative to this file.\n{}",
        toml::to_string_pretty(&config)?
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
