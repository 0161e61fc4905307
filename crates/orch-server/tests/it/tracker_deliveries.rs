//! Acting on Gitea issue deliveries, and the event follower telling Gitea what happened: once,
//! across passes, and after an outage.

use std::sync::Arc;
use std::time::Duration;

use orch_engine::{Remotes, TrackerLink};
use orch_integrations::fake::gitea::FakeGitea;
use orch_integrations::fake::webhook::Delivery;
use orch_integrations::fake::{FakeServer, Fault};
use orch_integrations::{Gitea, GiteaConfig, RetryPolicy, Token, Tracker};
use orch_server::WebhookSource;

use crate::support::{GITEA_SECRET, Request, Server};

const TOKEN: &str = "gitea-test-token";

fn request(delivery: &Delivery) -> Request<'static> {
    let signature = WebhookSource::Gitea
        .sign(GITEA_SECRET, &delivery.body)
        .expect("sign");
    Request::post("/hooks/gitea")
        .header("X-Gitea-Signature", signature)
        .header("X-Gitea-Delivery", delivery.id.clone())
        .header("X-Gitea-Event", delivery.event.clone())
        .body(delivery.body.clone())
}

fn writes(fake: &FakeServer<FakeGitea>) -> usize {
    fake.requests().iter().filter(|r| r.method != "GET").count()
}

#[tokio::test]
async fn gitea_labels_file_and_stop_items_and_the_follower_tells_gitea_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeServer::start(
        FakeGitea::new(TOKEN, "acme", "web", &dir.path().join("remote.git"))
            .await
            .expect("fake"),
    )
    .await
    .expect("serve");
    let gitea = Arc::new(
        Gitea::new(GiteaConfig {
            base_url: fake.base_url().to_owned(),
            owner: "acme".into(),
            repo: "web".into(),
            token: Token::new(TOKEN).expect("token"),
            retry: RetryPolicy {
                attempts: 2,
                base_delay: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                timeout: Duration::from_secs(2),
            },
        })
        .expect("gitea"),
    );
    gitea.ensure_states().await.expect("labels");
    let remotes = Remotes {
        tracker: Some(TrackerLink {
            tracker: gitea,
            key: "acme/web".into(),
            ready_state: "Ready".into(),
        }),
        forge: None,
    };
    let server = Server::start_with_remotes(remotes, |s| {
        s.with_webhook_secret(WebhookSource::Gitea, GITEA_SECRET)
    })
    .await;
    let engine = Arc::clone(server.state.engine());

    let number = fake
        .with(|g| g.add_issue("Fix the footer", "It overlaps", &[]))
        .await;
    let ready = fake
        .with(|g| g.label_issue(number, "state/Ready", "grace"))
        .await
        .expect("delivery");
    let answer = server.send(request(&ready)).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.json()["action"], "created");
    let again = server.send(request(&ready)).await;
    assert_eq!(again.status, 200, "a redelivery is not acted on: {again:?}");
    let items = engine.store().list_items(None).await.expect("items");
    assert_eq!(items.len(), 1);
    let item = items[0].id.clone();
    assert_eq!(items[0].title, "Fix the footer");

    // Gitea fails: the follower gives up for now, says so on the item, and keeps its place.
    fake.fail_next([Fault::Status(502), Fault::Status(502)]);
    let summary = engine.follow_remotes().await.expect("follow");
    assert_eq!(summary.unreachable, 1);
    let kinds = |events: Vec<orch_store::EventRecord>| -> Vec<String> {
        events.into_iter().map(|e| e.kind).collect()
    };
    let history = kinds(engine.store().list_events(&item, 0).await.expect("events"));
    assert!(
        history.contains(&"remote.unreachable".to_owned()),
        "{history:?}"
    );
    assert_eq!(fake.with(|g| g.label_names(number)).await, ["state/Ready"]);

    // It answers again: the state follows the stage.
    engine.follow_remotes().await.expect("follow");
    assert_eq!(
        fake.with(|g| g.label_names(number)).await,
        ["state/Analysis"]
    );
    // Nothing new happened: another pass writes nothing (the cursor is in the store).
    let before = writes(&fake);
    engine.follow_remotes().await.expect("follow");
    assert_eq!(writes(&fake), before, "no event is told twice");

    // STOP on the issue stops the item, recorded as the person grace's Gitea account is.
    let grace = fake.with(|g| g.user_id("grace")).await;
    engine
        .store()
        .add_person("grace", "hash-of-grace-token")
        .await
        .expect("grace");
    engine
        .store()
        .link_tracker_account("grace", &format!("gitea:{grace}"))
        .await
        .expect("link");
    let stop = fake
        .with(|g| g.label_issue(number, "state/STOP", "grace"))
        .await
        .expect("delivery");
    let answer = server.send(request(&stop)).await;
    assert_eq!(answer.json()["action"], "stopped", "{answer:?}");
    let stopped = engine
        .store()
        .get_item(&item)
        .await
        .expect("get")
        .expect("item");
    assert_eq!(stopped.progress.status.as_str(), "cancelled");
    let history = kinds(engine.store().list_events(&item, 0).await.expect("events"));
    let stop_event = engine
        .store()
        .list_events(&item, 0)
        .await
        .expect("events")
        .into_iter()
        .find(|e| e.kind == "item.stopped")
        .expect("stopped event");
    assert_eq!(stop_event.data["by"], "grace", "{history:?}");
    assert_eq!(stop_event.data["by_kind"], "person", "{history:?}");

    // An issue of another repository: accepted, nothing done.
    let mut foreign: serde_json::Value = serde_json::from_slice(&ready.body).expect("json");
    foreign["repository"]["full_name"] = "someone/else".into();
    let foreign = Delivery::new(
        orch_integrations::fake::webhook::Sender::Gitea,
        "foreign-1",
        "issues",
        &foreign,
    );
    let answer = server.send(request(&foreign)).await;
    assert_eq!(
        (answer.status, answer.json()["action"].clone()),
        (202, "ignored".into())
    );
    assert_eq!(
        engine.store().list_items(None).await.expect("items").len(),
        1
    );
}

