//! People, their tracker accounts and the inbox's replay check on SQLite.

use sqlx::{Sqlite, SqlitePool, Transaction};

use crate::{InboxOutcome, PersonRecord, Result, StoreError};

type Tx = Transaction<'static, Sqlite>;

pub(super) async fn inbox_insert(
    tx: &mut Tx,
    source: &str,
    delivery_id: &str,
    body_sha256: &str,
    body: &[u8],
) -> Result<InboxOutcome> {
    let sql = concat!(
        "INSERT INTO inbox (source, delivery_id, received_at, body, body_sha256) VALUES (?, ?, ",
        now_ms!(),
        ", ?, ?) ON CONFLICT DO NOTHING"
    );
    let done = sqlx::query(sql)
        .bind(source)
        .bind(delivery_id)
        .bind(body)
        .bind(body_sha256)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() == 1 {
        return Ok(InboxOutcome::Stored);
    }
    let same_id: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM inbox WHERE source = ? AND delivery_id = ?")
            .bind(source)
            .bind(delivery_id)
            .fetch_one(&mut **tx)
            .await?;
    Ok(if same_id > 0 {
        InboxOutcome::SameDelivery
    } else {
        InboxOutcome::SameBody
    })
}

pub(super) async fn add(tx: &mut Tx, name: &str, token_sha256: &str) -> Result<()> {
    let existing: Option<Option<i64>> =
        sqlx::query_scalar("SELECT revoked_at FROM people WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    let sql = match existing {
        Some(None) => {
            return Err(StoreError::Exists {
                what: "person",
                id: name.to_owned(),
            });
        }
        Some(Some(_)) => concat!(
            "UPDATE people SET token_sha256 = ?, revoked_at = NULL, created_at = ",
            now_ms!(),
            " WHERE name = ?"
        ),
        None => concat!(
            "INSERT INTO people (token_sha256, name, created_at) VALUES (?, ?, ",
            now_ms!(),
            ")"
        ),
    };
    sqlx::query(sql)
        .bind(token_sha256)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(super) async fn revoke(pool: &SqlitePool, name: &str) -> Result<bool> {
    let sql = concat!(
        "UPDATE people SET revoked_at = ",
        now_ms!(),
        " WHERE name = ? AND revoked_at IS NULL"
    );
    let done = sqlx::query(sql).bind(name).execute(pool).await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn link(tx: &mut Tx, person: &str, account: &str) -> Result<()> {
    let known: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM people WHERE name = ?")
        .bind(person)
        .fetch_one(&mut **tx)
        .await?;
    if known == 0 {
        return Err(StoreError::NotFound {
            what: "person",
            id: person.to_owned(),
        });
    }
    let owner: Option<String> =
        sqlx::query_scalar("SELECT person FROM tracker_accounts WHERE account = ?")
            .bind(account)
            .fetch_optional(&mut **tx)
            .await?;
    match owner {
        Some(owner) if owner == person => Ok(()),
        Some(owner) => Err(StoreError::Exists {
            what: "tracker account",
            id: format!("{account} (it is {owner}'s)"),
        }),
        None => {
            sqlx::query("INSERT INTO tracker_accounts (account, person) VALUES (?, ?)")
                .bind(account)
                .bind(person)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }
    }
}

/// The people a query selects (`name, created_at, revoked_at`), with their accounts.
async fn people(pool: &SqlitePool, sql: &str, arg: Option<&str>) -> Result<Vec<PersonRecord>> {
    let mut query = sqlx::query_as::<_, (String, i64, Option<i64>)>(sql);
    if let Some(arg) = arg {
        query = query.bind(arg);
    }
    let rows = query.fetch_all(pool).await?;
    let accounts: Vec<(String, String)> =
        sqlx::query_as("SELECT account, person FROM tracker_accounts ORDER BY account")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(name, created_at, revoked_at)| PersonRecord {
            tracker_accounts: accounts
                .iter()
                .filter(|(_, p)| *p == name)
                .map(|(a, _)| a.clone())
                .collect(),
            name,
            created_at,
            revoked_at,
        })
        .collect())
}

pub(super) async fn list(pool: &SqlitePool) -> Result<Vec<PersonRecord>> {
    people(
        pool,
        "SELECT name, created_at, revoked_at FROM people ORDER BY name",
        None,
    )
    .await
}

pub(super) async fn by_token(
    pool: &SqlitePool,
    token_sha256: &str,
) -> Result<Option<PersonRecord>> {
    Ok(people(
        pool,
        "SELECT name, created_at, revoked_at FROM people WHERE token_sha256 = ? AND revoked_at IS NULL",
        Some(token_sha256),
    )
    .await?
    .pop())
}

pub(super) async fn by_account(pool: &SqlitePool, account: &str) -> Result<Option<PersonRecord>> {
    Ok(people(
        pool,
        "SELECT p.name, p.created_at, p.revoked_at FROM people p \
         JOIN tracker_accounts a ON a.person = p.name WHERE a.account = ?",
        Some(account),
    )
    .await?
    .pop())
}

pub(super) async fn any_active(pool: &SqlitePool) -> Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM people WHERE revoked_at IS NULL")
        .fetch_one(pool)
        .await?;
    Ok(n > 0)
}
