//! The conformance suite of the [`Store`] port, generic over the backend.
//!
//! Each test is an `async fn(&dyn Backend)`; a backend's entry point (see `sqlite.rs`) runs every
//! one of them against a fresh, empty database.

pub mod concurrency;
pub mod durability;
pub mod items;
pub mod links;
pub mod notifications;
pub mod people;
pub mod runs;

use std::sync::Arc;

use async_trait::async_trait;
use orch_core::pipeline::{DEFAULT_PIPELINE_TOML, Pipeline};
use orch_core::transition::{self, Effect, ItemProgress, ItemStatus};
use orch_core::{ItemId, ProjectId, StageName};
use orch_store::{EventRecord, ItemRecord, NewEvent, NewRun, RunRecord, RunState, Store};
use serde_json::json;

/// A fresh, empty database of one backend.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens another handle on the same database, as a second process would.
    async fn open(&self) -> Arc<dyn Store>;
}

pub const LEASE_MS: i64 = 60_000;

pub fn project_id(name: &str) -> ProjectId {
    ProjectId::parse(name).expect("valid project name")
}

pub fn stage(name: &str) -> StageName {
    StageName::parse(name).expect("valid stage name")
}

/// A new item's progress and first run, as the engine computes them from the default pipeline.
pub fn start() -> (ItemProgress, NewRun) {
    let pipeline = Pipeline::from_toml(DEFAULT_PIPELINE_TOML).expect("default pipeline parses");
    let decision = transition::start(&pipeline);
    let Some(Effect::StartRun {
        stage,
        attempt,
        feedback,
    }) = decision.effects.first().cloned()
    else {
        panic!("start must begin with a run: {:?}", decision.effects);
    };
    (
        decision.progress,
        NewRun {
            stage,
            attempt,
            state: RunState::Queued,
            feedback,
        },
    )
}

/// `progress` moved on to `next` (queued), as after a passed stage.
pub fn moved_to(progress: &ItemProgress, next: &str) -> (ItemProgress, NewRun) {
    let mut p = progress.clone();
    let attempt = p.attempts.get(&stage(next)).copied().unwrap_or(0) + 1;
    p.attempts.insert(stage(next), attempt);
    p.stage = stage(next);
    p.status = ItemStatus::Queued;
    (
        p,
        NewRun {
            stage: stage(next),
            attempt,
            state: RunState::Queued,
            feedback: vec![],
        },
    )
}

pub fn with_status(progress: &ItemProgress, status: ItemStatus) -> ItemProgress {
    ItemProgress {
        status,
        ..progress.clone()
    }
}

pub async fn demo_project(store: &dyn Store) -> ProjectId {
    let id = project_id("demo");
    store
        .upsert_project(&id, "/srv/demo")
        .await
        .expect("upsert project");
    id
}

/// Creates an item of `demo` (which must exist) with a queued first run.
pub async fn new_item(store: &dyn Store, title: &str) -> ItemRecord {
    let (progress, run) = start();
    let created = NewEvent::new("item.created", json!({ "title": title }));
    store
        .create_item(
            &project_id("demo"),
            "DEMO",
            title,
            "body",
            &progress,
            run,
            vec![created],
        )
        .await
        .expect("create item")
}

pub async fn claim(store: &dyn Store, owner: &str) -> RunRecord {
    store
        .claim_next_run(owner, LEASE_MS)
        .await
        .expect("claim")
        .expect("a claimable run")
}

pub async fn item(store: &dyn Store, id: &ItemId) -> ItemRecord {
    store
        .get_item(id)
        .await
        .expect("get item")
        .expect("item exists")
}

pub async fn run(store: &dyn Store, run_id: i64) -> RunRecord {
    store
        .get_run(run_id)
        .await
        .expect("get run")
        .expect("run exists")
}

pub async fn events(store: &dyn Store, id: &ItemId) -> Vec<EventRecord> {
    store.list_events(id, 0).await.expect("list events")
}

pub fn kinds(events: &[EventRecord]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

/// Everything the store says about one item, to show that a refused write changed nothing.
pub async fn snapshot(
    store: &dyn Store,
    id: &ItemId,
) -> (ItemRecord, Vec<RunRecord>, Vec<EventRecord>) {
    (
        item(store, id).await,
        store.list_runs(id).await.expect("list runs"),
        events(store, id).await,
    )
}
