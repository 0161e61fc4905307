//! A fresh database per test on the server named by `ORCH_TEST_POSTGRES_URL`, so tests run in
//! parallel without seeing each other's rows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use orch_store::{PgStore, Store};
use sqlx::{Connection, PgConnection};

use crate::conformance::Backend;

const URL_VAR: &str = "ORCH_TEST_POSTGRES_URL";

/// The server to test on; `None` (skipped and counted) when it is not configured, a failure where
/// every dependency is required (`.ci/run`, `CI=true`).
fn server_url(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.is_empty()
    {
        return Some(url);
    }
    crate::skip::skip(&format!(
        "postgres test {test}: {URL_VAR} is not set (start a server with \
         .ci/install-postgres.sh and eval its last line to run it)"
    ));
    None
}

/// `url` pointing at database `name` instead of its own (test URLs only: no user info with `/`).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_at(url.find('?').unwrap_or(url.len()));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    format!("{}/{name}{query}", &base[..path_start])
}

/// A database name no other test run uses: the test's name, the process and a counter.
fn unique_name(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let short: String = test.chars().take(24).collect();
    format!(
        "orch_test_{short}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct PgDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// A new, empty database for `test`; `None` when no server is configured (outside CI).
    pub async fn create(test: &str) -> Option<Self> {
        let server_url = server_url(test)?;
        let name = unique_name(test);
        let mut admin = PgConnection::connect(&server_url)
            .await
            .unwrap_or_else(|e| panic!("connect to {URL_VAR}: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let url = with_database(&server_url, &name);
        Some(Self {
            server_url,
            name,
            url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// This database's URL with `password` added to its user, or `None` when the URL already
    /// has a password or no user.
    pub fn url_with_password(&self, password: &str) -> (String, String) {
        let (scheme, rest) = self
            .url
            .split_once("://")
            .unwrap_or_else(|| panic!("the test URL has no scheme: {URL_VAR}"));
        let (user, host_and_path) = rest.split_once('@').unwrap_or_else(|| {
            panic!("the test URL names no user ({URL_VAR}=postgres://user@host/db is expected)")
        });
        match user.split_once(':') {
            Some((_, own)) => (self.url.clone(), own.to_owned()),
            None => (
                format!("{scheme}://{user}:{password}@{host_and_path}"),
                password.to_owned(),
            ),
        }
    }

    /// A plain connection beside the store, to look at or tamper with what it wrote.
    pub async fn raw(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("raw connection")
    }
}

/// Drops the database when the test ends, passed or panicked. `Drop` cannot await, so the
/// drop runs on a small runtime of its own in a thread, joined before the test returns.
impl Drop for PgDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        // FORCE: pools the test let go of may still be closing their connections.
        let statement = format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&statement)
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<(), String>(())
            })
        })
        .join();
        // Panicking here could abort a test that is already unwinding: report instead.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("dropping test database {} panicked", self.name),
        }
    }
}

#[async_trait]
impl Backend for PgDatabase {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(PgStore::open(&self.url).await.expect("open store"))
    }
}

#[test]
fn urls_are_pointed_at_another_database() {
    assert_eq!(
        with_database("postgres://orch@127.0.0.1:55432/orch", "t1"),
        "postgres://orch@127.0.0.1:55432/t1"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "t2"),
        "postgresql://u:p@h/t2?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h:1", "t3"), "postgres://h:1/t3");
}
