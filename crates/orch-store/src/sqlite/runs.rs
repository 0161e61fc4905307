//! Writes about runs: claims and every fenced write a lease holder makes. Each function runs
//! inside the caller's write transaction; a fenced one checks the fence before writing anything.

use orch_core::transition::{ItemProgress, ItemStatus};
use orch_core::{ItemId, ProjectId};
use serde_json::{Value, json};
use sqlx::SqliteConnection;

use super::{items, rows};
use crate::{ClaimLimits, Fence, FinishRun, NewEvent, Result, RunRecord, RunState, StoreError};

pub(super) fn check_lease_ms(lease_ms: i64) -> Result<()> {
    if lease_ms <= 0 {
        return Err(StoreError::Invalid(format!(
            "a lease must last a positive number of milliseconds, not {lease_ms} (use expire_lease to end one)"
        )));
    }
    Ok(())
}

/// Claims the oldest queued run, or the oldest running run whose lease expired.
///
/// Under `BEGIN IMMEDIATE` the whole file is one writer at a time, so counting the live leases
/// for `limits` and claiming cannot be split by another process.
pub(super) async fn claim_next(
    conn: &mut SqliteConnection,
    owner: &str,
    lease_ms: i64,
    limits: ClaimLimits,
) -> Result<Option<RunRecord>> {
    let candidate: Option<(i64, String, i64)> = sqlx::query_as(concat!(
        "SELECT r.id, r.state, r.epoch FROM stage_runs r
         WHERE (r.state = 'queued' OR (r.state = 'running' AND r.lease_expires_at < ",
        now_ms!(),
        "))
         AND (?1 IS NULL OR (SELECT count(*) FROM stage_runs h
              WHERE h.state = 'running' AND h.lease_expires_at >= ",
        now_ms!(),
        ") < ?1)
         AND (?2 IS NULL OR (SELECT count(*) FROM stage_runs h
              WHERE h.state = 'running' AND h.project_id = r.project_id AND h.lease_expires_at >= ",
        now_ms!(),
        ") < ?2)
         ORDER BY r.created_at, r.id LIMIT 1"
    ))
    .bind(limits.global.map(i64::from))
    .bind(limits.per_project.map(i64::from))
    .fetch_optional(&mut *conn)
    .await?;
    let Some((run_id, previous_state, epoch)) = candidate else {
        return Ok(None);
    };
    let reclaimed = previous_state == RunState::Running.as_str();
    // `epoch = ?` is redundant under BEGIN IMMEDIATE; it keeps the claim safe on its own.
    sqlx::query(concat!(
        "UPDATE stage_runs SET state = 'running', epoch = epoch + 1, lease_owner = ?, lease_expires_at = ",
        now_ms!(),
        " + ?, started_at = COALESCE(started_at, ",
        now_ms!(),
        ") WHERE id = ? AND epoch = ?"
    ))
    .bind(owner)
    .bind(lease_ms)
    .bind(run_id)
    .bind(epoch)
    .execute(&mut *conn)
    .await?;
    let run = load(conn, run_id).await?;
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
async fn mark_item_running(conn: &mut SqliteConnection, item: &ItemId) -> Result<()> {
    let progress_json: String =
        sqlx::query_scalar("SELECT progress_json FROM work_items WHERE id = ?")
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
        "UPDATE work_items SET progress_json = ?, status = ?, updated_at = ",
        now_ms!(),
        " WHERE id = ?"
    ))
    .bind(progress_json)
    .bind(ItemStatus::Running.as_str())
    .bind(item.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Proves `fence` still holds (same epoch, still running) and returns the run's item.
async fn hold(conn: &mut SqliteConnection, fence: Fence) -> Result<ItemId> {
    let row: Option<(String, String, i64)> =
        sqlx::query_as("SELECT item_id, state, epoch FROM stage_runs WHERE id = ?")
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

pub(super) async fn renew(conn: &mut SqliteConnection, fence: Fence, lease_ms: i64) -> Result<()> {
    hold(conn, fence).await?;
    sqlx::query(concat!(
        "UPDATE stage_runs SET lease_expires_at = ",
        now_ms!(),
        " + ? WHERE id = ?"
    ))
    .bind(lease_ms)
    .bind(fence.run_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Backdates the expiry so the next claim takes the run over; the owner stays for the record.
pub(super) async fn expire(conn: &mut SqliteConnection, fence: Fence) -> Result<()> {
    let item = hold(conn, fence).await?;
    let owner: Option<String> = sqlx::query_scalar(concat!(
        "UPDATE stage_runs SET lease_expires_at = ",
        now_ms!(),
        " - 1 WHERE id = ? RETURNING lease_owner"
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

pub(super) async fn give_way(
    conn: &mut SqliteConnection,
    fence: Fence,
    delay_ms: i64,
) -> Result<()> {
    let item = hold(conn, fence).await?;
    sqlx::query(concat!(
        "UPDATE stage_runs SET lease_expires_at = ",
        now_ms!(),
        " + ?1, created_at = ",
        now_ms!(),
        " + ?1 WHERE id = ?2"
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

pub(super) async fn wake_given_way(
    conn: &mut SqliteConnection,
    project: &ProjectId,
) -> Result<u64> {
    let waiting: Vec<(i64, String, i64)> = sqlx::query_as(concat!(
        "SELECT r.id, r.item_id, r.epoch FROM stage_runs r
         WHERE r.project_id = ? AND r.state = 'running' AND r.lease_expires_at >= ",
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
        let done = sqlx::query(concat!(
            "UPDATE stage_runs SET lease_expires_at = ",
            now_ms!(),
            " - 1 WHERE id = ? AND epoch = ? AND state = 'running'"
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
    Ok(woken)
}

pub(super) async fn save_checkpoint(
    conn: &mut SqliteConnection,
    fence: Fence,
    checkpoint: &Value,
    events: &[NewEvent],
) -> Result<()> {
    let item = hold(conn, fence).await?;
    sqlx::query("UPDATE stage_runs SET checkpoint_json = ? WHERE id = ?")
        .bind(checkpoint.to_string())
        .bind(fence.run_id)
        .execute(&mut *conn)
        .await?;
    items::append_events(conn, &item, events).await
}

pub(super) async fn finish(
    conn: &mut SqliteConnection,
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
    // The run's project comes back with the update: a next run needs it, without a read.
    let project: String = sqlx::query_scalar(concat!(
        "UPDATE stage_runs SET state = ?, verdict_json = ?, usage_json = ?, finished_at = ",
        now_ms!(),
        ", lease_owner = NULL, lease_expires_at = NULL WHERE id = ? RETURNING project_id"
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

async fn load(conn: &mut SqliteConnection, run_id: i64) -> Result<RunRecord> {
    let sql = format!("SELECT {} FROM stage_runs WHERE id = ?", rows::RUN_COLUMNS);
    rows::run(&sqlx::query(&sql).bind(run_id).fetch_one(&mut *conn).await?)
}
