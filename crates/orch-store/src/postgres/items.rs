//! Writes about items: creation, changes outside a lease, and the pieces every write shares
//! (progress, new runs, events). Each function runs inside the caller's transaction.
//!
//! Row locks are always taken run first, item second (the order a claim must use, since it finds
//! its run before its item), so two writers never wait for each other in a cycle.

use orch_core::transition::{ItemProgress, ItemStatus};
use orch_core::{ItemId, ProjectId};
use sqlx::{PgConnection, PgPool};

use super::rows;
use crate::{ItemChange, ItemRecord, NewEvent, NewRun, Result, RunState, StoreError};

pub(super) async fn get(pool: &PgPool, id: &ItemId) -> Result<Option<ItemRecord>> {
    let sql = format!(
        "SELECT {} FROM work_items WHERE id = $1",
        rows::ITEM_COLUMNS
    );
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::item).transpose()
}

#[expect(
    clippy::too_many_arguments,
    reason = "mirrors Store::create_item, whose signature is the port"
)]
pub(super) async fn create(
    conn: &mut PgConnection,
    project: &ProjectId,
    prefix: &str,
    title: &str,
    body: &str,
    progress: &ItemProgress,
    first_run: &NewRun,
    events: &[NewEvent],
) -> Result<ItemRecord> {
    // Refuse a bad prefix before spending a number on it.
    ItemId::new(prefix, 1)
        .map_err(|e| StoreError::Invalid(format!("item prefix `{prefix}`: {e}")))?;
    let item = insert_numbered(conn, project, prefix, title, body, progress).await?;
    insert_run(conn, &item.id, project, first_run).await?;
    append_events(conn, &item.id, events).await?;
    Ok(item)
}

/// Inserts the item under the project's next free number. The project's row lock makes
/// concurrent creations in one project take turns; a number whose id is already taken (two
/// projects sharing a prefix, `billing-api` and `billingapi`) is skipped, even when the other
/// item is not committed yet: `ON CONFLICT` waits for it. The clock is read once, so a new item's
/// created and updated times are equal.
async fn insert_numbered(
    conn: &mut PgConnection,
    project: &ProjectId,
    prefix: &str,
    title: &str,
    body: &str,
    progress: &ItemProgress,
) -> Result<ItemRecord> {
    let sql = format!(
        "INSERT INTO work_items (id, project_id, title, body, stage, status, progress_json, \
         blocked_reason, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, NULL, clock.ms, clock.ms FROM (SELECT {now} AS ms) AS clock \
         ON CONFLICT (id) DO NOTHING RETURNING {columns}",
        now = now_ms!(),
        columns = rows::ITEM_COLUMNS
    );
    let progress_json = encode_progress(progress)?;
    loop {
        let id = next_number(conn, project, prefix).await?;
        let row = sqlx::query(&sql)
            .bind(id.as_str())
            .bind(project.as_str())
            .bind(title)
            .bind(body)
            .bind(progress.stage.as_str())
            .bind(progress.status.as_str())
            .bind(&progress_json)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return rows::item(&row);
        }
    }
}

/// Takes the project's next item number.
async fn next_number(conn: &mut PgConnection, project: &ProjectId, prefix: &str) -> Result<ItemId> {
    let number: Option<i64> = sqlx::query_scalar(
        "UPDATE projects SET next_item_number = next_item_number + 1 WHERE id = $1
         RETURNING next_item_number - 1",
    )
    .bind(project.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let number = number.ok_or_else(|| StoreError::NotFound {
        what: "project",
        id: project.to_string(),
    })?;
    u32::try_from(number)
        .ok()
        .and_then(|n| ItemId::new(prefix, n).ok())
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "project {project} has run out of item numbers at {number}"
            ))
        })
}

/// Applies a change made outside a lease, if the item's status is one the change expects.
pub(super) async fn change(
    conn: &mut PgConnection,
    item: &ItemId,
    change: &ItemChange,
) -> Result<()> {
    // Run before item (see the module doc): a worker claiming this item's run right now either
    // finishes first or finds the run locked and skips it.
    sqlx::query(
        "SELECT id FROM stage_runs WHERE item_id = $1 AND state IN ('queued', 'running', 'waiting')
         FOR UPDATE",
    )
    .bind(item.as_str())
    .execute(&mut *conn)
    .await?;
    let (project, status) = lock_item(conn, item).await?;
    if !change.expected.contains(&status) {
        let expected: Vec<&str> = change.expected.iter().map(|s| s.as_str()).collect();
        return Err(StoreError::Conflict {
            item: item.to_string(),
            actual: status.as_str().to_owned(),
            expected: expected.join(", "),
        });
    }
    if let Some(end_state) = change.end_active_run {
        if end_state.is_active() {
            return Err(StoreError::Invalid(format!(
                "an active run must end in a finished state, not `{}`",
                end_state.as_str()
            )));
        }
        // The epoch bump fences out whoever holds the run's lease.
        sqlx::query(concat!(
            "UPDATE stage_runs SET state = $1, finished_at = ",
            now_ms!(),
            ", epoch = epoch + 1, lease_owner = NULL, lease_expires_at = NULL
             WHERE item_id = $2 AND state IN ('queued', 'running', 'waiting')"
        ))
        .bind(end_state.as_str())
        .bind(item.as_str())
        .execute(&mut *conn)
        .await?;
    }
    write_progress(
        conn,
        item,
        &change.progress,
        change.blocked_reason.as_deref(),
    )
    .await?;
    if let Some(next) = &change.next_run {
        insert_run(conn, item, &project, next).await?;
    }
    append_events(conn, item, &change.events).await
}

