//! orch-store: the durable state of orch behind one small port, [`Store`].
//!
//! Tables (the same on every backend): `projects`, `work_items`, `stage_runs` (unique per item,
//! stage and attempt; with a lease: owner, epoch, expiry), `events` (a gap-free sequence per item,
//! append-only), `inbox` (webhook deliveries, unique per source and delivery id and per source
//! and body hash), `external_items`, `cursors`, `people` (who may act, by the hash of their API
//! token), `tracker_accounts` (a tracker's user id that is a person) and `notifications`
//! (outgoing, one per receiver and event, with their delivery state).
//!
//! Invariants:
//! - Every state change is written in one transaction together with the events that describe it.
//! - Every write a worker makes about a run carries the run's lease epoch ([`Fence`]); a write
//!   with a stale epoch changes nothing and returns [`StoreError::LeaseLost`].
//! - Lease expiry is computed from the database clock, never from the caller's.
//! - Events are never updated or deleted.
//! - An item has at most one active (queued, running or waiting) run.
//!
//! Backends: [`SqliteStore`] (`SqliteStore::open("sqlite:///var/lib/orch/orch.db")`, or
//! `sqlite::memory:` for tests) and [`PgStore`] (`PgStore::open("postgres://orch@db/orch")`, for
//! workers on several machines); [`open_store`] picks one by the URL's scheme. A backend never
//! decides anything about the pipeline: it stores what the engine decided, atomically, and
//! refuses writes that break the invariants above.

mod notifications;
mod people;
mod postgres;
mod rows;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use orch_core::transition::ItemProgress;
use orch_core::{ItemId, ProjectId, StageName};
use serde_json::Value;
use thiserror::Error;

pub use notifications::{AttemptOutcome, NewNotification, NotificationRecord, NotificationState};
pub use people::{InboxOutcome, PersonRecord};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// `url` with any password replaced by `***`, safe for messages and logs.
pub fn masked_url(url: &str) -> String {
    postgres::masked(url)
}

/// Opens the store at `url`, choosing the backend by its scheme: `sqlite:` for [`SqliteStore`],
/// `postgres://` or `postgresql://` for [`PgStore`].
///
/// Any other scheme (or none) is [`StoreError::Open`] naming the accepted ones; a URL is shown in
/// errors with its password masked.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        return Ok(Arc::new(SqliteStore::open(url).await?));
    }
    if postgres::is_postgres(url) {
        return Ok(Arc::new(PgStore::open(url).await?));
    }
    Err(unknown_scheme(url))
}

/// The refusal of a URL that names no store orch knows, with the schemes it does.
fn unknown_scheme(url: &str) -> StoreError {
    StoreError::Open {
        url: postgres::masked(url),
        reason: format!(
            "unknown store URL scheme; use sqlite:///path/to/orch.db, sqlite::memory:, or {}",
            postgres::SCHEMES
                .iter()
                .map(|scheme| format!("{scheme}user@host/database"))
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    }
}

/// Where a database stands, read by [`probe_store`] without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaState {
    /// Whether the database exists (a SQLite file is created at orch's first start).
    pub created: bool,
    /// The schema version it holds (0: none yet).
    pub version: i64,
    /// The version this orch migrates every database to when it opens it.
    pub latest: i64,
}

/// Reaches the store at `url` and reads its schema version, changing nothing (no file created,
/// no migration): what `orch doctor` reports. Errors as [`open_store`] does.
pub async fn probe_store(url: &str) -> Result<SchemaState> {
    if url.starts_with("sqlite:") {
        return SqliteStore::probe(url).await;
    }
    if postgres::is_postgres(url) {
        return PgStore::probe(url).await;
    }
    Err(unknown_scheme(url))
}

