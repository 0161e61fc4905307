//! The SQLite backend: the conformance suite on a real file, and what only SQLite has (URLs,
//! pragmas, schema versions, constraints enforced inside the database).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use orch_store::{SqliteStore, Store, StoreError};
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

use crate::conformance::{Backend, claim, demo_project, new_item};

struct SqliteFile {
    dir: TempDir,
}

impl SqliteFile {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("orch.db")
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.path().display())
    }

    /// A plain connection beside the store, to look at or tamper with what it wrote.
    async fn raw(&self) -> SqliteConnection {
        SqliteConnection::connect(&self.url())
            .await
            .expect("raw connection")
    }
}

#[async_trait]
impl Backend for SqliteFile {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&self.url()).await.expect("open store"))
    }
}

macro_rules! conformance {
    ($($module:ident :: $name:ident),* $(,)?) => {
        mod conformance_suite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    crate::conformance::$module::$name(&super::SqliteFile::new()).await;
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
    concurrency::claims_respect_global_and_per_project_limits,
    concurrency::concurrent_claimers_never_overshoot_a_limit,
    links::a_linked_item_is_created_once_per_external_id,
    links::racing_announcements_create_one_item,
    links::cursors_start_at_zero_and_are_shared,
    notifications::notifications_are_recorded_once_with_the_cursor,
    notifications::a_claimed_notification_is_hidden_and_fenced,
    notifications::a_notification_is_retried_then_given_up,
    notifications::concurrent_senders_never_share_a_notification,
    people::people_are_found_by_token_hash_until_revoked,
    people::a_tracker_account_is_one_person,
);

#[tokio::test]
async fn open_creates_the_file_in_wal_mode_at_the_latest_schema() {
    let db = SqliteFile::new();
    assert!(!db.path().exists());
    let store = SqliteStore::open(&db.path().display().to_string())
        .await
        .expect("open a plain path");
    assert!(db.path().exists(), "the file is created");
    let mut raw = db.raw().await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut raw)
        .await
        .expect("pragma");
    assert_eq!(mode, "wal");
    let version: i64 = sqlx::query_scalar("SELECT MAX(version) FROM schema_version")
        .fetch_one(&mut raw)
        .await
        .expect("version");
    assert_eq!(version, SqliteStore::schema_version());
    store.close().await;

    // Opening again migrates nothing twice.
    SqliteStore::open(&format!("sqlite:{}", db.path().display()))
        .await
        .expect("reopen");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_version")
        .fetch_one(&mut raw)
        .await
        .expect("count");
    assert_eq!(rows, SqliteStore::schema_version());
}

#[tokio::test]
async fn a_probe_reads_where_the_file_stands_and_changes_nothing() {
    let db = SqliteFile::new();
    let absent = orch_store::probe_store(&db.url()).await.expect("probe");
    assert!(!absent.created, "{absent:?}");
    assert!(!db.path().exists(), "a probe must not create the file");

    SqliteStore::open(&db.url())
        .await
        .expect("open")
        .close()
        .await;
    let current = orch_store::probe_store(&db.url()).await.expect("probe");
    assert_eq!(
        (current.created, current.version, current.latest),
        (
            true,
            SqliteStore::schema_version(),
            SqliteStore::schema_version()
        )
    );

    let newer = SqliteStore::schema_version() + 1;
    sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)")
        .bind(newer)
        .execute(&mut db.raw().await)
        .await
        .expect("pretend a newer orch migrated the file");
    let ahead = orch_store::probe_store(&db.url()).await.expect("probe");
    assert_eq!(ahead.version, newer, "{ahead:?}");

    let refused = orch_store::probe_store("mysql://db/orch").await;
    assert!(
        matches!(refused, Err(StoreError::Open { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let db = SqliteFile::new();
    SqliteStore::open(&db.url())
        .await
        .expect("open")
        .close()
        .await;
    let newer = SqliteStore::schema_version() + 1;
    sqlx::query("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)")
        .bind(newer)
        .execute(&mut db.raw().await)
        .await
        .expect("pretend a newer orch migrated the file");

    match SqliteStore::open(&db.url()).await {
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
async fn open_refuses_what_is_not_a_database() {
    let db = SqliteFile::new();
    std::fs::write(
        db.path(),
        "this is a text file, not a database, and it is long enough",
    )
    .expect("write");
    let opened = SqliteStore::open(&db.url()).await;
    assert!(matches!(opened, Err(StoreError::Open { .. })), "{opened:?}");
    let bad_url = SqliteStore::open("sqlite://orch.db?mode=rwc").await;
    assert!(
        matches!(bad_url, Err(StoreError::Open { .. })),
        "{bad_url:?}"
    );
}

#[tokio::test]
async fn an_in_memory_store_works_and_keeps_its_data_while_open() {
    let store = SqliteStore::open("sqlite::memory:")
        .await
        .expect("open memory");
    demo_project(&store).await;
    let it = new_item(&store, "t").await;
    let run = claim(&store, "w").await;
    assert_eq!(run.item, it.id);
    assert_eq!(store.list_items(None).await.expect("list").len(), 1);
}

#[tokio::test]
async fn undecodable_rows_are_reported_as_corrupt() {
    let db = SqliteFile::new();
    let store = SqliteStore::open(&db.url()).await.expect("open");
    demo_project(&store).await;
    let it = new_item(&store, "t").await;
    let run = store.list_runs(&it.id).await.expect("runs").remove(0);
    let mut raw = db.raw().await;

    sqlx::query("UPDATE stage_runs SET state = 'sleeping'")
        .execute(&mut raw)
        .await
        .expect("tamper");
    let bad_state = store.get_run(run.id).await;
    assert!(
        matches!(&bad_state, Err(StoreError::Corrupt(m)) if m.contains("stage_runs.state")),
        "{bad_state:?}"
    );

    sqlx::query("UPDATE work_items SET status = 'blocked'")
        .execute(&mut raw)
        .await
        .expect("tamper");
    let mismatch = store.get_item(&it.id).await;
    assert!(
        matches!(&mismatch, Err(StoreError::Corrupt(m)) if m.contains("work_items.status")),
        "{mismatch:?}"
    );

    sqlx::query("UPDATE work_items SET progress_json = '{\"stage\": 1}'")
        .execute(&mut raw)
        .await
        .expect("tamper");
    let listed = store.list_items(None).await;
    assert!(
        matches!(&listed, Err(StoreError::Corrupt(m)) if m.contains("progress_json")),
        "{listed:?}"
    );
}

#[tokio::test]
async fn the_database_itself_keeps_events_append_only_and_one_active_run_per_item() {
    let db = SqliteFile::new();
    let store = SqliteStore::open(&db.url()).await.expect("open");
    demo_project(&store).await;
    let it = new_item(&store, "t").await;
    let mut raw = db.raw().await;

    let update = sqlx::query("UPDATE events SET kind = 'rewritten'")
        .execute(&mut raw)
        .await;
    assert!(update.is_err_and(|e| e.to_string().contains("append-only")));
    let delete = sqlx::query("DELETE FROM events").execute(&mut raw).await;
    assert!(delete.is_err_and(|e| e.to_string().contains("append-only")));

    let second_active = sqlx::query(
        "INSERT INTO stage_runs (item_id, project_id, stage, attempt, state, feedback_json, checkpoint_json, created_at)
         VALUES (?, 'demo', 'architecture', 1, 'waiting', '[]', '{}', 0)",
    )
    .bind(it.id.as_str())
    .execute(&mut raw)
    .await;
    assert!(
        second_active.is_err_and(|e| e.to_string().contains("UNIQUE")),
        "the partial unique index refuses it"
    );
}
