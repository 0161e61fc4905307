//! Onboarding through the ports: surveys send GET requests only; apply creates what is missing
//! (a repository, the first push into it, state labels or states, a webhook) and nothing twice;
//! the first push never goes into a repository orch did not create empty.

use std::path::{Path, PathBuf};

use orch_core::states::CANONICAL_STATES;
use orch_integrations::fake::gitea::FakeGitea;
use orch_integrations::fake::plane::FakePlane;
use orch_integrations::fake::{FakeServer, Recorded};
use orch_integrations::{
    Forge, Gitea, GiteaConfig, Plane, PlaneConfig, SetupOp, SetupSpec, SetupStatus, SetupStep,
    Token, Tracker, WebhookSpec,
};

use crate::quick_retry;

const TOKEN: &str = "gitea_setup_token_9012";
const SECRET: &str = "global-gitea-webhook-secret";
const DESCRIPTION: &str = "orch project billing";
const HOOK: &str = "http://127.0.0.1:8500/hooks/gitea";

async fn gitea_for(fake: FakeGitea) -> (FakeServer<FakeGitea>, Gitea) {
    let server = FakeServer::start(fake).await.expect("serve");
    let gitea = Gitea::new(GiteaConfig {
        base_url: server.base_url().to_owned(),
        owner: "acme".into(),
        repo: "billing".into(),
        token: Token::new(TOKEN).expect("token"),
        retry: quick_retry(2),
    })
    .expect("gitea");
    (server, gitea)
}

/// A local repository with one commit on `main`; returns its path and head.
async fn local_repo(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("local");
    let repo = orch_git::Repo::init(&path, "main").await.expect("init");
    std::fs::write(path.join("README.md"), "billing\n").expect("write");
    repo.commit_all(&path, "first").await.expect("commit");
    let head = repo
        .rev_parse("main")
        .await
        .expect("rev-parse")
        .expect("head");
    (path, head)
}

fn spec(local: &Path) -> SetupSpec {
    SetupSpec {
        webhook: Some(WebhookSpec {
            url: HOOK.into(),
            secret: Token::new(SECRET),
        }),
        local: Some((local.to_owned(), "main".into())),
        description: DESCRIPTION.into(),
        labels: Vec::new(),
    }
}

fn only_gets(requests: &[Recorded]) {
    let other: Vec<_> = requests.iter().filter(|r| r.method != "GET").collect();
    assert!(other.is_empty(), "a survey sent {other:?}");
}

fn statuses(steps: &[SetupStep]) -> Vec<(SetupOp, SetupStatus)> {
    steps.iter().map(|s| (s.op, s.status.clone())).collect()
}

async fn bare_head(bare: &Path) -> Option<String> {
    orch_git::Repo::open(bare)
        .await
        .ok()?
        .rev_parse("refs/heads/main")
        .await
        .ok()?
}

#[tokio::test]
async fn a_new_gitea_repository_is_created_pushed_labelled_and_hooked_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (local, head) = local_repo(dir.path()).await;
    let bare = dir.path().join("billing.git");
    let fake = FakeGitea::absent(TOKEN, "acme", "billing", &bare)
        .await
        .expect("fake");
    let (server, gitea) = gitea_for(fake).await;
    let spec = spec(&local);

    let forge = gitea.survey_repository(&spec).await.expect("survey");
    let tracker = gitea.survey_setup(&spec).await.expect("survey");
    only_gets(&server.requests());
    assert_eq!(
        statuses(&forge),
        [
            (SetupOp::Repository, SetupStatus::Missing),
            (SetupOp::FirstPush, SetupStatus::Missing)
        ]
    );
    assert_eq!(forge[0].calls, ["POST /api/v1/user/repos"]);
    assert_eq!(tracker.len(), CANONICAL_STATES.len() + 1);
    assert!(tracker.iter().all(SetupStep::is_missing), "{tracker:?}");

    for step in &forge {
        gitea.apply_repository(step, &spec).await.expect("apply");
    }
    assert_eq!(bare_head(&bare).await.as_deref(), Some(head.as_str()));
    assert_eq!(
        server.with(|f| f.description.clone()).await,
        DESCRIPTION,
        "the repository says orch made it"
    );
    for step in gitea.survey_setup(&spec).await.expect("survey") {
        gitea.apply_setup(&step, &spec).await.expect("apply");
    }
    let (labels, hooks) = server.with(|f| (f.labels.clone(), f.hooks.clone())).await;
    assert_eq!(labels.len(), CANONICAL_STATES.len());
    assert!(labels.iter().any(|(_, n)| n == "state/STOP"));
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["config"]["url"], HOOK);
    assert_eq!(
        hooks[0]["config"]["secret"], SECRET,
        "the global secret is reused"
    );

    // A second round finds everything and sends nothing but GETs.
    let before = server.requests().len();
    let forge = gitea.survey_repository(&spec).await.expect("survey");
    let tracker = gitea.survey_setup(&spec).await.expect("survey");
    only_gets(&server.requests()[before..]);
    assert!(
        forge
            .iter()
            .chain(&tracker)
            .all(|s| s.status == SetupStatus::Present),
        "{forge:?} {tracker:?}"
    );
}

