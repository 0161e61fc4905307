//! `orch status`: where every item stands, per project.

use std::collections::BTreeMap;

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
    let open: Vec<&orch_store::ItemRecord> = items
        .iter()
        .filter(|i| !i.progress.status.is_terminal())
        .collect();
    if a.json {
        let open: Vec<_> = open.iter().map(|i| super::item::item_json(i)).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "projects": by_project, "open_items": open }))?
        );
        return Ok(0);
    }
    let mut rows = vec![vec!["PROJECT".into(), "ITEMS".into(), "BY STATUS".into()]];
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
        ]);
    }
    print!("{}", table(&rows));
    if !open.is_empty() {
        let mut rows = vec![vec![
            "ITEM".into(),
            "STAGE".into(),
            "STATUS".into(),
            "TITLE".into(),
        ]];
        for i in open {
            rows.push(vec![
                i.id.to_string(),
                i.progress.stage.to_string(),
                i.progress.status.as_str().into(),
                i.title.clone(),
            ]);
        }
        print!("\n{}", table(&rows));
    }
    Ok(0)
}
