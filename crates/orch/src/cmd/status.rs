//! `orch status`: where every item stands, per project.

use std::collections::BTreeMap;

use orch_core::spend::Spend;
use orch_engine::spend::ItemSpend;
use orch_server::views;
use serde_json::json;

use crate::cli::JsonArgs;
use crate::context::Context;
use crate::output::table;

pub async fn run(ctx: &Context, a: JsonArgs) -> anyhow::Result<i32> {
    let items = ctx.engine.store().list_items(None).await?;
    let mut by_project: BTreeMap<String, BTreeMap<&'static str, u32>> = BTreeMap::new();
    for p in ctx.engine.projects() {
        by_project.entry(p.id().to_string()).or_default();
    }
    for i in &items {
        *by_project
            .entry(i.project.to_string())
            .or_default()
            .entry(i.progress.status.as_str())
            .or_default() += 1;
    }
    // Every item's runs: open items show their own spend, projects the sum over all items.
    let mut runs = BTreeMap::new();
    for i in &items {
        runs.insert(&i.id, ctx.engine.store().list_runs(&i.id).await?);
    }
    let project_spend: BTreeMap<String, Spend> = by_project
        .keys()
        .map(|p| {
            let of_project = items
                .iter()
                .filter(|i| i.project.as_str() == p)
                .flat_map(|i| runs.get(&i.id).into_iter().flatten());
            (p.clone(), ItemSpend::of_runs(of_project).total)
        })
        .collect();
    let open: Vec<&orch_store::ItemRecord> = items
        .iter()
        .filter(|i| !i.progress.status.is_terminal())
        .collect();
    let spends: Vec<Spend> = open
        .iter()
        .map(|i| ItemSpend::of_runs(runs.get(&i.id).into_iter().flatten()).total)
        .collect();
    let mut queues = BTreeMap::new();
    for p in ctx.engine.projects() {
        let queue = ctx.engine.promotion_queue(p.id()).await?;
        if !queue.is_empty() {
            queues.insert(p.id().to_string(), queue);
        }
    }
    if a.json {
        let open: Vec<_> = open
            .iter()
            .zip(&spends)
            .map(|(i, spend)| {
                let mut out = views::item_json(i);
                out["spend"] = views::spend_json(spend);
                out
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "projects": by_project,
                "project_spend": project_spend
                    .iter()
                    .map(|(p, s)| (p.clone(), views::spend_json(s)))
                    .collect::<serde_json::Map<_, _>>(),
                "open_items": open,
                "promotion_queue": queues,
                "sandbox": ctx.engine.projects()
                    .map(|p| (p.id().to_string(), json!(p.sandbox.label())))
                    .collect::<serde_json::Map<_, _>>(),
            }))?
        );
        return Ok(0);
    }
    let mut rows = vec![vec![
        "PROJECT".into(),
        "ITEMS".into(),
        "BY STATUS".into(),
        "SPEND".into(),
    ]];
    for (project, counts) in &by_project {
        let total: u32 = counts.values().sum();
        let detail: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
        rows.push(vec![
            project.clone(),
            total.to_string(),
            if detail.is_empty() {
                "-".into()
            } else {
                detail.join(", ")
            },
            project_spend
                .get(project)
                .map_or_else(|| "-".into(), Spend::describe),
        ]);
    }
    print!("{}", table(&rows));
    // Loud, before anything else: a project whose agents run unconfined.
    for p in ctx.engine.projects().filter(|p| p.sandbox.is_opted_out()) {
        println!(
            "WARNING: project {} runs {}",
            p.id(),
            orch_process::OPTED_OUT_NOTICE
        );
    }
    if !open.is_empty() {
        let mut rows = vec![vec![
            "ITEM".into(),
            "PROJECT".into(),
            "STAGE".into(),
            "STATUS".into(),
            "SPEND".into(),
            "TITLE".into(),
        ]];
        for (i, spend) in open.iter().zip(&spends) {
            rows.push(vec![
                i.id.to_string(),
                i.project.to_string(),
                i.progress.stage.to_string(),
                i.progress.status.as_str().into(),
                spend.describe(),
                i.title.clone(),
            ]);
        }
        print!("\n{}", table(&rows));
    }
    for (project, queue) in &queues {
        let mut rows = vec![vec![
            "#".into(),
            "ITEM".into(),
            "APPROVED BY".into(),
            "STAGE".into(),
            "WAITING FOR".into(),
        ]];
        for e in queue {
            rows.push(vec![
                e.position.to_string(),
                e.item.to_string(),
                e.approved_by.clone().unwrap_or_else(|| "-".into()),
                e.stage.clone(),
                e.waiting_for.clone(),
            ]);
        }
        print!(
            "\nPromotion queue of {project} (in approval order):\n{}",
            table(&rows)
        );
    }
    Ok(0)
}
