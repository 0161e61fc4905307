//! Outgoing notifications against a receiver on loopback that checks what it gets the way a
//! real one would: the HMAC-SHA256 signature verified with its own code, the delivery id, the
//! body's shape. Events are appended to a real item in a real store, then the engine's
//! notification passes record and send them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use orch_core::ProjectId;
use orch_engine::notify::{NotifyEvent, NotifyFormat, NotifyTarget};
use orch_engine::{Engine, Progress, Reporter, Settings};
use orch_integrations::Token;
use orch_integrations::notify::{Receiver, ReceiverUrl};
use orch_store::{NewEvent, NotificationState};
use serde_json::{Value, json};

use crate::notify_receiver::{Answer, Loopback, checking, signature_holds};
use crate::support::{ProjectExtras, project_engine};

const SECRET: &str = "notify-secret-4f1c";

/// The store keeps due times in whole milliseconds of the database's clock, so a wait of `ms`
/// can look up to 2 ms shorter to the receiver (one truncation when the retry is recorded, one
/// when it is claimed). Anything shorter than that is a wait that was not kept.
fn waited_at_least(gap: Duration, ms: u64) -> bool {
    gap + Duration::from_millis(2) >= Duration::from_millis(ms)
}

fn target(
    name: &str,
    url: &str,
    format: NotifyFormat,
    secret: Option<&str>,
    events: Vec<NotifyEvent>,
    max_attempts: u32,
    first_retry_ms: u64,
) -> NotifyTarget {
    NotifyTarget {
        name: name.to_owned(),
        format,
        events,
        receiver: Receiver::new(
            ReceiverUrl::parse(url).expect("url"),
            secret.and_then(Token::new),
            Duration::from_secs(5),
        )
        .expect("receiver"),
        max_attempts,
        first_retry: Duration::from_millis(first_retry_ms),
    }
}

/// Keeps what the engine reports, to check no secret is in it.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Reporter for Lines {
    fn report(&self, progress: Progress) {
        self.0.lock().expect("lock").push(format!("{progress:?}"));
    }
}

struct Setup {
    engine: Arc<Engine>,
    lines: Arc<Lines>,
    _dir: tempfile::TempDir,
}

async fn setup(notify: Vec<NotifyTarget>) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::new("test:1:0".into());
    settings.public_url = Some("https://orch.example.com".into());
    let lines = Arc::new(Lines::default());
    let engine = project_engine(
        dir.path(),
        ProjectExtras {
            notify,
            ..ProjectExtras::default()
        },
        settings,
        lines.clone(),
    )
    .await;
    Setup {
        engine,
        lines,
        _dir: dir,
    }
}

/// Files an item and appends `kind` with `data` to its history, as the engine does.
async fn item_with_event(engine: &Engine, kind: &str, data: Value) -> orch_core::ItemId {
    let project = ProjectId::parse("quick").expect("project");
    let item = engine
        .create_item(&project, "Fix <login> & co", "")
        .await
        .expect("item");
    engine
        .store()
        .append_events(&item.id, vec![NewEvent::new(kind, data)])
        .await
        .expect("event");
    item.id
}

