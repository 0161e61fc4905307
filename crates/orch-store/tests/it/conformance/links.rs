//! Items linked to a tracker's ids (created once however often they are announced) and the
//! cursors of event-log followers.

use std::collections::BTreeSet;

use orch_store::NewEvent;
use serde_json::json;

use super::{Backend, demo_project, project_id, start};

async fn create_linked(
    store: &dyn orch_store::Store,
    project: &str,
    external: &str,
) -> (orch_store::ItemRecord, bool) {
    let (progress, run) = start();
    store
        .create_linked_item(
            external,
            &project_id(project),
            &project.to_uppercase(),
            "from the tracker",
            "",
            &progress,
            run,
            vec![NewEvent::new("item.created", json!({}))],
        )
        .await
        .expect("create linked item")
}

pub async fn a_linked_item_is_created_once_per_external_id(backend: &dyn Backend) {
    let store = backend.open().await;
    demo_project(store.as_ref()).await;
    store
        .upsert_project(&project_id("other"), "/srv/other")
        .await
        .expect("other project");

    let (first, created) = create_linked(store.as_ref(), "demo", "plane:abc").await;
    assert!(created);
    let (again, created) = create_linked(store.as_ref(), "demo", "plane:abc").await;
    assert!(!created, "the second announcement creates nothing");
    assert_eq!(again.id, first.id);
    assert_eq!(store.list_items(None).await.expect("list").len(), 1);
    assert_eq!(
        store.list_events(&first.id, 0).await.expect("events").len(),
        1,
        "no events for the no-op"
    );

    let (other, created) = create_linked(store.as_ref(), "other", "plane:abc").await;
    assert!(created, "the same id in another project is another item");
    assert_ne!(other.id, first.id);

    assert_eq!(
        store
            .find_linked_item(&project_id("demo"), "plane:abc")
            .await
            .expect("find"),
        Some(first.id.clone())
    );
    assert_eq!(
        store
            .find_linked_item(&project_id("demo"), "plane:zzz")
            .await
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .external_id(&first.id)
            .await
            .expect("external id")
            .as_deref(),
        Some("plane:abc")
    );
}

pub async fn racing_announcements_create_one_item(backend: &dyn Backend) {
    let first = backend.open().await;
    demo_project(first.as_ref()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let store = backend.open().await;
        tasks.spawn(async move { create_linked(store.as_ref(), "demo", "gitea:7").await });
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    while let Some(joined) = tasks.join_next().await {
        let (item, was_created) = joined.expect("task");
        ids.insert(item.id);
        created += usize::from(was_created);
    }
    assert_eq!((ids.len(), created), (1, 1), "one item, created once");
}

pub async fn cursors_start_at_zero_and_are_shared(backend: &dyn Backend) {
    let store = backend.open().await;
    assert_eq!(store.cursor("follow:DEMO-1").await.expect("cursor"), 0);
    store.set_cursor("follow:DEMO-1", 5).await.expect("set");
    let other = backend.open().await;
    assert_eq!(other.cursor("follow:DEMO-1").await.expect("cursor"), 5);
    other.set_cursor("follow:DEMO-1", 9).await.expect("set");
    assert_eq!(store.cursor("follow:DEMO-1").await.expect("cursor"), 9);
    assert_eq!(store.cursor("follow:DEMO-2").await.expect("cursor"), 0);
}