/// Milliseconds since the Unix epoch, as stored.
pub type Millis = i64;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The run's lease was taken over (or the run was cancelled): the caller must stop and
    /// change nothing more.
    #[error("lease lost on run {run_id} (epoch {epoch} is no longer current)")]
    LeaseLost { run_id: i64, epoch: i64 },
    /// The item is not in a state the change expects (someone else changed it first).
    #[error("item {item} is {actual}, expected one of: {expected}")]
    Conflict {
        item: String,
        actual: String,
        expected: String,
    },
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    /// A name or key that must be unique is taken already.
    #[error("{what} `{id}` exists already")]
    Exists { what: &'static str, id: String },
    /// The database file or server could not be opened, or its schema is newer than this orch.
    #[error("cannot open store at {url}: {reason}")]
    Open { url: String, reason: String },
    /// A stored value does not decode (a corrupted row, or a schema mismatch).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The caller asked for something the store's invariants forbid (a run created already
    /// finished, a second active run for an item, an item id that does not parse): a bug in the
    /// caller, not a race; retrying will not help.
    #[error("refused by the store: {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the connection to the database (or the server behind it) went away, rather than
    /// the statement being wrong or refused: I/O errors, and SQLSTATE classes 08 (connection
    /// exception) and 57P (the server shutting down, crashed, or not yet accepting connections),
    /// as when PostgreSQL restarts. Says nothing about the work itself; trying again later may
    /// succeed. A pool timeout is not among them: the pool already waited for the server.
    pub fn is_connection_lost(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_) => true,
            sqlx::Error::Database(db) => db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    pub id: ProjectId,
    /// The project's git repository on disk.
    pub repo_path: String,
    pub created_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ItemRecord {
    pub id: ItemId,
    pub project: ProjectId,
    pub title: String,
    pub body: String,
    pub progress: ItemProgress,
    /// Why the item is blocked (set with status blocked, cleared when it moves on).
    pub blocked_reason: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// The state of one stage run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Waiting for a worker to claim it.
    Queued,
    /// Claimed by a worker that holds its lease.
    Running,
    /// An approval run waiting for a person.
    Waiting,
    Passed,
    Failed,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Waiting => "waiting",
            RunState::Passed => "passed",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Waiting,
            Self::Passed,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Queued, running and waiting runs are active; an item has at most one active run.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RunState::Queued | RunState::Running | RunState::Waiting
        )
    }
}

/// What [`Store::housekeeping_due`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HousekeepingDue {
    /// Runs are `running` under another owner's lease (the reaper looks for dead owners).
    pub others_running: bool,
    /// Items are `merging`.
    pub merging: bool,
    /// Items are `awaiting-approval` (an approval may carry over).
    pub awaiting_approval: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    pub id: i64,
    pub item: ItemId,
    pub project: ProjectId,
    pub stage: StageName,
    pub attempt: u32,
    pub state: RunState,
    /// Bumped by every claim and by cancellation; writes must carry the current value.
    pub epoch: i64,
    pub lease: Option<Lease>,
    /// Feedback for the agent from the failure that led here (empty on a first attempt).
    pub feedback: Vec<String>,
    /// Free-form progress the engine saves while running (base commit, phase, process id...).
    pub checkpoint: Value,
    /// The gate verdict, once decided.
    pub verdict: Option<Value>,
    /// Token and cost usage, once known.
    pub usage: Option<Value>,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
}

/// The proof that a caller holds a run's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub run_id: i64,
    pub epoch: i64,
}

impl RunRecord {
    pub fn fence(&self) -> Fence {
        Fence {
            run_id: self.id,
            epoch: self.epoch,
        }
    }
}

/// A run to create: always the next attempt of a stage, queued (or waiting, for approvals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub stage: StageName,
    pub attempt: u32,
    /// `Queued` or `Waiting`.
    pub state: RunState,
    pub feedback: Vec<String>,
}

/// An event to append. `run_id` ties it to a stage run where there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: String,
    pub run_id: Option<i64>,
    pub data: Value,
}

impl NewEvent {
    pub fn new(kind: impl Into<String>, data: Value) -> Self {
        Self {
            kind: kind.into(),
            run_id: None,
            data,
        }
    }

    pub fn for_run(kind: impl Into<String>, run_id: i64, data: Value) -> Self {
        Self {
            kind: kind.into(),
            run_id: Some(run_id),
            data,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub item: ItemId,
    /// 1, 2, 3, ... per item, with no gaps.
    pub seq: i64,
    pub at: Millis,
    pub kind: String,
    pub run_id: Option<i64>,
    pub data: Value,
}

/// How a running run ends: written in one transaction with the item's new progress, its next run
/// and the events, and only if the fence still holds.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishRun {
    pub state: RunState,
    pub verdict: Value,
    pub usage: Option<Value>,
    pub progress: ItemProgress,
    pub blocked_reason: Option<String>,
    pub next_run: Option<NewRun>,
    pub events: Vec<NewEvent>,
}

/// A change to an item made outside a run's lease (approve, stop, retry, merged), applied only if
/// the item's status is one of `expected`.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemChange {
    pub expected: Vec<orch_core::transition::ItemStatus>,
    pub progress: ItemProgress,
    pub blocked_reason: Option<String>,
    /// The state the item's active run (if any) ends in; its epoch is bumped so its holder is
    /// fenced out. `None` leaves an active run alone.
    pub end_active_run: Option<RunState>,
    pub next_run: Option<NewRun>,
    pub events: Vec<NewEvent>,
}

