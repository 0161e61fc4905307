//! Writes about runs: claims and every fenced write a lease holder makes. Each function runs
//! inside the caller's transaction; a fenced one locks the run's row and checks the fence before
//! writing anything, so no claim or cancellation can slip in between the check and the write.

use orch_core::transition::{ItemProgress, ItemStatus};
use orch_core::{ItemId, ProjectId};
use serde_json::{Value, json};
use sqlx::PgConnection;

use super::{items, rows};
use crate::{ClaimLimits, Fence, FinishRun, NewEvent, Result, RunRecord, RunState, StoreError};

/// The advisory lock that makes limited claims one at a time ("orchclam" in ASCII).
const CLAIM_LOCK: i64 = 0x6f72_6368_636c_616d;

/// Claims the oldest queued run, or the oldest running run whose lease expired.
///
/// `SKIP LOCKED` lets many workers claim at once: each takes the oldest run nobody else is
/// claiming (or writing to) right now, instead of all queueing behind the same row.
pub(super) async fn claim_next(
    conn: &mut PgConnection,
    owner: &str,
    lease_ms: i64,
    limits: ClaimLimits,
) -> Result<Option<RunRecord>> {
    if !limits.is_unlimited() {
        // Counting and claiming must be one step across workers, or two claimers could both see
        // room for one more run. Held to the end of the transaction; only limited claims take it.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLAIM_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let candidate: Option<(i64, String)> = sqlx::query_as(concat!(
        "SELECT r.id, r.state FROM stage_runs r
         WHERE (r.state = 'queued' OR (r.state = 'running' AND r.lease_expires_at < ",
        now_ms!(),
        "))
         AND ($1::bigint IS NULL OR (SELECT count(*) FROM stage_runs h
              WHERE h.state = 'running' AND h.lease_expires_at >= ",
        now_ms!(),
        ") < $1)
         AND ($2::bigint IS NULL OR (SELECT count(*) FROM stage_runs h
              WHERE h.state = 'running' AND h.project_id = r.project_id AND h.lease_expires_at >= ",
        now_ms!(),
        ") < $2)
         ORDER BY r.created_at, r.id LIMIT 1 FOR UPDATE OF r SKIP LOCKED"
    ))
    .bind(limits.global.map(i64::from))
    .bind(limits.per_project.map(i64::from))
    .fetch_optional(&mut *conn)
    .await?;
    let Some((run_id, previous_state)) = candidate else {
        return Ok(None);
    };
    let reclaimed = previous_state == RunState::Running.as_str();
    // The clock is read once, so a first lease runs exactly `lease_ms` from the start.
    let sql = format!(
        "UPDATE stage_runs SET state = 'running', epoch = epoch + 1, lease_owner = $1, \
         lease_expires_at = clock.ms + $2, started_at = COALESCE(started_at, clock.ms) \
         FROM (SELECT {now} AS ms) AS clock WHERE id = $3 RETURNING {columns}",
        now = now_ms!(),
        columns = rows::RUN_COLUMNS
    );
    let row = sqlx::query(&sql)
        .bind(owner)
        .bind(lease_ms)
        .bind(run_id)
        .fetch_one(&mut *conn)
        .await?;
    let run = rows::run(&row)?;
    mark_item_running(conn, &run.item).await?;
    let data = json!({
        "owner": owner,
        "epoch": run.epoch,
        "reclaimed": reclaimed,
        "stage": run.stage.as_str(),
        "attempt": run.attempt,
    });
    items::append_events(
        conn,
        &run.item,
        &[NewEvent::for_run("run.claimed", run.id, data)],
    )
    .await?;
    Ok(Some(run))
}

/// Sets the item's status, in the column and in its progress, to running.
async fn mark_item_running(conn: &mut PgConnection, item: &ItemId) -> Result<()> {
    let progress_json: String =
        sqlx::query_scalar("SELECT progress_json FROM work_items WHERE id = $1 FOR UPDATE")
            .bind(item.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "stage_runs refers to item `{item}`, which does not exist"
                ))
            })?;
    let mut progress: ItemProgress = serde_json::from_str(&progress_json)
        .map_err(|e| StoreError::Corrupt(format!("work_items.progress_json of `{item}`: {e}")))?;
    progress.status = ItemStatus::Running;
    let progress_json = serde_json::to_string(&progress)
        .map_err(|e| StoreError::Invalid(format!("item progress does not encode: {e}")))?;
    sqlx::query(concat!(
        "UPDATE work_items SET progress_json = $1, status = $2, updated_at = ",
        now_ms!(),
        " WHERE id = $3"
    ))
    .bind(progress_json)
    .bind(ItemStatus::Running.as_str())
    .bind(item.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Proves `fence` still holds (same epoch, still running), locking the run's row until the
/// transaction ends, and returns the run's item.
async fn hold(conn: &mut PgConnection, fence: Fence) -> Result<ItemId> {
    let row: Option<(String, String, i64)> =
        sqlx::query_as("SELECT item_id, state, epoch FROM stage_runs WHERE id = $1 FOR UPDATE")
            .bind(fence.run_id)
            .fetch_optional(&mut *conn)
            .await?;
    match row {
        Some((item, state, epoch))
            if epoch == fence.epoch && state == RunState::Running.as_str() =>
        {
            ItemId::parse(&item).map_err(|e| {
                StoreError::Corrupt(format!("stage_runs.item_id of `{}`: {e}", fence.run_id))
            })
        }
        _ => Err(StoreError::LeaseLost {
            run_id: fence.run_id,
            epoch: fence.epoch,
        }),
    }
}

pub(super) async fn renew(conn: &mut PgConnection, fence: Fence, lease_ms: i64) -> Result<()> {
    hold(conn, fence).await?;
    sqlx::query(concat!(
        "UPDATE stage_runs SET lease_expires_at = ",
        now_ms!(),
        " + $1 WHERE id = $2"
    ))
    .bind(lease_ms)
    .bind(fence.run_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Backdates the expiry so the next claim takes the run over; the owner stays for the record.
pub(super) async fn expire(conn: &mut PgConnection, fence: Fence) -> Result<()> {
    let item = hold(conn, fence).await?;
    let owner: Option<String> = sqlx::query_scalar(concat!(
        "UPDATE stage_runs SET lease_expires_at = ",
        now_ms!(),
        " - 1 WHERE id = $1 RETURNING lease_owner"
    ))
    .bind(fence.run_id)
    .fetch_one(&mut *conn)
    .await?;
    let data = json!({ "owner": owner, "epoch": fence.epoch });
    items::append_events(
        conn,
        &item,
        &[NewEvent::for_run("run.lease_expired", fence.run_id, data)],
    )
    .await
}

pub(super) async fn give_way(conn: &mut PgConnection, fence: Fence, delay_ms: i64) -> Result<()> {
    let item = hold(conn, fence).await?;
    sqlx::query(concat!(
        "UPDATE stage_runs SET lease_expires_at = ",
        now_ms!(),
        " + $1, created_at = ",
        now_ms!(),
        " + $1 WHERE id = $2"
    ))
    .bind(delay_ms)
    .bind(fence.run_id)
    .execute(&mut *conn)
    .await?;
    let data = json!({ "epoch": fence.epoch, "delay_ms": delay_ms });
    items::append_events(
        conn,
        &item,
        &[NewEvent::for_run("run.gave-way", fence.run_id, data)],
    )
    .await
}

pub(super) async fn wake_given_way(conn: &mut PgConnection, project: &ProjectId) -> Result<u64> {
    let waiting: Vec<(i64, String, i64)> = sqlx::query_as(concat!(
        "SELECT r.id, r.item_id, r.epoch FROM stage_runs r
         WHERE r.project_id = $1 AND r.state = 'running' AND r.lease_expires_at >= ",
        now_ms!(),
        " AND (SELECT e.kind FROM events e WHERE e.item_id = r.item_id AND e.run_id = r.id
              ORDER BY e.seq DESC LIMIT 1) = 'run.gave-way'"
    ))
    .bind(project.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut woken = 0;
    for (run_id, item, epoch) in waiting {
        let item = ItemId::parse(&item)
            .map_err(|e| StoreError::Corrupt(format!("stage_runs.item_id of `{run_id}`: {e}")))?;
        // A claim that came first raised the epoch: then there is nothing to wake.
        let done = sqlx::query(concat!(
            "UPDATE stage_runs SET lease_expires_at = ",
            now_ms!(),
            " - 1 WHERE id = $1 AND epoch = $2 AND state = 'running'"
        ))
        .bind(run_id)
        .bind(epoch)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 0 {
            continue;
        }
        let data = json!({ "epoch": epoch });
        items::append_events(conn, &item, &[NewEvent::for_run("run.woken", run_id, data)]).await?;
        woken += 1;
    }
    if woken > 0 {
        // Idle workers wait for this channel (migration 2 notifies only for queued runs).
        sqlx::query("SELECT pg_notify('orch_work', '')")
            .execute(&mut *conn)
            .await?;
    }
    Ok(woken)
}

pub(super) async fn save_checkpoint(
    conn: &mut PgConnection,
    fence: Fence,
    checkpoint: &Value,
    events: &[NewEvent],
) -> Result<()> {
    let item = hold(conn, fence).await?;
    sqlx::query("UPDATE stage_runs SET checkpoint_json = $1 WHERE id = $2")
        .bind(checkpoint.to_string())
        .bind(fence.run_id)
        .execute(&mut *conn)
        .await?;
    items::append_events(conn, &item, events).await
}

pub(super) async fn finish(
    conn: &mut PgConnection,
    fence: Fence,
    finish: &FinishRun,
) -> Result<()> {
    let item = hold(conn, fence).await?;
    if finish.state.is_active() {
        return Err(StoreError::Invalid(format!(
            "a run finishes passed, failed or cancelled, not `{}`",
            finish.state.as_str()
        )));
    }
    let project: String = sqlx::query_scalar(concat!(
        "UPDATE stage_runs SET state = $1, verdict_json = $2, usage_json = $3, finished_at = ",
        now_ms!(),
        ", lease_owner = NULL, lease_expires_at = NULL WHERE id = $4 RETURNING project_id"
    ))
    .bind(finish.state.as_str())
    .bind(finish.verdict.to_string())
    .bind(finish.usage.as_ref().map(Value::to_string))
    .bind(fence.run_id)
    .fetch_one(&mut *conn)
    .await?;
    items::write_progress(
        conn,
        &item,
        &finish.progress,
        finish.blocked_reason.as_deref(),
    )
    .await?;
    if let Some(next) = &finish.next_run {
        let project = crate::rows::run_project(fence.run_id, &project)?;
        items::insert_run(conn, &item, &project, next).await?;
    }
    items::append_events(conn, &item, &finish.events).await
}
