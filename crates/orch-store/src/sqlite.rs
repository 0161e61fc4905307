//! The SQLite backend: one database file (or memory, for tests and the demo).
//!
//! WAL journal, so readers never wait for the writer; a busy timeout, so writers from several
//! processes queue instead of failing; and `BEGIN IMMEDIATE` for every transaction that writes,
//! because a deferred transaction that reads first and writes later can fail with SQLITE_BUSY
//! when another connection commits in between (the busy timeout does not help there).
//! Inside one process, writers also queue on a mutex first, so they wait in order instead of
//! polling SQLite's lock.

/// The database clock in milliseconds since the Unix epoch, as an SQL expression (a macro so it
/// can be spliced into `concat!`-built static queries). Leases and timestamps use it so that
/// machines with skewed clocks still agree.
macro_rules! now_ms {
    () => {
        "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
    };
}

mod items;
mod migrate;
mod notifications;
mod people;
mod rows;
mod runs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::transition::ItemProgress;
use orch_core::{ItemId, ProjectId};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::{
    AttemptOutcome, ClaimLimits, EventRecord, Fence, FinishRun, InboxOutcome, ItemChange,
    ItemRecord, NewEvent, NewNotification, NewRun, NotificationRecord, NotificationState,
    PersonRecord, ProjectRecord, Result, RunRecord, Store, StoreError,
};

/// How long a writer waits for another process's write transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Small on purpose: SQLite has one writer at a time, so more connections only help readers.
const MAX_CONNECTIONS: u32 = 4;

/// The [`Store`] on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One writer at a time inside this process (see the module doc).
    writer_turn: Arc<Mutex<()>>,
}

/// Where the database lives, parsed from the URL or path given to [`SqliteStore::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    Memory,
    File(PathBuf),
}

impl Location {
    /// Accepts `sqlite:///abs/path.db`, `sqlite://rel.db`, `sqlite:rel.db`, `sqlite::memory:`
    /// and a plain path.
    fn parse(url_or_path: &str) -> Result<Self, String> {
        let url_part = url_or_path
            .strip_prefix("sqlite://")
            .or_else(|| url_or_path.strip_prefix("sqlite:"));
        let path = url_part.unwrap_or(url_or_path);
        if path == ":memory:" {
            return Ok(Location::Memory);
        }
        if path.is_empty() {
            return Err(
                "no database path given; use sqlite:///absolute/path.db or a file path".to_owned(),
            );
        }
        if url_part.is_some() && path.contains('?') {
            return Err(
                "URL parameters are not supported (orch sets journal, timeout and foreign keys \
                        itself); remove the `?...` part"
                    .to_owned(),
            );
        }
        Ok(Location::File(PathBuf::from(path)))
    }
}

impl SqliteStore {
    /// Opens (creating it if missing) and migrates the database at `url_or_path`.
    ///
    /// Refuses a database whose schema is newer than this orch knows, with
    /// [`StoreError::Open`] saying to upgrade orch.
    pub async fn open(url_or_path: &str) -> Result<Self> {
        let open_error = |reason: String| StoreError::Open {
            url: url_or_path.to_owned(),
            reason,
        };
        let location = Location::parse(url_or_path).map_err(open_error)?;
        let base = SqliteConnectOptions::new()
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let pool = match &location {
            Location::File(path) => {
                let options = base
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal);
                // A connection to a local file does not go stale as one over a network does:
                // no ping (a round trip through the connection's worker thread) per acquire.
                SqlitePoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .test_before_acquire(false)
                    .connect_with(options)
                    .await
            }
            // Every connection to `:memory:` is a database of its own, so the pool holds exactly
            // one connection and never lets it go.
            Location::Memory => {
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .test_before_acquire(false)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(base.in_memory(true))
                    .await
            }
        }
        .map_err(|e| open_error(e.to_string()))?;
        migrate::run(&pool, url_or_path)
            .await
            .map_err(|e| match e {
                StoreError::Open { .. } => e,
                other => open_error(format!("migrating the schema failed: {other}")),
            })?;
        Ok(Self {
            pool,
            writer_turn: Arc::new(Mutex::new(())),
        })
    }

    /// Where the database at `url_or_path` stands, read without changing anything: a missing
    /// file is not created (`created` is false) and nothing is migrated. For `orch doctor`.
    pub async fn probe(url_or_path: &str) -> Result<crate::SchemaState> {
        let open_error = |reason: String| StoreError::Open {
            url: url_or_path.to_owned(),
            reason,
        };
        let latest = migrate::latest_version();
        let path = match Location::parse(url_or_path).map_err(open_error)? {
            Location::Memory => {
                return Ok(crate::SchemaState {
                    created: false,
                    version: 0,
                    latest,
                });
            }
            Location::File(path) => path,
        };
        if !path.exists() {
            return Ok(crate::SchemaState {
                created: false,
                version: 0,
                latest,
            });
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true)
            .busy_timeout(BUSY_TIMEOUT);
        let mut conn: sqlx::SqliteConnection = sqlx::Connection::connect_with(&options)
            .await
            .map_err(|e: sqlx::Error| open_error(format!("cannot open it: {e}")))?;
        let version = async {
            let table: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
            )
            .fetch_one(&mut conn)
            .await?;
            if table == 0 {
                return Ok::<i64, sqlx::Error>(0);
            }
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                .fetch_one(&mut conn)
                .await
        }
        .await
        .map_err(|e| open_error(format!("reading the schema version failed: {e}")))?;
        let _ = sqlx::Connection::close(conn).await;
        Ok(crate::SchemaState {
            created: true,
            version,
            latest,
        })
    }

    /// The newest schema version this orch can open (and migrates every database up to).
    pub fn schema_version() -> i64 {
        migrate::latest_version()
    }

    /// Closes every connection, waiting for those in use. Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a write transaction that holds SQLite's write lock from its first statement.
    /// Dropping it without [`WriteTx::commit`] (an error, a cancelled future) rolls back.
    async fn write(&self) -> Result<WriteTx> {
        let turn = Arc::clone(&self.writer_turn).lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(WriteTx { tx, _turn: turn })
    }
}

