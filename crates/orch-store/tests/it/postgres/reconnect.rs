//! Connections lost as a server restart loses them: a transaction cut off before its commit runs
//! again on a fresh connection instead of failing the caller (and the lost attempt leaves nothing
//! behind); the `orch_work` listener listens again on a new session.
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

/// The `orch_work` listener's session ended (as by a restart): the next wait listens again on a
/// new connection, and a run queued then still wakes it long before its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_work_listener_listens_again_after_its_connection_is_lost() {
    use orch_store::{Store as _, WakeUp};

    let Some(db) = PgDatabase::create("listener_reconnects").await else {
        return;
    };
    let worker = orch_store::PgStore::open(db.url()).await.expect("open");
    let filer = db.open().await;
    demo_project(&*filer).await;
    // The first wait starts listening.
    assert_eq!(
        worker.wait_for_work(Duration::from_millis(200)).await,
        WakeUp::Timeout
    );
    let mut admin = db.raw().await;
    let listening = "SELECT pid FROM pg_stat_activity
                     WHERE datname = current_database() AND query LIKE 'LISTEN%'";
    let lost: i32 = sqlx::query_scalar(listening)
        .fetch_one(&mut admin)
        .await
        .expect("the listener's session");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(lost)
        .fetch_one(&mut admin)
        .await
        .expect("terminate the listener's session");
    assert!(ended);

    let waiting = tokio::spawn({
        let worker = worker.clone();
        async move {
            let started = Instant::now();
            (
                worker.wait_for_work(Duration::from_secs(30)).await,
                started.elapsed(),
            )
        }
    });
    // Queue the run only once a new session listens, so the notification cannot slip past.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids: Vec<i32> = sqlx::query_scalar(listening)
            .fetch_all(&mut admin)
            .await
            .expect("pg_stat_activity");
        if pids.iter().any(|pid| *pid != lost) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no session listens again after the lost one: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    new_item(&*filer, "wake up after the loss").await;
    let (woke, after) = waiting.await.expect("join");
    assert_eq!(woke, WakeUp::Notified, "woken after {after:?}");
    assert!(after < Duration::from_secs(10), "woken after {after:?}");
}