/// Runs notification passes until `done` holds (or fails after a few seconds).
async fn pass_until(engine: &Engine, what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        engine.notify_pass().await.expect("notification pass");
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_notification_reaches_its_receiver_once() {
    let receiver = Loopback::start(checking(SECRET)).await;
    let url = format!("{}/hooks/orch", receiver.base);
    let s = setup(vec![
        target("ops", &url, NotifyFormat::Json, Some(SECRET), vec![], 3, 10),
        // Wants deploys only: a blocked item is not its business.
        target(
            "deploys",
            &url,
            NotifyFormat::Json,
            Some(SECRET),
            vec![NotifyEvent::Deployed],
            3,
            10,
        ),
    ])
    .await;
    let item = item_with_event(
        &s.engine,
        "item.blocked",
        json!({ "reason": "the test command failed 3 times" }),
    )
    .await;

    pass_until(&s.engine, "the delivery", || !receiver.got().is_empty()).await;
    for _ in 0..3 {
        s.engine.notify_pass().await.expect("pass");
    }
    let got = receiver.got();
    assert_eq!(got.len(), 1, "sent once, to the one receiver that wants it");
    let got = &got[0];
    assert_eq!(got.path, "/hooks/orch");
    assert!(signature_holds(got, SECRET), "the signature verifies");
    assert!(!signature_holds(got, "another secret"));
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("x-orch-event"), "blocked");
    let events = s
        .engine
        .store()
        .list_events(&item, 0)
        .await
        .expect("events");
    let seq = events.last().expect("event").seq;
    let id = format!("quick/ops/{item}/{seq}");
    assert_eq!(got.header("x-orch-delivery"), id);
    let body = got.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["event"], "blocked");
    assert_eq!(body["project"], "quick");
    assert_eq!(body["item"], item.as_str());
    assert_eq!(body["title"], "Fix <login> & co");
    assert_eq!(body["details"]["reason"], "the test command failed 3 times");
    assert_eq!(
        body["url"],
        format!("https://orch.example.com/items/{item}").as_str()
    );
    let stored = s
        .engine
        .store()
        .list_notifications(&item)
        .await
        .expect("list");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].state, NotificationState::Sent);
    assert_eq!(stored[0].attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_refuses_the_signature_is_retried_then_given_up() {
    // The receiver holds another secret than orch: it refuses every attempt.
    let receiver = Loopback::start(checking("the receiver's other secret")).await;
    let s = setup(vec![target(
        "ops",
        &format!("{}/hook", receiver.base),
        NotifyFormat::Json,
        Some(SECRET),
        vec![],
        3,
        40,
    )])
    .await;
    let item = item_with_event(
        &s.engine,
        "approval.requested",
        json!({ "stage": "confirm-deploy" }),
    )
    .await;
    let store = s.engine.store().clone();
    pass_until(&s.engine, "giving up", || {
        block_on_store(store.list_notifications(&item))
            .iter()
            .any(|n| n.state == NotificationState::GivenUp)
    })
    .await;
    let got = receiver.got();
    assert_eq!(got.len(), 3, "max_attempts = 3");
    assert!(
        got.iter()
            .all(|g| !signature_holds(g, "the receiver's other secret"))
    );
    assert!(
        got.windows(2).all(|w| w[0].body == w[1].body
            && w[0].header("x-orch-delivery") == w[1].header("x-orch-delivery")),
        "every retry is the same delivery, byte for byte"
    );
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(waited_at_least(gaps[0], 40), "{gaps:?}");
    assert!(waited_at_least(gaps[1], 80), "the wait doubles: {gaps:?}");

    let events = store.list_events(&item, 0).await.expect("events");
    let given_up: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "notify.given-up")
        .collect();
    assert_eq!(given_up.len(), 1, "one event says so");
    assert_eq!(given_up[0].data["receiver"], "quick/ops");
    assert_eq!(given_up[0].data["event"], "approval");
    assert_eq!(given_up[0].data["attempts"], 3);
    let error = given_up[0].data["error"].as_str().expect("error");
    assert!(error.contains("HTTP 401"), "{error}");
    let counts = store.count_notifications().await.expect("counts");
    assert!(
        counts.contains(&(NotificationState::GivenUp, 1)),
        "{counts:?}"
    );
    // Given up is final: later passes send nothing more.
    for _ in 0..3 {
        s.engine.notify_pass().await.expect("pass");
    }
    assert_eq!(receiver.got().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_error_is_retried_with_backoff_until_it_is_delivered() {
    let answer: Answer = Arc::new(|_, n| {
        if n <= 2 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    });
    let receiver = Loopback::start(answer).await;
    let s = setup(vec![target(
        "ops",
        &format!("{}/hook", receiver.base),
        NotifyFormat::Json,
        Some(SECRET),
        vec![],
        5,
        60,
    )])
    .await;
    let item = item_with_event(
        &s.engine,
        "deploy.prod",
        json!({ "sha": "0123456789abcdef", "success": true, "restored": null }),
    )
    .await;
    let store = s.engine.store().clone();
    pass_until(&s.engine, "delivery", || {
        block_on_store(store.list_notifications(&item))
            .iter()
            .any(|n| n.state == NotificationState::Sent)
    })
    .await;
    let got = receiver.got();
    assert_eq!(got.len(), 3, "two 500s, then delivered");
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(waited_at_least(gaps[0], 60), "{gaps:?}");
    assert!(waited_at_least(gaps[1], 120), "{gaps:?}");
    assert_eq!(got[2].json()["event"], "deployed");
    let stored = store.list_notifications(&item).await.expect("list");
    assert_eq!(stored[0].attempts, 3);
    assert_eq!(
        stored[0]
            .last_error
            .as_deref()
            .map(|e| e.contains("HTTP 500")),
        Some(true)
    );
    let events = store.list_events(&item, 0).await.expect("events");
    assert!(events.iter().all(|e| e.kind != "notify.given-up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_receiver_gets_one_escaped_line_with_a_link() {
    let answer: Answer = Arc::new(|_, _| StatusCode::OK);
    let receiver = Loopback::start(answer).await;
    let s = setup(vec![target(
        "chat",
        &format!("{}/services/T000/B000/XXXX", receiver.base),
        NotifyFormat::Slack,
        None,
        vec![],
        3,
        10,
    )])
    .await;
    let item = item_with_event(
        &s.engine,
        "spend.limit-reached",
        json!({ "stage": "development", "reason": "item limit $2.00 reached", "when": "during-run" }),
    )
    .await;
    pass_until(&s.engine, "the delivery", || !receiver.got().is_empty()).await;
    let got = &receiver.got()[0];
    assert_eq!(got.path, "/services/T000/B000/XXXX");
    assert_eq!(
        got.header("x-orch-signature-256"),
        "",
        "no secret, no signature"
    );
    let body = got.json();
    assert_eq!(
        body,
        json!({ "text": format!(
            "orch: <https://orch.example.com/items/{item}|{item}> reached a spend limit in stage development: item limit $2.00 reached (Fix &lt;login&gt; &amp; co)"
        ) })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_receiver_urls_stay_out_of_events_errors_and_reports() {
    // Nothing listens on this port: every attempt fails to connect.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{closed}/services/T9/B9/URLTOKEN");
    let s = setup(vec![target(
        "chat",
        &url,
        NotifyFormat::Json,
        Some(SECRET),
        vec![],
        2,
        10,
    )])
    .await;
    let item = item_with_event(&s.engine, "item.blocked", json!({ "reason": "r" })).await;
    let store = s.engine.store().clone();
    pass_until(&s.engine, "giving up", || {
        block_on_store(store.list_notifications(&item))
            .iter()
            .any(|n| n.state == NotificationState::GivenUp)
    })
    .await;
    let mut seen = Vec::new();
    for e in store.list_events(&item, 0).await.expect("events") {
        seen.push(e.data.to_string());
    }
    for n in store.list_notifications(&item).await.expect("list") {
        seen.push(n.body.clone());
        seen.push(n.last_error.clone().unwrap_or_default());
        seen.push(format!("{n:?}"));
    }
    seen.extend(s.lines.0.lock().expect("lock").iter().cloned());
    seen.push(format!("{:?}", s.engine));
    let all = seen.join("\n");
    assert!(all.contains("given up"), "the report says it: {all}");
    assert!(
        all.contains("127.0.0.1"),
        "the receiver is named by host: {all}"
    );
    assert!(!all.contains(SECRET), "the secret leaked: {all}");
    assert!(!all.contains("URLTOKEN"), "the URL's path leaked: {all}");
}

/// Runs a store future to completion from a synchronous condition (the passes are awaited
/// between checks, so this never contends with them).
fn block_on_store<T>(f: impl std::future::Future<Output = orch_store::Result<T>>) -> T {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current()
            .block_on(f)
            .expect("store call")
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_that_died_holding_a_notification_is_fenced_and_the_notification_sent_later() {
    let answer: Answer = Arc::new(|_, _| StatusCode::OK);
    let receiver = Loopback::start(answer).await;
    let s = setup(vec![target(
        "ops",
        &format!("{}/hook", receiver.base),
        NotifyFormat::Json,
        Some(SECRET),
        vec![],
        3,
        10,
    )])
    .await;
    let item = item_with_event(&s.engine, "item.blocked", json!({ "reason": "r" })).await;
    let store = s.engine.store().clone();
    s.engine.follow_notifications().await.expect("follow");
    // Another sender claims it for 1.5 s, then dies (it never records an answer).
    let dead = store.claim_notifications(1500, 10).await.expect("claim");
    assert_eq!(dead.len(), 1);
    s.engine.notify_pass().await.expect("pass");
    assert!(
        receiver.got().is_empty(),
        "nobody else sends a claimed notification"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    pass_until(&s.engine, "the delivery", || !receiver.got().is_empty()).await;
    assert_eq!(receiver.got().len(), 1);
    let stored = store.list_notifications(&item).await.expect("list");
    assert_eq!(stored[0].state, NotificationState::Sent);
    assert_eq!(
        stored[0].attempts, 2,
        "the dead sender's claim counted as an attempt"
    );
    // The dead sender's late word changes nothing.
    let late = orch_store::AttemptOutcome::GiveUp {
        error: "late".into(),
    };
    assert!(
        !store
            .record_attempt(dead[0].id, dead[0].attempts, late)
            .await
            .expect("late record")
    );
    assert_eq!(
        store.list_notifications(&item).await.expect("list")[0].state,
        NotificationState::Sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_item_is_notified_then_no_longer_followed() {
    let answer: Answer = Arc::new(|_, _| StatusCode::OK);
    let receiver = Loopback::start(answer).await;
    let s = setup(vec![target(
        "ops",
        &format!("{}/hook", receiver.base),
        NotifyFormat::Json,
        Some(SECRET),
        vec![],
        3,
        10,
    )])
    .await;
    let item = item_with_event(&s.engine, "item.blocked", json!({ "reason": "r" })).await;
    // Finished before the follower saw its blocked event: the event is still notified.
    s.engine.stop(&item, "alice").await.expect("stop");
    pass_until(&s.engine, "the delivery", || !receiver.got().is_empty()).await;
    assert_eq!(receiver.got()[0].json()["event"], "blocked");
    // From now on the finished item is not read again (a pass looks at items in flight only):
    // an event that could only be forged here is not even seen.
    s.engine
        .store()
        .append_events(
            &item,
            vec![NewEvent::new("item.blocked", json!({ "reason": "later" }))],
        )
        .await
        .expect("event");
    for _ in 0..3 {
        s.engine.notify_pass().await.expect("pass");
    }
    assert_eq!(receiver.got().len(), 1);
}
