//! A versioned migration runner: `schema_version` holds one row per applied migration.
//!
//! Kept in-house rather than `sqlx::migrate!` so that builds need no macros and the PostgreSQL
//! backend can share the same numbering and the same refusal of a newer schema.

use sqlx::{SqliteConnection, SqlitePool};

use crate::{Result, StoreError};

/// The migrations this orch knows, in order. Never edit one that was released: add the next.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_initial.sql")),
    (
        2,
        include_str!("../../migrations/sqlite/0002_notify_work.sql"),
    ),
    (
        3,
        include_str!("../../migrations/sqlite/0003_links_and_cursors.sql"),
    ),
    (
        4,
        include_str!("../../migrations/sqlite/0004_people_and_replays.sql"),
    ),
    (
        5,
        include_str!("../../migrations/sqlite/0005_notifications.sql"),
    ),
];

/// The newest schema version this orch knows.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// Brings the schema up to [`latest_version`], or refuses a database written by a newer orch
/// (running old code on a newer schema could silently drop what the new code relies on).
///
/// Runs in one `BEGIN IMMEDIATE` transaction, so two processes opening a fresh file at once
/// migrate it once.
pub(super) async fn run(pool: &SqlitePool, url: &str) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    apply(&mut tx, url).await?;
    tx.commit().await?;
    Ok(())
}

async fn apply(conn: &mut SqliteConnection, url: &str) -> Result<()> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    BIGINT NOT NULL PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )
    .execute(&mut *conn)
    .await?;
    let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        .fetch_one(&mut *conn)
        .await?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::Open {
            url: url.to_owned(),
            reason: format!(
                "its schema is version {current}, newer than version {latest} that this orch knows; \
                 upgrade orch to a release that knows schema {current}"
            ),
        });
    }
    for &(version, sql) in MIGRATIONS {
        if version <= current {
            continue;
        }
        sqlx::Executor::execute(&mut *conn, sql).await?;
        sqlx::query(concat!(
            "INSERT INTO schema_version (version, applied_at) VALUES (?, ",
            now_ms!(),
            ")"
        ))
        .bind(version)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