/// Plane may send a work item's state as a bare id: orch then reads the work item from Plane's
/// API for the state's name before acting.
#[tokio::test]
async fn a_plane_state_given_as_an_id_is_looked_up_before_acting() {
    use orch_integrations::fake::plane::FakePlane;
    use orch_integrations::{Plane, PlaneConfig};

    const PROJECT: &str = "4af6d1a2-0b1c-4e5f-9a7b-1c2d3e4f5a6b";
    let fake = FakeServer::start(FakePlane::new(TOKEN, "acme", PROJECT).with_canonical_states())
        .await
        .expect("serve");
    let plane = Plane::new(PlaneConfig {
        base_url: fake.base_url().to_owned(),
        workspace: "acme".into(),
        project_id: PROJECT.into(),
        token: Token::new(TOKEN).expect("token"),
        retry: RetryPolicy::default(),
    })
    .expect("plane");
    let remotes = Remotes {
        tracker: Some(TrackerLink {
            tracker: Arc::new(plane),
            key: PROJECT.into(),
            ready_state: "Ready".into(),
        }),
        forge: None,
    };
    let server = Server::start_with_remotes(remotes, |s| {
        s.with_webhook_secret(WebhookSource::Plane, crate::support::PLANE_SECRET)
    })
    .await;
    let id = fake.with(|p| p.add_work_item("Greet", "", "Todo")).await;
    let delivery = fake
        .with(|p| p.move_work_item(&id, "Ready", "Ada"))
        .await
        .expect("delivery");
    let mut payload: serde_json::Value = serde_json::from_slice(&delivery.body).expect("json");
    let state_id = payload["data"]["state"]["id"].clone();
    payload["data"]["state"] = state_id;
    let body = serde_json::to_vec(&payload).expect("json");
    let signature = WebhookSource::Plane
        .sign(crate::support::PLANE_SECRET, &body)
        .expect("sign");
    let answer = server
        .send(
            Request::post("/hooks/plane")
                .header("X-Plane-Signature", signature)
                .header("X-Plane-Delivery", "state-as-id-1")
                .body(body),
        )
        .await;
    assert_eq!(answer.json()["action"], "created", "{answer:?}");
    let reads = fake.requests_to(
        "GET",
        &format!("/api/v1/workspaces/acme/projects/{PROJECT}/work-items/{id}/"),
    );
    assert_eq!(reads.len(), 1, "the state was read from Plane");
}

