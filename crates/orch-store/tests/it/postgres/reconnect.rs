//! A connection lost in the middle of a transaction (what a server restart does to every
//! session): the store runs the transaction again on a fresh connection instead of failing the
//! caller, and the lost attempt leaves nothing behind.
//!
//! The loss is made deterministic: a second connection holds the run's row, so the store's
//! write waits on it inside its transaction; the test then ends that waiting session with
//! `pg_terminate_backend` (the server's own "terminating connection due to administrator
//! command", as in a `pg_ctl restart -m fast`) and lets the row go.

use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::Connection;

use super::PgDatabase;
use crate::conformance::{Backend, claim, demo_project, new_item};

/// The server pid of the one session of this database waiting for a lock.
async fn session_waiting_for_a_lock(db: &PgDatabase) -> i32 {
    let mut watcher = db.raw().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_optional(&mut watcher)
        .await
        .expect("pg_stat_activity");
        if let Some(pid) = waiting {
            return pid;
        }
        assert!(Instant::now() < deadline, "nobody ever waited for the lock");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_connection_is_lost_before_commit_runs_again() {
    let Some(db) = PgDatabase::create("write_reconnects").await else {
        return;
    };
    let store = db.open().await;
    demo_project(&*store).await;
    let item = new_item(&*store, "t").await;
    let held = claim(&*store, "w").await;
    let events_before = store.list_events(&item.id, 0).await.expect("events").len();

    let mut other = db.raw().await;
    let mut holding = other.begin().await.expect("begin");
    sqlx::query("SELECT id FROM stage_runs WHERE id = $1 FOR UPDATE")
        .bind(held.id)
        .execute(&mut *holding)
        .await
        .expect("hold the run's row");

    let fence = held.fence();
    let writer = {
        let store = std::sync::Arc::clone(&store);
        tokio::spawn(async move {
            store
                .save_checkpoint(
                    fence,
                    json!({"phase": "after the reconnect"}),
                    vec![orch_store::NewEvent::for_run(
                        "run.checkpoint",
                        fence.run_id,
                        json!({}),
                    )],
                )
                .await
        })
    };
    let waiting = session_waiting_for_a_lock(&db).await;
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(waiting)
        .fetch_one(&mut *holding)
        .await
        .expect("terminate the store's session");
    assert!(ended, "the store's waiting session was ended");
    holding.rollback().await.expect("let the row go");

    let written = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the write finishes")
        .expect("writer task");
    assert!(
        written.is_ok(),
        "a lost connection before the commit is ridden out: {written:?}"
    );
    let run = store.get_run(held.id).await.expect("get").expect("run");
    assert_eq!(run.checkpoint, json!({"phase": "after the reconnect"}));
    let events = store.list_events(&item.id, 0).await.expect("events");
    assert_eq!(
        events.len(),
        events_before + 1,
        "the lost attempt wrote nothing; the second wrote its event once: {events:#?}"
    );
}
