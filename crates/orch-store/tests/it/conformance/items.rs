//! Projects, items, and changes made outside a lease.

use orch_core::ItemId;
use orch_core::transition::ItemStatus;
use orch_store::{ItemChange, NewEvent, NewRun, RunState, StoreError};
use serde_json::json;

use super::*;

pub async fn projects_are_upserted_and_listed(b: &dyn Backend) {
    let store = b.open().await;
    let first = store
        .upsert_project(&project_id("zeta"), "/srv/zeta")
        .await
        .expect("create");
    assert_eq!(first.repo_path, "/srv/zeta");
    assert!(
        first.created_at > 1_600_000_000_000,
        "created_at is epoch millis: {}",
        first.created_at
    );

    let moved = store
        .upsert_project(&project_id("zeta"), "/srv/zeta-moved")
        .await
        .expect("update");
    assert_eq!(moved.repo_path, "/srv/zeta-moved");
    assert_eq!(
        moved.created_at, first.created_at,
        "an update keeps the creation time"
    );

    store
        .upsert_project(&project_id("alpha"), "/srv/alpha")
        .await
        .expect("create");
    let names: Vec<String> = store
        .list_projects()
        .await
        .expect("list")
        .into_iter()
        .map(|p| p.id.to_string())
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(
        store.get_project(&project_id("zeta")).await.expect("get"),
        Some(moved)
    );
    assert_eq!(
        store.get_project(&project_id("nope")).await.expect("get"),
        None
    );
}

