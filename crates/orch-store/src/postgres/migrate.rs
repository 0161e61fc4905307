//! The versioned migrations of the PostgreSQL schema: `schema_version` holds one row per applied
//! migration, with the same numbering as SQLite's and the same refusal of a newer schema.

use sqlx::{Connection, PgConnection};

use crate::{Result, StoreError};

/// The migrations this orch knows, in order. Never edit one that was released: add the next.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        include_str!("../../migrations/postgres/0002_notify_work.sql"),
    ),
    (
        3,
        include_str!("../../migrations/postgres/0003_links_and_cursors.sql"),
    ),
    (
        4,
        include_str!("../../migrations/postgres/0004_people_and_replays.sql"),
    ),
    (
        5,
        include_str!("../../migrations/postgres/0005_notifications.sql"),
    ),
];

/// The key of the advisory lock that makes migrations one at a time across every process and
/// machine opening the same database ("orchmigr" in ASCII).
const MIGRATION_LOCK: i64 = 0x6f72_6368_6d69_6772;

/// The newest schema version this orch knows.
pub(super) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |(version, _)| *version)
}

/// The schema version the database holds, read without changing anything.
pub(super) async fn state(conn: &mut PgConnection) -> Result<crate::SchemaState> {
    let table: bool = sqlx::query_scalar("SELECT to_regclass('schema_version') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    let version: i64 = if table {
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&mut *conn)
            .await?
    } else {
        0
    };
    Ok(crate::SchemaState {
        created: true,
        version,
        latest: latest_version(),
    })
}

/// Brings the schema up to [`latest_version`], or refuses a database written by a newer orch
/// (running old code on a newer schema could silently drop what the new code relies on).
///
/// One transaction holding an advisory lock: workers starting together on a fresh database
/// migrate it once, and a failed migration leaves nothing half-applied (PostgreSQL's DDL is
/// transactional). `shown_url` is the URL with its password masked, for the error message.
pub(super) async fn run(conn: &mut PgConnection, shown_url: &str) -> Result<()> {
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version    BIGINT NOT NULL PRIMARY KEY,
            applied_at BIGINT NOT NULL
        )",
    )
    .execute(&mut *tx)
    .await?;
    let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        .fetch_one(&mut *tx)
        .await?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::Open {
            url: shown_url.to_owned(),
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
        // A migration is several statements: a plain string (no arguments) is sent with the
        // simple query protocol, which runs them all.
        sqlx::Executor::execute(&mut *tx, sql).await?;
        sqlx::query(concat!(
            "INSERT INTO schema_version (version, applied_at) VALUES ($1, ",
            now_ms!(),
            ")"
        ))
        .bind(version)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
