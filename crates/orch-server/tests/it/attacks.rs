//! Attacks on tracker deliveries: a captured delivery replayed under a new id, a stale one, an
//! approval forged by a display name. Each changes nothing and is counted. The helpers here
//! (a Gitea-tracked server, filing, an item's status) serve `doors.rs` too.

use std::sync::Arc;
use std::time::Duration;

use orch_engine::{Remotes, TrackerLink};
use orch_integrations::fake::gitea::FakeGitea;
use orch_integrations::fake::plane::FakePlane;
use orch_integrations::fake::webhook::Delivery;
use orch_integrations::fake::{FakeServer, Fault};
use orch_integrations::{Gitea, GiteaConfig, Plane, PlaneConfig, RetryPolicy, Token, Tracker};
use orch_server::WebhookSource;

use crate::support::{GITEA_SECRET, PLANE_SECRET, Request, Server, TOKEN, await_approval};

const REMOTE_TOKEN: &str = "remote-test-token";
const PLANE_PROJECT: &str = "4af6d1a2-0b1c-4e5f-9a7b-1c2d3e4f5a6b";

fn retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(2),
    }
}

fn gitea_request(delivery: &Delivery, id: &str) -> Request<'static> {
    let signature = WebhookSource::Gitea
        .sign(GITEA_SECRET, &delivery.body)
        .expect("sign");
    Request::post("/hooks/gitea")
        .header("X-Gitea-Signature", signature)
        .header("X-Gitea-Delivery", id.to_owned())
        .header("X-Gitea-Event", delivery.event.clone())
        .body(delivery.body.clone())
}

fn plane_request(delivery: &Delivery) -> Request<'static> {
    let signature = WebhookSource::Plane
        .sign(PLANE_SECRET, &delivery.body)
        .expect("sign");
    Request::post("/hooks/plane")
        .header("X-Plane-Signature", signature)
        .header("X-Plane-Delivery", delivery.id.clone())
        .header("X-Plane-Event", delivery.event.clone())
        .body(delivery.body.clone())
}

pub(crate) struct GiteaSetup {
    pub(crate) fake: FakeServer<FakeGitea>,
    pub(crate) server: Server,
    _dir: tempfile::TempDir,
}

pub(crate) async fn gitea(approvers: &[&str]) -> GiteaSetup {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeServer::start(
        FakeGitea::new(REMOTE_TOKEN, "acme", "web", &dir.path().join("remote.git"))
            .await
            .expect("fake"),
    )
    .await
    .expect("serve");
    let tracker = Arc::new(
        Gitea::new(GiteaConfig {
            base_url: fake.base_url().to_owned(),
            owner: "acme".into(),
            repo: "web".into(),
            token: Token::new(REMOTE_TOKEN).expect("token"),
            retry: retry(),
        })
        .expect("gitea"),
    );
    tracker.ensure_states().await.expect("labels");
    let remotes = Remotes {
        tracker: Some(TrackerLink {
            tracker,
            key: "acme/web".into(),
            ready_state: "Ready".into(),
        }),
        forge: None,
    };
    let server = Server::start_full(remotes, approvers, |s| {
        s.with_api_token(TOKEN)
            .with_webhook_secret(WebhookSource::Gitea, GITEA_SECRET)
    })
    .await;
    GiteaSetup {
        fake,
        server,
        _dir: dir,
    }
}

/// Files an issue through a `state/Ready` delivery; the orch item's id.
pub(crate) async fn file(setup: &GiteaSetup, by: &str) -> (u64, orch_core::ItemId) {
    let number = setup
        .fake
        .with(|g| g.add_issue("Fix the footer", "It overlaps", &[]))
        .await;
    let ready = setup
        .fake
        .with(|g| g.label_issue(number, "state/Ready", by))
        .await
        .expect("delivery");
    let answer = setup.server.send(gitea_request(&ready, &ready.id)).await;
    assert_eq!(answer.json()["action"], "created", "{answer:?}");
    let items = setup
        .server
        .state
        .engine()
        .store()
        .list_items(None)
        .await
        .expect("items");
    (number, items.last().expect("item").id.clone())
}

pub(crate) async fn status(server: &Server, id: &orch_core::ItemId) -> String {
    server
        .state
        .engine()
        .store()
        .get_item(id)
        .await
        .expect("get")
        .expect("item")
        .progress
        .status
        .as_str()
        .to_owned()
}

