use orch_git::GitError;

use crate::{Fixture, git, write};

#[tokio::test]
async fn ensure_worktree_creates_the_branch_and_then_changes_nothing() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    assert_eq!(
        git(&wt, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/orch/A-1"
    );
    let main = f.repo.head(f.main_tree()).await.expect("head");
    assert_eq!(f.repo.head(&wt).await.expect("head"), main);

    // Work in progress survives a second call.
    write(&wt.join("wip.txt"), "wip\n");
    f.repo
        .ensure_worktree(&wt, "orch/A-1", "main")
        .await
        .expect("idempotent");
    assert!(wt.join("wip.txt").exists());
    assert_eq!(
        git(f.main_tree(), &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        2
    );
}

#[tokio::test]
async fn ensure_worktree_reuses_an_existing_branch() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    write(&wt.join("work.txt"), "done\n");
    let sha = f
        .repo
        .commit_all(&wt, "work")
        .await
        .expect("commit")
        .expect("a commit");
    f.repo.remove_worktree(&wt).await.expect("removed");

    f.repo
        .ensure_worktree(&wt, "orch/A-1", "main")
        .await
        .expect("again");
    assert_eq!(f.repo.head(&wt).await.expect("head"), sha);
}

#[tokio::test]
async fn a_worktree_whose_branch_was_switched_by_hand_is_not_reused() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    f.repo
        .ensure_worktree(&wt, "orch/A-1", "main")
        .await
        .expect("found as it is");
    git(&wt, &["switch", "-q", "-c", "elsewhere"]);
    let err = f
        .repo
        .ensure_worktree(&wt, "orch/A-1", "main")
        .await
        .expect_err("the work tree is on another branch now");
    assert!(
        matches!(&err, GitError::WorktreeMismatch { found, .. } if found.contains("elsewhere")),
        "{err}"
    );
}

#[tokio::test]
async fn a_worktree_on_another_branch_is_not_silently_reused() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    let err = f
        .repo
        .ensure_worktree(&wt, "orch/B-2", "main")
        .await
        .expect_err("mismatch");
    assert!(
        matches!(&err, GitError::WorktreeMismatch { found, .. } if found.contains("orch/A-1")),
        "{err}"
    );
}

#[tokio::test]
async fn a_stale_registration_is_pruned_and_the_worktree_made_again() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    std::fs::remove_dir_all(&wt).expect("rm");
    assert!(git(f.main_tree(), &["worktree", "list", "--porcelain"]).contains("prunable"));

    f.repo
        .ensure_worktree(&wt, "orch/A-1", "main")
        .await
        .expect("recreated");
    assert!(wt.join("README.md").exists());
    assert!(!git(f.main_tree(), &["worktree", "list", "--porcelain"]).contains("prunable"));
}

#[tokio::test]
async fn remove_worktree_is_idempotent_and_keeps_the_branch() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    write(&wt.join("untracked.txt"), "x\n");
    write(&wt.join("target/build.o"), "x\n");
    f.repo.remove_worktree(&wt).await.expect("removed");
    assert!(!wt.exists());
    assert_eq!(
        git(f.main_tree(), &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    f.repo.remove_worktree(&wt).await.expect("already gone");
    assert!(
        f.repo
            .rev_parse("refs/heads/orch/A-1")
            .await
            .expect("resolves")
            .is_some()
    );

    // A deleted directory is forgotten too.
    let gone = f.worktree("b", "orch/B-1").await;
    std::fs::remove_dir_all(&gone).expect("rm");
    f.repo.remove_worktree(&gone).await.expect("pruned");
    assert!(!git(f.main_tree(), &["worktree", "list", "--porcelain"]).contains("wt-b"));
}

#[tokio::test]
async fn the_main_work_tree_is_never_removed() {
    let f = Fixture::new().await;
    let err = f
        .repo
        .remove_worktree(f.main_tree())
        .await
        .expect_err("refused");
    assert!(matches!(err, GitError::InvalidArgument { .. }), "{err}");
    assert!(f.main_tree().join("README.md").exists());
}

/// What `ensure_worktree` reports decides whether the engine may skip resetting a fresh work
/// tree: only a checkout made just now may say so, and only a new branch forks at the start.
#[tokio::test]
async fn ensure_worktree_says_whether_it_checked_out_just_now() {
    use orch_git::Ensured;
    let f = Fixture::new().await;
    let wt = f.root.join("wt-fresh");
    let made = f.repo.ensure_worktree(&wt, "orch/F-1", "main").await;
    assert_eq!(made.expect("created"), Ensured::Created);
    assert!(
        git(&wt, &["status", "--porcelain", "--untracked-files=all"])
            .trim()
            .is_empty(),
        "a fresh work tree is clean"
    );
    write(&wt.join("wip.txt"), "wip\n");
    let again = f.repo.ensure_worktree(&wt, "orch/F-1", "main").await;
    assert_eq!(again.expect("found"), Ensured::Existing);
    assert!(!Ensured::Existing.is_fresh());

    f.repo.remove_worktree(&wt).await.expect("removed");
    let back = f.repo.ensure_worktree(&wt, "orch/F-1", "main").await;
    assert_eq!(back.expect("checked out"), Ensured::CheckedOut);
    assert!(Ensured::CheckedOut.is_fresh());
    assert!(!wt.join("wip.txt").exists());
    // The branch made with the work tree does not track anything.
    let config = git(f.main_tree(), &["config", "--list", "--local"]);
    assert!(!config.contains("branch.orch/F-1.merge"), "{config}");
}
