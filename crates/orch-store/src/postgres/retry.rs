//! Riding out a lost connection: PostgreSQL restarted, failed over, or ended the session.
//!
//! Only what is certain not to have changed anything is tried again: a read, or a transaction
//! that failed before its `COMMIT` was sent (the server rolls back a transaction whose
//! connection drops). A failure during `COMMIT` itself is ambiguous (the commit may have landed)
//! and is returned to the caller, whose fenced writes make a later retry safe.
//!
//! The attempts are few and spaced out (exponential backoff with jitter), so that many workers
//! losing the server at once do not storm it when it comes back; each attempt also waits up to
//! the pool's acquire timeout for a connection while the server is still starting. Connections
//! the restart broke are dropped by the pool's test before acquire (a ping), not reused.

use std::time::Duration;

use crate::{Result, StoreError};

/// Attempts in all, the first included.
const ATTEMPTS: u32 = 5;
/// The wait before the second attempt; doubled for each further one (100, 200, 400, 800 ms).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// Runs `op`, again after a pause when it failed for a lost connection, at most [`ATTEMPTS`]
/// times in all. `what` names the operation in the log line each retry writes.
pub(super) async fn retrying<T, F, Fut>(what: &'static str, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut retry = Retry::new(what);
    loop {
        match op().await {
            Err(e) if retry.again(&e).await => {}
            done => return done,
        }
    }
}

/// The attempts at one operation so far.
pub(super) struct Retry {
    what: &'static str,
    attempt: u32,
}

impl Retry {
    pub(super) fn new(what: &'static str) -> Self {
        Self { what, attempt: 1 }
    }

    /// Whether to try again after `e`: when it says the connection was lost and attempts are
    /// left, logs so, waits the backoff and returns `true`.
    pub(super) async fn again(&mut self, e: &StoreError) -> bool {
        if self.attempt >= ATTEMPTS || !e.is_connection_lost() {
            return false;
        }
        let pause = backoff(self.attempt);
        self.attempt += 1;
        tracing::warn!(
            "PostgreSQL connection lost during {} ({e}); trying again in {} ms (attempt {} of \
             {ATTEMPTS})",
            self.what,
            pause.as_millis(),
            self.attempt
        );
        tokio::time::sleep(pause).await;
        true
    }
}

/// The pause after failed attempt `attempt` (1-based): doubling from [`FIRST_BACKOFF`], plus up
/// to a quarter more of jitter so that workers retrying together spread out.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn io_error() -> StoreError {
        StoreError::Database(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "connection reset by peer",
        )))
    }

    #[test]
    fn only_a_lost_connection_is_retried() {
        assert!(io_error().is_connection_lost());
        assert!(!StoreError::Database(sqlx::Error::PoolTimedOut).is_connection_lost());
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_connection_lost());
        assert!(
            !StoreError::LeaseLost {
                run_id: 1,
                epoch: 1
            }
            .is_connection_lost()
        );
        assert!(!StoreError::Invalid("no".into()).is_connection_lost());
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for attempt in 1..ATTEMPTS {
            let base = FIRST_BACKOFF * 2u32.pow(attempt - 1);
            let pause = backoff(attempt);
            assert!(
                pause >= base && pause <= base + base / 4,
                "attempt {attempt}: {pause:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_connection_is_tried_again_until_it_works() {
        let calls = AtomicU32::new(0);
        let got = retrying("a test", || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(io_error())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(got.ok(), Some(7));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded() {
        let calls = AtomicU32::new(0);
        let got: Result<()> = retrying("a test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(io_error())
        })
        .await;
        assert!(matches!(got, Err(StoreError::Database(sqlx::Error::Io(_)))));
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn other_errors_are_returned_at_once() {
        let calls = AtomicU32::new(0);
        let got: Result<()> = retrying("a test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::LeaseLost {
                run_id: 3,
                epoch: 2,
            })
        })
        .await;
        assert!(matches!(got, Err(StoreError::LeaseLost { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