/// A `BEGIN IMMEDIATE` transaction plus this process's writer turn.
struct WriteTx {
    // Declared first so it is dropped (rolled back) before the turn passes to the next writer.
    tx: Transaction<'static, Sqlite>,
    _turn: OwnedMutexGuard<()>,
}

impl WriteTx {
    async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn upsert_project(&self, id: &ProjectId, repo_path: &str) -> Result<ProjectRecord> {
        let sql = format!(
            "INSERT INTO projects (id, repo_path, next_item_number, created_at) VALUES (?, ?, 1, {})
             ON CONFLICT (id) DO UPDATE SET repo_path = excluded.repo_path
             RETURNING {}",
            now_ms!(),
            rows::PROJECT_COLUMNS
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(repo_path)
            .fetch_one(&self.pool)
            .await?;
        rows::project(&row)
    }

    async fn get_project(&self, id: &ProjectId) -> Result<Option<ProjectRecord>> {
        let sql = format!(
            "SELECT {} FROM projects WHERE id = ?",
            rows::PROJECT_COLUMNS
        );
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::project).transpose()
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        let sql = format!("SELECT {} FROM projects ORDER BY id", rows::PROJECT_COLUMNS);
        rows::all(
            &sqlx::query(&sql).fetch_all(&self.pool).await?,
            rows::project,
        )
    }

    async fn create_item(
        &self,
        project: &ProjectId,
        prefix: &str,
        title: &str,
        body: &str,
        progress: &ItemProgress,
        first_run: NewRun,
        events: Vec<NewEvent>,
    ) -> Result<ItemRecord> {
        let mut w = self.write().await?;
        let item = items::create(
            &mut w.tx, project, prefix, title, body, progress, &first_run, &events,
        )
        .await?;
        w.commit().await?;
        Ok(item)
    }

    async fn get_item(&self, id: &ItemId) -> Result<Option<ItemRecord>> {
        items::get(&self.pool, id).await
    }

    async fn list_items(&self, project: Option<&ProjectId>) -> Result<Vec<ItemRecord>> {
        // Ids sort by length first so `DEMO-9` comes before `DEMO-10` within one millisecond.
        let order = "ORDER BY created_at, length(id), id";
        let found = match project {
            Some(p) => {
                let sql = format!(
                    "SELECT {} FROM work_items WHERE project_id = ? {order}",
                    rows::ITEM_COLUMNS
                );
                sqlx::query(&sql)
                    .bind(p.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!("SELECT {} FROM work_items {order}", rows::ITEM_COLUMNS);
                sqlx::query(&sql).fetch_all(&self.pool).await?
            }
        };
        rows::all(&found, rows::item)
    }

    async fn list_items_with_status(
        &self,
        status: orch_core::transition::ItemStatus,
    ) -> Result<Vec<ItemRecord>> {
        let sql = format!(
            "SELECT {} FROM work_items WHERE status = ? ORDER BY created_at, length(id), id",
            rows::ITEM_COLUMNS
        );
        let found = sqlx::query(&sql)
            .bind(status.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows::all(&found, rows::item)
    }

    async fn get_run(&self, run_id: i64) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {} FROM stage_runs WHERE id = ?", rows::RUN_COLUMNS);
        let row = sqlx::query(&sql)
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::run).transpose()
    }

