//! A promoted candidate's pull request is merged as a fast-forward on both forges, so the
//! default branch ends at exactly the commit prod runs: Gitea's `fast-forward-only` merge style,
//! GitHub's reference update with `force: false` (its merge button never fast-forwards). Both
//! refuse a head that does not contain the base, and a head that moved since orch checked it.

use std::path::Path;

use orch_integrations::{Forge, IntegrationError, MergeStyle};

use crate::github::{git, work_repo};

/// Someone pushes one more commit to `main` on the forge.
async fn move_main(dir: &Path) -> String {
    let work = dir.join("work");
    std::fs::write(work.join("c.txt"), "c").expect("write");
    git(&work, &["add", "."]).await;
    git(&work, &["commit", "-qm", "pushed to main by a person"]).await;
    let bare = dir.join("remote.git").display().to_string();
    git(&work, &["push", "-q", &bare, "main"]).await;
    git(&work, &["rev-parse", "HEAD"]).await
}

async fn fast_forwards<F: Forge>(dir: &Path, forge: &F, merged: impl AsyncFn(u64) -> bool) {
    let (repo, candidate) = work_repo(dir, "orch/WEB-1").await;
    forge.push_branch(&repo, "orch/WEB-1").await.expect("push");
    let pr = forge
        .open_pull_request("orch/WEB-1", "WEB-1", "b")
        .await
        .expect("pr");
    let bare = dir.join("remote.git");

    // A head other than the one on the forge is refused, and nothing moves.
    let before = git(&bare, &["rev-parse", "refs/heads/main"]).await;
    let wrong = before.clone();
    let refused = forge
        .merge_pull_request(pr.number, &wrong, MergeStyle::FastForward, "m")
        .await;
    assert!(
        matches!(refused, Err(IntegrationError::Refused(_))),
        "{refused:?}"
    );
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]).await, before);

    // The checked head containing main: main becomes exactly that commit, the pull request is
    // merged, and asking again changes nothing.
    forge
        .merge_pull_request(pr.number, &candidate, MergeStyle::FastForward, "m")
        .await
        .expect("fast-forward");
    assert_eq!(
        git(&bare, &["rev-parse", "refs/heads/main"]).await,
        candidate,
        "main is the candidate itself, no merge commit of the forge's"
    );
    assert!(merged(pr.number).await, "the pull request shows merged");
    forge
        .merge_pull_request(pr.number, &candidate, MergeStyle::FastForward, "m")
        .await
        .expect("idempotent");
    let (name, tip) = forge.fetch_default(&repo).await.expect("fetch default");
    assert_eq!((name.as_str(), tip.as_str()), ("main", candidate.as_str()));

    // A second branch made before main moved no longer contains it: refused, main stays.
    let work = dir.join("work");
    git(&work, &["switch", "-qc", "orch/WEB-2", &before]).await;
    std::fs::write(work.join("d.txt"), "d").expect("write");
    git(&work, &["add", "."]).await;
    git(&work, &["commit", "-qm", "second"]).await;
    let second = git(&work, &["rev-parse", "HEAD"]).await;
    git(&work, &["switch", "-q", "main"]).await;
    git(&work, &["reset", "-q", "--hard", &candidate]).await;
    let moved = move_main(dir).await;
    forge.push_branch(&repo, "orch/WEB-2").await.expect("push");
    let pr2 = forge
        .open_pull_request("orch/WEB-2", "WEB-2", "b")
        .await
        .expect("pr");
    let refused = forge
        .merge_pull_request(pr2.number, &second, MergeStyle::FastForward, "m")
        .await;
    assert!(refused.is_err(), "not a fast-forward: {refused:?}");
    assert_eq!(git(&bare, &["rev-parse", "refs/heads/main"]).await, moved);
    assert!(!merged(pr2.number).await);
}

#[tokio::test]
async fn gitea_merges_a_candidate_as_a_fast_forward_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, gitea) = crate::gitea::setup(dir.path()).await;
    fast_forwards(dir.path(), &gitea, async |n| {
        server
            .with(|f| f.pulls.iter().any(|p| p.number == n && p.merged))
            .await
    })
    .await;
    let merges = server.requests_to("POST", "/api/v1/repos/acme/web/pulls/1/merge");
    assert!(
        merges
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("\"fast-forward-only\"")),
        "Gitea is asked for its fast-forward-only style"
    );
}

#[tokio::test]
async fn github_merges_a_candidate_by_moving_the_base_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, github) = crate::github::setup(dir.path()).await;
    fast_forwards(dir.path(), &github, async |n| {
        server
            .with(|f| f.state.pulls.iter().any(|p| p.number == n && p.merged))
            .await
    })
    .await;
    let updates = server.requests_to("PATCH", "/repos/acme/web/git/refs/heads/main");
    assert!(!updates.is_empty(), "the base reference is updated");
    assert!(
        updates
            .iter()
            .all(|r| String::from_utf8_lossy(&r.body).contains("\"force\":false")),
        "never forced"
    );
}
