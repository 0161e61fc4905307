//! Claims, leases and the fence on every write a lease holder makes.

use std::time::{Duration, Instant};

use orch_core::transition::ItemStatus;
use orch_store::{Fence, FinishRun, HousekeepingDue, NewEvent, NewRun, RunState, StoreError};
use serde_json::json;

use super::*;

pub async fn claim_takes_the_oldest_queued_run_and_marks_the_item_running(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let first = new_item(&*store, "first").await;
    let second = new_item(&*store, "second").await;

    let run = store
        .claim_next_run("worker-a", LEASE_MS)
        .await
        .expect("claim")
        .expect("a run");
    assert_eq!(run.item, first.id, "the oldest run goes first");
    assert_eq!((run.state, run.epoch), (RunState::Running, 1));
    let lease = run.lease.clone().expect("a lease");
    let started = run.started_at.expect("started");
    assert_eq!(lease.owner, "worker-a");
    assert!(
        lease.expires_at >= started + LEASE_MS && lease.expires_at < started + LEASE_MS + 5_000,
        "{lease:?}"
    );
    assert_eq!(
        super::run(&*store, run.id).await,
        run,
        "the returned record is what was stored"
    );

    let now = item(&*store, &first.id).await;
    assert_eq!(
        now.progress.status,
        ItemStatus::Running,
        "progress says running"
    );
    assert_eq!(
        now.progress,
        with_status(&first.progress, ItemStatus::Running),
        "nothing else in progress changed"
    );
    let claimed = events(&*store, &first.id).await.pop().expect("an event");
    assert_eq!(
        (claimed.kind.as_str(), claimed.seq, claimed.run_id),
        ("run.claimed", 2, Some(run.id))
    );
    assert_eq!(
        claimed.data,
        json!({"owner": "worker-a", "epoch": 1, "reclaimed": false, "stage": run.stage.as_str(), "attempt": 1})
    );

    let next = claim(&*store, "worker-b").await;
    assert_eq!(next.item, second.id);
    assert_eq!(
        store
            .claim_next_run("worker-c", LEASE_MS)
            .await
            .expect("claim"),
        None,
        "live leases are not taken"
    );
    let running: Vec<i64> = store
        .list_running()
        .await
        .expect("running")
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(running, [run.id, next.id]);
}

pub async fn waiting_runs_are_never_claimed(b: &dyn Backend) {
    let store = b.open().await;
    let demo = demo_project(&*store).await;
    let (progress, _) = start();
    let progress = ItemProgress {
        stage: stage("confirm-deploy"),
        status: ItemStatus::AwaitingApproval,
        ..progress
    };
    let approval = NewRun {
        stage: stage("confirm-deploy"),
        attempt: 1,
        state: RunState::Waiting,
        feedback: vec![],
    };
    let it = store
        .create_item(&demo, "DEMO", "t", "", &progress, approval, vec![])
        .await
        .expect("create");
    assert_eq!(
        store.list_runs(&it.id).await.expect("runs")[0].state,
        RunState::Waiting
    );
    assert_eq!(
        store.claim_next_run("w", LEASE_MS).await.expect("claim"),
        None
    );
    assert_eq!(
        item(&*store, &it.id).await.progress.status,
        ItemStatus::AwaitingApproval
    );
}

pub async fn housekeeping_due_says_which_lists_hold_anything(b: &dyn Backend) {
    let store = b.open().await;
    let demo = demo_project(&*store).await;
    let due = |owner: &'static str| {
        let store = Arc::clone(&store);
        async move { store.housekeeping_due(owner).await.expect("due") }
    };
    assert_eq!(due("w").await, HousekeepingDue::default(), "an empty store");
    new_item(&*store, "queued").await;
    assert_eq!(
        due("w").await,
        HousekeepingDue::default(),
        "queued work is no housekeeping"
    );
    claim(&*store, "w").await;
    assert_eq!(due("w").await, HousekeepingDue::default(), "its own run");
    assert_eq!(
        due("x").await,
        HousekeepingDue {
            others_running: true,
            ..HousekeepingDue::default()
        },
        "another owner's run"
    );
    let (progress, _) = start();
    for (status, stage_name) in [
        (ItemStatus::AwaitingApproval, "confirm-deploy"),
        (ItemStatus::Merging, "deploy"),
    ] {
        let progress = ItemProgress {
            stage: stage(stage_name),
            status,
            ..progress.clone()
        };
        let waiting = NewRun {
            stage: stage(stage_name),
            attempt: 1,
            state: RunState::Waiting,
            feedback: vec![],
        };
        store
            .create_item(&demo, "DEMO", "t", "", &progress, waiting, vec![])
            .await
            .expect("create");
    }
    assert_eq!(
        due("w").await,
        HousekeepingDue {
            others_running: false,
            merging: true,
            awaiting_approval: true,
        }
    );
}

