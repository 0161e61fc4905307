//! `orch bench --queue N,N,...`: N items filed together through the whole default pipeline and
//! the promotion queue (instant scripted agents, the process deployer, SQLite), next to the same
//! N items run one after another, each measured in the same run. After every deploy the bench
//! checks the invariant: prod's build commit is the default branch's tip. It prints the queue's
//! cost per item (the difference of the two, per item) and the share of re-validations among the
//! staging runs.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use orch_core::transition::ItemStatus;
use tokio_util::sync::CancellationToken;

use super::bench::{free_port, write_bench_config, write_bench_repo};
use crate::context::Context;

/// The most items one row files together: each row runs them twice through the whole pipeline.
const MAX_ITEMS: u32 = 1000;

/// What one way of running N items measured.
struct Measured {
    secs: f64,
    done: usize,
    stagings: usize,
    deploys_checked: usize,
}

pub async fn run(counts: &[u32]) -> anyhow::Result<i32> {
    if counts.contains(&0) {
        return Err(crate::error::UsageError("--queue counts must be at least 1".into()).into());
    }
    if let Some(big) = counts.iter().find(|n| **n > MAX_ITEMS) {
        return Err(crate::error::UsageError(format!(
            "--queue: {big} items is more than the queue bench runs at once (at most {MAX_ITEMS})"
        ))
        .into());
    }
    println!(
        "{:>4}  {:>14} {:>14} {:>10} {:>12} {:>16} {:>16} {:>18} {:>10}",
        "N",
        "together (s)",
        "one by one (s)",
        "ratio",
        "items/hour",
        "re-validations",
        "re-validation %",
        "queue ms per item",
        "invariant"
    );
    let mut all_ok = true;
    for &n in counts {
        let together = measure(n, true).await?;
        let serial = measure(n, false).await?;
        let ok = together.done == n as usize && serial.done == n as usize;
        all_ok &= ok;
        let again = |m: &Measured| m.stagings.saturating_sub(m.done) as f64;
        // Of all the staging runs made together, the share that re-validated an item.
        let share = if together.stagings == 0 {
            0.0
        } else {
            100.0 * again(&together) / together.stagings as f64
        };
        println!(
            "{:>4}  {:>14.2} {:>14.2} {:>10.2} {:>12.0} {:>16.2} {:>16.0} {:>18.0} {:>10}",
            n,
            together.secs,
            serial.secs,
            together.secs / serial.secs,
            f64::from(n) * 3600.0 / together.secs,
            again(&together) / f64::from(n),
            share,
            (together.secs - serial.secs) * 1000.0 / f64::from(n),
            format!("{}/{} ok", together.deploys_checked, n),
        );
        if !ok {
            println!(
                "      not all done: together {}/{n}, one by one {}/{n}",
                together.done, serial.done
            );
        }
    }
    println!(
        "\nre-validations: extra deploy-staging runs per item (main moved after its staging);\n\
         re-validation %: their share of all deploy-staging runs made together.\n\
         queue ms per item: (together - one by one) / N, what the queue's integration and\n\
         re-validation cost each item with instant agents (negative: running together won).\n\
         invariant: deploys whose candidate main moved to exactly and still holds, with prod on main's tip."
    );
    Ok(if all_ok { 0 } else { 1 })
}

/// Runs `n` items, filed together or one after another, in a fresh directory.
async fn measure(n: u32, together: bool) -> anyhow::Result<Measured> {
    let dir = tempfile::Builder::new()
        .prefix("orch-bench-queue-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let repo = dir.path().join("repo");
    write_bench_repo(&repo).await?;
    let config = dir.path().join("orch.toml");
    write_bench_config(&config, free_port()?, free_port()?, 2, None)?;
    let ctx = Context::open(&config, Arc::new(orch_engine::Silent)).await?;
    let project = orch_core::ProjectId::parse("bench")?;
    let cancel = CancellationToken::new();
    let started = Instant::now();
    if together {
        for i in 1..=n {
            ctx.engine
                .create_item(&project, &format!("queue item {i}"), "")
                .await?;
        }
        drive(&ctx, &cancel).await?;
    } else {
        for i in 1..=n {
            ctx.engine
                .create_item(&project, &format!("queue item {i}"), "")
                .await?;
            drive(&ctx, &cancel).await?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let items = ctx.engine.store().list_items(None).await?;
    let done = items
        .iter()
        .filter(|i| i.progress.status == ItemStatus::Done)
        .count();
    let stagings = stagings(&ctx, &items).await?;
    let checked = deploys_keeping_the_invariant(&ctx, &items, dir.path()).await?;
    super::demo::stop_instances(&ctx, ctx.engine.project(&project)?).await;
    Ok(Measured {
        secs,
        done,
        stagings,
        deploys_checked: checked,
    })
}

/// Deploy-staging runs made for `items`: one each, plus every re-validation.
pub(super) async fn stagings(
    ctx: &Context,
    items: &[orch_store::ItemRecord],
) -> anyhow::Result<usize> {
    let mut stagings = 0;
    for item in items {
        stagings += ctx
            .engine
            .store()
            .list_runs(&item.id)
            .await?
            .iter()
            .filter(|r| r.stage.as_str() == "deploy-staging")
            .count();
    }
    Ok(stagings)
}

/// Runs until nothing moves, approving what waits.
pub(super) async fn drive(ctx: &Context, cancel: &CancellationToken) -> anyhow::Result<()> {
    loop {
        ctx.engine.run_until_idle(cancel).await?;
        let waiting: Vec<_> = ctx
            .engine
            .store()
            .list_items_with_status(ItemStatus::AwaitingApproval)
            .await?;
        if waiting.is_empty() {
            return Ok(());
        }
        for item in waiting {
            ctx.engine.approve(&item.id, "bench").await?;
        }
    }
}

/// How many of the items' deploys kept the invariant: the deploy's promoted candidate is exactly
/// what main advanced to at that deploy, and main still contains it at the end (no deployed
/// change lost); and prod runs main's tip now. 0 when prod does not.
async fn deploys_keeping_the_invariant(
    ctx: &Context,
    items: &[orch_store::ItemRecord],
    dir: &Path,
) -> anyhow::Result<usize> {
    let record = std::fs::read_to_string(dir.join("deploy/bench/prod/current.json"))
        .context("prod has no record after the deploys")?;
    let record: serde_json::Value = serde_json::from_str(&record)?;
    let repo = orch_git::Repo::open(&dir.join("repo")).await?;
    let tip = repo.default_tip().await?;
    if record["sha"].as_str() != Some(tip.as_str()) {
        println!("      INVARIANT BROKEN: prod does not run main's tip");
        return Ok(0);
    }
    let mut kept = 0;
    for item in items {
        let events = ctx.engine.store().list_events(&item.id, 0).await?;
        let promoted = events
            .iter()
            .rev()
            .find(|e| e.kind == orch_engine::events::DEPLOY_PROD && e.data["success"] == true);
        let advanced = events
            .iter()
            .rev()
            .find(|e| e.kind == orch_engine::events::MAIN_ADVANCED);
        let (Some(promoted), Some(advanced)) = (promoted, advanced) else {
            continue;
        };
        let sha = promoted.data["sha"].as_str().unwrap_or_default();
        if advanced.data["to"].as_str() == Some(sha) && repo.is_ancestor(sha, &tip).await? {
            kept += 1;
        }
    }
    Ok(kept)
}