#[tokio::test]
async fn a_captured_delivery_replayed_under_a_new_delivery_id_changes_nothing() {
    let setup = gitea(&[]).await;
    let (number, item) = file(&setup, "grace").await;
    await_approval(setup.server.state.engine(), &item, "abc123").await;
    let approve = setup
        .fake
        .with(|g| g.label_issue(number, "state/Approved", "grace"))
        .await
        .expect("delivery");
    let answer = setup
        .server
        .send(gitea_request(&approve, &approve.id))
        .await;
    assert_eq!(answer.json()["action"], "approved", "{answer:?}");
    // The item comes back for a new approval (a new build); someone replays the capture.
    let again = setup
        .server
        .send(gitea_request(&approve, "a-fresh-delivery-id"))
        .await;
    assert_eq!(again.status, 200, "a replay is not acted on: {again:?}");
    assert_eq!(again.json()["duplicate"], true, "{again:?}");
    assert_eq!(again.json()["replayed"], true, "{again:?}");
    let metrics = setup.server.send(Request::get("/metrics")).await.body;
    assert!(
        metrics.contains("orch_webhook_deliveries_total{source=\"gitea\",result=\"replayed\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_stale_approved_delivery_changes_nothing() {
    let setup = gitea(&[]).await;
    let (number, item) = file(&setup, "grace").await;
    await_approval(setup.server.state.engine(), &item, "abc123").await;
    // Approved, then taken back before the delivery arrived (or a capture sent later).
    let approve = setup
        .fake
        .with(|g| g.label_issue(number, "state/Approved", "grace"))
        .await
        .expect("delivery");
    setup
        .fake
        .with(|g| g.label_issue(number, "state/Confirm Deploy", "grace"))
        .await
        .expect("relabel");
    let answer = setup
        .server
        .send(gitea_request(&approve, &approve.id))
        .await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.json()["action"], "stale", "{answer:?}");
    assert_eq!(status(&setup.server, &item).await, "awaiting-approval");
    let metrics = setup.server.send(Request::get("/metrics")).await.body;
    assert!(
        metrics.contains("orch_webhook_actions_total{source=\"gitea\",action=\"stale\"} 1\n"),
        "{metrics}"
    );

    // Approved again, for real, while Gitea cannot answer: nothing on the delivery's word.
    let approve = setup
        .fake
        .with(|g| g.label_issue(number, "state/Approved", "grace"))
        .await
        .expect("delivery");
    setup
        .fake
        .fail_next([Fault::Status(502), Fault::Status(502)]);
    let answer = setup
        .server
        .send(gitea_request(&approve, &approve.id))
        .await;
    assert_eq!(answer.json()["action"], "failed", "{answer:?}");
    assert_eq!(status(&setup.server, &item).await, "awaiting-approval");
    // The reconciliation poll asks Gitea again, which now confirms it, by grace's account.
    setup.server.state.engine().reconcile_trackers().await;
    assert_ne!(status(&setup.server, &item).await, "awaiting-approval");
    let granted = setup
        .server
        .state
        .engine()
        .store()
        .list_events(&item, 0)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.kind == "approval.granted")
        .expect("approved");
    assert_eq!(granted.data["by_kind"], "tracker");
    assert_eq!(granted.data["by_login"], "grace");
}

#[tokio::test]
async fn an_approval_forged_by_a_display_name_change_changes_nothing() {
    let fake = FakeServer::start(
        FakePlane::new(REMOTE_TOKEN, "acme", PLANE_PROJECT).with_canonical_states(),
    )
    .await
    .expect("serve");
    let plane = Plane::new(PlaneConfig {
        base_url: fake.base_url().to_owned(),
        workspace: "acme".into(),
        project_id: PLANE_PROJECT.into(),
        token: Token::new(REMOTE_TOKEN).expect("token"),
        retry: retry(),
    })
    .expect("plane");
    let remotes = Remotes {
        tracker: Some(TrackerLink {
            tracker: Arc::new(plane),
            key: PLANE_PROJECT.into(),
            ready_state: "Ready".into(),
        }),
        forge: None,
    };
    let server = Server::start_full(remotes, &["ada"], |s| {
        s.with_webhook_secret(WebhookSource::Plane, PLANE_SECRET)
    })
    .await;
    let id = fake.with(|p| p.add_work_item("Greet", "", "Todo")).await;
    let (ada_member, mallory) = fake
        .with(|p| (p.add_member("Ada Lovelace"), p.add_member("Mallory")))
        .await;
    let store = server.state.engine().store();
    store
        .add_person("ada", "hash-of-ada-token")
        .await
        .expect("ada");
    store
        .link_tracker_account("ada", &format!("plane:{ada_member}"))
        .await
        .expect("link");
    let ready = fake
        .with(|p| p.move_work_item_as(&id, "Ready", &mallory))
        .await
        .expect("delivery");
    assert_eq!(
        server.send(plane_request(&ready)).await.json()["action"],
        "created"
    );
    let item = store.list_items(None).await.expect("items")[0].id.clone();
    await_approval(server.state.engine(), &item, "abc123").await;
    // Mallory renames herself "Ada Lovelace" in Plane and approves.
    let forged = fake
        .with(|p| {
            p.rename_member(&mallory, "Ada Lovelace");
            p.move_work_item_as(&id, "Approved", &mallory)
        })
        .await
        .expect("delivery");
    let body: serde_json::Value = serde_json::from_slice(&forged.body).expect("json");
    assert_eq!(body["activity"]["actor"]["display_name"], "Ada Lovelace");
    let answer = server.send(plane_request(&forged)).await;
    assert_eq!(answer.json()["action"], "refused", "{answer:?}");
    assert_eq!(status(&server, &item).await, "awaiting-approval");
    // The poll reads the same history and refuses the same way.
    server.state.engine().reconcile_trackers().await;
    assert_eq!(status(&server, &item).await, "awaiting-approval");

    // Ada herself: Approved is read back, her account is her, she is an approver.
    let real = fake
        .with(|p| {
            p.move_work_item_as(&id, "Confirm Deploy", &mallory);
            p.move_work_item_as(&id, "Approved", &ada_member)
        })
        .await
        .expect("delivery");
    let answer = server.send(plane_request(&real)).await;
    assert_eq!(answer.json()["action"], "approved", "{answer:?}");
    let approved = store
        .list_events(&item, 0)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.kind == "approval.granted")
        .expect("approved event");
    assert_eq!(approved.data["by"], "ada");
    assert_eq!(approved.data["by_kind"], "person");
}
