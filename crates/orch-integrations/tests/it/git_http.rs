//! git over smart HTTP against the fake forges: the clone URL is an `http://` loopback URL, the
//! fake refuses a push or fetch without the credentials the real forge requires (GitHub: Basic
//! `x-access-token:<token>`; Gitea: `Authorization: token <t>` or the token in Basic), and orch's
//! pushes and fetches carry exactly those.

use std::path::Path;

use base64::Engine as _;
use orch_integrations::Forge;
use orch_integrations::fake::FakeServer;

use crate::github::{git, work_repo};

/// `git push` of `branch` from `work` to `url` with `header` (if any) as `http.extraHeader`;
/// whether git succeeded.
async fn push_with(work: &Path, url: &str, branch: &str, header: Option<&str>) -> bool {
    let mut command = tokio::process::Command::new("git");
    if let Some(header) = header {
        command.arg("-c").arg(format!("http.extraHeader={header}"));
    }
    command
        .args(["push", "-q", "-f", url, branch])
        .current_dir(work)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .await
        .expect("git")
        .status
        .success()
}

fn basic(user: &str, password: &str) -> String {
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {pair}")
}

async fn clone_url<A: orch_integrations::fake::FakeApi>(server: &FakeServer<A>) -> String {
    let url = format!("{}/acme/web.git", server.base_url());
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    url
}

#[tokio::test]
async fn gitea_takes_its_token_in_a_token_header_or_basic_credentials_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _gitea) = crate::gitea::setup(dir.path()).await;
    let (_repo, _) = work_repo(dir.path(), "orch/WEB-1").await;
    let work = dir.path().join("work");
    let url = clone_url(&server).await;
    let token = crate::gitea::TOKEN;

    for refused in [
        None,
        Some("Authorization: token wrong".to_owned()),
        Some(format!("Authorization: Bearer {token}x")),
        Some(basic("acme", "wrong")),
    ] {
        assert!(
            !push_with(&work, &url, "orch/WEB-1", refused.as_deref()).await,
            "{refused:?} must be refused"
        );
    }
    assert!(
        !server.git_requests().is_empty(),
        "the refusals went through the fake's git endpoint"
    );
    for accepted in [
        format!("Authorization: token {token}"),
        basic("acme", token),
        basic(token, ""),
    ] {
        assert!(
            push_with(&work, &url, "orch/WEB-1", Some(&accepted)).await,
            "{accepted} must be accepted"
        );
    }
}

#[tokio::test]
async fn github_takes_its_token_only_as_x_access_token_basic_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, _github) = crate::github::setup(dir.path()).await;
    let (_repo, _) = work_repo(dir.path(), "orch/WEB-1").await;
    let work = dir.path().join("work");
    let url = clone_url(&server).await;
    let token = crate::github::TOKEN;

    for refused in [
        None,
        Some(format!("Authorization: Bearer {token}")),
        Some(format!("Authorization: token {token}")),
        Some(basic("x-access-token", "wrong")),
        Some(basic("acme", token)),
    ] {
        assert!(
            !push_with(&work, &url, "orch/WEB-1", refused.as_deref()).await,
            "{refused:?} must be refused"
        );
    }
    assert!(
        push_with(
            &work,
            &url,
            "orch/WEB-1",
            Some(&basic("x-access-token", token))
        )
        .await
    );
}

/// orch's push and fetch go over HTTP and carry the credentials the forge takes.
async fn orch_pushes_and_fetches_over_http<F: Forge, A: orch_integrations::fake::FakeApi>(
    dir: &Path,
    forge: &F,
    server: &FakeServer<A>,
    expected_auth: &str,
) {
    let (repo, sha) = work_repo(dir, "orch/WEB-7").await;
    forge.push_branch(&repo, "orch/WEB-7").await.expect("push");
    let bare = dir.join("remote.git");
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/orch/WEB-7"]).await,
        sha
    );
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).expect("mkdir");
    git(&other_dir, &["init", "-q", "-b", "main"]).await;
    let other = orch_git::Repo::open(&other_dir).await.expect("open");
    assert_eq!(
        forge
            .fetch_branch(&other, "orch/WEB-7")
            .await
            .expect("fetch"),
        sha
    );
    let requests = server.git_requests();
    let services: Vec<&str> = requests
        .iter()
        .filter_map(|r| r.path.rsplit_once("service=").map(|(_, s)| s))
        .collect();
    assert!(
        services.contains(&"git-receive-pack") && services.contains(&"git-upload-pack"),
        "a push and a fetch over HTTP: {services:?}"
    );
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(expected_auth),
            "{}",
            request.path
        );
    }
}

#[tokio::test]
async fn gitea_pushes_and_fetches_over_http_with_the_token_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = crate::gitea::setup(dir.path()).await;
    let auth = format!("token {}", crate::gitea::TOKEN);
    orch_pushes_and_fetches_over_http(dir.path(), &gitea, &server, &auth).await;
}

#[tokio::test]
async fn github_pushes_and_fetches_over_http_as_x_access_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = crate::github::setup(dir.path()).await;
    let auth = basic("x-access-token", crate::github::TOKEN);
    let auth = auth.trim_start_matches("Authorization: ");
    orch_pushes_and_fetches_over_http(dir.path(), &github, &server, auth).await;
}
