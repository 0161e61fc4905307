//! Reading what CI reported on a commit, through each forge's documented API: Gitea's combined
//! status, GitHub's combined status and check runs. orch's own `orch/*` statuses are not
//! external checks; a status reported on another commit is not this commit's.

use orch_integrations::fake::github::CheckRun;
use orch_integrations::{CheckState, CommitState, CommitStatus, Forge};

use crate::github::work_repo;

fn summary(checks: &[orch_integrations::ExternalCheck]) -> Vec<(String, CheckState)> {
    let mut rows: Vec<(String, CheckState)> =
        checks.iter().map(|c| (c.name.clone(), c.state)).collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

#[tokio::test]
async fn gitea_reports_the_latest_status_per_context_and_not_orchs_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = crate::gitea::setup(dir.path()).await;
    let (_repo, sha) = work_repo(dir.path(), "orch/WEB-1").await;
    let other = "b".repeat(40);
    server
        .with(|g| {
            g.report_status(&sha, "ci/build", "pending", "queued");
            g.report_status(&sha, "ci/build", "failure", "2 tests failed");
            g.report_status(&sha, "lint", "success", "");
            g.report_status(&other, "ci/e2e", "success", "");
        })
        .await;
    let own = CommitStatus {
        state: CommitState::Success,
        context: "orch/review".into(),
        description: String::new(),
    };
    gitea.set_commit_status(&sha, &own).await.expect("status");
    let checks = gitea.commit_checks(&sha).await.expect("checks");
    assert_eq!(
        summary(&checks),
        [
            ("ci/build".to_owned(), CheckState::Failure),
            ("lint".to_owned(), CheckState::Success)
        ]
    );
    let build = checks.iter().find(|c| c.name == "ci/build").expect("build");
    assert_eq!(build.description, "2 tests failed");
    assert_eq!(build.sha, sha);
    assert!(build.target_url.is_some());
    assert!(gitea.commit_checks("abc").await.is_err(), "not a full SHA");
}

#[tokio::test]
async fn github_reports_statuses_and_check_runs_with_their_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = crate::github::setup(dir.path()).await;
    let (_repo, sha) = work_repo(dir.path(), "orch/WEB-1").await;
    server
        .with(|g| {
            g.state.report_status(&sha, "ci/legacy", "success", "");
            g.check_runs.push(CheckRun {
                name: "test".into(),
                head_sha: sha.clone(),
                status: "completed".into(),
                conclusion: Some("failure".into()),
                title: "1 failed".into(),
                text: "running 3 tests\ntest a ... FAILED\nerror: 1 failed".into(),
            });
            g.check_runs.push(CheckRun {
                name: "e2e".into(),
                head_sha: sha.clone(),
                status: "in_progress".into(),
                ..Default::default()
            });
        })
        .await;
    let checks = github.commit_checks(&sha).await.expect("checks");
    assert_eq!(
        summary(&checks),
        [
            ("ci/legacy".to_owned(), CheckState::Success),
            ("e2e".to_owned(), CheckState::Pending),
            ("test".to_owned(), CheckState::Failure),
        ]
    );
    let test = checks.iter().find(|c| c.name == "test").expect("test");
    assert!(
        test.log_tail
            .as_deref()
            .is_some_and(|t| t.ends_with("error: 1 failed")),
        "{test:?}"
    );
    assert_eq!(test.description, "1 failed");
}

async fn reads_reviews_with_their_comments<F: Forge>(
    forge: &F,
    add: impl AsyncFnOnce(u64, &str) -> (),
    dir: &std::path::Path,
) {
    use orch_integrations::ReviewState;
    let (repo, sha) = work_repo(dir, "orch/WEB-1").await;
    forge.push_branch(&repo, "orch/WEB-1").await.expect("push");
    let pr = forge
        .open_pull_request("orch/WEB-1", "WEB-1", "b")
        .await
        .expect("pr");
    add(pr.number, &sha).await;
    let reviews = forge.reviews(pr.number).await.expect("reviews");
    let states: Vec<(String, ReviewState)> =
        reviews.iter().map(|r| (r.login.clone(), r.state)).collect();
    assert_eq!(
        states,
        [
            ("ada".to_owned(), ReviewState::ChangesRequested),
            ("bob".to_owned(), ReviewState::Approved),
        ]
    );
    assert_eq!(reviews[0].commit_id, sha);
    assert_eq!(reviews[0].comments.len(), 1);
    assert_eq!(reviews[0].comments[0].path, "b.txt");
    assert_eq!(reviews[0].comments[0].line, Some(1));
    assert_eq!(reviews[0].comments[0].body, "say why");
    assert!(reviews[1].comments.is_empty());
}

#[tokio::test]
async fn gitea_reviews_are_read_in_its_own_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = crate::gitea::setup(dir.path()).await;
    reads_reviews_with_their_comments(
        &gitea,
        async |pull, sha| {
            server
                .with(|g| {
                    g.add_review(
                        pull,
                        "ada",
                        "CHANGES_REQUESTED",
                        sha,
                        "no",
                        &[("b.txt", 1, "say why")],
                    );
                    g.add_review(pull, "bob", "APPROVED", sha, "", &[]);
                })
                .await
        },
        dir.path(),
    )
    .await;
}

#[tokio::test]
async fn github_reviews_are_read_with_the_pulls_review_comments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = crate::github::setup(dir.path()).await;
    reads_reviews_with_their_comments(
        &github,
        async |pull, sha| {
            server
                .with(|g| {
                    g.state.add_review(
                        pull,
                        "ada",
                        "CHANGES_REQUESTED",
                        sha,
                        "no",
                        &[("b.txt", 1, "say why")],
                    );
                    g.state.add_review(pull, "bob", "APPROVED", sha, "", &[]);
                })
                .await
        },
        dir.path(),
    )
    .await;
}
