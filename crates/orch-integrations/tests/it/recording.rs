//! What the fakes record and when they fail on purpose: every request with its headers and
//! body (so a test asserts what a client sent), and an injected fault answered only after the
//! credentials were checked, as a real server does.

use orch_integrations::fake::Fault;
use orch_integrations::{Forge, Gitea, GiteaConfig, IntegrationError, MergeStyle, Token, Tracker};
use serde_json::json;

use crate::github::work_repo;

#[tokio::test]
async fn a_refused_token_is_answered_401_and_leaves_the_fault_for_the_next_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = crate::gitea::setup(dir.path()).await;
    let wrong = Gitea::new(GiteaConfig {
        base_url: server.base_url().to_owned(),
        owner: "acme".into(),
        repo: "web".into(),
        token: Token::new("not-the-token").expect("token"),
        retry: crate::quick_retry(1),
    })
    .expect("gitea");
    // Two: the adapter tries twice.
    server.fail_next([Fault::Status(503), Fault::Status(503)]);
    let refused = wrong.list_items("Ready").await;
    assert!(
        matches!(refused, Err(IntegrationError::Unauthorized { .. })),
        "the credentials are checked before anything else: {refused:?}"
    );
    let faulted = gitea.list_items("Ready").await;
    assert!(
        matches!(faulted, Err(IntegrationError::BadResponse { .. })),
        "the fault is still queued for an authorized request: {faulted:?}"
    );
}

#[tokio::test]
async fn requests_are_recorded_with_their_headers_and_bodies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = crate::gitea::setup(dir.path()).await;
    let (repo, sha) = work_repo(dir.path(), "orch/WEB-1").await;
    gitea.push_branch(&repo, "orch/WEB-1").await.expect("push");
    let pr = gitea
        .open_pull_request("orch/WEB-1", "WEB-1: t", "the body")
        .await
        .expect("pr");
    gitea
        .merge_pull_request(pr.number, &sha, MergeStyle::Merge, "Merge WEB-1")
        .await
        .expect("merge");
    let open = &server.requests_to("POST", "/api/v1/repos/acme/web/pulls")[0];
    assert_eq!(
        open.json(),
        Some(
            json!({ "head": "orch/WEB-1", "base": "main", "title": "WEB-1: t", "body": "the body" })
        )
    );
    assert_eq!(
        open.header("authorization"),
        Some(format!("token {}", crate::gitea::TOKEN).as_str())
    );
    assert_eq!(open.header("content-type"), Some("application/json"));
    let merge = &server.requests_to(
        "POST",
        &format!("/api/v1/repos/acme/web/pulls/{}/merge", pr.number),
    )[0];
    let body = merge.json().expect("a JSON body");
    assert_eq!(body["head_commit_id"], json!(sha), "{body}");
    assert_eq!(body["Do"], json!("merge"), "{body}");
}

#[tokio::test]
async fn github_merges_send_the_head_sha_and_the_api_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = crate::github::setup(dir.path()).await;
    let (repo, sha) = work_repo(dir.path(), "orch/WEB-1").await;
    github.push_branch(&repo, "orch/WEB-1").await.expect("push");
    let pr = github
        .open_pull_request("orch/WEB-1", "WEB-1: t", "b")
        .await
        .expect("pr");
    github
        .merge_pull_request(pr.number, &sha, MergeStyle::Merge, "Merge WEB-1")
        .await
        .expect("merge");
    let merge =
        &server.requests_to("PUT", &format!("/repos/acme/web/pulls/{}/merge", pr.number))[0];
    assert_eq!(
        merge.json(),
        Some(json!({ "merge_method": "merge", "commit_title": "Merge WEB-1", "sha": sha }))
    );
    assert_eq!(merge.header("x-github-api-version"), Some("2022-11-28"));
    assert_eq!(merge.header("accept"), Some("application/vnd.github+json"));
}
