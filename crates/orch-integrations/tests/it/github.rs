use std::path::Path;

use orch_integrations::fake::gitea::GiteaStatus;
use orch_integrations::fake::github::FakeGitHub;
use orch_integrations::fake::{FakeServer, Fault};
use orch_integrations::{
    CommitState, CommitStatus, Forge, GitHub, GitHubConfig, IntegrationError, MergeStyle, Token,
    Tracker,
};

use crate::quick_retry;

pub(crate) const TOKEN: &str = "github_pat_test_1234";

pub(crate) async fn setup(dir: &Path) -> (FakeServer<FakeGitHub>, GitHub) {
    let fake = FakeGitHub::new(TOKEN, "acme", "web", &dir.join("remote.git"))
        .await
        .expect("fake github");
    let server = FakeServer::start(fake).await.expect("serve");
    let github = GitHub::new(GitHubConfig {
        base_url: server.base_url().to_owned(),
        owner: "acme".into(),
        repo: "web".into(),
        token: Token::new(TOKEN).expect("token"),
        retry: quick_retry(2),
    })
    .expect("github");
    (server, github)
}

pub(crate) async fn git(dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@t")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@t")
        .output()
        .await
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A local repository with `main` pushed to the fake's bare repository and `branch` one commit
/// ahead of it; returns the repository and the branch's head.
pub(crate) async fn work_repo(dir: &Path, branch: &str) -> (orch_git::Repo, String) {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]).await;
    std::fs::write(work.join("a.txt"), "a").expect("write");
    git(&work, &["add", "."]).await;
    git(&work, &["commit", "-qm", "first"]).await;
    let remote = dir.join("remote.git").display().to_string();
    git(&work, &["push", "-q", &remote, "main"]).await;
    git(&work, &["switch", "-qc", branch]).await;
    std::fs::write(work.join("b.txt"), "b").expect("write");
    git(&work, &["add", "."]).await;
    git(&work, &["commit", "-qm", "change"]).await;
    let sha = git(&work, &["rev-parse", "HEAD"]).await;
    git(&work, &["switch", "-q", "main"]).await;
    (orch_git::Repo::open(&work).await.expect("open"), sha)
}

#[tokio::test]
async fn state_labels_are_created_listed_and_kept_exclusive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = setup(dir.path()).await;
    github.ensure_states().await.expect("ensure");
    let labels = server.with(|f| f.state.labels.len()).await;
    assert_eq!(labels, orch_core::states::CANONICAL_STATES.len());
    github.ensure_states().await.expect("again");
    assert_eq!(server.with(|f| f.state.labels.len()).await, labels);
    assert_eq!(
        server.requests_to("POST", "/repos/acme/web/labels").len(),
        labels,
        "each label is created once, at GitHub's path"
    );

    let n = server
        .with(|f| {
            f.state.add_label("bug");
            f.state
                .add_issue("Fix it", "the body", &["bug", "state/Ready"])
        })
        .await;
    let ready = github.list_items("Ready").await.expect("list");
    assert_eq!(ready.len(), 1);
    assert_eq!(
        (ready[0].id.as_str(), ready[0].state.as_deref()),
        ("1", Some("Ready"))
    );
    assert!(
        server
            .requests_to("GET", "/repos/acme/web/issues?")
            .iter()
            .all(|r| r.path.contains("per_page=50")),
        "GitHub pages by per_page"
    );

    github
        .set_state(&n.to_string(), "Development")
        .await
        .expect("set");
    let names = server.with(|f| f.state.label_names(n)).await;
    assert_eq!(
        names,
        ["bug", "state/Development"],
        "the old state label is removed, other labels kept"
    );
    assert_eq!(
        github
            .get_item(&n.to_string())
            .await
            .expect("get")
            .state
            .as_deref(),
        Some("Development")
    );
    github
        .add_comment(&n.to_string(), "analysis: PASS")
        .await
        .expect("comment");
    assert_eq!(
        server.with(|f| f.state.comments.clone()).await,
        [(n, "analysis: PASS".to_owned())]
    );
}

