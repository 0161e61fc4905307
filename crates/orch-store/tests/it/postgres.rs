//! The PostgreSQL backend: the conformance suite on a real server, each test in a database of its
//! own (created on the server named by `ORCH_TEST_POSTGRES_URL`, dropped afterwards), and what
//! only PostgreSQL has: schema versions and constraints on the server, connection errors that
//! never show a password, and `open_store` picking the backend by scheme.
//!
//! Without `ORCH_TEST_POSTGRES_URL` the server tests are skipped and counted
//! (`test-support/skip.rs`), except under `.ci/run` or `CI=true`, where they fail: those runs
//! must run them (`.ci/install-postgres.sh` starts a server).

mod database;
mod locking;
mod reconnect;
mod server;
mod tls;
mod tls_cluster;

use orch_store::{PgStore, Store, StoreError};

use crate::conformance::{claim, demo_project, new_item};
use database::PgDatabase;

macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod conformance_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::PgDatabase::create(stringify!($name)).await else {
                        return;
                    };
                    crate::conformance::$module::$name(&db).await;
                }
            )*
        }
    };
}

conformance!(
    items::projects_are_upserted_and_listed,
    items::create_item_numbers_items_and_writes_run_and_events,
    items::items_are_listed_oldest_first_and_per_project,
    items::items_are_listed_by_status_oldest_first,
    items::create_item_refuses_unknown_project_and_bad_input,
    items::change_item_refuses_an_unexpected_status,
    items::change_item_ends_the_active_run_and_fences_its_holder,
    items::change_item_starts_the_next_run_and_keeps_one_active,
    durability::events_are_gap_free_and_readable_from_a_point,
    durability::inbox_records_each_delivery_once,
    durability::reopening_keeps_everything,
    runs::claim_takes_the_oldest_queued_run_and_marks_the_item_running,
    runs::waiting_runs_are_never_claimed,
    runs::housekeeping_due_says_which_lists_hold_anything,
    runs::an_expired_lease_is_reclaimed_with_a_new_epoch,
    runs::a_run_that_gives_way_goes_to_the_back_of_the_claim_order,
    runs::news_wakes_a_run_that_gave_way_and_never_one_that_is_held,
    runs::a_lease_runs_out_on_the_database_clock,
    runs::renew_extends_the_lease,
    runs::save_checkpoint_replaces_it_and_logs_events,
    runs::finish_run_ends_the_run_and_moves_the_item_on,
    runs::a_stale_fence_changes_nothing,
    concurrency::concurrent_claimers_on_one_handle_never_share_a_run,
    concurrency::concurrent_claimers_on_separate_handles_never_share_a_run,
    links::a_linked_item_is_created_once_per_external_id,
    links::racing_announcements_create_one_item,
    links::cursors_start_at_zero_and_are_shared,
    notifications::notifications_are_recorded_once_with_the_cursor,
    notifications::a_claimed_notification_is_hidden_and_fenced,
    notifications::a_notification_is_retried_then_given_up,
    notifications::concurrent_senders_never_share_a_notification,
    people::people_are_found_by_token_hash_until_revoked,
    people::a_tracker_account_is_one_person,
    concurrency::claims_respect_global_and_per_project_limits,
    concurrency::concurrent_claimers_never_overshoot_a_limit,
);

async fn open(db: &PgDatabase) -> PgStore {
    PgStore::open(db.url()).await.expect("open store")
}

