//! The merge of a pull request on both forges: it goes into the pull request's base (not
//! whatever the default branch is), and only while the head is still the commit orch checked:
//! a branch moved between orch's check and the merge is refused by the forge, as GitHub (`sha`,
//! 409 "Head branch was modified") and Gitea (`head_commit_id`, 409 "head out of date") do.

use std::path::Path;

use orch_integrations::fake::gitea::GiteaPull;
use orch_integrations::{Forge, IntegrationError, MergeStyle};

use crate::github::{git, work_repo};

/// Someone else moves `branch` on the forge: one more commit, pushed straight into the bare
/// repository.
async fn move_branch(dir: &Path, branch: &str) -> String {
    let work = dir.join("work");
    git(&work, &["switch", "-q", branch]).await;
    git(
        &work,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "pushed by someone else",
        ],
    )
    .await;
    let moved = git(&work, &["rev-parse", "HEAD"]).await;
    let bare = dir.join("remote.git").display().to_string();
    git(&work, &["push", "-q", "-f", &bare, branch]).await;
    git(&work, &["switch", "-q", "main"]).await;
    moved
}

/// Asserts the refusal is the forge's 409, not some other failure.
fn assert_refused_as_moved(result: Result<(), IntegrationError>) {
    match &result {
        Err(IntegrationError::Refused(why)) if why.contains("409") => {}
        other => panic!("a moved head must be refused with 409: {other:?}"),
    }
}

async fn forge_moved_branch_is_refused<F: Forge>(dir: &Path, forge: &F) -> String {
    let (repo, checked) = work_repo(dir, "orch/WEB-1").await;
    forge.push_branch(&repo, "orch/WEB-1").await.expect("push");
    let pr = forge
        .open_pull_request("orch/WEB-1", "WEB-1", "b")
        .await
        .expect("pr");
    let bare = dir.join("remote.git");
    let main_before = git(&bare, &["rev-parse", "refs/heads/main"]).await;

    let moved = move_branch(dir, "orch/WEB-1").await;
    assert_refused_as_moved(
        forge
            .merge_pull_request(pr.number, &checked, MergeStyle::Merge, "Merge WEB-1")
            .await,
    );
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/main"]).await,
        main_before,
        "nothing was merged"
    );

    // The commit the branch really holds merges.
    forge
        .merge_pull_request(pr.number, &moved, MergeStyle::Merge, "Merge WEB-1")
        .await
        .expect("merge");
    let main = git(&bare, &["rev-parse", "refs/heads/main"]).await;
    git(&bare, &["merge-base", "--is-ancestor", &moved, &main]).await;
    checked
}

#[tokio::test]
async fn gitea_refuses_to_merge_a_branch_that_moved_after_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, gitea) = crate::gitea::setup(dir.path()).await;
    forge_moved_branch_is_refused(dir.path(), &gitea).await;
}

#[tokio::test]
async fn github_refuses_to_merge_a_branch_that_moved_after_the_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, github) = crate::github::setup(dir.path()).await;
    forge_moved_branch_is_refused(dir.path(), &github).await;
}

#[tokio::test]
async fn a_merge_without_a_full_head_sha_is_refused_before_any_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = crate::gitea::setup(dir.path()).await;
    for bad in ["", "abc123", &"G".repeat(40)] {
        let refused = gitea
            .merge_pull_request(1, bad, MergeStyle::Merge, "m")
            .await;
        assert!(
            matches!(refused, Err(IntegrationError::Config(_))),
            "{bad:?}: {refused:?}"
        );
    }
    assert!(server.requests().is_empty(), "nothing was sent");
}

/// A pull request into `release` (opened by a person) merges into `release`; `main` stays.
async fn merges_into_its_base<F: Forge>(
    dir: &Path,
    forge: &F,
    add_pull: impl AsyncFnOnce(GiteaPull),
) {
    let (repo, sha) = work_repo(dir, "orch/WEB-5").await;
    forge.push_branch(&repo, "orch/WEB-5").await.expect("push");
    let bare = dir.join("remote.git");
    git(&bare, &["branch", "release", "main"]).await;
    let main_before = git(&bare, &["rev-parse", "refs/heads/main"]).await;
    add_pull(GiteaPull {
        number: 40,
        head: "orch/WEB-5".into(),
        base: "release".into(),
        title: "into release".into(),
        merged: false,
        closed: false,
    })
    .await;
    forge
        .merge_pull_request(40, &sha, MergeStyle::Merge, "Merge WEB-5")
        .await
        .expect("merge");
    let release = git(&bare, &["rev-parse", "refs/heads/release"]).await;
    git(&bare, &["merge-base", "--is-ancestor", &sha, &release]).await;
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/main"]).await,
        main_before,
        "the default branch is not the pull request's base"
    );
}

#[tokio::test]
async fn gitea_merges_a_pull_request_into_its_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = crate::gitea::setup(dir.path()).await;
    merges_into_its_base(dir.path(), &gitea, async |pull| {
        server.with(|f| f.pulls.push(pull)).await
    })
    .await;
}

#[tokio::test]
async fn github_merges_a_pull_request_into_its_base() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = crate::github::setup(dir.path()).await;
    merges_into_its_base(dir.path(), &github, async |pull| {
        server.with(|f| f.state.pulls.push(pull)).await
    })
    .await;
}
