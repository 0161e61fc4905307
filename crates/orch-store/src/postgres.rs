//! The PostgreSQL backend: one server shared by workers on many machines.
//!
//! Every write is one READ COMMITTED transaction that locks the rows it decides on
//! (`SELECT ... FOR UPDATE`) before deciding, so a fence check and the write it guards cannot be
//! split by a claim or a cancellation. Claims take `FOR UPDATE SKIP LOCKED`, so workers claiming
//! at once get different runs instead of queueing on one. Locks are taken run first, item
//! second, everywhere (see `items`).
//!
//! Opening connects once, with a bounded timeout and no retries, so a wrong URL or a server that
//! is down is reported at once; the pool then connects lazily. After that, a lost connection (a
//! restart of the server) is ridden out: reads and uncommitted transactions are tried again a few
//! times (see `retry`). A password in the URL is never shown: errors and `Debug` carry the URL
//! with it masked. TLS follows libpq's `sslmode` and `sslrootcert` (see `tls`), over rustls.

/// The database clock in milliseconds since the Unix epoch, as an SQL expression (a macro so it
/// can be spliced into `concat!`-built static queries). `clock_timestamp()` rather than `now()`,
/// which would be frozen at the start of the transaction.
macro_rules! now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

mod connect;
mod items;
mod migrate;
mod notifications;
mod people;
mod retry;
mod rows;
mod runs;
mod tls;
mod url;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orch_core::transition::ItemProgress;
use orch_core::{ItemId, ProjectId};
use serde_json::Value;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, Transaction};

use crate::{
    AttemptOutcome, ClaimLimits, EventRecord, Fence, FinishRun, InboxOutcome, ItemChange,
    ItemRecord, NewEvent, NewNotification, NewRun, NotificationRecord, NotificationState,
    PersonRecord, ProjectRecord, Result, RunRecord, Store, StoreError, WakeUp,
};

use connect::connect;
pub(crate) use url::{SCHEMES, is_postgres, masked};

/// How long a call waits for a free connection (or a new one) before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Per process; a server serves many workers, so each keeps a modest share.
const MAX_CONNECTIONS: u32 = 8;

/// The [`Store`] on PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// The URL it was opened with, password masked.
    shown_url: String,
    /// The connection listening on [`WORK_CHANNEL`], opened by the first
    /// [`Store::wait_for_work`] and kept (PgListener reconnects by itself).
    listener: Arc<tokio::sync::Mutex<Option<PgListener>>>,
}

/// An open transaction, as [`PgStore::write`] hands it to its body.
type Tx = Transaction<'static, Postgres>;

/// The channel the `stage_runs_notify_work` trigger (migration 2) notifies.
const WORK_CHANNEL: &str = "orch_work";

impl PgStore {
    /// Connects to the server at `url` (`postgres://` or `postgresql://`) and migrates its
    /// database.
    ///
    /// Fails with [`StoreError::Open`] (naming the URL with its password masked) when the URL
    /// does not parse, the server does not answer within 5 s (or the URL's
    /// `connect_timeout=SECONDS`) or refuses the connection, or the schema is newer than this
    /// orch knows.
    pub async fn open(url: &str) -> Result<Self> {
        let shown_url = masked(url);
        let open_error = |reason: String| StoreError::Open {
            url: shown_url.clone(),
            reason,
        };
        let (mut conn, options) = connect(url).await?;
        migrate::run(&mut conn, &shown_url)
            .await
            .map_err(|e| match e {
                StoreError::Open { .. } => e,
                other => open_error(format!("migrating the schema failed: {other}")),
            })?;
        conn.close()
            .await
            .map_err(|e| open_error(format!("closing the migration connection failed: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // Pings an idle connection before handing it out (sqlx's default, stated because it
            // matters): after a server restart, every pooled connection is dead, and this drops
            // them instead of failing the next query on each.
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            shown_url,
            listener: Arc::default(),
        })
    }

    /// Where the database at `url` stands, read without changing anything (no migration): for
    /// `orch doctor`. Errors as [`PgStore::open`] when the server cannot be reached.
    pub async fn probe(url: &str) -> Result<crate::SchemaState> {
        let (mut conn, _) = connect(url).await?;
        let state = migrate::state(&mut conn).await;
        let _ = conn.close().await;
        state.map_err(|e| StoreError::Open {
            url: masked(url),
            reason: format!("reading the schema version failed: {e}"),
        })
    }

    /// The newest schema version this orch can open (and migrates every database up to).
    pub fn schema_version() -> i64 {
        migrate::latest_version()
    }

    /// The URL this store was opened with, its password masked.
    pub fn url(&self) -> &str {
        &self.shown_url
    }

    /// Closes every connection, waiting for those in use. Later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Every row of a query without parameters, tried again if the connection was lost.
    async fn fetch_all(&self, what: &'static str, sql: &str) -> Result<Vec<sqlx::postgres::PgRow>> {
        retry::retrying(what, move || async move {
            Ok(sqlx::query(sql).fetch_all(&self.pool).await?)
        })
        .await
    }

    async fn listen(&self) -> Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(WORK_CHANNEL).await?;
        Ok(listener)
    }

