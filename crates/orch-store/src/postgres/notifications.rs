//! Outgoing notifications on PostgreSQL (see `crate::notifications`).

use orch_core::ItemId;
use sqlx::{PgPool, Postgres, Transaction};

use super::rows::{self, NOTIFICATION_COLUMNS};
use crate::{AttemptOutcome, NewNotification, NotificationRecord, NotificationState, Result};

type Tx = Transaction<'static, Postgres>;

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
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', ",
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
        "INSERT INTO cursors (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = excluded.position",
    )
    .bind(cursor)
    .bind(position)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `FOR UPDATE SKIP LOCKED`: senders claiming at once get different notifications.
pub(super) async fn claim(
    tx: &mut Tx,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<NotificationRecord>> {
    let sql = format!(
        "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = {now} + $1 \
         WHERE id IN (SELECT id FROM notifications WHERE state = 'pending' \
         AND next_attempt_at <= {now} ORDER BY next_attempt_at, id LIMIT $2 \
         FOR UPDATE SKIP LOCKED) \
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
        "UPDATE notifications SET state = $1, last_error = COALESCE($2, last_error), \
         next_attempt_at = CASE WHEN $3::BIGINT IS NULL THEN next_attempt_at ELSE {now} + $3 END, \
         finished_at = CASE WHEN $1 = 'pending' THEN NULL ELSE {now} END \
         WHERE id = $4 AND attempts = $5 AND state = 'pending'",
        now = now_ms!()
    );
    let done = sqlx::query(&sql)
        .bind(state.as_str())
        .bind(error)
        .bind(retry_in_ms)
        .bind(id)
        .bind(i64::from(attempts))
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn list(pool: &PgPool, item: &ItemId) -> Result<Vec<NotificationRecord>> {
    let sql =
        format!("SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE item_id = $1 ORDER BY id");
    let found = sqlx::query(&sql)
        .bind(item.as_str())
        .fetch_all(pool)
        .await?;
    rows::all(&found, rows::notification)
}

pub(super) async fn count(pool: &PgPool) -> Result<Vec<(NotificationState, i64)>> {
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
