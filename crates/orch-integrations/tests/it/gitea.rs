use std::path::Path;

use orch_integrations::fake::FakeServer;
use orch_integrations::fake::gitea::{FakeGitea, GiteaStatus};
use orch_integrations::{
    CommitState, CommitStatus, Forge, Gitea, GiteaConfig, IntegrationError, MergeStyle, Token,
    Tracker,
};

use crate::quick_retry;

pub(crate) const TOKEN: &str = "gitea_test_token_5678";

pub(crate) async fn setup(dir: &Path) -> (FakeServer<FakeGitea>, Gitea) {
    let fake = FakeGitea::new(TOKEN, "acme", "web", &dir.join("remote.git"))
        .await
        .expect("fake gitea");
    let server = FakeServer::start(fake).await.expect("serve");
    let gitea = Gitea::new(GiteaConfig {
        base_url: server.base_url().to_owned(),
        owner: "acme".into(),
        repo: "web".into(),
        token: Token::new(TOKEN).expect("token"),
        retry: quick_retry(2),
    })
    .expect("gitea");
    (server, gitea)
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

#[tokio::test]
async fn state_labels_are_created_listed_and_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = setup(dir.path()).await;
    gitea.ensure_states().await.expect("ensure");
    let labels = server.with(|f| f.labels.len()).await;
    assert_eq!(labels, orch_core::states::CANONICAL_STATES.len());
    gitea.ensure_states().await.expect("again");
    assert_eq!(
        server.with(|f| f.labels.len()).await,
        labels,
        "nothing twice"
    );

    let n = server
        .with(|f| {
            f.add_label("bug");
            f.add_issue("Fix it", "the body", &["bug", "state/Ready"])
        })
        .await;
    let ready = gitea.list_items("Ready").await.expect("list");
    assert_eq!(ready.len(), 1);
    assert_eq!(
        (ready[0].id.as_str(), ready[0].state.as_deref()),
        ("1", Some("Ready"))
    );
    assert!(
        gitea
            .list_items("Development")
            .await
            .expect("list")
            .is_empty()
    );

    gitea
        .set_state(&n.to_string(), "Development")
        .await
        .expect("set");
    let names = server.with(|f| f.label_names(n)).await;
    assert_eq!(names, ["bug", "state/Development"], "other labels are kept");
    gitea
        .add_comment(&n.to_string(), "analysis: PASS")
        .await
        .expect("comment");
    assert_eq!(
        server.with(|f| f.comments.clone()).await,
        [(n, "analysis: PASS".to_owned())]
    );
}

#[tokio::test]
async fn a_branch_is_pushed_reviewed_marked_and_really_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = setup(dir.path()).await;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]).await;
    std::fs::write(work.join("a.txt"), "a").expect("write");
    git(&work, &["add", "."]).await;
    git(&work, &["commit", "-qm", "first"]).await;
    let remote = dir.path().join("remote.git").display().to_string();
    git(&work, &["push", "-q", &remote, "main"]).await;
    git(&work, &["switch", "-qc", "orch/WEB-1"]).await;
    std::fs::write(work.join("b.txt"), "b").expect("write");
    git(&work, &["add", "."]).await;
    git(&work, &["commit", "-qm", "change"]).await;
    let sha = git(&work, &["rev-parse", "HEAD"]).await;
    git(&work, &["switch", "-q", "main"]).await;
    let repo = orch_git::Repo::open(&work).await.expect("open");

    let refused = gitea.push_branch(&repo, "main").await;
    assert!(
        matches!(refused, Err(IntegrationError::Refused(_))),
        "{refused:?}"
    );
    gitea.push_branch(&repo, "orch/WEB-1").await.expect("push");
    let bare = dir.path().join("remote.git");
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/orch/WEB-1"]).await,
        sha
    );

    let pr = gitea
        .open_pull_request("orch/WEB-1", "WEB-1: change", "body")
        .await
        .expect("pr");
    let again = gitea
        .open_pull_request("orch/WEB-1", "WEB-1: change", "body")
        .await
        .expect("pr");
    assert_eq!(
        pr.number, again.number,
        "the open pull request is found, not opened twice"
    );
    assert_eq!(
        server
            .requests_to("POST", "/api/v1/repos/acme/web/pulls")
            .len(),
        1
    );

    // Closing needs an open pull request of the branch; closing none is fine.
    gitea
        .close_pull_request("orch/WEB-9")
        .await
        .expect("nothing to close");

    let status = CommitStatus {
        state: CommitState::Success,
        context: "orch/review".into(),
        description: "review passed".into(),
    };
    gitea
        .set_commit_status(&sha, &status)
        .await
        .expect("status");
    assert_eq!(
        server.with(|f| f.statuses.clone()).await,
        [GiteaStatus {
            sha: sha.clone(),
            state: "success".into(),
            context: "orch/review".into(),
            description: "review passed".into(),
            ..Default::default()
        }]
    );

    gitea
        .merge_pull_request(pr.number, &sha, MergeStyle::Merge, "Merge WEB-1")
        .await
        .expect("merge");
    let main = git(&bare, &["rev-parse", "refs/heads/main"]).await;
    git(&bare, &["merge-base", "--is-ancestor", &sha, &main]).await;
    assert_eq!(
        git(&bare, &["log", "-1", "--format=%s", "main"]).await,
        "Merge WEB-1"
    );
    gitea
        .merge_pull_request(pr.number, &sha, MergeStyle::Merge, "Merge WEB-1")
        .await
        .expect("idempotent");
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]).await, main);
}

