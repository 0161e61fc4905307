//! Opening fails clearly, once, and without showing a password when the URL is bad or the server
//! is not there; and `open_store` routes each scheme to its backend. None of these needs a real
//! PostgreSQL server: they run everywhere.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use orch_store::{PgStore, StoreError, open_store};
use tokio::net::TcpListener;

const PASSWORD: &str = "s3cret-Pa55";

/// The open error's URL and reason; panics on anything else.
fn open_error<T: std::fmt::Debug>(opened: orch_store::Result<T>) -> (String, String) {
    match opened {
        Err(StoreError::Open { url, reason }) => {
            let shown = format!("{url} {reason}");
            assert!(!shown.contains(PASSWORD), "the password leaked: {shown}");
            (url, reason)
        }
        other => panic!("expected StoreError::Open, got {other:?}"),
    }
}

/// A loopback port nothing listens on (it was free a moment ago).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address").port()
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_the_password_masked() {
    let port = closed_port().await;
    let url = format!("postgres://orch:{PASSWORD}@127.0.0.1:{port}/orch");
    let (shown, reason) = open_error(PgStore::open(&url).await);
    assert_eq!(shown, format!("postgres://orch:***@127.0.0.1:{port}/orch"));
    assert!(reason.contains("cannot connect"), "{reason}");
}

#[tokio::test]
async fn a_url_that_does_not_parse_is_named_with_the_password_masked() {
    for url in [
        format!("postgres://orch:{PASSWORD}@127.0.0.1:notaport/orch"),
        format!("postgresql://orch@127.0.0.1/orch?sslmode=sometimes&password={PASSWORD}"),
    ] {
        let (shown, reason) = open_error(PgStore::open(&url).await);
        assert!(shown.contains("***"), "{shown}");
        assert!(reason.contains("does not parse"), "{reason}");
    }
    let (_, reason) = open_error(PgStore::open("mysql://orch@127.0.0.1/orch").await);
    assert!(reason.contains("postgres://"), "{reason}");
}

/// A server that accepts connections and never says a word: opening gives up after its one
/// bounded wait (the URL's `connect_timeout`, to keep the test short; 5 s by default), having
/// connected once (no retry storm). What the server sees is the evidence: one connection, which
/// the client itself closes, no sooner than the timeout (a floor the code must respect however
/// fast the machine; no ceiling is bet on, a slow machine only waits longer).
#[tokio::test]
async fn a_silent_server_is_given_up_on_after_one_bounded_attempt() {
    use tokio::io::AsyncReadExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    // How long each connection stayed open until the client closed it, measured by the server.
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<Duration>();
    let silent = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let closed = closed_tx.clone();
            tokio::spawn(async move {
                let opened = Instant::now();
                let mut buf = [0u8; 512];
                // Never answers; reads (the client's startup message) until the client closes.
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
                let _ = closed.send(opened.elapsed());
            });
        }
    });

    let url = format!("postgres://orch:{PASSWORD}@127.0.0.1:{port}/orch?connect_timeout=1");
    let (_, reason) = open_error(PgStore::open(&url).await);
    assert!(reason.contains("did not answer within 1 s"), "{reason}");
    let held = tokio::time::timeout(Duration::from_secs(30), closed_rx.recv())
        .await
        .expect("the client closed its connection once it gave up")
        .expect("a connection");
    silent.abort();
    assert!(
        held >= Duration::from_millis(900),
        "the client gave up after {held:?}, before its 1 s timeout"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection attempt");
}

#[tokio::test]
async fn open_store_picks_the_backend_by_scheme() {
    let store = open_store("sqlite::memory:").await.expect("sqlite");
    assert!(format!("{store:?}").contains("SqliteStore"), "{store:?}");

    let port = closed_port().await;
    for scheme in ["postgres", "postgresql"] {
        let url = format!("{scheme}://orch:{PASSWORD}@127.0.0.1:{port}/orch");
        let (shown, reason) = open_error(open_store(&url).await);
        assert!(
            shown.starts_with(&format!("{scheme}://orch:***@")),
            "{shown}"
        );
        assert!(
            reason.contains("cannot connect"),
            "PostgreSQL was tried: {reason}"
        );
    }

    for unknown in [
        format!("mysql://orch:{PASSWORD}@127.0.0.1/orch"),
        "/var/lib/orch/orch.db".to_owned(),
    ] {
        let (_, reason) = open_error(open_store(&unknown).await);
        for accepted in ["sqlite:", "postgres://", "postgresql://"] {
            assert!(reason.contains(accepted), "{reason} names {accepted}");
        }
    }
}
