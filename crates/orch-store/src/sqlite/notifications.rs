//! Outgoing notifications on SQLite (see `crate::notifications`).

use orch_core::ItemId;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::rows::{self, NOTIFICATION_COLUMNS};
use crate::{AttemptOutcome, NewNotification, NotificationRecord, NotificationState, Result};

type Tx = Transaction<'static, Sqlite>;

pub(super) async fn enqueue(
    tx: &mut Tx,
    item: &ItemId,
    cursor: &str,
    position: i64,
    notifications: &[NewNotification],
) -> Result<()> {
    for n in notifications {
        let sql = concat!(
            "INSERT INTO notifications (receiver, item_id, event_seq, kind, body, state, \
             next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 'pending', ",
            now_ms!(),
            ", ",
            now_ms!(),
            ") ON CONFLICT DO NOTHING"
        );
        sqlx::query(sql)
            .bind(&n.receiver)
            .bind(item.as_str())
            .bind(n.event_seq)
            .bind(&n.kind)
            .bind(&n.body)
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(
        "INSERT INTO cursors (name, position) VALUES (?, ?) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .bind(cursor)
    .bind(position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The caller holds the write lock (`BEGIN IMMEDIATE`), so selecting and pushing back the due
/// rows is one step no other sender can split.
pub(super) async fn claim(
    tx: &mut Tx,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<NotificationRecord>> {
    let sql = format!(
        "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = {now} + ? \
         WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' \
         AND next_attempt_at <= {now} ORDER BY next_attempt_at, id LIMIT ?) \
         RETURNING {NOTIFICATION_COLUMNS}",
        now = now_ms!()
    );
    let found = sqlx::query(&sql)
        .bind(lease_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await?;
    let mut claimed = rows::all(&found, rows::notification)?;
    claimed.sort_by_key(|n| (n.next_attempt_at, n.id));
    Ok(claimed)
}

pub(super) async fn record(
    tx: &mut Tx,
    id: i64,
    attempts: u32,
    outcome: &AttemptOutcome,
) -> Result<bool> {
    let (state, error, retry_in_ms) = match outcome {
        AttemptOutcome::Sent => (NotificationState::Sent, None, None),
        AttemptOutcome::Retry { error, retry_in_ms } => {
            (NotificationState::Pending, Some(error), Some(*retry_in_ms))
        }
        AttemptOutcome::GiveUp { error } => (NotificationState::GivenUp, Some(error), None),
    };
    let sql = format!(
        "UPDATE notifications SET state = ?, last_error = COALESCE(?, last_error), \
         next_attempt_at = CASE WHEN ? IS NULL THEN next_attempt_at ELSE {now} + ? END, \
         finished_at = CASE WHEN ? = 'pending' THEN NULL ELSE {now} END \
         WHERE id = ? AND attempts = ? AND state = 'pending'",
        now = now_ms!()
    );
    let done = sqlx::query(&sql)
        .bind(state.as_str())
        .bind(error)
        .bind(retry_in_ms)
        .bind(retry_in_ms)
        .bind(state.as_str())
        .bind(id)
        .bind(i64::from(attempts))
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn list(pool: &SqlitePool, item: &ItemId) -> Result<Vec<NotificationRecord>> {
    let sql =
        format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE item_id = ? ORDER BY id");
    let found = sqlx::query(&sql)
        .bind(item.as_str())
        .fetch_all(pool)
        .await?;
    rows::all(&found, rows::notification)
}

pub(super) async fn count(pool: &SqlitePool) -> Result<Vec<(NotificationState, i64)>> {
    let counted: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM notifications GROUP BY state ORDER BY state")
            .fetch_all(pool)
            .await?;
    counted
        .into_iter()
        .map(|(state, n)| {
            NotificationState::parse(&state)
                .map(|s| (s, n))
                .ok_or_else(|| {
                    crate::StoreError::Corrupt(format!("notifications.state: unknown `{state}`"))
                })
        })
        .collect()
}
