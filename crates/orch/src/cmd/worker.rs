//! `orch worker`: a long-running process that only claims and runs stage runs, until SIGTERM or
//! Ctrl-C. Several workers share one store (PostgreSQL, on one or many machines): the store makes
//! every claim exclusive under a lease, and the merge at the end of a pipeline is idempotent, so
//! workers need no other coordination. On PostgreSQL an idle worker is woken by the store's
//! `orch_work` notification as soon as a run is queued, instead of at its next poll.

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::WorkerArgs;
use crate::context::Context;

pub async fn run(ctx: &Context, args: WorkerArgs) -> anyhow::Result<i32> {
    let shutdown = CancellationToken::new();
    stop_on_signal(shutdown.clone())?;
    let poll = Duration::from_secs(args.poll_secs);
    println!(
        "orch worker: lease owner {}, store {}, polling every {}s",
        ctx.engine.settings().owner,
        store_location(&ctx.settings.store_url),
        args.poll_secs
    );
    let notify_loop = tokio::spawn(super::serve::run_notifications(
        std::sync::Arc::clone(&ctx.engine),
        shutdown.clone(),
    ));
    let mut claimed: u32 = 0;
    while !shutdown.is_cancelled() {
        let left = args.exit_after_runs.map(|max| max.saturating_sub(claimed));
        if left == Some(0) {
            println!("orch worker: {claimed} runs done (--exit-after-runs); exiting");
            break;
        }
        // An approving review by a listed person counts as that person's approval.
        for id in ctx.engine.approve_by_reviews().await {
            println!("orch worker: {id} approved by a review on its pull request");
        }
        match ctx.engine.run_until_idle_claiming(&shutdown, left).await {
            Ok(summary) => {
                claimed = claimed.saturating_add(summary.runs);
                tracing::info!(
                    runs = summary.runs,
                    merged = summary.merged,
                    "worker pass done"
                );
                if left.is_some_and(|left| summary.runs >= left) {
                    continue;
                }
            }
            // A store that is briefly unreachable must not end the worker: the next pass retries.
            Err(e) => eprintln!(
                "orch worker: pass failed: {e}; trying again in {}s",
                args.poll_secs
            ),
        }
        // Idle until the poll interval ends, or sooner when the store says a run was queued
        // (PostgreSQL's NOTIFY): polling stays the truth, the wake-up only shortens the wait.
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ctx.engine.store().wait_for_work(poll) => {}
        }
    }
    shutdown.cancel();
    if let Err(e) = notify_loop.await {
        tracing::error!("the notification loop failed: {e}");
    }
    println!(
        "orch worker: stopped after {}",
        ctx.engine.claim_stats().describe()
    );
    Ok(0)
}

/// Cancels `shutdown` on SIGTERM or SIGINT. Running agents are then stopped; their runs keep
/// this worker's lease until it expires (or until a worker on this machine sees we are gone)
/// and are then claimed again.
fn stop_on_signal(shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        eprintln!(
            "orch worker: shutting down: claiming nothing new; running agents are stopped and their runs will be re-claimed"
        );
        shutdown.cancel();
    });
    Ok(())
}

/// Where the store is, safe to print: a SQLite URL as it is (a path holds no secret); any other
/// URL reduced to its scheme, host and port, so no user name, password or query parameter (such
/// as `password=`) can reach a log.
fn store_location(url: &str) -> String {
    if url.starts_with("sqlite:") {
        return url.to_owned();
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(unrecognised store URL)".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // The user info ends at the last `@` of the authority (a password may itself hold `@`).
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::store_location;

    #[test]
    fn store_locations_never_show_credentials() {
        let cases = [
            (
                "sqlite:///var/lib/orch/orch.db",
                "sqlite:///var/lib/orch/orch.db",
            ),
            (
                "postgres://orch:s3cret@db.internal:5432/orch",
                "postgres://db.internal:5432",
            ),
            ("postgresql://orch:p@ss@db/orch", "postgresql://db"),
            ("postgres://db/orch?password=s3cret", "postgres://db"),
            (
                "postgres://orch@127.0.0.1:55432",
                "postgres://127.0.0.1:55432",
            ),
            ("garbage", "(unrecognised store URL)"),
        ];
        for (url, shown) in cases {
            assert_eq!(store_location(url), shown, "{url}");
        }
    }
}
