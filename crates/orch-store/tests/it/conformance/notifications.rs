//! Outgoing notifications: recorded once per receiver and event with the follower's cursor,
//! claimed by one sender at a time, retried, given up, and fenced by their attempt count.

use std::collections::BTreeSet;

use orch_store::{AttemptOutcome, NewNotification, NotificationState, Store};

use super::{Backend, demo_project, new_item};

fn note(receiver: &str, seq: i64) -> NewNotification {
    NewNotification {
        receiver: receiver.to_owned(),
        event_seq: seq,
        kind: "blocked".to_owned(),
        body: format!(r#"{{"event":"blocked","seq":{seq}}}"#),
    }
}

/// Claims everything due, with a lease long enough that nothing comes back during a test.
async fn claim_all(store: &dyn Store) -> Vec<orch_store::NotificationRecord> {
    store.claim_notifications(60_000, 100).await.expect("claim")
}

pub async fn notifications_are_recorded_once_with_the_cursor(backend: &dyn Backend) {
    let store = backend.open().await;
    demo_project(store.as_ref()).await;
    let item = new_item(store.as_ref(), "notify me").await;
    store
        .enqueue_notifications(
            &item.id,
            "notify:DEMO-1",
            1,
            vec![note("demo/ops", 1), note("demo/chat", 1)],
        )
        .await
        .expect("enqueue");
    assert_eq!(store.cursor("notify:DEMO-1").await.expect("cursor"), 1);
    // A follower that starts again over the same event (it died before seeing its cursor move)
    // records nothing twice; a new event is recorded.
    store
        .enqueue_notifications(
            &item.id,
            "notify:DEMO-1",
            2,
            vec![note("demo/ops", 1), note("demo/ops", 2)],
        )
        .await
        .expect("enqueue again");
    assert_eq!(store.cursor("notify:DEMO-1").await.expect("cursor"), 2);
    let all = store.list_notifications(&item.id).await.expect("list");
    let keys: Vec<(&str, i64)> = all
        .iter()
        .map(|n| (n.receiver.as_str(), n.event_seq))
        .collect();
    assert_eq!(keys, [("demo/ops", 1), ("demo/chat", 1), ("demo/ops", 2)]);
    assert!(
        all.iter()
            .all(|n| n.state == NotificationState::Pending && n.attempts == 0)
    );
    assert_eq!(all[0].body, r#"{"event":"blocked","seq":1}"#);
    assert_eq!(all[0].item, item.id);
    assert_eq!(all[0].kind, "blocked");
}

pub async fn a_claimed_notification_is_hidden_and_fenced(backend: &dyn Backend) {
    let store = backend.open().await;
    demo_project(store.as_ref()).await;
    let item = new_item(store.as_ref(), "notify me").await;
    store
        .enqueue_notifications(&item.id, "notify:DEMO-1", 1, vec![note("demo/ops", 1)])
        .await
        .expect("enqueue");
    let claimed = claim_all(store.as_ref()).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempts, 1, "a claim counts an attempt");
    assert!(
        claim_all(store.as_ref()).await.is_empty(),
        "a claimed notification is nobody else's until its claim runs out"
    );
    // A stale sender (it claimed attempt 0, which does not exist any more) changes nothing.
    assert!(
        !store
            .record_attempt(claimed[0].id, 0, AttemptOutcome::Sent)
            .await
            .expect("stale record")
    );
    assert!(
        store
            .record_attempt(claimed[0].id, 1, AttemptOutcome::Sent)
            .await
            .expect("record")
    );
    // Recording again (a second sender finishing late) changes nothing either.
    assert!(
        !store
            .record_attempt(
                claimed[0].id,
                1,
                AttemptOutcome::GiveUp {
                    error: "late".into()
                }
            )
            .await
            .expect("late record")
    );
    let all = store.list_notifications(&item.id).await.expect("list");
    assert_eq!(all[0].state, NotificationState::Sent);
    assert!(all[0].finished_at.is_some());
    assert_eq!(all[0].last_error, None);
}

pub async fn a_notification_is_retried_then_given_up(backend: &dyn Backend) {
    let store = backend.open().await;
    demo_project(store.as_ref()).await;
    let item = new_item(store.as_ref(), "notify me").await;
    store
        .enqueue_notifications(&item.id, "notify:DEMO-1", 1, vec![note("demo/ops", 1)])
        .await
        .expect("enqueue");
    let first = claim_all(store.as_ref()).await.remove(0);
    let retry = AttemptOutcome::Retry {
        error: "HTTP 500".into(),
        retry_in_ms: 60_000,
    };
    assert!(
        store
            .record_attempt(first.id, 1, retry)
            .await
            .expect("retry")
    );
    assert!(
        claim_all(store.as_ref()).await.is_empty(),
        "not due before its backoff ends"
    );
    let listed = store.list_notifications(&item.id).await.expect("list");
    assert_eq!(listed[0].state, NotificationState::Pending);
    assert_eq!(listed[0].last_error.as_deref(), Some("HTTP 500"));
    assert!(
        listed[0].next_attempt_at > listed[0].created_at + 30_000,
        "due after the backoff, on the database clock"
    );
    assert!(
        !store
            .record_attempt(first.id, 2, AttemptOutcome::Sent)
            .await
            .expect("unclaimed attempt"),
        "attempt 2 was never claimed: nothing is recorded for it"
    );

    let other = new_item(store.as_ref(), "second").await;
    store
        .enqueue_notifications(&other.id, "notify:DEMO-2", 1, vec![note("demo/ops", 1)])
        .await
        .expect("enqueue");
    let claimed = claim_all(store.as_ref()).await.remove(0);
    let zero = AttemptOutcome::Retry {
        error: "refused".into(),
        retry_in_ms: 0,
    };
    assert!(
        store
            .record_attempt(claimed.id, 1, zero)
            .await
            .expect("retry")
    );
    let again = claim_all(store.as_ref()).await;
    assert_eq!(again.len(), 1, "due again at once");
    assert_eq!(again[0].attempts, 2);
    let give_up = AttemptOutcome::GiveUp {
        error: "HTTP 401".into(),
    };
    assert!(
        store
            .record_attempt(again[0].id, 2, give_up)
            .await
            .expect("give up")
    );
    assert!(
        claim_all(store.as_ref()).await.is_empty(),
        "never tried again"
    );
    let given_up = store.list_notifications(&other.id).await.expect("list");
    assert_eq!(given_up[0].state, NotificationState::GivenUp);
    assert_eq!(given_up[0].last_error.as_deref(), Some("HTTP 401"));
    let counts = store.count_notifications().await.expect("count");
    assert!(
        counts.contains(&(NotificationState::Pending, 1)),
        "{counts:?}"
    );
    assert!(
        counts.contains(&(NotificationState::GivenUp, 1)),
        "{counts:?}"
    );
}

pub async fn concurrent_senders_never_share_a_notification(backend: &dyn Backend) {
    let store = backend.open().await;
    demo_project(store.as_ref()).await;
    let item = new_item(store.as_ref(), "many").await;
    let notes = (1..=40).map(|seq| note("demo/ops", seq)).collect();
    store
        .enqueue_notifications(&item.id, "notify:DEMO-1", 40, notes)
        .await
        .expect("enqueue");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let store = backend.open().await;
        tasks.spawn(async move {
            let mut got = Vec::new();
            loop {
                let claimed = store.claim_notifications(60_000, 3).await.expect("claim");
                if claimed.is_empty() {
                    return got;
                }
                got.extend(claimed.into_iter().map(|n| n.id));
            }
        });
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        let got = joined.expect("sender");
        total += got.len();
        seen.extend(got);
    }
    assert_eq!(total, 40, "every notification claimed once");
    assert_eq!(seen.len(), 40, "by one sender each");
}
