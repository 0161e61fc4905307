//! Writes about items: creation, changes outside a lease, and the pieces every write shares
//! (progress, new runs, events). Each function runs inside the caller's write transaction.

use orch_core::transition::{ItemProgress, ItemStatus};
use orch_core::{ItemId, ProjectId};
use sqlx::{SqliteConnection, SqlitePool};

use super::rows;
use crate::{ItemChange, ItemRecord, NewEvent, NewRun, Result, RunState, StoreError};

pub(super) async fn get(pool: &SqlitePool, id: &ItemId) -> Result<Option<ItemRecord>> {
    let sql = format!("SELECT {} FROM work_items WHERE id = ?", rows::ITEM_COLUMNS);
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
    conn: &mut SqliteConnection,
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
    let id = allocate_id(conn, project, prefix).await?;
    let progress_json = encode_progress(progress)?;
    sqlx::query(concat!(
        "INSERT INTO work_items (id, project_id, title, body, stage, status, progress_json, blocked_reason, ",
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ",
        now_ms!(),
        ", ",
        now_ms!(),
        ")"
    ))
    .bind(id.as_str())
    .bind(project.as_str())
    .bind(title)
    .bind(body)
    .bind(progress.stage.as_str())
    .bind(progress.status.as_str())
    .bind(progress_json)
    .execute(&mut *conn)
    .await?;
    insert_run(conn, &id, project, first_run).await?;
    append_events(conn, &id, events).await?;
    let sql = format!("SELECT {} FROM work_items WHERE id = ?", rows::ITEM_COLUMNS);
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_one(&mut *conn)
        .await?;
    rows::item(&row)
}

/// Takes the project's next item number. Skips numbers whose id is already taken, which
/// happens only when two projects share a prefix (`billing-api` and `billingapi`).
async fn allocate_id(
    conn: &mut SqliteConnection,
    project: &ProjectId,
    prefix: &str,
) -> Result<ItemId> {
    loop {
        let number: Option<i64> = sqlx::query_scalar(
            "UPDATE projects SET next_item_number = next_item_number + 1 WHERE id = ?
             RETURNING next_item_number - 1",
        )
        .bind(project.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        let number = number.ok_or_else(|| StoreError::NotFound {
            what: "project",
            id: project.to_string(),
        })?;
        let id = u32::try_from(number)
            .ok()
            .and_then(|n| ItemId::new(prefix, n).ok())
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "project {project} has run out of item numbers at {number}"
                ))
            })?;
        let taken: Option<i64> = sqlx::query_scalar("SELECT 1 FROM work_items WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        if taken.is_none() {
            return Ok(id);
        }
    }
}

/// Applies a change made outside a lease, if the item's status is one the change expects.
pub(super) async fn change(
    conn: &mut SqliteConnection,
    item: &ItemId,
    change: &ItemChange,
) -> Result<()> {
    let (project, status) = item_status(conn, item).await?;
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
            "UPDATE stage_runs SET state = ?, finished_at = ",
            now_ms!(),
            ", epoch = epoch + 1, lease_owner = NULL, lease_expires_at = NULL
             WHERE item_id = ? AND state IN ('queued', 'running', 'waiting')"
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

/// The item's project and status, or NotFound.
async fn item_status(
    conn: &mut SqliteConnection,
    item: &ItemId,
) -> Result<(ProjectId, ItemStatus)> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT project_id, status FROM work_items WHERE id = ?")
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

pub(super) async fn require_item(conn: &mut SqliteConnection, item: &ItemId) -> Result<()> {
    item_status(conn, item).await.map(|_| ())
}

/// Writes the item's progress and the columns that mirror it.
pub(super) async fn write_progress(
    conn: &mut SqliteConnection,
    item: &ItemId,
    progress: &ItemProgress,
    blocked_reason: Option<&str>,
) -> Result<()> {
    let done = sqlx::query(concat!(
        "UPDATE work_items SET progress_json = ?, status = ?, stage = ?, blocked_reason = ?, updated_at = ",
        now_ms!(),
        " WHERE id = ?"
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

/// Creates a run; the item must have no other active run.
pub(super) async fn insert_run(
    conn: &mut SqliteConnection,
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
        "SELECT id, state FROM stage_runs WHERE item_id = ? AND state IN ('queued', 'running', 'waiting')",
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
        "INSERT INTO stage_runs (item_id, project_id, stage, attempt, state, epoch, feedback_json, checkpoint_json, ",
        "created_at) VALUES (?, ?, ?, ?, ?, 0, ?, '{}', ",
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

/// Appends events with the item's next sequence numbers, 1, 2, 3... without gaps.
pub(super) async fn append_events(
    conn: &mut SqliteConnection,
    item: &ItemId,
    events: &[NewEvent],
) -> Result<()> {
    // One statement per batch: the item's last sequence number is read once, in the statement
    // itself, and each row takes the next (a round trip per event was most of a transition's
    // statements).
    for (chunk_no, chunk) in events.chunks(APPEND_CHUNK).enumerate() {
        let rows = vec!["(?, ?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT INTO events (item_id, seq, at, kind, run_id, data_json) \
             SELECT ?, last.seq + rows.column1, {}, rows.column2, rows.column3, rows.column4 \
             FROM (SELECT COALESCE(MAX(seq), 0) AS seq FROM events WHERE item_id = ?) AS last, \
             (VALUES {rows}) AS rows ORDER BY rows.column1",
            now_ms!()
        );
        let mut query = sqlx::query(&sql).bind(item.as_str()).bind(item.as_str());
        for (n, event) in (1i64..).zip(chunk) {
            query = query
                .bind(n)
                .bind(&event.kind)
                .bind(event.run_id)
                .bind(event.data.to_string());
        }
        let inserted = query.execute(&mut *conn).await?.rows_affected();
        if inserted != chunk.len() as u64 {
            return Err(StoreError::Invalid(format!(
                "{inserted} of {} events of batch {chunk_no} were recorded",
                chunk.len()
            )));
        }
    }
    Ok(())
}

/// Events appended by one statement at most (four variables each, far below SQLite's limit).
const APPEND_CHUNK: usize = 200;

fn encode_progress(progress: &ItemProgress) -> Result<String> {
    serde_json::to_string(progress)
        .map_err(|e| StoreError::Invalid(format!("item progress does not encode: {e}")))
}
