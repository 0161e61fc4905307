//! A forge's webhook about checks reaches `orch serve` and wakes the deploy waiting for them at
//! once, instead of at the end of its pause; the delivery itself decides nothing (the forge is
//! read again), and a delivery with a bad signature is refused and wakes nothing. Work filed
//! meanwhile does not wait for the waiting run's pause either.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use orch_integrations::fake::webhook::{Delivery, sign};
use serde_json::Value;

use crate::harness::free_port;
use crate::queue::{Drives, events_of, status};
use crate::queue_forge::{TOKEN, TOKEN_ENV, candidate, forged, gitea};

const SECRET: &str = "gitea-hook-secret-51c2";

/// `orch serve` in the background, stopped (SIGTERM, then SIGKILL) when dropped.
struct Served {
    child: Child,
    port: u16,
}

impl Drop for Served {
    fn drop(&mut self) {
        crate::harness::terminate(&mut self.child);
    }
}

/// POSTs `delivery` to `/hooks/gitea` with `signature`; returns the status and the body.
fn post_hook(port: u16, delivery: &Delivery, signature: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "POST /hooks/gitea HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nX-Gitea-Signature: {signature}\r\n\
         X-Gitea-Delivery: {}\r\nX-Gitea-Event: {}\r\nContent-Length: {}\r\n\r\n",
        delivery.id,
        delivery.event,
        delivery.body.len()
    )
    .expect("write");
    stream.write_all(&delivery.body).expect("write body");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (code, body.to_owned())
}

/// Polls `done` on the item every 200 ms until it holds, for at most `limit`.
fn wait_for(f: &impl Drives, limit: Duration, what: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + limit;
    loop {
        let item = f.item("QUICK-1");
        if done(&item) {
            return;
        }
        assert!(Instant::now() < deadline, "never {what}: {item:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_status_webhook_wakes_the_deploy_waiting_for_the_check_and_a_forged_one_does_not()
{
    let (f, server) = forged(false, "gitea", gitea).await;
    // A ten-minute pause between looks: only the webhook can bring the deploy on within the test.
    let config = f.orch.path().join("orch.toml");
    let mut toml = std::fs::read_to_string(&config).expect("orch.toml");
    toml.push_str(
        "\n[projects.forge.checks]\nrequired = [\"ci/test\"]\ntimeout_secs = 3600\n\
         poll_secs = 600\nbefore_stages = []\n",
    );
    std::fs::write(&config, toml).expect("write orch.toml");
    f.ok(&["item", "add", "--title", "A"]);

    let port = free_port();
    let child = f
        .orch
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env(TOKEN_ENV, TOKEN)
        .env("ORCH_API_TOKEN", crate::serve::TOKEN)
        .env("ORCH_GITEA_WEBHOOK_SECRET", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("orch serve starts");
    let served = Served { child, port };

    wait_for(&f, Duration::from_secs(120), "awaiting approval", |i| {
        i["status"] == "awaiting-approval"
    });
    let sha = candidate(&f.item("QUICK-1"));
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    wait_for(&f, Duration::from_secs(60), "waiting for the check", |i| {
        events_of(i, "checks.read")
            .iter()
            .any(|e| e["data"]["verdict"] == "waiting" && e["data"]["sha"] == sha.as_str())
    });

    // While the deploy waits, an item filed through the API is taken up at once, not after the
    // waiting run's pause.
    let (code, body) = crate::serve::http(port, "POST", "/api/v1/items", r#"{"title": "B"}"#);
    assert_eq!(code, 201, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while f.item("QUICK-2")["status"] == "queued" {
        assert!(Instant::now() < deadline, "QUICK-2 was never claimed");
        std::thread::sleep(Duration::from_millis(200));
    }

    // CI reports green; a forger sends the delivery first, with a signature of another secret.
    let delivery = server
        .with(|g| g.report_status(&sha, "ci/test", "success", "all tests passed"))
        .await;
    let forged_signature = sign("not-the-secret", &delivery.body);
    let (code, body) = post_hook(served.port, &delivery, &forged_signature);
    assert_eq!(code, 401, "{body}");
    std::thread::sleep(Duration::from_secs(2));
    let item = f.item("QUICK-1");
    assert!(events_of(&item, "run.woken").is_empty(), "{item:#}");
    assert_ne!(item["status"], "done");

    let woke_at = Instant::now();
    let (code, body) = post_hook(served.port, &delivery, &sign(SECRET, &delivery.body));
    assert_eq!(code, 202, "{body}");
    assert!(body.contains("forge_news"), "{body}");
    wait_for(&f, Duration::from_secs(120), "done", |i| {
        i["status"] == "done"
    });
    assert!(
        woke_at.elapsed() < Duration::from_secs(300),
        "promoted {:?} after the webhook: the pause was not cut short",
        woke_at.elapsed()
    );
    let item = f.item("QUICK-1");
    assert_eq!(events_of(&item, "run.woken").len(), 1, "{item:#}");
    assert!(
        events_of(&item, "checks.read")
            .iter()
            .any(|e| e["data"]["verdict"] == "passed" && e["data"]["sha"] == sha.as_str()),
        "the forge was read again: {item:#}"
    );
    assert_eq!(status(&f, "QUICK-1"), "done");
    f.assert_prod_is_main();
    assert_eq!(f.prod_sha(), sha);
    drop(served);
}
