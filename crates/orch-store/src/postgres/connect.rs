//! The one way orch connects to PostgreSQL: the URL checked and read (its connect timeout, its
//! TLS settings as libpq reads them), one connection made within that timeout, and the options
//! it was made with handed back for the pool. Errors name the URL with its password masked.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use super::tls;
use super::url::{self, SCHEMES, is_postgres, masked};
use crate::{Result, StoreError};

/// How long opening waits for the server to answer before reporting it unreachable, unless the
/// URL says otherwise (`?connect_timeout=SECONDS`).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection to the server `url` names, within its connect timeout, with the options it
/// was made with (the pool reuses them): the one way orch connects to PostgreSQL.
pub(super) async fn connect(url: &str) -> Result<(PgConnection, PgConnectOptions)> {
    let open_error = |reason: String| StoreError::Open {
        url: masked(url),
        reason,
    };
    if !is_postgres(url) {
        return Err(open_error(format!(
            "not a PostgreSQL URL; it must start with {}",
            SCHEMES.join(" or ")
        )));
    }
    let (sqlx_url, connect_timeout) = url::take_connect_timeout(url).map_err(&open_error)?;
    let connect_timeout = connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let tls = tls::Tls::from_url(&sqlx_url, |name| std::env::var(name).ok())
        .map_err(|e| open_error(format!("the URL does not parse: {e}")))?;
    let options = PgConnectOptions::from_str(&sqlx_url)
        .map_err(|e| open_error(format!("the URL does not parse: {e}")))?;
    let options = tls.apply(options);
    if !tls.verifies() && !tls::is_local(&options) {
        tracing::warn!(
            url = %masked(url),
            sslmode = tls.mode,
            "the PostgreSQL server's identity is not verified (sslmode is not verify-full \
             or verify-ca): anyone on the path can read and change what orch stores"
        );
    }
    let conn = tokio::time::timeout(connect_timeout, PgConnection::connect_with(&options))
        .await
        .map_err(|_| {
            open_error(format!(
                "the server did not answer within {} s; check the host and port, and that \
                 PostgreSQL is running",
                connect_timeout.as_secs()
            ))
        })?
        .map_err(|e| {
            if tls::is_tls_failure(&e) {
                open_error(format!("cannot connect: {}", tls.explain(&e.to_string())))
            } else {
                open_error(format!("cannot connect: {e}"))
            }
        })?;
    Ok((conn, options))
}
