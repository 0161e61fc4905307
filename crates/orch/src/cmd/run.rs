//! `orch run`: process ready items until none is left.

use tokio_util::sync::CancellationToken;

use crate::context::Context;

pub async fn run(ctx: &Context) -> anyhow::Result<i32> {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: finishing nothing new; running agents are stopped, their runs will be retried"
            );
            on_signal.cancel();
        }
    });
    // Approvals a listed person gave as a review on the forge count before the pass.
    for id in ctx.engine.approve_by_reviews().await {
        println!("{id}: approved by a review on its pull request");
    }
    let summary = ctx.engine.run_until_idle(&cancel).await?;
    println!(
        "{} stage run(s), {} item(s) merged. Nothing left to run; see `orch status`.",
        summary.runs, summary.merged
    );
    // What is due now is sent now; a receiver that failed is tried again by the next `orch run`,
    // `orch serve` or `orch worker` after its backoff (the notification waits in the store).
    match ctx.engine.notify_pass().await {
        Ok(sent) if sent != Default::default() => println!(
            "notifications: {} sent, {} to retry, {} given up",
            sent.sent, sent.retrying, sent.given_up
        ),
        Ok(_) => {}
        Err(e) => {
            eprintln!("orch run: sending notifications failed: {e}; the next run tries again")
        }
    }
    Ok(0)
}