#[tokio::test]
async fn a_state_without_its_label_is_not_created_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = setup(dir.path()).await;
    let n = server.with(|f| f.state.add_issue("x", "", &[])).await;
    let err = github
        .set_state(&n.to_string(), "Ready")
        .await
        .expect_err("no label");
    assert!(err.to_string().contains("label `state/Ready`"), "{err}");
    assert!(server.with(|f| f.state.labels.is_empty()).await);
}

#[tokio::test]
async fn a_branch_is_pushed_reviewed_marked_and_really_merged_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = setup(dir.path()).await;
    let (repo, sha) = work_repo(dir.path(), "orch/WEB-1").await;

    let refused = github.push_branch(&repo, "main").await;
    assert!(
        matches!(refused, Err(IntegrationError::Refused(_))),
        "{refused:?}"
    );
    github.push_branch(&repo, "orch/WEB-1").await.expect("push");
    github
        .push_branch(&repo, "orch/WEB-1")
        .await
        .expect("push again");
    let bare = dir.path().join("remote.git");
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/orch/WEB-1"]).await,
        sha
    );

    let pr = github
        .open_pull_request("orch/WEB-1", "WEB-1: change", "body")
        .await
        .expect("pr");
    let again = github
        .open_pull_request("orch/WEB-1", "WEB-1: change", "body")
        .await
        .expect("pr");
    assert_eq!(pr.number, again.number, "found, not opened twice");
    assert!(
        pr.url.ends_with(&format!("/pull/{}", pr.number)),
        "{}",
        pr.url
    );
    assert_eq!(server.requests_to("POST", "/repos/acme/web/pulls").len(), 1);

    let status = CommitStatus {
        state: CommitState::Pending,
        context: "orch/review".into(),
        description: "reviewing".into(),
    };
    github
        .set_commit_status(&sha, &status)
        .await
        .expect("status");
    github
        .set_commit_status(&sha, &status)
        .await
        .expect("status again");
    assert_eq!(
        server.with(|f| f.state.statuses.clone()).await[0],
        GiteaStatus {
            sha: sha.clone(),
            state: "pending".into(),
            context: "orch/review".into(),
            description: "reviewing".into(),
            ..Default::default()
        }
    );
    assert_eq!(
        server
            .requests_to("POST", &format!("/repos/acme/web/statuses/{sha}"))
            .len(),
        2
    );

    github
        .merge_pull_request(pr.number, &sha, MergeStyle::Merge, "Merge WEB-1")
        .await
        .expect("merge");
    assert_eq!(
        server
            .requests_to("PUT", &format!("/repos/acme/web/pulls/{}/merge", pr.number))
            .len(),
        1
    );
    let main = git(&bare, &["rev-parse", "refs/heads/main"]).await;
    git(&bare, &["merge-base", "--is-ancestor", &sha, &main]).await;
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s", "main"]).await,
        "Merge WEB-1"
    );
    github
        .merge_pull_request(pr.number, &sha, MergeStyle::Merge, "Merge WEB-1")
        .await
        .expect("idempotent");
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]).await, main);
    assert_eq!(
        server
            .requests_to("PUT", &format!("/repos/acme/web/pulls/{}/merge", pr.number))
            .len(),
        1,
        "a merged pull request is not merged again"
    );
}

#[tokio::test]
async fn a_stopped_items_pull_request_is_closed_not_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = setup(dir.path()).await;
    let (repo, sha) = work_repo(dir.path(), "orch/WEB-2").await;
    github.push_branch(&repo, "orch/WEB-2").await.expect("push");
    let pr = github
        .open_pull_request("orch/WEB-2", "t", "b")
        .await
        .expect("pr");
    github
        .close_pull_request("orch/WEB-2")
        .await
        .expect("close");
    github
        .close_pull_request("orch/WEB-2")
        .await
        .expect("none open is fine");
    let closed = server
        .with(|g| {
            g.state
                .pulls
                .iter()
                .any(|p| p.number == pr.number && p.closed && !p.merged)
        })
        .await;
    assert!(closed);
    let merge = github
        .merge_pull_request(pr.number, &sha, MergeStyle::Merge, "m")
        .await;
    assert!(
        merge.is_err(),
        "a closed pull request does not merge: {merge:?}"
    );
}