#[tokio::test]
async fn a_repository_with_other_history_is_never_pushed_into() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (local, _) = local_repo(dir.path()).await;
    let bare = dir.path().join("billing.git");
    let fake = FakeGitea::new(TOKEN, "acme", "billing", &bare)
        .await
        .expect("fake");
    // Someone else's history on the host's main.
    let other = orch_git::Repo::init(&dir.path().join("other"), "main")
        .await
        .expect("init");
    std::fs::write(dir.path().join("other/x"), "x").expect("write");
    other
        .commit_all(other.path(), "theirs")
        .await
        .expect("commit");
    let branch = other.rev_parse("main").await.expect("rev").expect("head");
    let pushed = tokio::process::Command::new("git")
        .args(["push", "-q"])
        .arg(&bare)
        .arg("main:main")
        .current_dir(other.path())
        .status()
        .await
        .expect("git");
    assert!(pushed.success());
    let (_server, gitea) = gitea_for(fake).await;
    let spec = spec(&local);

    let steps = gitea.survey_repository(&spec).await.expect("survey");
    assert_eq!(steps[0].status, SetupStatus::Present);
    let SetupStatus::Refused(why) = &steps[1].status else {
        panic!("not refused: {steps:?}");
    };
    assert!(why.contains("not empty"), "{why}");
    let forced = gitea
        .apply_repository(&SetupStep { ..steps[1].clone() }, &spec)
        .await;
    assert!(forced.is_err(), "apply refuses too: {forced:?}");
    assert_eq!(bare_head(&bare).await, Some(branch), "untouched");

    // A clone of that history is onboarded as it is: nothing to push.
    let (_server, gitea) = gitea_for(
        FakeGitea::new(TOKEN, "acme", "billing", &dir.path().join("second.git"))
            .await
            .expect("fake"),
    )
    .await;
    let empty_not_ours = gitea.survey_repository(&spec).await.expect("survey");
    assert!(
        matches!(&empty_not_ours[1].status, SetupStatus::Manual(m) if m.contains("did not create it")),
        "an empty repository orch did not create is left to a person: {empty_not_ours:?}"
    );
    let clone_spec = SetupSpec {
        local: Some((other.path().to_owned(), "main".into())),
        ..spec.clone()
    };
    let (_server, gitea) = gitea_for(
        FakeGitea::new(TOKEN, "acme", "billing", &bare)
            .await
            .expect("fake"),
    )
    .await;
    let steps = gitea.survey_repository(&clone_spec).await.expect("survey");
    assert_eq!(steps[1].status, SetupStatus::Present, "{steps:?}");
}

#[tokio::test]
async fn a_gitea_that_refuses_a_label_fails_that_step_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fake = FakeGitea::new(TOKEN, "acme", "billing", &dir.path().join("b.git"))
        .await
        .expect("fake");
    fake.refuse_label = Some("state/STOP".into());
    let (server, gitea) = gitea_for(fake).await;
    let spec = SetupSpec::default();
    let mut failed = Vec::new();
    for step in gitea.survey_setup(&spec).await.expect("survey") {
        if let Err(e) = gitea.apply_setup(&step, &spec).await {
            failed.push((step.what, e.to_string()));
        }
    }
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].0.contains("state/STOP"), "{failed:?}");
    assert!(
        failed[0].1.contains("422"),
        "the host's answer is named: {failed:?}"
    );
    assert_eq!(
        server.with(|f| f.labels.len()).await,
        CANONICAL_STATES.len() - 1
    );
}

