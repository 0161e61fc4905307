//! `orch item add|list|show`: the built-in board.

use crate::cli::{ItemAddArgs, ItemListArgs, ItemShowArgs};
use crate::context::{Context, item_id};
use crate::error::UsageError;
use crate::output::{millis, table};
use orch_engine::spend::ItemSpend;

pub async fn add(ctx: &Context, a: ItemAddArgs) -> anyhow::Result<i32> {
    let project = ctx.project_id(a.project.as_deref())?;
    let item = ctx.engine.create_item(&project, &a.title, &a.body).await?;
    println!("Filed {} in project {}: {}", item.id, project, item.title);
    println!(
        "It waits at stage `{}`; `orch run` processes it.",
        item.progress.stage
    );
    Ok(0)
}

pub use orch_server::views::item_json;

pub async fn list(ctx: &Context, a: ItemListArgs) -> anyhow::Result<i32> {
    let project = match &a.project {
        Some(p) => Some(ctx.project_id(Some(p))?),
        None => None,
    };
    let items = ctx.engine.store().list_items(project.as_ref()).await?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&items.iter().map(item_json).collect::<Vec<_>>())?
        );
        return Ok(0);
    }
    if items.is_empty() {
        println!("No work items. File one: orch item add --title \"...\"");
        return Ok(0);
    }
    let mut rows = vec![vec![
        "ID".into(),
        "STAGE".into(),
        "STATUS".into(),
        "TITLE".into(),
    ]];
    for i in &items {
        let status = match &i.blocked_reason {
            Some(r) => format!(
                "{} ({})",
                i.progress.status.as_str(),
                r.chars().take(60).collect::<String>()
            ),
            None => i.progress.status.as_str().to_owned(),
        };
        rows.push(vec![
            i.id.to_string(),
            i.progress.stage.to_string(),
            status,
            i.title.clone(),
        ]);
    }
    print!("{}", table(&rows));
    Ok(0)
}

pub async fn show(ctx: &Context, a: ItemShowArgs) -> anyhow::Result<i32> {
    let id = item_id(&a.id)?;
    let store = ctx.engine.store();
    let item = store
        .get_item(&id)
        .await?
        .ok_or_else(|| UsageError(format!("no work item `{id}`; see `orch item list`")))?;
    let runs = store.list_runs(&id).await?;
    let events = store.list_events(&id, 0).await?;
    let sandbox = ctx.engine.project(&item.project).ok().map(|p| &p.sandbox);
    if a.json {
        let mut out = orch_server::views::item_detail_json(&item, &runs, &events);
        out["sandbox"] = sandbox.map(|s| s.label()).into();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    println!("{}  {}", item.id, item.title);
    println!(
        "project {}  stage {}  status {}",
        item.project,
        item.progress.stage,
        item.progress.status.as_str()
    );
    if sandbox.is_some_and(orch_process::Sandbox::is_opted_out) {
        println!("WARNING: {}", orch_process::OPTED_OUT_NOTICE);
    }
    if let Some(r) = &item.blocked_reason {
        println!("blocked: {r}");
    }
    if !item.body.trim().is_empty() {
        println!("\n{}\n", item.body.trim());
    }
    // Evidence for the approver: a kept change to `.orch/`, `.git*` or CI files.
    let pipeline: Vec<String> = events
        .iter()
        .filter(|e| e.kind == orch_engine::events::PIPELINE_MODIFIED)
        .filter_map(|e| e.data.get("paths").and_then(|p| p.as_array()))
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    if !pipeline.is_empty() {
        println!("this change modifies the pipeline: {}", pipeline.join(", "));
    }
    external_checks(&events);
    returned_by_reviews(&events);
    let mut rows = vec![vec![
        "STAGE".into(),
        "ATTEMPT".into(),
        "STATE".into(),
        "TOOK".into(),
        "VERDICT".into(),
    ]];
    for r in &runs {
        let took = match (r.started_at, r.finished_at) {
            (Some(s), Some(f)) => millis(f - s),
            _ => "-".into(),
        };
        let verdict = r
            .verdict
            .as_ref()
            .map(|v| {
                let reasons: Vec<String> = v
                    .get("reasons")
                    .and_then(|x| x.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str())
                            .map(|s| s.lines().next().unwrap_or("").to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let value = v.get("value").and_then(|x| x.as_str()).unwrap_or("");
                let class = v.get("class").and_then(|x| x.as_str()).unwrap_or("?");
                if reasons.is_empty() {
                    format!("{class} {value}")
                } else {
                    format!("{class}: {}", reasons.join("; "))
                }
            })
            .unwrap_or_default();
        rows.push(vec![
            r.stage.to_string(),
            r.attempt.to_string(),
            r.state.as_str().into(),
            took,
            verdict,
        ]);
    }
    print!("\n{}", table(&rows));
    print_spend(&ItemSpend::of_runs(&runs));
    if a.events {
        println!("\nevents:");
        for e in &events {
            println!("  {:>3} {} {}", e.seq, e.kind, e.data);
        }
    } else {
        println!(
            "\n{} events; `--events` lists them, `orch logs {}` shows the agents' output.",
            events.len(),
            item.id
        );
    }
    Ok(0)
}

/// Spend per stage (all attempts together) and in total.
fn print_spend(spend: &ItemSpend) {
    if spend.total.runs == 0 {
        println!("\nspend: no agent run reported usage yet");
        return;
    }
    let mut rows = vec![vec!["STAGE".into(), "RUNS".into(), "SPEND".into()]];
    for (stage, spent) in &spend.by_stage {
        rows.push(vec![
            stage.clone(),
            spent.runs.to_string(),
            spent.describe(),
        ]);
    }
    rows.push(vec![
        "total".into(),
        spend.total.runs.to_string(),
        spend.total.describe(),
    ]);
    print!("\nspend:\n{}", table(&rows));
}

/// What the forge last reported on the required checks of the commit a promotion judged.
fn external_checks(events: &[orch_store::EventRecord]) {
    let Some(read) = events
        .iter()
        .rev()
        .find(|e| e.kind == orch_engine::events::CHECKS_READ)
    else {
        return;
    };
    let text = |v: &serde_json::Value, k: &str| {
        crate::output::printable(v.get(k).and_then(serde_json::Value::as_str).unwrap_or(""))
    };
    let sha = text(&read.data, "sha");
    println!(
        "external checks on {} ({}):",
        sha.get(..8).unwrap_or(&sha),
        text(&read.data, "verdict")
    );
    for check in read.data["checks"].as_array().into_iter().flatten() {
        println!(
            "  {:<24} {:<12} {} {}",
            text(check, "name"),
            text(check, "forge_state"),
            text(check, "description"),
            text(check, "url")
        );
    }
}

/// The reviews of the item's pull request as the deploy last read them; those that sent the
/// item back to development say so.
fn returned_by_reviews(events: &[orch_store::EventRecord]) {
    let Some(read) = orch_engine::ReviewsShown::last(events) else {
        return;
    };
    println!("reviews of pull request #{}:", read.pull);
    for r in &read.reviews {
        let commit = crate::output::printable(&r.commit);
        println!(
            "  {:<20} {:<18} on {}{}",
            crate::output::printable(&r.by),
            crate::output::printable(&r.state),
            commit.get(..8).unwrap_or(&commit),
            r.note
        );
    }
}