#[tokio::test]
async fn a_missing_permission_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = setup(dir.path()).await;
    let n = server
        .with(|f| {
            f.denied = vec!["issues".into()];
            f.state.add_issue("x", "", &[])
        })
        .await;
    let err = github
        .add_comment(&n.to_string(), "hi")
        .await
        .expect_err("403");
    match &err {
        IntegrationError::Unauthorized { scope, .. } => {
            assert_eq!(scope.as_deref(), Some("issues=write"));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("issues=write"), "{err}");
    assert!(!err.to_string().contains(TOKEN));

    server.with(|f| f.denied = vec!["statuses".into()]).await;
    let status = CommitStatus {
        state: CommitState::Success,
        context: "orch/qa".into(),
        description: String::new(),
    };
    let err = github
        .set_commit_status("0123456789abcdef0123456789abcdef01234567", &status)
        .await
        .expect_err("403");
    assert!(err.to_string().contains("statuses=write"), "{err}");
}

#[tokio::test]
async fn a_rate_limit_on_403_is_waited_out_then_the_call_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = setup(dir.path()).await;
    server.with(|f| f.state.add_issue("x", "", &[])).await;
    server.fail_next([Fault::RateLimitedForbidden { reset_in_secs: 0 }]);
    let item = github.get_item("1").await.expect("retried after the reset");
    assert_eq!(item.key, "#1");
    assert_eq!(
        server.requests_to("GET", "/repos/acme/web/issues/1").len(),
        2
    );

    server.fail_next([
        Fault::RateLimitedForbidden { reset_in_secs: 0 },
        Fault::RateLimitedForbidden { reset_in_secs: 0 },
    ]);
    let err = github.get_item("1").await.expect_err("still limited");
    assert!(
        matches!(err, IntegrationError::RateLimited { .. }),
        "a 403 with no requests left is a rate limit, not a bad token: {err:?}"
    );
}

#[tokio::test]
async fn the_token_version_and_media_type_headers_are_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = setup(dir.path()).await;
    // The fake refuses requests without `X-GitHub-Api-Version`, GitHub's media type in
    // `Accept`, or Bearer auth with the right token.
    github.list_items("Ready").await.expect("accepted");
    let wrong = GitHub::new(GitHubConfig {
        base_url: server.base_url().to_owned(),
        owner: "acme".into(),
        repo: "web".into(),
        token: Token::new("not-the-token").expect("token"),
        retry: quick_retry(1),
    })
    .expect("github");
    let err = wrong.list_items("Ready").await.expect_err("401");
    assert!(
        matches!(err, IntegrationError::Unauthorized { .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("not-the-token"));
}

#[tokio::test]
async fn a_pushed_branch_is_fetched_into_another_clone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = setup(dir.path()).await;
    let (repo, sha) = work_repo(dir.path(), "orch/WEB-3").await;
    github.push_branch(&repo, "orch/WEB-3").await.expect("push");
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).expect("mkdir");
    git(&other, &["init", "-q", "-b", "main"]).await;
    let other = orch_git::Repo::open(&other).await.expect("open");
    let before = server.requests_to("GET", "/repos/acme/web").len();
    let fetched = github
        .fetch_branch(&other, "orch/WEB-3")
        .await
        .expect("fetch");
    assert_eq!(fetched, sha);
    assert!(other.has_commit(&sha).await.expect("look"));
    assert_eq!(
        server.requests_to("GET", "/repos/acme/web").len(),
        before + 1,
        "the clone URL comes from the repository object"
    );
    let missing = github.fetch_branch(&other, "orch/WEB-404").await;
    assert!(
        matches!(missing, Err(IntegrationError::Git(_))),
        "{missing:?}"
    );
}