#[tokio::test]
async fn plane_states_are_checked_with_their_groups_and_the_webhook_is_a_manual_step() {
    const PLANE_TOKEN: &str = "plane_setup_token_3456";
    const PROJECT: &str = "7c1f0000-0000-4000-8000-0000000000bb";
    let mut fake = FakePlane::new(PLANE_TOKEN, "acme", PROJECT);
    fake.add_state("Backlog", "backlog");
    fake.add_state("STOP", "started");
    fake.refuse_state = Some("Needs Info".into());
    let server = FakeServer::start(fake).await.expect("serve");
    let plane = Plane::new(PlaneConfig {
        base_url: server.base_url().to_owned(),
        workspace: "acme".into(),
        project_id: PROJECT.into(),
        token: Token::new(PLANE_TOKEN).expect("token"),
        retry: quick_retry(1),
    })
    .expect("plane");
    let spec = SetupSpec {
        webhook: Some(WebhookSpec {
            url: "https://orch.example.com/hooks/plane".into(),
            secret: None,
        }),
        ..SetupSpec::default()
    };
    let steps = plane.survey_setup(&spec).await.expect("survey");
    only_gets(&server.requests());
    let of = |name: &'static str| {
        steps
            .iter()
            .find(|s| s.op == SetupOp::State(name))
            .map(|s| s.status.clone())
    };
    assert_eq!(of("Backlog"), Some(SetupStatus::Present));
    assert!(
        matches!(of("STOP"), Some(SetupStatus::Refused(m)) if m.contains("not `cancelled`") && m.contains("Project settings → States")),
        "a state in the wrong group is a gap with the fix named, not edited: {:?}",
        of("STOP")
    );
    assert_eq!(of("Ready"), Some(SetupStatus::Missing));
    let webhook = steps.last().expect("webhook step");
    assert!(
        matches!(&webhook.status, SetupStatus::Manual(m) if m.contains("ORCH_PLANE_WEBHOOK_SECRET")),
        "{webhook:?}"
    );

    let mut refused = Vec::new();
    for step in steps.iter().filter(|s| s.is_missing()) {
        if plane.apply_setup(step, &spec).await.is_err() {
            refused.push(step.what.clone());
        }
    }
    assert_eq!(refused, ["state Needs Info (started)"]);
    let groups = server
        .with(|f| {
            f.states
                .iter()
                .map(|s| (s.name.clone(), s.group.clone()))
                .collect::<Vec<_>>()
        })
        .await;
    assert!(groups.contains(&("Ready".into(), "unstarted".into())));
    assert!(
        groups.contains(&("STOP".into(), "started".into())),
        "orch never edits an existing state"
    );
    assert_eq!(groups.len(), CANONICAL_STATES.len() - 1);
}

#[tokio::test]
async fn a_new_github_repository_is_created_pushed_labelled_and_hooked_once() {
    use orch_integrations::fake::github::FakeGitHub;
    use orch_integrations::{GitHub, GitHubConfig};
    const GITHUB_TOKEN: &str = "github_setup_token_7788";
    let dir = tempfile::tempdir().expect("tempdir");
    let (local, head) = local_repo(dir.path()).await;
    let bare = dir.path().join("billing.git");
    let mut fake = FakeGitHub::absent(GITHUB_TOKEN, "acme", "billing", &bare)
        .await
        .expect("fake");
    fake.state.login = "someone".into();
    let server = FakeServer::start(fake).await.expect("serve");
    let github = GitHub::new(GitHubConfig {
        base_url: server.base_url().to_owned(),
        owner: "acme".into(),
        repo: "billing".into(),
        token: Token::new(GITHUB_TOKEN).expect("token"),
        retry: quick_retry(2),
    })
    .expect("github");
    let spec = SetupSpec {
        webhook: Some(WebhookSpec {
            url: "https://orch.example.com/hooks/github".into(),
            secret: Token::new(SECRET),
        }),
        ..spec(&local)
    };

    let forge = github.survey_repository(&spec).await.expect("survey");
    only_gets(&server.requests());
    assert_eq!(
        forge[0].calls,
        ["POST /orgs/acme/repos"],
        "an owner that is not the token's user is an organisation"
    );
    for step in &forge {
        github.apply_repository(step, &spec).await.expect("apply");
    }
    assert_eq!(bare_head(&bare).await.as_deref(), Some(head.as_str()));
    for step in github.survey_setup(&spec).await.expect("survey") {
        github.apply_setup(&step, &spec).await.expect("apply");
    }
    let hooks = server.with(|f| f.state.hooks.clone()).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["name"], "web");
    assert_eq!(hooks[0]["config"]["secret"], SECRET);

    let before = server.requests().len();
    let all: Vec<SetupStep> = github
        .survey_repository(&spec)
        .await
        .expect("survey")
        .into_iter()
        .chain(github.survey_setup(&spec).await.expect("survey"))
        .collect();
    only_gets(&server.requests()[before..]);
    assert!(
        all.iter().all(|s| s.status == SetupStatus::Present),
        "{all:?}"
    );
}