#[tokio::test]
async fn workers_opening_a_fresh_database_at_once_migrate_it_once() {
    let Some(db) = PgDatabase::create("migrate_once").await else {
        return;
    };
    let opening: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url().to_owned();
            tokio::spawn(async move { PgStore::open(&url).await })
        })
        .collect();
    for task in opening {
        task.await.expect("open task").expect("every open succeeds");
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_version ORDER BY version")
            .fetch_all(&mut db.raw().await)
            .await
            .expect("versions");
    // Each migration applied exactly once, however many processes opened the database.
    assert_eq!(
        versions,
        (1..=PgStore::schema_version()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let Some(db) = PgDatabase::create("newer_schema").await else {
        return;
    };
    open(&db).await.close().await;
    let newer = PgStore::schema_version() + 1;
    sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES ($1, 0)")
        .bind(newer)
        .execute(&mut db.raw().await)
        .await
        .expect("pretend a newer orch migrated the database");

    match PgStore::open(db.url()).await {
        Err(StoreError::Open { url, reason }) => {
            assert_eq!(url, db.url());
            assert!(
                reason.contains(&format!("version {newer}")) && reason.contains("upgrade orch"),
                "{reason}"
            );
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
}

#[tokio::test]
async fn the_server_itself_keeps_events_append_only_and_one_active_run_per_item() {
    let Some(db) = PgDatabase::create("server_constraints").await else {
        return;
    };
    let store = open(&db).await;
    demo_project(&store).await;
    let it = new_item(&store, "t").await;
    let mut raw = db.raw().await;

    for rewrite in [
        "UPDATE events SET kind = 'rewritten'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let refused = sqlx::query(rewrite).execute(&mut raw).await;
        assert!(
            refused.is_err_and(|e| e.to_string().contains("append-only")),
            "{rewrite} must be refused"
        );
    }

    let second_active = sqlx::query(
        "INSERT INTO stage_runs (item_id, project_id, stage, attempt, state, feedback_json, checkpoint_json, created_at)
         VALUES ($1, 'demo', 'architecture', 1, 'waiting', '[]', '{}', 0)",
    )
    .bind(it.id.as_str())
    .execute(&mut raw)
    .await;
    assert!(
        second_active.is_err_and(|e| e.to_string().contains("stage_runs_one_active_per_item")),
        "the partial unique index refuses it"
    );
}

#[tokio::test]
async fn undecodable_rows_are_reported_as_corrupt() {
    let Some(db) = PgDatabase::create("corrupt_rows").await else {
        return;
    };
    let store = open(&db).await;
    demo_project(&store).await;
    let it = new_item(&store, "t").await;
    let run = claim(&store, "w").await;
    sqlx::query("UPDATE stage_runs SET state = 'sleeping'")
        .execute(&mut db.raw().await)
        .await
        .expect("tamper");
    let bad_state = store.get_run(run.id).await;
    assert!(
        matches!(&bad_state, Err(StoreError::Corrupt(m)) if m.contains("stage_runs.state")),
        "{bad_state:?}"
    );
    sqlx::query("UPDATE work_items SET status = 'blocked'")
        .execute(&mut db.raw().await)
        .await
        .expect("tamper");
    let mismatch = store.get_item(&it.id).await;
    assert!(
        matches!(&mismatch, Err(StoreError::Corrupt(m)) if m.contains("work_items.status")),
        "{mismatch:?}"
    );
}

#[tokio::test]
async fn times_come_from_the_database_clock_in_milliseconds() {
    let Some(db) = PgDatabase::create("clock").await else {
        return;
    };
    let store = open(&db).await;
    let before: i64 =
        sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint")
            .fetch_one(&mut db.raw().await)
            .await
            .expect("server clock");
    let project = demo_project(&store).await;
    let created = store
        .get_project(&project)
        .await
        .expect("get")
        .expect("exists")
        .created_at;
    assert!(
        (before..before + 5_000).contains(&created),
        "created_at {created} is not the server's clock in ms (server said {before})"
    );
}

#[tokio::test]
async fn a_password_in_the_url_is_never_shown() {
    let Some(db) = PgDatabase::create("password_hidden").await else {
        return;
    };
    // The URL's own password when it has one; else one added, which the test server (trusting
    // loopback connections) accepts. Either way the test runs: it never skips for it.
    let (with_password, password) = db.url_with_password("s3cret-Pa55");
    let store = PgStore::open(&with_password).await.expect("open");
    assert_eq!(store.url(), with_password.replace(&password, "***"));
    let debug = format!("{store:?}");
    assert!(!debug.contains(&password), "{debug}");
    demo_project(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_run_wakes_a_waiting_worker_on_another_connection() {
    use orch_store::WakeUp;
    use std::time::{Duration, Instant};

    let Some(db) = PgDatabase::create("wake_on_work").await else {
        return;
    };
    let worker = open(&db).await;
    let filer = open(&db).await;
    demo_project(&filer).await;

    // Nothing queued: the wait lasts its whole timeout.
    let quiet = Instant::now();
    assert_eq!(
        worker.wait_for_work(Duration::from_millis(300)).await,
        WakeUp::Timeout
    );
    assert!(quiet.elapsed() >= Duration::from_millis(300));

    // A run queued by another connection ends the wait long before its 30 s timeout.
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
    // The first wait above already listens, so the notification cannot slip past.
    tokio::time::sleep(Duration::from_millis(100)).await;
    new_item(&filer, "wake up").await;
    let (woke, after) = waiting.await.expect("join");
    assert_eq!(woke, WakeUp::Notified);
    assert!(after < Duration::from_secs(10), "woken after {after:?}");
    let run = claim(&worker, "w1").await;
    assert_eq!(run.attempt, 1);
}
