//! Row locks on the server, driven step by step from a second connection: a claim skips a run
//! another transaction holds, and a fenced write waits for a concurrent claim and then finds
//! its lease lost instead of overwriting the new holder's run.

use std::time::{Duration, Instant};

use orch_core::transition::ItemStatus;
use orch_store::{ItemChange, NewEvent, RunState, StoreError};
use serde_json::json;
use sqlx::Connection;

use super::PgDatabase;
use crate::conformance::{Backend, LEASE_MS, claim, demo_project, new_item, with_status};

/// Waits until some session of this database is blocked on a row lock.
async fn until_someone_waits_for_a_lock(db: &PgDatabase) {
    let mut watcher = db.raw().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "nobody ever waited for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_claim_skips_a_run_another_transaction_holds() {
    let Some(db) = PgDatabase::create("claim_skips_locked").await else {
        return;
    };
    let store = db.open().await;
    demo_project(&*store).await;
    let first = new_item(&*store, "first").await;
    let second = new_item(&*store, "second").await;
    let first_run = store.list_runs(&first.id).await.expect("runs").remove(0);

    let mut other = db.raw().await;
    let mut holding = other.begin().await.expect("begin");
    sqlx::query("SELECT id FROM stage_runs WHERE id = $1 FOR UPDATE")
        .bind(first_run.id)
        .execute(&mut *holding)
        .await
        .expect("lock the oldest run");

    let claimed = tokio::time::timeout(Duration::from_secs(5), store.claim_next_run("w", LEASE_MS))
        .await
        .expect("a claim must not wait for a locked run")
        .expect("claim")
        .expect("the next run is claimable");
    assert_eq!(claimed.item, second.id, "the locked run was skipped");

    holding.rollback().await.expect("release");
    assert_eq!(claim(&*store, "w").await.item, first.id);
}

#[tokio::test]
async fn a_fenced_write_racing_a_takeover_finds_its_lease_lost() {
    let Some(db) = PgDatabase::create("fence_waits_for_claim").await else {
        return;
    };
    let store = db.open().await;
    demo_project(&*store).await;
    new_item(&*store, "t").await;
    let held = claim(&*store, "old-owner").await;

    // Another worker is in the middle of taking the run over: it holds the row and has bumped
    // the epoch, but has not committed yet.
    let mut other = db.raw().await;
    let mut takeover = other.begin().await.expect("begin");
    sqlx::query("SELECT id FROM stage_runs WHERE id = $1 FOR UPDATE")
        .bind(held.id)
        .execute(&mut *takeover)
        .await
        .expect("lock the run");
    sqlx::query("UPDATE stage_runs SET epoch = epoch + 1, lease_owner = 'new-owner' WHERE id = $1")
        .bind(held.id)
        .execute(&mut *takeover)
        .await
        .expect("take it over");

    let fence = held.fence();
    let writer = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move {
            store
                .save_checkpoint(fence, json!({"phase": "stale"}), vec![])
                .await
        })
    };
    until_someone_waits_for_a_lock(&db).await;
    takeover.commit().await.expect("commit the takeover");

    let written = writer.await.expect("writer task");
    assert!(
        matches!(written, Err(StoreError::LeaseLost { run_id, .. }) if run_id == held.id),
        "{written:?}"
    );
    let run = store.get_run(held.id).await.expect("get").expect("run");
    assert_eq!(run.checkpoint, json!({}), "the stale write changed nothing");
    assert_eq!(run.epoch, held.epoch + 1);
}

/// Appends to one item from many connections at once, both standalone and with checkpoints of
/// its running run: each waits its turn on the item's row, so every event gets the next number
/// and none is refused as a duplicate.
#[tokio::test]
async fn concurrent_appends_to_one_item_take_turns() {
    let Some(db) = PgDatabase::create("appends_take_turns").await else {
        return;
    };
    let store = db.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let fence = claim(&*store, "w").await.fence();
    let before = store.list_events(&it.id, 0).await.expect("events").len();

    let appenders: Vec<_> = (0..8)
        .map(|task| {
            let store = std::sync::Arc::clone(&store);
            let item = it.id.clone();
            tokio::spawn(async move {
                for n in 0..5 {
                    let event = NewEvent::new("measured", json!({ "task": task, "n": n }));
                    if task % 2 == 0 {
                        store.append_events(&item, vec![event]).await
                    } else {
                        store
                            .save_checkpoint(fence, json!({ "n": n }), vec![event])
                            .await
                    }
                    .expect("append");
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.expect("appender task");
    }

    let seqs: Vec<i64> = store
        .list_events(&it.id, 0)
        .await
        .expect("events")
        .iter()
        .map(|e| e.seq)
        .collect();
    let expected: Vec<i64> = (1..=i64::try_from(before + 40).expect("small")).collect();
    assert_eq!(seqs, expected);
}

/// A person stops an item while a worker is halfway through claiming its run (run locked, item
/// not yet): the stop waits for the run without holding the item, so the claim can finish
/// instead of the two deadlocking; then the stop ends the freshly claimed run.
#[tokio::test]
async fn a_stop_racing_a_claim_takes_locks_in_the_claims_order() {
    let Some(db) = PgDatabase::create("stop_vs_claim").await else {
        return;
    };
    let store = db.open().await;
    demo_project(&*store).await;
    let it = new_item(&*store, "t").await;
    let queued = store.list_runs(&it.id).await.expect("runs").remove(0);

    let mut other = db.raw().await;
    let mut claiming = other.begin().await.expect("begin");
    sqlx::query("SELECT id FROM stage_runs WHERE id = $1 FOR UPDATE")
        .bind(queued.id)
        .execute(&mut *claiming)
        .await
        .expect("the claim locks the run");

    let stop = ItemChange {
        expected: vec![ItemStatus::Queued, ItemStatus::Running],
        progress: with_status(&it.progress, ItemStatus::Cancelled),
        blocked_reason: None,
        end_active_run: Some(RunState::Cancelled),
        next_run: None,
        events: vec![],
    };
    let stopper = {
        let store = std::sync::Arc::clone(&store);
        let item = it.id.clone();
        tokio::spawn(async move { store.change_item(&item, stop).await })
    };
    until_someone_waits_for_a_lock(&db).await;

    // The claim goes on to the item; had the stop locked the item first, this would wait for
    // the stop, which waits for the run: a deadlock.
    sqlx::query("SET LOCAL lock_timeout = '3s'")
        .execute(&mut *claiming)
        .await
        .expect("lock timeout");
    sqlx::query("SELECT id FROM work_items WHERE id = $1 FOR UPDATE")
        .bind(it.id.as_str())
        .execute(&mut *claiming)
        .await
        .expect("the claim gets the item while the stop waits");
    sqlx::query("UPDATE stage_runs SET state = 'running', epoch = epoch + 1, lease_owner = 'w', lease_expires_at = 0 WHERE id = $1")
        .bind(queued.id)
        .execute(&mut *claiming)
        .await
        .expect("claim the run");
    claiming.commit().await.expect("commit the claim");

    stopper
        .await
        .expect("stop task")
        .expect("the stop succeeds");
    let ended = store.get_run(queued.id).await.expect("get").expect("run");
    assert_eq!((ended.state, ended.epoch), (RunState::Cancelled, 2));
}