#[tokio::test]
async fn a_stopped_items_pull_request_is_closed_not_merged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = setup(dir.path()).await;
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    git(&work, &["init", "-q", "-b", "main"]).await;
    std::fs::write(work.join("a.txt"), "a").expect("write");
    git(&work, &["add", "."]).await;
    git(&work, &["commit", "-qm", "first"]).await;
    git(&work, &["branch", "orch/WEB-2"]).await;
    // A pull request needs its base on the forge.
    let remote = dir.path().join("remote.git").display().to_string();
    git(&work, &["push", "-q", &remote, "main"]).await;
    let repo = orch_git::Repo::open(&work).await.expect("open");
    gitea.push_branch(&repo, "orch/WEB-2").await.expect("push");
    let pr = gitea
        .open_pull_request("orch/WEB-2", "t", "b")
        .await
        .expect("pr");
    gitea.close_pull_request("orch/WEB-2").await.expect("close");
    let closed = server
        .with(|g| {
            g.pulls
                .iter()
                .any(|p| p.number == pr.number && p.closed && !p.merged)
        })
        .await;
    assert!(closed);
    let head = git(dir.path(), &["-C", "work", "rev-parse", "orch/WEB-2"]).await;
    let merge = gitea
        .merge_pull_request(pr.number, &head, MergeStyle::Merge, "m")
        .await;
    assert!(
        merge.is_err(),
        "a closed pull request does not merge: {merge:?}"
    );
}

#[tokio::test]
async fn a_missing_scope_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = setup(dir.path()).await;
    let n = server
        .with(|f| {
            f.missing_scope = Some("write:issue".into());
            f.add_issue("x", "", &[])
        })
        .await;
    let err = gitea
        .add_comment(&n.to_string(), "hi")
        .await
        .expect_err("403");
    match &err {
        IntegrationError::Unauthorized { scope, .. } => {
            assert_eq!(scope.as_deref(), Some("write:issue"));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("missing scope `write:issue`"),
        "{err}"
    );
}

#[tokio::test]
async fn a_pushed_branch_is_fetched_into_another_clone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = setup(dir.path()).await;
    let (work, other) = (dir.path().join("work"), dir.path().join("other"));
    for d in [&work, &other] {
        std::fs::create_dir_all(d).expect("mkdir");
        git(d, &["init", "-q", "-b", "main"]).await;
    }
    git(&work, &["commit", "-q", "--allow-empty", "-m", "first"]).await;
    git(&work, &["switch", "-qc", "orch/WEB-3"]).await;
    git(&work, &["commit", "-q", "--allow-empty", "-m", "stage"]).await;
    let sha = git(&work, &["rev-parse", "HEAD"]).await;
    git(&work, &["switch", "-q", "main"]).await;
    let work = orch_git::Repo::open(&work).await.expect("open");
    gitea.push_branch(&work, "orch/WEB-3").await.expect("push");

    let other = orch_git::Repo::open(&other).await.expect("open");
    let before = server.requests_to("GET", "/api/v1/repos/acme/web").len();
    let fetched = gitea
        .fetch_branch(&other, "orch/WEB-3")
        .await
        .expect("fetch");
    assert_eq!(fetched, sha);
    assert!(other.has_commit(&sha).await.expect("look"));
    assert_eq!(
        server.requests_to("GET", "/api/v1/repos/acme/web").len(),
        before + 1,
        "the clone URL comes from the repository object"
    );
    let missing = gitea.fetch_branch(&other, "orch/WEB-404").await;
    assert!(
        matches!(missing, Err(IntegrationError::Git(_))),
        "{missing:?}"
    );
}
