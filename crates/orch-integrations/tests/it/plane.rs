use std::time::Duration;

use orch_integrations::fake::plane::FakePlane;
use orch_integrations::fake::{FakeServer, Fault};
use orch_integrations::{IntegrationError, Plane, PlaneConfig, Token, Tracker};

use crate::quick_retry;

const TOKEN: &str = "plane_api_test_token_1234";
const PROJECT: &str = "7c1f0000-0000-4000-8000-0000000000aa";

async fn setup(fake: FakePlane, attempts: u32) -> (FakeServer<FakePlane>, Plane) {
    let server = FakeServer::start(fake).await.expect("fake plane");
    let plane = Plane::new(PlaneConfig {
        base_url: server.base_url().to_owned(),
        workspace: "acme".into(),
        project_id: PROJECT.into(),
        token: Token::new(TOKEN).expect("token"),
        retry: quick_retry(attempts),
    })
    .expect("plane");
    (server, plane)
}

fn canonical() -> FakePlane {
    FakePlane::new(TOKEN, "acme", PROJECT).with_canonical_states()
}

#[tokio::test]
async fn lists_items_of_a_state_across_pages_then_moves_and_comments() {
    let mut fake = canonical();
    for i in 0..130 {
        fake.add_work_item(&format!("item {i}"), "", "Backlog");
    }
    let ready = fake.add_work_item("Change the greeting", "Say hello", "Ready");
    let (server, plane) = setup(fake, 1).await;

    let items = plane.list_items("Ready").await.expect("list");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id, ready);
    assert_eq!(items[0].title, "Change the greeting");
    assert_eq!(items[0].state.as_deref(), Some("Ready"));
    let pages = server.requests_to(
        "GET",
        &format!("/api/v1/workspaces/acme/projects/{PROJECT}/work-items/"),
    );
    assert_eq!(pages.len(), 2, "130 items are two pages of 100: {pages:?}");
    assert!(pages[1].path.contains("cursor=100:1:0"), "{pages:?}");

    plane
        .set_state(&ready, "Development")
        .await
        .expect("set state");
    assert_eq!(
        server.with(|f| f.state_name_of(&ready)).await.as_deref(),
        Some("Development")
    );
    plane
        .add_comment(&ready, "review: <PASS>")
        .await
        .expect("comment");
    let comments = server.with(|f| f.comments.clone()).await;
    assert_eq!(
        comments,
        [(ready.clone(), "<p>review: &lt;PASS&gt;</p>".to_owned())]
    );

    let unknown = plane.set_state(&ready, "Nonsense").await;
    assert!(
        matches!(unknown, Err(IntegrationError::Config(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn ensure_states_creates_only_the_missing_ones() {
    let mut fake = FakePlane::new(TOKEN, "acme", PROJECT);
    fake.add_state("Backlog", "backlog");
    let (server, plane) = setup(fake, 1).await;
    plane.ensure_states().await.expect("ensure");
    let created = server.requests_to(
        "POST",
        &format!("/api/v1/workspaces/acme/projects/{PROJECT}/states/"),
    );
    let total = orch_core::states::CANONICAL_STATES.len();
    assert_eq!(created.len(), total - 1);
    let stop_group = server
        .with(|f| {
            f.states
                .iter()
                .find(|s| s.name == "STOP")
                .map(|s| s.group.clone())
        })
        .await;
    assert_eq!(stop_group.as_deref(), Some("cancelled"));
    plane.ensure_states().await.expect("again");
    let again = server.requests_to(
        "POST",
        &format!("/api/v1/workspaces/acme/projects/{PROJECT}/states/"),
    );
    assert_eq!(again.len(), total - 1, "a second ensure creates nothing");
}

#[tokio::test]
async fn server_errors_and_rate_limits_are_retried_then_succeed() {
    let mut fake = canonical();
    let id = fake.add_work_item("x", "", "Ready");
    let (server, plane) = setup(fake, 4).await;
    server.fail_next([
        Fault::Status(500),
        Fault::RateLimited { reset_in_secs: 0 },
        Fault::Status(503),
    ]);
    let item = plane.get_item(&id).await.expect("after retries");
    assert_eq!(item.id, id);
    let gets = server.requests_to(
        "GET",
        &format!("/api/v1/workspaces/acme/projects/{PROJECT}/work-items/{id}/"),
    );
    assert_eq!(gets.len(), 4, "three failures then the answer");
}

#[tokio::test]
async fn retries_are_bounded_and_errors_are_typed() {
    let mut fake = canonical();
    let id = fake.add_work_item("x", "", "Ready");
    let (server, plane) = setup(fake, 3).await;

    server.fail_next([
        Fault::Status(500),
        Fault::Status(500),
        Fault::Status(500),
        Fault::Status(500),
    ]);
    let err = plane.get_item(&id).await.expect_err("500s");
    assert!(
        matches!(err, IntegrationError::BadResponse { .. }),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 3, "three attempts, no more");
    server.with(|_| ()).await;

    let rate = setup(canonical(), 2).await;
    rate.0.fail_next([
        Fault::RateLimited { reset_in_secs: 0 },
        Fault::RateLimited { reset_in_secs: 0 },
    ]);
    let err = rate.1.list_items("Ready").await.expect_err("429s");
    assert!(
        matches!(err, IntegrationError::RateLimited { .. }),
        "{err:?}"
    );

    let hang = setup(canonical(), 1).await;
    hang.0.fail_next([Fault::Hang(Duration::from_secs(3))]);
    let err = hang.1.list_items("Ready").await.expect_err("timeout");
    assert!(
        matches!(err, IntegrationError::Unreachable { .. }),
        "{err:?}"
    );

    let missing = plane.get_item("5f2b6a10-0000-4000-8000-00000000ffff").await;
    assert!(
        matches!(missing, Err(IntegrationError::NotFound { .. })),
        "{missing:?}"
    );
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_and_never_shown() {
    let server = FakeServer::start(canonical()).await.expect("fake");
    let plane = Plane::new(PlaneConfig {
        base_url: server.base_url().to_owned(),
        workspace: "acme".into(),
        project_id: PROJECT.into(),
        token: Token::new("plane_api_wrong_secret").expect("token"),
        retry: quick_retry(3),
    })
    .expect("plane");
    let err = plane.list_items("Ready").await.expect_err("401");
    assert!(
        matches!(err, IntegrationError::Unauthorized { .. }),
        "{err:?}"
    );
    assert_eq!(server.requests().len(), 1, "a 401 is not retried");
    let shown = format!("{err} {err:?} {plane:?}");
    assert!(!shown.contains("wrong_secret"), "{shown}");
}
