//! `orch approve`, `orch stop`, `orch retry`: what people do to items.

use crate::cli::{ApproveArgs, IdArgs, RetryArgs};
use crate::cmd::actor;
use crate::context::{Context, item_id};

pub async fn approve(ctx: &Context, a: ApproveArgs) -> anyhow::Result<i32> {
    let id = item_id(&a.id)?;
    let ev = ctx.engine.approval_evidence(&id).await?;
    println!("Approving {}: {}", ev.item, ev.title);
    println!(
        "  build SHA: {}",
        ev.sha.as_deref().unwrap_or("(none recorded)")
    );
    println!(
        "  digest:    {}",
        ev.digest.as_deref().unwrap_or("(none recorded)")
    );
    if let Some(v) = &ev.staging {
        if let Some(reasons) = v
            .get("reasons")
            .and_then(|r| r.as_array())
            .filter(|r| !r.is_empty())
        {
            println!("  staging reasons: {reasons:?}");
        } else {
            println!("  staging: passed");
        }
    }
    ctx.engine.approve(&id, &actor(a.by)).await?;
    println!("Approved. `orch run` (or a running orch) deploys it.");
    Ok(0)
}

pub async fn stop(ctx: &Context, a: IdArgs) -> anyhow::Result<i32> {
    let id = item_id(&a.id)?;
    ctx.engine.stop(&id, &actor(None)).await?;
    println!("Stopped {id}: it is cancelled and its worktree removed.");
    Ok(0)
}

pub async fn retry(ctx: &Context, a: RetryArgs) -> anyhow::Result<i32> {
    let id = item_id(&a.id)?;
    ctx.engine.retry(&id, a.answer, &actor(None)).await?;
    println!("{id} is queued again at its stage; `orch run` picks it up.");
    Ok(0)
}
