use orch_git::{GitError, MergeOutcome, Repo};

use crate::{Fixture, git, write};

/// Parents of `rev` in `dir`'s repository.
fn parents(dir: &std::path::Path, rev: &str) -> Vec<String> {
    git(dir, &["rev-list", "--parents", "-n", "1", rev])
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

/// A branch `orch/M-1` with one commit adding `feature.txt`; returns its SHA.
async fn feature_branch(f: &Fixture, file: &str, content: &str) -> String {
    let wt = f.worktree("feature", "orch/M-1").await;
    write(&wt.join(file), content);
    f.repo
        .commit_all(&wt, "feature")
        .await
        .expect("commit")
        .expect("a commit")
}

#[tokio::test]
async fn merges_in_the_checked_out_main_tree_once() {
    let f = Fixture::new().await;
    let main_before = f.repo.head(f.main_tree()).await.expect("head");
    let feature = feature_branch(&f, "feature.txt", "feature\n").await;

    let outcome = f
        .repo
        .merge_into_default("orch/M-1", "Merge M-1")
        .await
        .expect("merged");
    let MergeOutcome::Merged { sha } = outcome else {
        panic!("expected a merge, got {outcome:?}")
    };
    assert_eq!(f.repo.head(f.main_tree()).await.expect("head"), sha);
    assert_eq!(
        parents(f.main_tree(), &sha),
        [main_before, feature],
        "a merge commit even for a fast-forward"
    );
    assert_eq!(
        git(f.main_tree(), &["log", "-1", "--format=%s"]).trim(),
        "Merge M-1"
    );
    assert!(
        f.main_tree().join("feature.txt").exists(),
        "the checkout follows"
    );
    assert_eq!(git(f.main_tree(), &["status", "--porcelain"]), "");

    assert_eq!(
        f.repo
            .merge_into_default("orch/M-1", "again")
            .await
            .expect("idempotent"),
        MergeOutcome::AlreadyMerged
    );
    assert_eq!(f.repo.head(f.main_tree()).await.expect("head"), sha);
}

#[tokio::test]
async fn refuses_to_merge_into_a_main_tree_with_uncommitted_changes() {
    let f = Fixture::new().await;
    feature_branch(&f, "feature.txt", "feature\n").await;
    let before = f.repo.head(f.main_tree()).await.expect("head");
    write(&f.main_tree().join("README.md"), "local edit\n");

    let err = f
        .repo
        .merge_into_default("orch/M-1", "Merge")
        .await
        .expect_err("dirty");
    assert!(
        matches!(&err, GitError::Dirty { paths, .. } if paths == &["README.md"]),
        "{err}"
    );
    assert_eq!(f.repo.head(f.main_tree()).await.expect("head"), before);
    assert_eq!(
        std::fs::read_to_string(f.main_tree().join("README.md")).expect("read"),
        "local edit\n"
    );
}

#[tokio::test]
async fn a_conflict_in_the_main_tree_is_aborted_and_named() {
    let f = Fixture::new().await;
    feature_branch(&f, "README.md", "theirs\n").await;
    write(&f.main_tree().join("README.md"), "ours\n");
    let ours = f
        .repo
        .commit_all(f.main_tree(), "ours")
        .await
        .expect("commit")
        .expect("a commit");

    let err = f
        .repo
        .merge_into_default("orch/M-1", "Merge")
        .await
        .expect_err("conflict");
    assert!(
        matches!(&err, GitError::Conflict { paths, .. } if paths == &["README.md"]),
        "{err}"
    );
    assert_eq!(f.repo.head(f.main_tree()).await.expect("head"), ours);
    assert_eq!(
        git(f.main_tree(), &["status", "--porcelain"]),
        "",
        "the merge was aborted"
    );
}

#[tokio::test]
async fn merges_without_a_checkout_when_another_branch_is_checked_out() {
    let f = Fixture::new().await;
    let main_before = f.repo.head(f.main_tree()).await.expect("head");
    let feature = feature_branch(&f, "feature.txt", "feature\n").await;
    git(f.main_tree(), &["switch", "-q", "-c", "elsewhere"]);
    let repo = f.repo.clone().with_default_branch("main").expect("valid");

    let outcome = repo
        .merge_into_default("orch/M-1", "Merge M-1")
        .await
        .expect("merged");
    let MergeOutcome::Merged { sha } = outcome else {
        panic!("expected a merge, got {outcome:?}")
    };
    assert_eq!(
        repo.rev_parse("refs/heads/main").await.expect("resolves"),
        Some(sha.clone())
    );
    assert_eq!(parents(f.main_tree(), &sha), [main_before.clone(), feature]);
    assert_eq!(
        git(f.main_tree(), &["show", "-s", "--format=%an|%s", &sha]).trim(),
        "orch|Merge M-1"
    );
    assert_eq!(
        git(f.main_tree(), &["ls-tree", "--name-only", &sha])
            .lines()
            .filter(|l| *l == "feature.txt")
            .count(),
        1
    );
    // The checked-out branch and its files are untouched.
    assert_eq!(f.repo.head(f.main_tree()).await.expect("head"), main_before);
    assert!(!f.main_tree().join("feature.txt").exists());

    assert_eq!(
        repo.merge_into_default("orch/M-1", "again")
            .await
            .expect("idempotent"),
        MergeOutcome::AlreadyMerged
    );
}

#[tokio::test]
async fn merges_in_a_bare_repository_and_reports_conflicts_without_moving_the_branch() {
    let f = Fixture::new().await;
    git(&f.root, &["clone", "-q", "--bare", "repo", "bare.git"]);
    let bare = Repo::open(&f.root.join("bare.git")).await.expect("opens");
    let wt = f.root.join("bare-wt");
    bare.ensure_worktree(&wt, "orch/M-2", "main")
        .await
        .expect("worktree");
    write(&wt.join("README.md"), "theirs\n");
    bare.commit_all(&wt, "feature")
        .await
        .expect("commit")
        .expect("a commit");

    let outcome = bare
        .merge_into_default("orch/M-2", "Merge M-2")
        .await
        .expect("merged");
    assert!(
        matches!(outcome, MergeOutcome::Merged { .. }),
        "{outcome:?}"
    );

    // A second branch that changed the same line from the old base now conflicts.
    let other = f.root.join("bare-wt-2");
    bare.ensure_worktree(&other, "orch/M-3", "main~1")
        .await
        .expect("worktree");
    write(&other.join("README.md"), "rival\n");
    bare.commit_all(&other, "rival")
        .await
        .expect("commit")
        .expect("a commit");
    let main_before = bare.rev_parse("refs/heads/main").await.expect("resolves");
    let err = bare
        .merge_into_default("orch/M-3", "Merge M-3")
        .await
        .expect_err("conflict");
    assert!(
        matches!(&err, GitError::Conflict { paths, .. } if paths == &["README.md"]),
        "{err}"
    );
    assert_eq!(
        bare.rev_parse("refs/heads/main").await.expect("resolves"),
        main_before
    );
}

#[tokio::test]
async fn merging_a_missing_branch_says_so() {
    let f = Fixture::new().await;
    let err = f
        .repo
        .merge_into_default("orch/none", "Merge")
        .await
        .expect_err("missing");
    assert!(
        matches!(&err, GitError::UnknownBranch(b) if b == "orch/none"),
        "{err}"
    );
}