/// GitHub `issues` deliveries, signed as GitHub signs them (`sha256=<hex>`): `state/Ready` files
/// the issue, the follower moves its label through GitHub's API, `state/STOP` stops it.
#[tokio::test]
async fn github_labels_file_and_stop_items_and_the_follower_relabels_the_issue() {
    use orch_integrations::fake::github::FakeGitHub;
    use orch_integrations::{GitHub, GitHubConfig};

    use crate::support::GITHUB_SECRET;

    fn request(delivery: &Delivery) -> Request<'static> {
        let signature = WebhookSource::Github
            .sign(GITHUB_SECRET, &delivery.body)
            .expect("sign");
        assert!(signature.starts_with("sha256="), "{signature}");
        Request::post("/hooks/github")
            .header("X-Hub-Signature-256", signature)
            .header("X-GitHub-Delivery", delivery.id.clone())
            .header("X-GitHub-Event", delivery.event.clone())
            .body(delivery.body.clone())
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeServer::start(
        FakeGitHub::new(TOKEN, "acme", "web", &dir.path().join("remote.git"))
            .await
            .expect("fake"),
    )
    .await
    .expect("serve");
    let github = Arc::new(
        GitHub::new(GitHubConfig {
            base_url: fake.base_url().to_owned(),
            owner: "acme".into(),
            repo: "web".into(),
            token: Token::new(TOKEN).expect("token"),
            retry: RetryPolicy::default(),
        })
        .expect("github"),
    );
    github.ensure_states().await.expect("labels");
    let remotes = Remotes {
        tracker: Some(TrackerLink {
            tracker: github,
            key: "acme/web".into(),
            ready_state: "Ready".into(),
        }),
        forge: None,
    };
    let server = Server::start_with_remotes(remotes, |s| {
        s.with_webhook_secret(WebhookSource::Github, GITHUB_SECRET)
    })
    .await;
    let engine = Arc::clone(server.state.engine());

    let number = fake
        .with(|g| g.state.add_issue("Fix the header", "It flickers", &[]))
        .await;
    let ready = fake
        .with(|g| g.label_issue(number, "state/Ready", "octocat"))
        .await;
    assert_eq!(ready.len(), 1, "one `labeled` delivery");
    let answer = server.send(request(&ready[0])).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.json()["action"], "created");
    let items = engine.store().list_items(None).await.expect("items");
    assert_eq!(items.len(), 1);
    let item = items[0].id.clone();
    assert_eq!(items[0].title, "Fix the header");

    engine.follow_remotes().await.expect("follow");
    assert_eq!(
        fake.with(|g| g.state.label_names(number)).await,
        ["state/Analysis"],
        "the follower replaced the state label through GitHub's API"
    );
    assert!(
        !fake
            .requests_to("PUT", &format!("/repos/acme/web/issues/{number}/labels"))
            .is_empty()
    );

    // Moving to STOP sends `unlabeled` (Analysis) then `labeled` (STOP).
    let stop = fake
        .with(|g| g.label_issue(number, "state/STOP", "octocat"))
        .await;
    let actions: Vec<String> = stop
        .iter()
        .map(|d| {
            let body: serde_json::Value = serde_json::from_slice(&d.body).expect("json");
            body["action"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    assert_eq!(actions, ["unlabeled", "labeled"]);
    let mut answers = Vec::new();
    for delivery in &stop {
        answers.push(server.send(request(delivery)).await.json()["action"].clone());
    }
    assert!(answers.contains(&"stopped".into()), "{answers:?}");
    let stopped = engine
        .store()
        .get_item(&item)
        .await
        .expect("get")
        .expect("item");
    assert_eq!(stopped.progress.status.as_str(), "cancelled");

    // A comment on the issue is not a state change.
    let mut comment: serde_json::Value = serde_json::from_slice(&stop[1].body).expect("json");
    comment["action"] = "created".into();
    comment["comment"] = serde_json::json!({ "id": 1, "body": "why?" });
    let comment = Delivery::new(
        orch_integrations::fake::webhook::Sender::GitHub,
        "comment-1",
        "issue_comment",
        &comment,
    );
    let answer = server.send(request(&comment)).await;
    assert_eq!(answer.json()["action"], "ignored", "{answer:?}");
}