    /// Runs `body` in one transaction and commits it. `body` gets the open transaction and
    /// hands it back with its result. When the connection is lost before the commit (the
    /// transaction then rolled back), the whole transaction runs again (see `retry`); an error
    /// during the commit itself is returned. Dropping the future rolls back.
    async fn write<T, F, Fut>(&self, what: &'static str, mut body: F) -> Result<T>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<(Tx, T)>>,
    {
        let mut retry = retry::Retry::new(what);
        loop {
            let tried = match self.pool.begin().await {
                Ok(tx) => body(tx).await,
                Err(e) => Err(e.into()),
            };
            match tried {
                Ok((tx, value)) => {
                    tx.commit().await?;
                    return Ok(value);
                }
                Err(e) if retry.again(&e).await => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn check_lease_ms(lease_ms: i64) -> Result<()> {
    if lease_ms <= 0 {
        return Err(StoreError::Invalid(format!(
            "a lease must last a positive number of milliseconds, not {lease_ms} (use expire_lease to end one)"
        )));
    }
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn upsert_project(&self, id: &ProjectId, repo_path: &str) -> Result<ProjectRecord> {
        let sql = format!(
            "INSERT INTO projects (id, repo_path, next_item_number, created_at) VALUES ($1, $2, 1, {})
             ON CONFLICT (id) DO UPDATE SET repo_path = excluded.repo_path
             RETURNING {}",
            now_ms!(),
            rows::PROJECT_COLUMNS
        );
        let sql = &sql;
        let row = self
            .write("upsert_project", |mut tx| async move {
                let row = sqlx::query(sql)
                    .bind(id.as_str())
                    .bind(repo_path)
                    .fetch_one(&mut *tx)
                    .await?;
                Ok((tx, row))
            })
            .await?;
        rows::project(&row)
    }

    async fn get_project(&self, id: &ProjectId) -> Result<Option<ProjectRecord>> {
        let sql = format!(
            "SELECT {} FROM projects WHERE id = $1",
            rows::PROJECT_COLUMNS
        );
        let sql = &sql;
        let row = retry::retrying("get_project", move || async move {
            Ok(sqlx::query(sql)
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?)
        })
        .await?;
        row.as_ref().map(rows::project).transpose()
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        // Byte order, as on SQLite, whatever the database's collation.
        let sql = format!(
            "SELECT {} FROM projects ORDER BY id COLLATE \"C\"",
            rows::PROJECT_COLUMNS
        );
        rows::all(&self.fetch_all("list_projects", &sql).await?, rows::project)
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
        let (first_run, events) = (&first_run, &events);
        self.write("create_item", |mut tx| async move {
            let item = items::create(
                &mut tx, project, prefix, title, body, progress, first_run, events,
            )
            .await?;
            Ok((tx, item))
        })
        .await
    }

    async fn get_item(&self, id: &ItemId) -> Result<Option<ItemRecord>> {
        retry::retrying("get_item", move || items::get(&self.pool, id)).await
    }

    async fn list_items(&self, project: Option<&ProjectId>) -> Result<Vec<ItemRecord>> {
        // Ids sort by length first so `DEMO-9` comes before `DEMO-10` within one millisecond.
        let order = "ORDER BY created_at, length(id), id COLLATE \"C\"";
        let columns = rows::ITEM_COLUMNS;
        let found = match project {
            Some(p) => {
                let sql = format!("SELECT {columns} FROM work_items WHERE project_id = $1 {order}");
                let sql = &sql;
                retry::retrying("list_items", move || async move {
                    Ok(sqlx::query(sql)
                        .bind(p.as_str())
                        .fetch_all(&self.pool)
                        .await?)
                })
                .await?
            }
            None => {
                let sql = format!("SELECT {columns} FROM work_items {order}");
                self.fetch_all("list_items", &sql).await?
            }
        };
        rows::all(&found, rows::item)
    }

    async fn list_items_with_status(
        &self,
        status: orch_core::transition::ItemStatus,
    ) -> Result<Vec<ItemRecord>> {
        let sql = format!(
            "SELECT {} FROM work_items WHERE status = $1 ORDER BY created_at, length(id), id COLLATE \"C\"",
            rows::ITEM_COLUMNS
        );
        let sql = &sql;
        let found = retry::retrying("list_items_with_status", move || async move {
            Ok(sqlx::query(sql)
                .bind(status.as_str())
                .fetch_all(&self.pool)
                .await?)
        })
        .await?;
        rows::all(&found, rows::item)
    }

    async fn get_run(&self, run_id: i64) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {} FROM stage_runs WHERE id = $1", rows::RUN_COLUMNS);
        let sql = &sql;
        let row = retry::retrying("get_run", move || async move {
            Ok(sqlx::query(sql)
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?)
        })
        .await?;
        row.as_ref().map(rows::run).transpose()
    }

    async fn list_runs(&self, item: &ItemId) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {} FROM stage_runs WHERE item_id = $1 ORDER BY id",
            rows::RUN_COLUMNS
        );
        let sql = &sql;
        let found = retry::retrying("list_runs", move || async move {
            Ok(sqlx::query(sql)
                .bind(item.as_str())
                .fetch_all(&self.pool)
                .await?)
        })
        .await?;
        rows::all(&found, rows::run)
    }

    async fn housekeeping_due(&self, owner: &str) -> Result<crate::HousekeepingDue> {
        let flags: (bool, bool, bool) = retry::retrying("housekeeping_due", move || async move {
            Ok(sqlx::query_as(crate::rows::HOUSEKEEPING_DUE)
                .bind(owner)
                .fetch_one(&self.pool)
                .await?)
        })
        .await?;
        Ok(crate::rows::housekeeping_due(flags))
    }

    async fn list_running(&self) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {} FROM stage_runs WHERE state = 'running' ORDER BY id",
            rows::RUN_COLUMNS
        );
        rows::all(&self.fetch_all("list_running", &sql).await?, rows::run)
    }