pub async fn create_item_numbers_items_and_writes_run_and_events(b: &dyn Backend) {
    let store = b.open().await;
    let demo = demo_project(&*store).await;
    let (progress, first_run) = start();
    let first_events = vec![
        NewEvent::new("item.created", json!({"by": "test"})),
        NewEvent::new("item.noted", json!(1)),
    ];
    let one = store
        .create_item(
            &demo,
            "DEMO",
            "first",
            "the body",
            &progress,
            first_run.clone(),
            first_events,
        )
        .await
        .expect("create");
    let two = new_item(&*store, "second").await;

    assert_eq!((one.id.as_str(), two.id.as_str()), ("DEMO-1", "DEMO-2"));
    assert_eq!(ItemId::parse(one.id.as_str()).as_ref(), Ok(&one.id));
    assert_eq!(
        (one.title.as_str(), one.body.as_str(), &one.project),
        ("first", "the body", &demo)
    );
    assert_eq!(one.progress, progress, "progress round-trips exactly");
    assert_eq!(one.blocked_reason, None);
    assert!(one.created_at > 0 && one.updated_at == one.created_at);
    assert_eq!(item(&*store, &one.id).await, one);

    let runs = store.list_runs(&one.id).await.expect("runs");
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(
        (&r.item, &r.project, &r.stage, r.attempt),
        (&one.id, &demo, &first_run.stage, first_run.attempt)
    );
    assert_eq!(
        (r.state, r.epoch, &r.lease, r.started_at, r.finished_at),
        (RunState::Queued, 0, &None, None, None)
    );
    assert_eq!(
        (&r.feedback, &r.verdict, &r.usage),
        (&first_run.feedback, &None, &None)
    );

    let logged = events(&*store, &one.id).await;
    assert_eq!(logged.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(kinds(&logged), ["item.created", "item.noted"]);
    assert_eq!(logged[0].data, json!({"by": "test"}));
    assert!(
        logged
            .iter()
            .all(|e| e.item == one.id && e.at >= one.created_at && e.run_id.is_none())
    );
}

pub async fn items_are_listed_oldest_first_and_per_project(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let other = project_id("other");
    store
        .upsert_project(&other, "/srv/other")
        .await
        .expect("project");
    for n in 1..=11 {
        new_item(&*store, &format!("demo {n}")).await;
    }
    let (progress, run) = start();
    let foreign = store
        .create_item(&other, "OTHER", "o", "", &progress, run, vec![])
        .await
        .expect("create");
    assert_eq!(foreign.id.as_str(), "OTHER-1", "numbers are per project");

    let demo_ids: Vec<String> = store
        .list_items(Some(&project_id("demo")))
        .await
        .expect("list")
        .iter()
        .map(|i| i.id.to_string())
        .collect();
    let expected: Vec<String> = (1..=11).map(|n| format!("DEMO-{n}")).collect();
    assert_eq!(demo_ids, expected);
    let all = store.list_items(None).await.expect("list all");
    assert_eq!(all.len(), 12);
    assert_eq!(all.last().map(|i| i.id.as_str()), Some("OTHER-1"));
}

pub async fn create_item_refuses_unknown_project_and_bad_input(b: &dyn Backend) {
    let store = b.open().await;
    let (progress, run) = start();
    let missing = store
        .create_item(
            &project_id("ghost"),
            "GHOST",
            "t",
            "",
            &progress,
            run.clone(),
            vec![],
        )
        .await;
    assert!(
        matches!(
            missing,
            Err(StoreError::NotFound {
                what: "project",
                ..
            })
        ),
        "{missing:?}"
    );

    let demo = demo_project(&*store).await;
    let bad_prefix = store
        .create_item(&demo, "de/mo", "t", "", &progress, run.clone(), vec![])
        .await;
    assert!(
        matches!(bad_prefix, Err(StoreError::Invalid(_))),
        "{bad_prefix:?}"
    );
    let running = NewRun {
        state: RunState::Running,
        ..run
    };
    let bad_state = store
        .create_item(&demo, "DEMO", "t", "", &progress, running, vec![])
        .await;
    assert!(
        matches!(bad_state, Err(StoreError::Invalid(_))),
        "{bad_state:?}"
    );

    assert_eq!(
        store.list_items(None).await.expect("list"),
        vec![],
        "a refused create writes nothing"
    );
    assert_eq!(
        new_item(&*store, "t").await.id.as_str(),
        "DEMO-1",
        "no number was spent"
    );
}

pub async fn change_item_refuses_an_unexpected_status(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let before = snapshot(&*store, &it.id).await;
    let change = ItemChange {
        expected: vec![ItemStatus::AwaitingApproval, ItemStatus::Blocked],
        progress: with_status(&it.progress, ItemStatus::Cancelled),
        blocked_reason: None,
        end_active_run: Some(RunState::Cancelled),
        next_run: None,
        events: vec![NewEvent::new("item.stopped", json!({}))],
    };
    match store.change_item(&it.id, change.clone()).await {
        Err(StoreError::Conflict {
            item,
            actual,
            expected,
        }) => {
            assert_eq!((item.as_str(), actual.as_str()), ("DEMO-1", "queued"));
            assert_eq!(expected, "awaiting-approval, blocked");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        snapshot(&*store, &it.id).await,
        before,
        "a conflict writes nothing"
    );

    let missing = store
        .change_item(&ItemId::parse("DEMO-99").expect("id"), change)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { what: "item", .. })),
        "{missing:?}"
    );
}

pub async fn change_item_ends_the_active_run_and_fences_its_holder(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let held = claim(&*store, "worker-a").await;
    let stop = ItemChange {
        expected: vec![ItemStatus::Queued, ItemStatus::Running],
        progress: with_status(&it.progress, ItemStatus::Cancelled),
        blocked_reason: None,
        end_active_run: Some(RunState::Cancelled),
        next_run: None,
        events: vec![NewEvent::for_run(
            "item.stopped",
            held.id,
            json!({"by": "alice"}),
        )],
    };
    store.change_item(&it.id, stop).await.expect("stop");

    let ended = run(&*store, held.id).await;
    assert_eq!(
        (ended.state, ended.epoch, &ended.lease),
        (RunState::Cancelled, held.epoch + 1, &None)
    );
    assert!(ended.finished_at.is_some());
    let now = item(&*store, &it.id).await;
    assert_eq!(now.progress.status, ItemStatus::Cancelled);
    assert!(now.updated_at >= it.updated_at);
    assert_eq!(
        kinds(&events(&*store, &it.id).await).last(),
        Some(&"item.stopped")
    );

    let late = store
        .save_checkpoint(held.fence(), json!({"phase": "late"}), vec![])
        .await;
    assert!(
        matches!(late, Err(StoreError::LeaseLost { .. })),
        "the old holder is fenced out: {late:?}"
    );
    assert_eq!(
        store
            .claim_next_run("worker-b", LEASE_MS)
            .await
            .expect("claim"),
        None,
        "nothing left to claim"
    );
}

