//! Notifications from the real binary: recorded by `orch run` when an item comes to wait for
//! approval, sent exactly once to a loopback receiver even when orch is SIGKILLed between
//! recording and sending, and signed with the secret from the environment, which no output shows.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};

use orch_store::NotificationState;

use crate::harness::Orch;

const SECRET: &str = "notify-e2e-secret-9d2a";
const SECRET_VAR: &str = "ORCH_TEST_NOTIFY_SECRET";

/// One request the receiver got: its headers (lowercased names) and body.
#[derive(Debug, Clone)]
struct Got {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// A minimal HTTP/1.1 receiver on a loopback port, answering 204 to every POST.
fn receiver() -> (u16, Arc<Mutex<Vec<Got>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = Vec::new();
            let mut line = String::new();
            // The request line, then headers up to the blank line.
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                continue;
            }
            loop {
                line.clear();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            sink.lock().expect("lock").push(Got { headers, body });
            let _ = stream.write_all(
                b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    (port, got)
}

fn got_all(got: &Mutex<Vec<Got>>) -> Vec<Got> {
    got.lock().expect("lock").clone()
}

fn notifications(orch: &Orch) -> Vec<orch_store::NotificationRecord> {
    let url = format!("sqlite://{}", orch.path().join("orch.db").display());
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let store = orch_store::open_store(&url).await.expect("store");
            let item = orch_core::ItemId::parse("QUICK-1").expect("id");
            store.list_notifications(&item).await.expect("list")
        })
}

#[test]
fn a_notification_recorded_before_a_crash_is_sent_once_after_the_restart() {
    let (port, got) = receiver();
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let mut text = std::fs::read_to_string(&config).expect("orch.toml");
    text.push_str(&format!(
        "\n[[projects.notify]]\nname = \"ops\"\nurl = \"http://127.0.0.1:{port}/hook/URLTOKEN\"\n\
         secret_env = \"{SECRET_VAR}\"\nevents = [\"approval\", \"deployed\"]\n"
    ));
    std::fs::write(&config, text).expect("write orch.toml");
    let added = orch
        .command(&["item", "add", "--title", "notify me"])
        .env(SECRET_VAR, SECRET)
        .output()
        .expect("runs");
    assert!(added.status.success(), "{added:?}");

    // The item runs to its approval; the notification is recorded, then orch dies before
    // sending it.
    let crashed = orch
        .command(&["run"])
        .env(SECRET_VAR, SECRET)
        .env("ORCH_CRASHPOINT", "after-notify-enqueue")
        .output()
        .expect("runs");
    assert_eq!(crashed.status.signal(), Some(9), "{crashed:?}");
    assert!(
        got.lock().expect("lock").is_empty(),
        "nothing sent before the crash"
    );
    let recorded = notifications(&orch);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].state, NotificationState::Pending);
    assert_eq!(recorded[0].attempts, 0);

    let mut outputs = vec![crashed];
    for _ in 0..2 {
        let out = orch
            .command(&["run"])
            .env(SECRET_VAR, SECRET)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{out:?}");
        outputs.push(out);
    }
    let sent = got_all(&got);
    assert_eq!(
        sent.len(),
        1,
        "sent exactly once over two restarts: {sent:?}"
    );
    let delivery = &sent[0];
    let body: serde_json::Value = serde_json::from_slice(&delivery.body).expect("JSON");
    assert_eq!(body["event"], "approval");
    assert_eq!(body["item"], "QUICK-1");
    assert_eq!(delivery.header("x-orch-event"), "approval");
    assert!(
        delivery
            .header("x-orch-delivery")
            .starts_with("quick/ops/QUICK-1/")
    );
    let signature = delivery.header("x-orch-signature-256");
    let hex = signature.strip_prefix("sha256=").expect("sha256=<hex>");
    assert!(
        orch_integrations::signature::verify_hex(SECRET.as_bytes(), &delivery.body, hex),
        "signed with the secret from {SECRET_VAR}"
    );
    assert_eq!(notifications(&orch)[0].state, NotificationState::Sent);
    for out in &outputs {
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!shown.contains(SECRET), "the secret was printed: {shown}");
        assert!(
            !shown.contains("URLTOKEN"),
            "the URL's path was printed: {shown}"
        );
    }
    // Approved and deployed: the real deploy's event is the `deployed` notification, sent once.
    for args in [
        &["approve", "QUICK-1", "--by", "tester"][..],
        &["run"],
        &["run"],
    ] {
        let out = orch
            .command(args)
            .env(SECRET_VAR, SECRET)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let events: Vec<String> = got_all(&got)
        .iter()
        .map(|g| g.header("x-orch-event").to_owned())
        .collect();
    assert_eq!(events, ["approval", "deployed"]);

    let history = orch
        .command(&["item", "show", "QUICK-1", "--json"])
        .env(SECRET_VAR, SECRET)
        .output()
        .expect("runs");
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(history.contains("approval.requested"), "{history}");
    assert!(!history.contains(SECRET) && !history.contains("URLTOKEN"));
}