/// The port every backend implements. Methods are small and transactional; the engine decides.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Creates the project if it does not exist; updates its repo path if it does.
    async fn upsert_project(&self, id: &ProjectId, repo_path: &str) -> Result<ProjectRecord>;
    async fn get_project(&self, id: &ProjectId) -> Result<Option<ProjectRecord>>;
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>>;

    /// Creates an item with the next free number of `prefix` (`PREFIX-1`, `PREFIX-2`, ...), its
    /// first run and its first events, in one transaction. The project must exist.
    #[expect(
        clippy::too_many_arguments,
        reason = "an item is born with all of these, in one transaction"
    )]
    async fn create_item(
        &self,
        project: &ProjectId,
        prefix: &str,
        title: &str,
        body: &str,
        progress: &ItemProgress,
        first_run: NewRun,
        events: Vec<NewEvent>,
    ) -> Result<ItemRecord>;
    async fn get_item(&self, id: &ItemId) -> Result<Option<ItemRecord>>;
    /// Items, oldest first; all projects when `project` is `None`.
    async fn list_items(&self, project: Option<&ProjectId>) -> Result<Vec<ItemRecord>>;
    /// Items in `status`, oldest first, from the status index: what the engine's loop asks on
    /// every pass (items to merge, queued work), without reading every item ever filed.
    async fn list_items_with_status(
        &self,
        status: orch_core::transition::ItemStatus,
    ) -> Result<Vec<ItemRecord>>;

    async fn get_run(&self, run_id: i64) -> Result<Option<RunRecord>>;
    /// Every run of an item, in creation order.
    async fn list_runs(&self, item: &ItemId) -> Result<Vec<RunRecord>>;
    /// Runs currently `running`, with their leases (for the reaper and `orch status`).
    async fn list_running(&self) -> Result<Vec<RunRecord>>;
    /// Which of the engine's housekeeping lists hold anything, in one read: the loop asks
    /// after every run, and mostly all three are empty.
    async fn housekeeping_due(&self, owner: &str) -> Result<HousekeepingDue>;

    /// Events of an item with `seq > after`, in order.
    async fn list_events(&self, item: &ItemId, after: i64) -> Result<Vec<EventRecord>>;
    /// Appends events outside any other change (log-style facts such as a measurement).
    async fn append_events(&self, item: &ItemId, events: Vec<NewEvent>) -> Result<()>;

    /// Claims the oldest claimable run: a queued one, or a running one whose lease expired. Sets it
    /// running with `owner`, epoch + 1 and expiry = database now + `lease_ms`; sets its item's
    /// status to running; appends a `run.claimed` event (data: owner, epoch, reclaimed: bool).
    /// All in one transaction; two callers never get the same run with the same epoch.
    async fn claim_next_run(&self, owner: &str, lease_ms: i64) -> Result<Option<RunRecord>> {
        self.claim_next_run_within(owner, lease_ms, ClaimLimits::default())
            .await
    }
    /// [`Store::claim_next_run`], claiming nothing that would break `limits`: runs held under
    /// an unexpired lease are counted across every process sharing the store, and the count and
    /// the claim are one serialized step, so concurrent claimers cannot overshoot together.
    async fn claim_next_run_within(
        &self,
        owner: &str,
        lease_ms: i64,
        limits: ClaimLimits,
    ) -> Result<Option<RunRecord>>;
    /// Extends the lease to database now + `lease_ms`, if `fence` still holds.
    async fn renew_lease(&self, fence: Fence, lease_ms: i64) -> Result<()>;
    /// Expires a lease now (its owner is known to be dead), so the run can be claimed at once.
    async fn expire_lease(&self, fence: Fence) -> Result<()>;
    /// Hands a run back unfinished for `delay_ms`: no one claims it before its lease runs out
    /// then, and it then comes after every run queued before that moment (its `created_at` is
    /// that moment too). A run that must wait for another thus lets the other's runs be
    /// claimed first. Changes nothing when `fence` no longer holds.
    async fn give_way(&self, fence: Fence, delay_ms: i64) -> Result<()>;
    /// Ends the pause of every run of `project` that gave way (its latest event is
    /// `run.gave-way`): news it waits for may have come (a forge's webhook), so it is claimable
    /// now, looks again, and gives way again if it must still wait. Runs held by a live owner
    /// are never touched. Returns how many runs were woken.
    async fn wake_given_way(&self, project: &ProjectId) -> Result<u64>;
    /// Replaces the run's checkpoint and appends events, if `fence` still holds.
    async fn save_checkpoint(
        &self,
        fence: Fence,
        checkpoint: Value,
        events: Vec<NewEvent>,
    ) -> Result<()>;
    /// Ends a running run with its verdict and moves the item on, if `fence` still holds.
    async fn finish_run(&self, fence: Fence, finish: FinishRun) -> Result<()>;
    /// Applies a change made by a person or by the engine outside a lease.
    async fn change_item(&self, item: &ItemId, change: ItemChange) -> Result<()>;

    /// Records a webhook delivery, unless (source, delivery id) or (source, body hash) was
    /// recorded before: a redelivery, or a captured body replayed under a new delivery id.
    async fn inbox_insert(
        &self,
        source: &str,
        delivery_id: &str,
        body_sha256: &str,
        body: &[u8],
    ) -> Result<InboxOutcome>;

    /// Adds a person who acts under `name` with the token whose SHA-256 is `token_sha256`. A
    /// revoked person of that name gets the new token and is active again; an active one is
    /// [`StoreError::Exists`] (revoke first).
    async fn add_person(&self, name: &str, token_sha256: &str) -> Result<PersonRecord>;
    /// Revokes `name`'s token; `false` when no active person has that name.
    async fn revoke_person(&self, name: &str) -> Result<bool>;
    /// Every person, revoked ones too, by name.
    async fn list_people(&self) -> Result<Vec<PersonRecord>>;
    /// The active person whose token hashes to `token_sha256`.
    async fn person_by_token(&self, token_sha256: &str) -> Result<Option<PersonRecord>>;
    /// Whether any person is active (then the dashboard and the API need a login).
    async fn has_people(&self) -> Result<bool>;
    /// Says that the tracker account `account` (`plane:<uuid>`, `gitea:<id>`) is `person`. An
    /// account that is someone else already is [`StoreError::Exists`].
    async fn link_tracker_account(&self, person: &str, account: &str) -> Result<()>;
    /// The person a tracker account is, revoked or not (the caller refuses a revoked one).
    async fn person_by_tracker_account(&self, account: &str) -> Result<Option<PersonRecord>>;

    /// Creates an item as [`Store::create_item`] does, linked to a tracker's `external_id`, in
    /// one transaction; unless the project already has an item linked to that id: then nothing
    /// is written and that item is returned with `false`. Two callers racing on one id create
    /// one item.
    #[expect(
        clippy::too_many_arguments,
        reason = "create_item's arguments plus the link, in one transaction"
    )]
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
    ) -> Result<(ItemRecord, bool)>;
    /// The item of `project` linked to `external_id`, if any.
    async fn find_linked_item(
        &self,
        project: &ProjectId,
        external_id: &str,
    ) -> Result<Option<ItemId>>;
    /// The tracker id an item is linked to, if it came from a tracker.
    async fn external_id(&self, item: &ItemId) -> Result<Option<String>>;

    /// Where the follower `name` stopped; 0 when it never ran.
    async fn cursor(&self, name: &str) -> Result<i64>;
    /// Records where the follower `name` stopped.
    async fn set_cursor(&self, name: &str, position: i64) -> Result<()>;

    /// Records `notifications` of `item`'s events and moves the follower `cursor` to
    /// `position`, in one transaction. A (receiver, item, event) recorded before is left as it
    /// is, so a follower that starts again over the same events records nothing twice.
    async fn enqueue_notifications(
        &self,
        item: &ItemId,
        cursor: &str,
        position: i64,
        notifications: Vec<NewNotification>,
    ) -> Result<()>;
    /// Claims up to `limit` pending notifications due now (database clock), oldest first: each
    /// counts one more attempt and is due again only `lease_ms` later, so no other sender takes
    /// it meanwhile, and a sender that dies leaves it to be sent again (at least once).
    async fn claim_notifications(
        &self,
        lease_ms: i64,
        limit: u32,
    ) -> Result<Vec<NotificationRecord>>;
    /// Records how the attempt `attempts` of notification `id` ended. Changes nothing (and
    /// returns `false`) when the notification is no longer pending at that attempt: a sender
    /// whose claim expired and was claimed again is fenced out.
    async fn record_attempt(&self, id: i64, attempts: u32, outcome: AttemptOutcome)
    -> Result<bool>;
    /// The notifications of an item, oldest first.
    async fn list_notifications(&self, item: &ItemId) -> Result<Vec<NotificationRecord>>;
    /// How many notifications are in each state (for `/metrics`).
    async fn count_notifications(&self) -> Result<Vec<(NotificationState, i64)>>;

    /// Waits until a run may have become claimable (queued by any process) or `timeout` has
    /// passed, whichever comes first. A hint, never the truth: callers poll after it returns,
    /// so a spurious or a lost wake-up costs at most one poll interval. The default (SQLite)
    /// just waits out the timeout; PostgreSQL listens for the `orch_work` notification.
    async fn wait_for_work(&self, timeout: std::time::Duration) -> WakeUp {
        tokio::time::sleep(timeout).await;
        WakeUp::Timeout
    }
}

/// Caps on the runs held at once under a live lease, by every process sharing a store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimLimits {
    /// Across all projects.
    pub global: Option<u32>,
    /// Within each project.
    pub per_project: Option<u32>,
}

impl ClaimLimits {
    pub fn is_unlimited(&self) -> bool {
        self.global.is_none() && self.per_project.is_none()
    }
}

/// Why [`Store::wait_for_work`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeUp {
    /// Another process said a run was queued.
    Notified,
    Timeout,
}
