//! What onboarding must not pass (fail-closed): Plane labels the project needs and lacks, a
//! webhook at orch's URL that is inactive or does not send issue events, a webhook that sends to
//! another address. Each is a gap with its fix named; apply creates labels and never edits.

use orch_integrations::fake::gitea::FakeGitea;
use orch_integrations::fake::plane::FakePlane;
use orch_integrations::fake::{FakeServer, Recorded};
use orch_integrations::{
    Gitea, GiteaConfig, Plane, PlaneConfig, SetupOp, SetupSpec, SetupStatus, SetupStep, Token,
    Tracker, WebhookSpec,
};
use serde_json::json;

use crate::quick_retry;

const PLANE_TOKEN: &str = "plane_gaps_token_7788";
const PROJECT: &str = "7c1f0000-0000-4000-8000-0000000000cc";

fn only_gets(requests: &[Recorded]) {
    let other: Vec<_> = requests.iter().filter(|r| r.method != "GET").collect();
    assert!(other.is_empty(), "a survey sent {other:?}");
}

async fn plane_for(fake: FakePlane) -> (FakeServer<FakePlane>, Plane) {
    let server = FakeServer::start(fake).await.expect("serve");
    let plane = Plane::new(PlaneConfig {
        base_url: server.base_url().to_owned(),
        workspace: "acme".into(),
        project_id: PROJECT.into(),
        token: Token::new(PLANE_TOKEN).expect("token"),
        retry: quick_retry(1),
    })
    .expect("plane");
    (server, plane)
}

fn label_steps(steps: &[SetupStep]) -> Vec<(String, SetupStatus)> {
    steps
        .iter()
        .filter(|s| matches!(s.op, SetupOp::Label(_)))
        .map(|s| (s.what.clone(), s.status.clone()))
        .collect()
}

#[tokio::test]
async fn plane_labels_are_surveyed_with_gets_and_created_by_apply_once() {
    let mut fake = FakePlane::new(PLANE_TOKEN, "acme", PROJECT).with_canonical_states();
    fake.add_label("bug");
    let (server, plane) = plane_for(fake).await;
    let spec = SetupSpec {
        labels: vec!["bug".into(), "sandbox-infra".into()],
        ..SetupSpec::default()
    };
    let steps = plane.survey_setup(&spec).await.expect("survey");
    only_gets(&server.requests());
    assert_eq!(
        label_steps(&steps),
        [
            ("label bug".to_owned(), SetupStatus::Present),
            ("label sandbox-infra".to_owned(), SetupStatus::Missing),
        ]
    );
    for step in steps.iter().filter(|s| s.is_missing()) {
        plane.apply_setup(step, &spec).await.expect("apply");
    }
    let posts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(posts[0].path.ends_with("/labels/"), "{posts:?}");
    let body: serde_json::Value = serde_json::from_slice(&posts[0].body).expect("a JSON body");
    assert_eq!(body["name"], "sandbox-infra");
    let names: Vec<String> = server
        .with(|f| f.labels.iter().map(|l| l.name.clone()).collect())
        .await;
    assert_eq!(names, ["bug", "sandbox-infra"]);
    let again = plane.survey_setup(&spec).await.expect("survey");
    assert!(
        again.iter().all(|s| s.status == SetupStatus::Present),
        "{again:?}"
    );
    // Without labels asked for, none are surveyed.
    let plain = plane
        .survey_setup(&SetupSpec::default())
        .await
        .expect("survey");
    assert!(label_steps(&plain).is_empty());
}

const TOKEN: &str = "gitea_gaps_token_4455";
const HOOK: &str = "https://orch.example.com/hooks/gitea";

async fn gitea_with_hooks(hooks: Vec<serde_json::Value>) -> Vec<SetupStep> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fake = FakeGitea::new(TOKEN, "acme", "billing", &dir.path().join("billing.git"))
        .await
        .expect("fake");
    fake.hooks = hooks;
    let server = FakeServer::start(fake).await.expect("serve");
    let gitea = Gitea::new(GiteaConfig {
        base_url: server.base_url().to_owned(),
        owner: "acme".into(),
        repo: "billing".into(),
        token: Token::new(TOKEN).expect("token"),
        retry: quick_retry(1),
    })
    .expect("gitea");
    let spec = SetupSpec {
        webhook: Some(WebhookSpec {
            url: HOOK.into(),
            secret: None,
        }),
        ..SetupSpec::default()
    };
    let steps = gitea.survey_setup(&spec).await.expect("survey");
    only_gets(&server.requests());
    steps
}

fn hook(url: &str, active: bool, events: &[&str]) -> serde_json::Value {
    json!({ "type": "gitea", "active": active, "events": events,
            "config": { "url": url, "content_type": "json" } })
}

fn webhook_of(steps: &[SetupStep]) -> SetupStep {
    steps
        .iter()
        .find(|s| s.op == SetupOp::Webhook)
        .cloned()
        .expect("a webhook step")
}

#[tokio::test]
async fn a_webhook_that_would_deliver_nothing_to_orch_is_a_gap_with_its_fix() {
    let good =
        webhook_of(&gitea_with_hooks(vec![hook(HOOK, true, &["issues", "issue_label"])]).await);
    assert_eq!(good.status, SetupStatus::Present);

    let inactive = webhook_of(&gitea_with_hooks(vec![hook(HOOK, false, &["issues"])]).await);
    assert!(
        matches!(&inactive.status, SetupStatus::Refused(why) if why.contains("inactive") && why.contains("Webhooks")),
        "{inactive:?}"
    );
    let no_issues = webhook_of(&gitea_with_hooks(vec![hook(HOOK, true, &["push"])]).await);
    assert!(
        matches!(&no_issues.status, SetupStatus::Refused(why) if why.contains("sends push but not issue events")),
        "{no_issues:?}"
    );
    let elsewhere = webhook_of(
        &gitea_with_hooks(vec![hook(
            "https://old-orch.example.com/hooks/gitea",
            true,
            &["issues"],
        )])
        .await,
    );
    assert_eq!(elsewhere.status, SetupStatus::Missing);
    assert!(
        elsewhere
            .what
            .contains("https://old-orch.example.com/hooks/gitea sends elsewhere"),
        "{elsewhere:?}"
    );
}