    async fn list_events(&self, item: &ItemId, after: i64) -> Result<Vec<EventRecord>> {
        let sql = format!(
            "SELECT {} FROM events WHERE item_id = $1 AND seq > $2 ORDER BY seq",
            rows::EVENT_COLUMNS
        );
        let sql = &sql;
        let found = retry::retrying("list_events", move || async move {
            Ok(sqlx::query(sql)
                .bind(item.as_str())
                .bind(after)
                .fetch_all(&self.pool)
                .await?)
        })
        .await?;
        rows::all(&found, rows::event)
    }

    async fn append_events(&self, item: &ItemId, events: Vec<NewEvent>) -> Result<()> {
        let events = &events;
        self.write("append_events", |mut tx| async move {
            items::require_item(&mut tx, item).await?;
            items::append_events(&mut tx, item, events).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn claim_next_run_within(
        &self,
        owner: &str,
        lease_ms: i64,
        limits: ClaimLimits,
    ) -> Result<Option<RunRecord>> {
        check_lease_ms(lease_ms)?;
        self.write("claim_next_run", |mut tx| async move {
            let claimed = runs::claim_next(&mut tx, owner, lease_ms, limits).await?;
            Ok((tx, claimed))
        })
        .await
    }

    async fn renew_lease(&self, fence: Fence, lease_ms: i64) -> Result<()> {
        check_lease_ms(lease_ms)?;
        self.write("renew_lease", |mut tx| async move {
            runs::renew(&mut tx, fence, lease_ms).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn expire_lease(&self, fence: Fence) -> Result<()> {
        self.write("expire_lease", |mut tx| async move {
            runs::expire(&mut tx, fence).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn give_way(&self, fence: Fence, delay_ms: i64) -> Result<()> {
        self.write("give_way", |mut tx| async move {
            runs::give_way(&mut tx, fence, delay_ms).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn wake_given_way(&self, project: &ProjectId) -> Result<u64> {
        self.write("wake_given_way", |mut tx| {
            let project = project.clone();
            async move {
                let woken = runs::wake_given_way(&mut tx, &project).await?;
                Ok((tx, woken))
            }
        })
        .await
    }

    async fn save_checkpoint(
        &self,
        fence: Fence,
        checkpoint: Value,
        events: Vec<NewEvent>,
    ) -> Result<()> {
        let (checkpoint, events) = (&checkpoint, &events);
        self.write("save_checkpoint", |mut tx| async move {
            runs::save_checkpoint(&mut tx, fence, checkpoint, events).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn finish_run(&self, fence: Fence, finish: FinishRun) -> Result<()> {
        let finish = &finish;
        self.write("finish_run", |mut tx| async move {
            runs::finish(&mut tx, fence, finish).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn change_item(&self, item: &ItemId, change: ItemChange) -> Result<()> {
        let change = &change;
        self.write("change_item", |mut tx| async move {
            items::change(&mut tx, item, change).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn wait_for_work(&self, timeout: Duration) -> WakeUp {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut slot = self.listener.lock().await;
        if slot.is_none() {
            match tokio::time::timeout_at(deadline, self.listen()).await {
                Ok(Ok(listener)) => *slot = Some(listener),
                Ok(Err(e)) => {
                    // Polling stays the truth: without a listener, wait out the interval.
                    tracing::debug!("cannot listen for {WORK_CHANNEL}: {e}; polling only");
                    tokio::time::sleep_until(deadline).await;
                    return WakeUp::Timeout;
                }
                Err(_) => return WakeUp::Timeout,
            }
        }
        let Some(listener) = slot.as_mut() else {
            return WakeUp::Timeout;
        };
        // `recv` reconnects and listens again by itself when the connection was lost (a server
        // restart); notifications sent meanwhile are lost, which costs one poll interval.
        match tokio::time::timeout_at(deadline, listener.recv()).await {
            Ok(Ok(_)) => WakeUp::Notified,
            Ok(Err(e)) => {
                tracing::debug!("listening for {WORK_CHANNEL} failed: {e}; reconnecting later");
                *slot = None;
                tokio::time::sleep_until(deadline).await;
                WakeUp::Timeout
            }
            Err(_) => WakeUp::Timeout,
        }
    }

    async fn inbox_insert(
        &self,
        source: &str,
        delivery_id: &str,
        body_sha256: &str,
        body: &[u8],
    ) -> Result<InboxOutcome> {
        self.write("inbox_insert", |mut tx| async move {
            let outcome =
                people::inbox_insert(&mut tx, source, delivery_id, body_sha256, body).await?;
            Ok((tx, outcome))
        })
        .await
    }

    async fn add_person(&self, name: &str, token_sha256: &str) -> Result<PersonRecord> {
        self.write("add_person", |mut tx| async move {
            people::add(&mut tx, name, token_sha256).await?;
            Ok((tx, ()))
        })
        .await?;
        self.list_people()
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| StoreError::NotFound {
                what: "person",
                id: name.to_owned(),
            })
    }

    async fn revoke_person(&self, name: &str) -> Result<bool> {
        self.write("revoke_person", |mut tx| async move {
            let done = people::revoke(&mut tx, name).await?;
            Ok((tx, done))
        })
        .await
    }

    async fn list_people(&self) -> Result<Vec<PersonRecord>> {
        retry::retrying("list_people", move || async move {
            people::list(&self.pool).await
        })
        .await
    }

    async fn person_by_token(&self, token_sha256: &str) -> Result<Option<PersonRecord>> {
        retry::retrying("person_by_token", move || async move {
            people::by_token(&self.pool, token_sha256).await
        })
        .await
    }

    async fn has_people(&self) -> Result<bool> {
        retry::retrying("has_people", move || async move {
            people::any_active(&self.pool).await
        })
        .await
    }

    async fn link_tracker_account(&self, person: &str, account: &str) -> Result<()> {
        self.write("link_tracker_account", |mut tx| async move {
            people::link(&mut tx, person, account).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn person_by_tracker_account(&self, account: &str) -> Result<Option<PersonRecord>> {
        retry::retrying("person_by_tracker_account", move || async move {
            people::by_account(&self.pool, account).await
        })
        .await
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
        let (first_run, events) = (&first_run, &events);
        let created = self
            .write("create_linked_item", |mut tx| async move {
                // One creator per (project, external id) at a time, across every process: the
                // second waits here and then finds the link.
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))")
                    .bind(project.as_str())
                    .bind(external_id)
                    .execute(&mut *tx)
                    .await?;
                let linked: Option<String> = sqlx::query_scalar(
                    "SELECT item_id FROM external_items WHERE project_id = $1 AND external_id = $2",
                )
                .bind(project.as_str())
                .bind(external_id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(id) = linked {
                    return Ok((tx, Err(id)));
                }
                let item = items::create(
                    &mut tx, project, prefix, title, body, progress, first_run, events,
                )
                .await?;
                sqlx::query(
                    "INSERT INTO external_items (project_id, external_id, item_id) VALUES ($1, $2, $3)",
                )
                .bind(project.as_str())
                .bind(external_id)
                .bind(item.id.as_str())
                .execute(&mut *tx)
                .await?;
                Ok((tx, Ok(item)))
            })
            .await?;
        // `Err` carries the id of the item already linked (the transaction wrote nothing).
        let id = match created {
            Ok(item) => return Ok((item, true)),
            Err(id) => ItemId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        };
        let item = self
            .get_item(&id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "work item",
                id: id.to_string(),
            })?;
        Ok((item, false))
    }

    async fn find_linked_item(
        &self,
        project: &ProjectId,
        external_id: &str,
    ) -> Result<Option<ItemId>> {
        let id: Option<String> = retry::retrying("find_linked_item", move || async move {
            Ok(sqlx::query_scalar(
                "SELECT item_id FROM external_items WHERE project_id = $1 AND external_id = $2",
            )
            .bind(project.as_str())
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await?)
        })
        .await?;
        id.map(|id| ItemId::parse(&id).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn external_id(&self, item: &ItemId) -> Result<Option<String>> {
        retry::retrying("external_id", move || async move {
            Ok(
                sqlx::query_scalar("SELECT external_id FROM external_items WHERE item_id = $1")
                    .bind(item.as_str())
                    .fetch_optional(&self.pool)
                    .await?,
            )
        })
        .await
    }

    async fn cursor(&self, name: &str) -> Result<i64> {
        let position: Option<i64> = retry::retrying("cursor", move || async move {
            Ok(
                sqlx::query_scalar("SELECT position FROM cursors WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?,
            )
        })
        .await?;
        Ok(position.unwrap_or(0))
    }

    async fn set_cursor(&self, name: &str, position: i64) -> Result<()> {
        self.write("set_cursor", |mut tx| async move {
            sqlx::query(
                "INSERT INTO cursors (name, position) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            )
            .bind(name)
            .bind(position)
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }
    async fn enqueue_notifications(
        &self,
        item: &ItemId,
        cursor: &str,
        position: i64,
        notifications: Vec<NewNotification>,
    ) -> Result<()> {
        let notifications = &notifications;
        self.write("enqueue_notifications", |mut tx| async move {
            notifications::enqueue(&mut tx, item, cursor, position, notifications).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn claim_notifications(
        &self,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>> {
        self.write("claim_notifications", |mut tx| async move {
            let claimed = notifications::claim(&mut tx, lease_ms, limit).await?;
            Ok((tx, claimed))
        })
        .await
    }

    async fn record_attempt(
        &self,
        id: i64,
        attempts: u32,
        outcome: AttemptOutcome,
    ) -> Result<bool> {
        let outcome = &outcome;
        self.write("record_attempt", |mut tx| async move {
            let recorded = notifications::record(&mut tx, id, attempts, outcome).await?;
            Ok((tx, recorded))
        })
        .await
    }

    async fn list_notifications(&self, item: &ItemId) -> Result<Vec<NotificationRecord>> {
        retry::retrying("list_notifications", move || async move {
            notifications::list(&self.pool, item).await
        })
        .await
    }

    async fn count_notifications(&self) -> Result<Vec<(NotificationState, i64)>> {
        retry::retrying("count_notifications", move || async move {
            notifications::count(&self.pool).await
        })
        .await
    }
}