/// Locks the item's row until the transaction ends and returns its project and status, or
/// NotFound.
async fn lock_item(conn: &mut PgConnection, item: &ItemId) -> Result<(ProjectId, ItemStatus)> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT project_id, status FROM work_items WHERE id = $1 FOR UPDATE")
            .bind(item.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let (project, status) = row.ok_or_else(|| StoreError::NotFound {
        what: "item",
        id: item.to_string(),
    })?;
    let corrupt = |column: &str, why: String| {
        StoreError::Corrupt(format!("work_items.{column} of `{item}`: {why}"))
    };
    let project = ProjectId::parse(&project).map_err(|e| corrupt("project_id", e.to_string()))?;
    let status = ItemStatus::parse(&status)
        .ok_or_else(|| corrupt("status", format!("unknown status `{status}`")))?;
    Ok((project, status))
}

pub(super) async fn require_item(conn: &mut PgConnection, item: &ItemId) -> Result<()> {
    lock_item(conn, item).await.map(|_| ())
}

/// Writes the item's progress and the columns that mirror it.
pub(super) async fn write_progress(
    conn: &mut PgConnection,
    item: &ItemId,
    progress: &ItemProgress,
    blocked_reason: Option<&str>,
) -> Result<()> {
    let done = sqlx::query(concat!(
        "UPDATE work_items SET progress_json = $1, status = $2, stage = $3, blocked_reason = $4, \
         updated_at = ",
        now_ms!(),
        " WHERE id = $5"
    ))
    .bind(encode_progress(progress)?)
    .bind(progress.status.as_str())
    .bind(progress.stage.as_str())
    .bind(blocked_reason)
    .bind(item.as_str())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            what: "item",
            id: item.to_string(),
        });
    }
    Ok(())
}

/// Creates a run; the item must have no other active run. Callers hold the item's row lock, so
/// no other writer can start a run for it meanwhile.
pub(super) async fn insert_run(
    conn: &mut PgConnection,
    item: &ItemId,
    project: &ProjectId,
    run: &NewRun,
) -> Result<i64> {
    if !matches!(run.state, RunState::Queued | RunState::Waiting) {
        return Err(StoreError::Invalid(format!(
            "a new run starts queued or waiting, not `{}`",
            run.state.as_str()
        )));
    }
    let active: Option<(i64, String)> = sqlx::query_as(
        "SELECT id, state FROM stage_runs
         WHERE item_id = $1 AND state IN ('queued', 'running', 'waiting')",
    )
    .bind(item.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((id, state)) = active {
        return Err(StoreError::Invalid(format!(
            "item {item} already has an active run (run {id}, {state}); end it before starting another"
        )));
    }
    let feedback = serde_json::to_string(&run.feedback)
        .map_err(|e| StoreError::Invalid(format!("feedback: {e}")))?;
    let inserted = sqlx::query_scalar(concat!(
        "INSERT INTO stage_runs (item_id, project_id, stage, attempt, state, epoch, feedback_json, \
         checkpoint_json, created_at) VALUES ($1, $2, $3, $4, $5, 0, $6, '{}', ",
        now_ms!(),
        ") RETURNING id"
    ))
    .bind(item.as_str())
    .bind(project.as_str())
    .bind(run.stage.as_str())
    .bind(i64::from(run.attempt))
    .bind(run.state.as_str())
    .bind(feedback)
    .fetch_one(&mut *conn)
    .await;
    match inserted {
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(StoreError::Invalid(format!(
                "item {item} already has a run of stage {} attempt {}",
                run.stage, run.attempt
            )))
        }
        other => Ok(other?),
    }
}

/// Appends events with the item's next sequence numbers, 1, 2, 3... without gaps. Locks the
/// item's row first, so concurrent appends to one item take turns instead of colliding on a
/// sequence number.
pub(super) async fn append_events(
    conn: &mut PgConnection,
    item: &ItemId,
    events: &[NewEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    lock_item(conn, item).await?;
    let last: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM events WHERE item_id = $1")
            .bind(item.as_str())
            .fetch_one(&mut *conn)
            .await?;
    for (seq, event) in (last + 1..).zip(events) {
        sqlx::query(concat!(
            "INSERT INTO events (item_id, seq, at, kind, run_id, data_json) VALUES ($1, $2, ",
            now_ms!(),
            ", $3, $4, $5)"
        ))
        .bind(item.as_str())
        .bind(seq)
        .bind(&event.kind)
        .bind(event.run_id)
        .bind(event.data.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn encode_progress(progress: &ItemProgress) -> Result<String> {
    serde_json::to_string(progress)
        .map_err(|e| StoreError::Invalid(format!("item progress does not encode: {e}")))
}
