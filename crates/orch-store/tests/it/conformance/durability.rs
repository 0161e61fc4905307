//! What the store remembers: the event log, the webhook inbox, and everything across reopening.

use orch_core::ItemId;
use orch_store::{InboxOutcome, NewEvent, StoreError};
use serde_json::json;

use super::*;

pub async fn events_are_gap_free_and_readable_from_a_point(b: &dyn Backend) {
    let store = b.open().await;
    demo_project(&*store).await;
    let one = new_item(&*store, "one").await;
    let two = new_item(&*store, "two").await;
    store
        .append_events(
            &one.id,
            vec![NewEvent::new("a", json!(1)), NewEvent::new("b", json!(2))],
        )
        .await
        .expect("append");
    store
        .append_events(&two.id, vec![NewEvent::new("c", json!(3))])
        .await
        .expect("append");
    store
        .append_events(&one.id, vec![])
        .await
        .expect("appending nothing is fine");
    let claimed = claim(&*store, "w").await;
    store
        .append_events(
            &one.id,
            vec![NewEvent::for_run("d", claimed.id, json!({"x": [1, 2]}))],
        )
        .await
        .expect("append");

    let all = events(&*store, &one.id).await;
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5],
        "one sequence per item, no gaps"
    );
    assert_eq!(kinds(&all), ["item.created", "a", "b", "run.claimed", "d"]);
    assert_eq!(
        (all[4].run_id, &all[4].data),
        (Some(claimed.id), &json!({"x": [1, 2]}))
    );
    assert!(all.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(
        events(&*store, &two.id)
            .await
            .iter()
            .map(|e| e.seq)
            .collect::<Vec<_>>(),
        [1, 2]
    );

    // A batch larger than one statement carries (SQLite appends 200 per statement).
    let many: Vec<NewEvent> = (0..450).map(|n| NewEvent::new("bulk", json!(n))).collect();
    store.append_events(&two.id, many).await.expect("append");
    let bulk = events(&*store, &two.id).await;
    assert_eq!(
        bulk.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=452).collect::<Vec<i64>>()
    );
    assert_eq!(bulk[451].data, json!(449), "in the order given");

    let tail = store.list_events(&one.id, 3).await.expect("tail");
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(store.list_events(&one.id, 5).await.expect("tail"), vec![]);

    let missing = store
        .append_events(
            &ItemId::parse("DEMO-9").expect("id"),
            vec![NewEvent::new("x", json!(0))],
        )
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound { what: "item", .. })),
        "{missing:?}"
    );
}

pub async fn inbox_records_each_delivery_once(b: &dyn Backend) {
    let store = b.open().await;
    let insert =
        |source: &'static str, id: &'static str, hash: &'static str, body: &'static [u8]| {
            let store = std::sync::Arc::clone(&store);
            async move {
                store
                    .inbox_insert(source, id, hash, body)
                    .await
                    .expect("insert")
            }
        };
    assert_eq!(
        insert("gitea", "d-1", "h1", b"{\"a\":1}").await,
        InboxOutcome::Stored
    );
    assert_eq!(
        insert("gitea", "d-1", "h1", b"{\"a\":1}").await,
        InboxOutcome::SameDelivery,
        "a redelivery is reported"
    );
    assert_eq!(
        insert("gitea", "d-1", "h2", b"other body").await,
        InboxOutcome::SameDelivery
    );
    assert_eq!(
        insert("gitea", "d-9", "h1", b"{\"a\":1}").await,
        InboxOutcome::SameBody,
        "the same body under a new delivery id is a replay"
    );
    assert_eq!(
        insert("plane", "d-1", "h1", b"").await,
        InboxOutcome::Stored,
        "same id and hash, other source"
    );
    assert_eq!(
        insert("gitea", "d-2", "h3", &[0, 159, 146, 150]).await,
        InboxOutcome::Stored,
        "binary body"
    );
}

pub async fn reopening_keeps_everything(b: &dyn Backend) {
    let (it, held, logged) = {
        let store = b.open().await;
        demo_project(&*store).await;
        let it = new_item(&*store, "durable").await;
        let held = claim(&*store, "w").await;
        store
            .save_checkpoint(held.fence(), json!({"base": "abc123"}), vec![])
            .await
            .expect("checkpoint");
        assert_eq!(
            store
                .inbox_insert("gitea", "d-1", "hx", b"x")
                .await
                .expect("inbox"),
            InboxOutcome::Stored
        );
        let it = item(&*store, &it.id).await;
        let logged = events(&*store, &it.id).await;
        (it, run(&*store, held.id).await, logged)
    };
    let store = b.open().await;
    assert_eq!(item(&*store, &it.id).await, it);
    assert_eq!(run(&*store, held.id).await, held);
    assert_eq!(events(&*store, &it.id).await, logged);
    assert_eq!(
        store.list_running().await.expect("running"),
        vec![held.clone()]
    );
    assert_eq!(
        store
            .inbox_insert("gitea", "d-2", "hx", b"x")
            .await
            .expect("inbox"),
        InboxOutcome::SameBody,
        "deliveries are remembered"
    );
    assert_eq!(
        new_item(&*store, "next").await.id.as_str(),
        "DEMO-2",
        "numbering continues"
    );
    store
        .renew_lease(held.fence(), LEASE_MS)
        .await
        .expect("the lease still holds after reopening");
}