    async fn list_runs(&self, item: &ItemId) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {} FROM stage_runs WHERE item_id = ? ORDER BY id",
            rows::RUN_COLUMNS
        );
        rows::all(
            &sqlx::query(&sql)
                .bind(item.as_str())
                .fetch_all(&self.pool)
                .await?,
            rows::run,
        )
    }

    async fn list_running(&self) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {} FROM stage_runs WHERE state = 'running' ORDER BY id",
            rows::RUN_COLUMNS
        );
        rows::all(&sqlx::query(&sql).fetch_all(&self.pool).await?, rows::run)
    }

    async fn housekeeping_due(&self, owner: &str) -> Result<crate::HousekeepingDue> {
        let flags: (bool, bool, bool) = sqlx::query_as(crate::rows::HOUSEKEEPING_DUE)
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        Ok(crate::rows::housekeeping_due(flags))
    }

    async fn list_events(&self, item: &ItemId, after: i64) -> Result<Vec<EventRecord>> {
        let sql = format!(
            "SELECT {} FROM events WHERE item_id = ? AND seq > ? ORDER BY seq",
            rows::EVENT_COLUMNS
        );
        rows::all(
            &sqlx::query(&sql)
                .bind(item.as_str())
                .bind(after)
                .fetch_all(&self.pool)
                .await?,
            rows::event,
        )
    }

    async fn append_events(&self, item: &ItemId, events: Vec<NewEvent>) -> Result<()> {
        let mut w = self.write().await?;
        items::require_item(&mut w.tx, item).await?;
        items::append_events(&mut w.tx, item, &events).await?;
        w.commit().await
    }

    async fn claim_next_run_within(
        &self,
        owner: &str,
        lease_ms: i64,
        limits: ClaimLimits,
    ) -> Result<Option<RunRecord>> {
        runs::check_lease_ms(lease_ms)?;
        let mut w = self.write().await?;
        let claimed = runs::claim_next(&mut w.tx, owner, lease_ms, limits).await?;
        w.commit().await?;
        Ok(claimed)
    }

    async fn renew_lease(&self, fence: Fence, lease_ms: i64) -> Result<()> {
        runs::check_lease_ms(lease_ms)?;
        let mut w = self.write().await?;
        runs::renew(&mut w.tx, fence, lease_ms).await?;
        w.commit().await
    }

    async fn expire_lease(&self, fence: Fence) -> Result<()> {
        let mut w = self.write().await?;
        runs::expire(&mut w.tx, fence).await?;
        w.commit().await
    }

    async fn give_way(&self, fence: Fence, delay_ms: i64) -> Result<()> {
        let mut w = self.write().await?;
        runs::give_way(&mut w.tx, fence, delay_ms).await?;
        w.commit().await
    }

    async fn wake_given_way(&self, project: &ProjectId) -> Result<u64> {
        let mut w = self.write().await?;
        let woken = runs::wake_given_way(&mut w.tx, project).await?;
        w.commit().await?;
        Ok(woken)
    }

    async fn save_checkpoint(
        &self,
        fence: Fence,
        checkpoint: Value,
        events: Vec<NewEvent>,
    ) -> Result<()> {
        let mut w = self.write().await?;
        runs::save_checkpoint(&mut w.tx, fence, &checkpoint, &events).await?;
        w.commit().await
    }

    async fn finish_run(&self, fence: Fence, finish: FinishRun) -> Result<()> {
        let mut w = self.write().await?;
        runs::finish(&mut w.tx, fence, &finish).await?;
        w.commit().await
    }

    async fn change_item(&self, item: &ItemId, change: ItemChange) -> Result<()> {
        let mut w = self.write().await?;
        items::change(&mut w.tx, item, &change).await?;
        w.commit().await
    }

    async fn inbox_insert(
        &self,
        source: &str,
        delivery_id: &str,
        body_sha256: &str,
        body: &[u8],
    ) -> Result<InboxOutcome> {
        let mut w = self.write().await?;
        let outcome =
            people::inbox_insert(&mut w.tx, source, delivery_id, body_sha256, body).await?;
        w.commit().await?;
        Ok(outcome)
    }

    async fn add_person(&self, name: &str, token_sha256: &str) -> Result<PersonRecord> {
        let mut w = self.write().await?;
        people::add(&mut w.tx, name, token_sha256).await?;
        w.commit().await?;
        people::list(&self.pool)
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| StoreError::NotFound {
                what: "person",
                id: name.to_owned(),
            })
    }

    async fn revoke_person(&self, name: &str) -> Result<bool> {
        let _turn = Arc::clone(&self.writer_turn).lock_owned().await;
        people::revoke(&self.pool, name).await
    }

    async fn list_people(&self) -> Result<Vec<PersonRecord>> {
        people::list(&self.pool).await
    }

    async fn person_by_token(&self, token_sha256: &str) -> Result<Option<PersonRecord>> {
        people::by_token(&self.pool, token_sha256).await
    }

    async fn has_people(&self) -> Result<bool> {
        people::any_active(&self.pool).await
    }

    async fn link_tracker_account(&self, person: &str, account: &str) -> Result<()> {
        let mut w = self.write().await?;
        people::link(&mut w.tx, person, account).await?;
        w.commit().await
    }

    async fn person_by_tracker_account(&self, account: &str) -> Result<Option<PersonRecord>> {
        people::by_account(&self.pool, account).await
    }

    async fn create_linked_item(
        &self,
        external_id: &str,
        project: &ProjectId,
        prefix: &str,
        title: &str,
        body: &str,
        progress: &ItemProgress,
        first_run: NewRun,
        events: Vec<NewEvent>,
    ) -> Result<(ItemRecord, bool)> {
        // BEGIN IMMEDIATE holds the write lock from the look-up to the commit: no race.
        let mut w = self.write().await?;
        let linked: Option<String> = sqlx::query_scalar(
            "SELECT item_id FROM external_items WHERE project_id = ? AND external_id = ?",
        )
        .bind(project.as_str())
        .bind(external_id)
        .fetch_optional(&mut *w.tx)
        .await?;
        if let Some(id) = linked {
            drop(w);
            let id = ItemId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let item = self
                .get_item(&id)
                .await?
                .ok_or_else(|| StoreError::NotFound {
                    what: "work item",
                    id: id.to_string(),
                })?;
            return Ok((item, false));
        }
        let item = items::create(
            &mut w.tx, project, prefix, title, body, progress, &first_run, &events,
        )
        .await?;
        sqlx::query(
            "INSERT INTO external_items (project_id, external_id, item_id) VALUES (?, ?, ?)",
        )
        .bind(project.as_str())
        .bind(external_id)
        .bind(item.id.as_str())
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok((item, true))
    }

    async fn find_linked_item(
        &self,
        project: &ProjectId,
        external_id: &str,
    ) -> Result<Option<ItemId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT item_id FROM external_items WHERE project_id = ? AND external_id = ?",
        )
        .bind(project.as_str())
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await?;
        id.map(|id| ItemId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn external_id(&self, item: &ItemId) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT external_id FROM external_items WHERE item_id = ?")
                .bind(item.as_str())
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn cursor(&self, name: &str) -> Result<i64> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM cursors WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(position.unwrap_or(0))
    }

    async fn set_cursor(&self, name: &str, position: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO cursors (name, position) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET position = excluded.position",
        )
        .bind(name)
        .bind(position)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
    async fn enqueue_notifications(
        &self,
        item: &ItemId,
        cursor: &str,
        position: i64,
        notifications: Vec<NewNotification>,
    ) -> Result<()> {
        let mut w = self.write().await?;
        notifications::enqueue(&mut w.tx, item, cursor, position, &notifications).await?;
        w.commit().await
    }

    async fn claim_notifications(
        &self,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        let mut w = self.write().await?;
        let claimed = notifications::claim(&mut w.tx, lease_ms, limit).await?;
        w.commit().await?;
        Ok(claimed)
    }

    async fn record_attempt(
        &self,
        id: i64,
        attempts: u32,
        outcome: AttemptOutcome,
    ) -> Result<bool> {
        let mut w = self.write().await?;
        let recorded = notifications::record(&mut w.tx, id, attempts, &outcome).await?;
        w.commit().await?;
        Ok(recorded)
    }

    async fn list_notifications(&self, item: &ItemId) -> Result<Vec<NotificationRecord>> {
        notifications::list(&self.pool, item).await
    }

    async fn count_notifications(&self) -> Result<Vec<(NotificationState, i64)>> {
        notifications::count(&self.pool).await
    }
}
#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn locations() {
        let file = |p: &str| Ok(Location::File(p.into()));
        assert_eq!(
            Location::parse("sqlite:///abs/path.db"),
            file("/abs/path.db")
        );
        assert_eq!(Location::parse("sqlite://rel.db"), file("rel.db"));
        assert_eq!(Location::parse("sqlite:rel.db"), file("rel.db"));
        assert_eq!(Location::parse("/plain/orch.db"), file("/plain/orch.db"));
        assert_eq!(Location::parse("orch.db"), file("orch.db"));
        assert_eq!(Location::parse("sqlite::memory:"), Ok(Location::Memory));
        assert_eq!(Location::parse(":memory:"), Ok(Location::Memory));
        for bad in ["", "sqlite://", "sqlite:", "sqlite://orch.db?mode=rwc"] {
            assert!(Location::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
