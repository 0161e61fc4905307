//! `orch serve`: the HTTP server (JSON API, webhooks, metrics) and the engine loop, side by side,
//! until Ctrl-C or SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use orch_engine::Engine;
use orch_server::{AppState, WebhookSource};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::context::Context;
use crate::env;
use crate::error::UsageError;

/// How long the engine loop rests when nothing is runnable and no request woke it.
const POLL_INTERVAL: Duration = Duration::from_secs(2);

pub async fn run(ctx: &Context, args: ServeArgs) -> anyhow::Result<i32> {
    let shutdown = CancellationToken::new();
    // Before binding, so a SIGTERM that follows readiness is always a graceful stop.
    stop_on_signal(shutdown.clone())?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            UsageError(format!(
                "cannot listen on {}: {e}; pick another address with --listen",
                args.listen
            ))
        })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let (state, configured) = app_state(Arc::clone(&ctx.engine))?;
    let server = &ctx.settings.server;
    let state = state
        .with_service_name(ctx.settings.service_name.clone())
        .with_allowed_hosts(server.hosts.clone())
        .with_public_content(server.public_content)
        .with_trusted_proxies(server.trusted_proxies.clone())
        .with_secure_cookies(server.secure_cookies)
        .with_proxy_auth(server.proxy_auth);
    println!("orch serve: listening on http://{addr}");
    for line in configured {
        println!("  {line}");
    }

    let engine_loop = tokio::spawn(run_engine(
        Arc::clone(&ctx.engine),
        state.work_added(),
        shutdown.clone(),
    ));
    let remotes_loop = tokio::spawn(run_remotes(
        Arc::clone(&ctx.engine),
        state.work_added(),
        ctx.settings.tracker_poll,
        shutdown.clone(),
    ));
    let notify_loop = tokio::spawn(run_notifications(Arc::clone(&ctx.engine), shutdown.clone()));
    let served = orch_server::serve(listener, state, shutdown.clone().cancelled_owned()).await;
    // Whatever ended the server also ends the engine loop; wait for its agents to stop.
    shutdown.cancel();
    if let Err(e) = engine_loop.await {
        tracing::error!("the engine loop failed: {e}");
    }
    if let Err(e) = remotes_loop.await {
        tracing::error!("the tracker and forge loop failed: {e}");
    }
    if let Err(e) = notify_loop.await {
        tracing::error!("the notification loop failed: {e}");
    }
    served.with_context(|| format!("serving HTTP on {addr}"))?;
    println!("orch serve: stopped");
    Ok(0)
}

/// The server state with the secrets from the environment, and one line per secret saying
/// whether it is set (never its value).
pub(crate) fn app_state(engine: Arc<Engine>) -> anyhow::Result<(AppState, Vec<String>)> {
    let mut state = AppState::new(engine);
    let mut lines = Vec::new();
    match secret(env::API_TOKEN)? {
        Some(token) => {
            state = state.with_api_token(token);
            lines.push(
                "API /api/v1: bearer token required (the automation token, or a person's)"
                    .to_owned(),
            );
        }
        None => lines.push(format!(
            "API /api/v1: read-only ({} is not set)",
            env::API_TOKEN
        )),
    }
    let hooks = [
        (WebhookSource::Plane, env::PLANE_WEBHOOK_SECRET),
        (WebhookSource::Gitea, env::GITEA_WEBHOOK_SECRET),
        (WebhookSource::Github, env::GITHUB_WEBHOOK_SECRET),
    ];
    for (source, name) in hooks {
        match secret(name)? {
            Some(value) => {
                state = state.with_webhook_secret(source, value);
                lines.push(format!("webhooks /hooks/{}: signed", source.as_str()));
            }
            None => lines.push(format!(
                "webhooks /hooks/{}: refused ({name} is not set)",
                source.as_str()
            )),
        }
    }
    Ok((state, lines))
}

/// A secret from the environment; unset or blank is `None`.
pub(crate) fn secret(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => Ok(Some(v.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(UsageError(format!("{name} is not valid UTF-8")).into())
        }
    }
}

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
            "orch serve: shutting down: no new requests; running agents are stopped and their runs will be re-claimed"
        );
        shutdown.cancel();
    });
    Ok(())
}

/// Processes ready items until shutdown: a pass until idle, then a rest that a request which
/// queued work cuts short.
async fn run_engine(engine: Arc<Engine>, work_added: Arc<Notify>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match engine.run_until_idle(&shutdown).await {
            Ok(summary) => tracing::info!(
                runs = summary.runs,
                merged = summary.merged,
                "engine pass done"
            ),
            Err(e) => eprintln!("orch serve: engine pass failed: {e}; trying again shortly"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = work_added.notified() => {}
            // Another process (a worker, the CLI) queued a run: PostgreSQL says so at once.
            _ = engine.store().wait_for_work(POLL_INTERVAL) => {}
        }
    }
}

/// How often the event follower tells trackers and forges what happened.
const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Until shutdown: follows the event log out to trackers and forges every second, and
/// reconciles with the trackers every `poll` (catching missed webhooks). Does nothing when no
/// project has a tracker or a forge.
async fn run_remotes(
    engine: Arc<Engine>,
    work_added: Arc<Notify>,
    poll: Duration,
    shutdown: CancellationToken,
) {
    if engine.projects().all(|p| p.settings.remotes.is_empty()) {
        return;
    }
    let mut last_reconcile: Option<tokio::time::Instant> = None;
    while !shutdown.is_cancelled() {
        if last_reconcile.is_none_or(|t| t.elapsed() >= poll) {
            let by_review = engine.approve_by_reviews().await;
            if !by_review.is_empty() {
                work_added.notify_one();
            }
            let actions = engine.reconcile_trackers().await;
            if actions.iter().any(|(_, a)| {
                matches!(
                    a,
                    orch_engine::TrackerAction::Created(_)
                        | orch_engine::TrackerAction::Approved(_)
                )
            }) {
                work_added.notify_one();
            }
            last_reconcile = Some(tokio::time::Instant::now());
        }
        if let Err(e) = engine.follow_remotes().await {
            eprintln!("orch serve: following events to trackers and forges failed: {e}");
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
        }
    }
}

/// How often new events are turned into notifications and due ones are sent.
const NOTIFY_INTERVAL: Duration = Duration::from_secs(1);

/// Until shutdown: records and sends notifications every second, beside the engine loop (a
/// receiver that is slow or down never holds up a stage). Does nothing when no project has a
/// `[[projects.notify]]` receiver.
pub(crate) async fn run_notifications(engine: Arc<Engine>, shutdown: CancellationToken) {
    if engine.projects().all(|p| p.settings.notify.is_empty()) {
        return;
    }
    while !shutdown.is_cancelled() {
        tokio::select! {
            () = shutdown.cancelled() => break,
            passed = engine.notify_pass() => {
                if let Err(e) = passed {
                    eprintln!("orch: sending notifications failed: {e}; trying again shortly");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(NOTIFY_INTERVAL) => {}
        }
    }
}