pub async fn an_expired_lease_is_reclaimed_with_a_new_epoch(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let lost = claim(&*store, "dead-worker").await;
    store.expire_lease(lost.fence()).await.expect("expire");
    let expired = super::run(&*store, lost.id).await;
    assert_eq!(
        (expired.state, expired.epoch),
        (RunState::Running, 1),
        "expiring changes no state"
    );

    let taken = claim(&*store, "worker-b").await;
    assert_eq!((taken.id, taken.epoch), (lost.id, 2));
    assert_eq!(
        taken.lease.as_ref().map(|l| l.owner.as_str()),
        Some("worker-b")
    );
    assert_eq!(
        taken.started_at, lost.started_at,
        "started_at is the first start"
    );
    let log = events(&*store, &it.id).await;
    assert_eq!(
        kinds(&log),
        [
            "item.created",
            "run.claimed",
            "run.lease_expired",
            "run.claimed"
        ]
    );
    assert_eq!(log[3].data["reclaimed"], json!(true));
    assert_eq!(log[3].data["epoch"], json!(2));

    let stale = store.renew_lease(lost.fence(), LEASE_MS).await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost { run_id, epoch: 1 }) if run_id == lost.id),
        "{stale:?}"
    );
}

pub async fn a_run_that_gives_way_goes_to_the_back_of_the_claim_order(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let first = new_item(&*store, "first").await;
    let second = new_item(&*store, "second").await;
    let waiting = claim(&*store, "worker-a").await;
    assert_eq!(waiting.item, first.id, "the oldest run is claimed first");
    store
        .give_way(waiting.fence(), 300)
        .await
        .expect("give way");
    // The run queued after it is claimed before it; it is not claimable during the delay; then
    // it comes back, with a new epoch.
    let next = claim(&*store, "worker-b").await;
    assert_eq!(next.item, second.id);
    assert_eq!(
        store
            .claim_next_run("worker-b", LEASE_MS)
            .await
            .expect("claim"),
        None,
        "not before the delay runs out"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let again = claim(&*store, "worker-b").await;
    assert_eq!((again.id, again.epoch), (waiting.id, 2));
    // A stale fence gives nothing away, and the history says what happened.
    assert!(matches!(
        store.give_way(waiting.fence(), 300).await,
        Err(orch_store::StoreError::LeaseLost { .. })
    ));
    let events = store.list_events(&first.id, 0).await.expect("events");
    assert!(
        events.iter().any(|e| e.kind == "run.gave-way"),
        "{events:?}"
    );
}

pub async fn news_wakes_a_run_that_gave_way_and_never_one_that_is_held(b: &dyn Backend) {
    let store = b.open().await;
    let demo = demo_project(&*store).await;
    let other = project_id("other");
    store
        .upsert_project(&other, "/srv/other")
        .await
        .expect("project");
    let first = new_item(&*store, "waits for news").await;
    new_item(&*store, "held").await;
    let waiting = claim(&*store, "worker-a").await;
    assert_eq!(waiting.item, first.id);
    store
        .give_way(waiting.fence(), 600_000)
        .await
        .expect("give way");
    let held = claim(&*store, "worker-b").await;
    assert_eq!(
        store
            .claim_next_run("worker-c", LEASE_MS)
            .await
            .expect("claim"),
        None,
        "paused for ten minutes"
    );
    assert_eq!(store.wake_given_way(&other).await.expect("wake"), 0);
    assert_eq!(store.wake_given_way(&demo).await.expect("wake"), 1);
    let again = claim(&*store, "worker-c").await;
    assert_eq!(
        (again.id, again.epoch),
        (waiting.id, 2),
        "claimable at once"
    );
    // The held run and the one just claimed again are live: nothing to wake, no lease broken.
    assert_eq!(store.wake_given_way(&demo).await.expect("wake"), 0);
    store
        .renew_lease(held.fence(), LEASE_MS)
        .await
        .expect("the held run's lease still holds");
    let events = store.list_events(&first.id, 0).await.expect("events");
    assert_eq!(
        kinds(&events),
        [
            "item.created",
            "run.claimed",
            "run.gave-way",
            "run.woken",
            "run.claimed"
        ]
    );
}

pub async fn a_lease_runs_out_on_the_database_clock(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    new_item(&*store, "t").await;
    let short = store
        .claim_next_run("slow", 200)
        .await
        .expect("claim")
        .expect("a run");
    assert_eq!(
        store
            .claim_next_run("eager", LEASE_MS)
            .await
            .expect("claim"),
        None,
        "not before it runs out"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        if let Some(run) = store
            .claim_next_run("eager", LEASE_MS)
            .await
            .expect("claim")
        {
            break run;
        }
        assert!(Instant::now() < deadline, "a 200 ms lease never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((taken.id, taken.epoch), (short.id, 2));
}

pub async fn renew_extends_the_lease(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    new_item(&*store, "t").await;
    let held = store
        .claim_next_run("w", 1_000)
        .await
        .expect("claim")
        .expect("a run");
    store
        .renew_lease(held.fence(), 3_600_000)
        .await
        .expect("renew");
    let renewed = super::run(&*store, held.id).await;
    let (before, after) = (
        held.lease.clone().expect("lease").expires_at,
        renewed.lease.expect("lease").expires_at,
    );
    assert!(after >= before + 3_599_000 - 1_000, "{before} -> {after}");
    assert_eq!(renewed.epoch, held.epoch, "renewing is not a new claim");
    let refused = store.renew_lease(held.fence(), 0).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
}

pub async fn save_checkpoint_replaces_it_and_logs_events(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let held = claim(&*store, "w").await;
    assert_eq!(
        held.checkpoint,
        json!({}),
        "a run starts with an empty checkpoint"
    );
    store
        .save_checkpoint(held.fence(), json!({"base": "abc", "pid": 7}), vec![])
        .await
        .expect("save");
    let phase = NewEvent::for_run("run.phase", held.id, json!({"phase": "agent"}));
    store
        .save_checkpoint(held.fence(), json!({"base": "abc"}), vec![phase])
        .await
        .expect("save");
    assert_eq!(
        super::run(&*store, held.id).await.checkpoint,
        json!({"base": "abc"}),
        "replaced, not merged"
    );
    assert_eq!(
        kinds(&events(&*store, &it.id).await).last(),
        Some(&"run.phase")
    );
}

pub async fn finish_run_ends_the_run_and_moves_the_item_on(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let held = claim(&*store, "w").await;
    let (next_progress, next_run) = moved_to(&it.progress, "architecture");
    let finish = FinishRun {
        state: RunState::Passed,
        verdict: json!({"class": "pass"}),
        usage: Some(json!({"tokens": 1200})),
        progress: next_progress.clone(),
        blocked_reason: None,
        next_run: Some(next_run),
        events: vec![
            NewEvent::for_run("run.passed", held.id, json!({})),
            NewEvent::new("stage.entered", json!({})),
        ],
    };
    store
        .finish_run(held.fence(), finish)
        .await
        .expect("finish");

    let done = super::run(&*store, held.id).await;
    assert_eq!(
        (done.state, done.epoch, &done.lease),
        (RunState::Passed, held.epoch, &None)
    );
    assert_eq!(
        (done.verdict, done.usage),
        (
            Some(json!({"class": "pass"})),
            Some(json!({"tokens": 1200}))
        )
    );
    assert!(done.finished_at >= done.started_at && done.finished_at.is_some());
    let moved = item(&*store, &it.id).await;
    assert_eq!(moved.progress, next_progress);
    assert_eq!(
        kinds(&events(&*store, &it.id).await),
        ["item.created", "run.claimed", "run.passed", "stage.entered"]
    );

    let next = claim(&*store, "w").await;
    assert_eq!(
        (next.stage.as_str(), next.attempt, next.epoch),
        ("architecture", 1, 1)
    );
    let again = store
        .finish_run(
            held.fence(),
            FinishRun {
                next_run: None,
                ..finish_like(&next_progress)
            },
        )
        .await;
    assert!(
        matches!(again, Err(StoreError::LeaseLost { .. })),
        "a finished run cannot finish twice: {again:?}"
    );
    let active = store
        .finish_run(
            next.fence(),
            FinishRun {
                state: RunState::Queued,
                ..finish_like(&next_progress)
            },
        )
        .await;
    assert!(matches!(active, Err(StoreError::Invalid(_))), "{active:?}");
    assert_eq!(
        super::run(&*store, next.id).await,
        next,
        "a refused finish writes nothing"
    );
}

fn finish_like(progress: &ItemProgress) -> FinishRun {
    FinishRun {
        state: RunState::Failed,
        verdict: json!({"class": "fail"}),
        usage: None,
        progress: progress.clone(),
        blocked_reason: Some("stale".into()),
        next_run: None,
        events: vec![NewEvent::new("stale.write", json!({}))],
    }
}

/// After a takeover, every write with the old epoch is refused and leaves no trace.
pub async fn a_stale_fence_changes_nothing(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let old = claim(&*store, "old").await;
    store.expire_lease(old.fence()).await.expect("expire");
    let current = claim(&*store, "new").await;
    let before = snapshot(&*store, &it.id).await;

    let lost = |r: Result<(), StoreError>| matches!(r, Err(StoreError::LeaseLost { .. }));
    let stale = old.fence();
    assert!(lost(store.renew_lease(stale, LEASE_MS).await));
    assert!(lost(store.expire_lease(stale).await));
    assert!(lost(
        store
            .save_checkpoint(
                stale,
                json!({"x": 1}),
                vec![NewEvent::new("stale", json!(0))]
            )
            .await
    ));
    let (moved, next) = moved_to(&it.progress, "architecture");
    let finish = FinishRun {
        next_run: Some(next),
        ..finish_like(&moved)
    };
    assert!(lost(store.finish_run(stale, finish.clone()).await));
    let future = Fence {
        run_id: current.id,
        epoch: current.epoch + 1,
    };
    assert!(
        lost(store.finish_run(future, finish.clone()).await),
        "only the exact epoch holds"
    );
    assert!(lost(
        store
            .finish_run(
                Fence {
                    run_id: 999_999,
                    epoch: 1
                },
                finish
            )
            .await
    ));

    assert_eq!(
        snapshot(&*store, &it.id).await,
        before,
        "no row changed, no event appended"
    );
}