pub async fn change_item_starts_the_next_run_and_keeps_one_active(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let first = store.list_runs(&it.id).await.expect("runs").remove(0);

    // A second active run beside the queued one is refused, and nothing is written.
    let (blocked_progress, _) = moved_to(&it.progress, "architecture");
    let before = snapshot(&*store, &it.id).await;
    let second = ItemChange {
        expected: vec![ItemStatus::Queued],
        progress: blocked_progress,
        blocked_reason: None,
        end_active_run: None,
        next_run: Some(NewRun {
            stage: stage("architecture"),
            attempt: 1,
            state: RunState::Queued,
            feedback: vec![],
        }),
        events: vec![NewEvent::new("x", json!(null))],
    };
    let refused = store.change_item(&it.id, second).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(snapshot(&*store, &it.id).await, before);

    // Blocked with a reason, then retried with a new attempt and feedback.
    let block = ItemChange {
        expected: vec![ItemStatus::Queued],
        progress: with_status(&it.progress, ItemStatus::Blocked),
        blocked_reason: Some("budget spent".to_owned()),
        end_active_run: Some(RunState::Failed),
        next_run: None,
        events: vec![NewEvent::new(
            "item.blocked",
            json!({"reason": "budget spent"}),
        )],
    };
    store.change_item(&it.id, block).await.expect("block");
    let blocked = item(&*store, &it.id).await;
    assert_eq!(
        (blocked.progress.status, blocked.blocked_reason.as_deref()),
        (ItemStatus::Blocked, Some("budget spent"))
    );

    let retry_run = NewRun {
        stage: first.stage.clone(),
        attempt: 2,
        state: RunState::Queued,
        feedback: vec!["answer".into()],
    };
    let retry = ItemChange {
        expected: vec![ItemStatus::Blocked, ItemStatus::NeedsInfo],
        progress: with_status(&it.progress, ItemStatus::Queued),
        blocked_reason: None,
        end_active_run: Some(RunState::Cancelled),
        next_run: Some(retry_run),
        events: vec![NewEvent::new("item.retried", json!({}))],
    };
    store.change_item(&it.id, retry).await.expect("retry");
    let runs = store.list_runs(&it.id).await.expect("runs");
    let states: Vec<(u32, RunState)> = runs.iter().map(|r| (r.attempt, r.state)).collect();
    assert_eq!(
        states,
        [(1, RunState::Failed), (2, RunState::Queued)],
        "ending no active run touches no finished one"
    );
    assert_eq!(runs[1].feedback, ["answer"]);
    assert_eq!(
        item(&*store, &it.id).await.blocked_reason,
        None,
        "the reason is cleared when the item moves on"
    );
    assert_eq!(
        kinds(&events(&*store, &it.id).await),
        ["item.created", "item.blocked", "item.retried"]
    );
}

pub async fn items_are_listed_by_status_oldest_first(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    for n in 1..=11 {
        new_item(&*store, &format!("demo {n}")).await;
    }
    // Claiming moves the two oldest items to running; the rest stay queued.
    claim(&*store, "w").await;
    claim(&*store, "w").await;
    let ids = |items: Vec<ItemRecord>| -> Vec<String> {
        items.iter().map(|i| i.id.to_string()).collect()
    };
    let running = store
        .list_items_with_status(ItemStatus::Running)
        .await
        .expect("running");
    assert_eq!(ids(running), ["DEMO-1", "DEMO-2"]);
    let queued = store
        .list_items_with_status(ItemStatus::Queued)
        .await
        .expect("queued");
    let expected: Vec<String> = (3..=11).map(|n| format!("DEMO-{n}")).collect();
    assert_eq!(ids(queued), expected, "oldest first, DEMO-9 before DEMO-10");
    assert!(
        store
            .list_items_with_status(ItemStatus::Merging)
            .await
            .expect("merging")
            .is_empty()
    );
}
