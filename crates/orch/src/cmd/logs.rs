//! `orch logs ID [--stage S] [-f]`: the run logs of an item, in run order.

use std::time::Duration;

use orch_core::transition::ItemStatus;

use crate::cli::LogsArgs;
use crate::context::{Context, item_id};
use crate::error::UsageError;

pub async fn run(ctx: &Context, a: LogsArgs) -> anyhow::Result<i32> {
    let id = item_id(&a.id)?;
    let store = ctx.engine.store();
    let item = store
        .get_item(&id)
        .await?
        .ok_or_else(|| UsageError(format!("no work item `{id}`")))?;
    let project = ctx.engine.project(&item.project)?;
    if a.json {
        let mut out = Vec::new();
        for r in store.list_runs(&id).await? {
            if a.stage.as_deref().is_some_and(|s| s != r.stage.as_str()) {
                continue;
            }
            let path = project.run_log(&id, r.stage.as_str(), r.attempt);
            let Some(bytes) = read_log(&project.settings.data_dir, &path) else {
                continue;
            };
            out.push(serde_json::json!({
                "run": orch_server::views::run_json(&r),
                "log": String::from_utf8_lossy(&bytes),
            }));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(0);
    }
    // How much of each log was printed, by path.
    let mut printed: std::collections::BTreeMap<std::path::PathBuf, usize> = Default::default();
    loop {
        for r in store.list_runs(&id).await? {
            if a.stage.as_deref().is_some_and(|s| s != r.stage.as_str()) {
                continue;
            }
            let path = project.run_log(&id, r.stage.as_str(), r.attempt);
            let Some(bytes) = read_log(&project.settings.data_dir, &path) else {
                continue;
            };
            let done = printed.entry(path).or_insert(0);
            if *done == 0 && !bytes.is_empty() {
                println!(
                    "==> {} attempt {} ({}) <==",
                    r.stage,
                    r.attempt,
                    r.state.as_str()
                );
            }
            if bytes.len() > *done {
                print!("{}", String::from_utf8_lossy(&bytes[*done..]));
                *done = bytes.len();
            }
        }
        if !a.follow {
            break;
        }
        let item = store.get_item(&id).await?;
        let moving = item.is_some_and(|i| {
            matches!(
                i.progress.status,
                ItemStatus::Queued | ItemStatus::Running | ItemStatus::Merging
            )
        });
        if !moving {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if printed.is_empty() {
        println!("No run logs for {id} yet.");
    }
    Ok(0)
}

/// A run log's bytes, read below the data directory without following a link and bounded (an
/// agent may have replaced its log with a link to `/proc/self/environ` or a FIFO); `None` when
/// there is none to read.
fn read_log(data_dir: &std::path::Path, path: &std::path::Path) -> Option<Vec<u8>> {
    // Above the 20 MiB orch-process keeps a log under, so a whole log is always read.
    const MAX_LOG_BYTES: usize = 64 * 1024 * 1024;
    let rel = path.strip_prefix(data_dir).ok()?;
    orch_process::safe_file::read_regular_bounded(data_dir, rel, MAX_LOG_BYTES)
        .ok()
        .map(|read| read.bytes)
}
