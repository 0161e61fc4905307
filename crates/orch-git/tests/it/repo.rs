use orch_git::{GitError, Repo};

use crate::{Fixture, git, write};

#[tokio::test]
async fn opens_only_the_root_of_a_repository() {
    let f = Fixture::new().await;
    let reopened = Repo::open(f.main_tree()).await.expect("opens");
    assert_eq!(reopened.path(), f.main_tree());
    assert!(!reopened.is_bare());

    std::fs::create_dir(f.main_tree().join("sub")).expect("mkdir");
    assert!(matches!(
        Repo::open(&f.main_tree().join("sub")).await,
        Err(GitError::NotARepo { .. })
    ));
    assert!(matches!(
        Repo::open(&f.root).await,
        Err(GitError::NotARepo { .. })
    ));
    assert!(matches!(
        Repo::open(&f.root.join("missing")).await,
        Err(GitError::NotARepo { .. })
    ));

    let linked = f.worktree("linked", "orch/A-1").await;
    let err = Repo::open(&linked)
        .await
        .expect_err("a linked worktree is no main repository");
    assert!(
        matches!(&err, GitError::NotARepo { reason, .. } if reason.contains("linked")),
        "{err}"
    );
}

#[tokio::test]
async fn opens_a_bare_repository() {
    let f = Fixture::new().await;
    git(&f.root, &["clone", "-q", "--bare", "repo", "bare.git"]);
    let bare = Repo::open(&f.root.join("bare.git")).await.expect("opens");
    assert!(bare.is_bare());
    assert_eq!(bare.default_branch().await.expect("branch"), "main");
}

#[tokio::test]
async fn default_branch_follows_head_unless_configured() {
    let f = Fixture::new().await;
    assert_eq!(f.repo.default_branch().await.expect("branch"), "main");
    let configured = f.repo.clone().with_default_branch("trunk").expect("valid");
    assert_eq!(configured.default_branch().await.expect("branch"), "trunk");

    git(f.main_tree(), &["checkout", "-q", "--detach"]);
    assert!(matches!(
        f.repo.default_branch().await,
        Err(GitError::DetachedHead { .. })
    ));
}

#[tokio::test]
async fn commit_all_commits_everything_or_reports_nothing_to_commit() {
    let f = Fixture::new().await;
    let before = f.repo.head(f.main_tree()).await.expect("head");
    assert_eq!(
        f.repo
            .commit_all(f.main_tree(), "nothing")
            .await
            .expect("commit"),
        None
    );
    assert_eq!(f.repo.head(f.main_tree()).await.expect("head"), before);

    write(&f.main_tree().join("src/new.rs"), "fn main() {}\n");
    std::fs::remove_file(f.main_tree().join("README.md")).expect("rm");
    let sha = f
        .repo
        .commit_all(f.main_tree(), "work")
        .await
        .expect("commit")
        .expect("a commit");
    assert_eq!(sha.len(), 40);
    assert_eq!(f.repo.head(f.main_tree()).await.expect("head"), sha);
    assert_eq!(
        git(f.main_tree(), &["log", "-1", "--format=%an <%ae>|%s"]).trim(),
        "orch <orch@localhost>|work"
    );
    assert_eq!(git(f.main_tree(), &["status", "--porcelain"]), "");
    assert!(f.repo.is_ancestor(&before, &sha).await.expect("ancestry"));
    assert!(!f.repo.is_ancestor(&sha, &before).await.expect("ancestry"));
}

#[tokio::test]
async fn rev_parse_resolves_or_says_none() {
    let f = Fixture::new().await;
    let head = f.repo.head(f.main_tree()).await.expect("head");
    assert_eq!(
        f.repo.rev_parse("main").await.expect("resolves"),
        Some(head)
    );
    assert_eq!(
        f.repo.rev_parse("no-such-branch").await.expect("resolves"),
        None
    );
}

#[tokio::test]
async fn delete_branch_is_idempotent() {
    let f = Fixture::new().await;
    git(f.main_tree(), &["branch", "orch/B-1"]);
    f.repo.delete_branch("orch/B-1").await.expect("deleted");
    assert_eq!(
        f.repo
            .rev_parse("refs/heads/orch/B-1")
            .await
            .expect("resolves"),
        None
    );
    f.repo
        .delete_branch("orch/B-1")
        .await
        .expect("already gone");
}

#[tokio::test]
async fn arguments_that_git_would_read_as_options_are_refused() {
    let f = Fixture::new().await;
    let wt = f.root.join("wt");
    let refused = |r: Result<(), GitError>| matches!(r, Err(GitError::InvalidArgument { .. }));
    assert!(refused(
        f.repo.ensure_worktree(&wt, "-b", "main").await.map(drop)
    ));
    assert!(refused(
        f.repo
            .ensure_worktree(&wt, "orch/X", "--orphan")
            .await
            .map(drop)
    ));
    assert!(refused(f.repo.delete_branch("--all").await));
    assert!(refused(f.repo.rev_parse("--all").await.map(drop)));
    assert!(refused(
        f.repo.is_ancestor("--help", "main").await.map(drop)
    ));
    assert!(refused(
        f.repo.reset_to(f.main_tree(), "--merge").await.map(drop)
    ));
    let output = f.root.join("leak");
    let option = format!("--output={}", output.display());
    assert!(refused(
        f.repo.changed_paths(f.main_tree(), &option).await.map(drop)
    ));
    assert!(refused(
        f.repo.merge_into_default("-n", "message").await.map(drop)
    ));
    assert!(refused(f.repo.clone().with_default_branch("-x").map(drop)));
    assert!(!wt.exists() && !output.exists());
}

/// orch reads branches and `HEAD` from git's files; whatever state git leaves them in, the
/// answers are git's own.
#[tokio::test]
async fn refs_read_from_files_agree_with_git_loose_packed_and_detached() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/X-1").await;
    write(&wt.join("a.txt"), "a\n");
    let committed = f
        .repo
        .commit_all(&wt, "on the branch")
        .await
        .expect("commit")
        .expect("a commit");
    let agree = |label: &'static str| {
        let (f, wt, committed) = (&f, &wt, &committed);
        async move {
            let main_tip = git(f.main_tree(), &["rev-parse", "refs/heads/main"]);
            assert_eq!(f.repo.head(wt).await.expect("head"), *committed, "{label}");
            assert_eq!(
                f.repo
                    .rev_parse("refs/heads/orch/X-1")
                    .await
                    .expect("branch"),
                Some(committed.clone()),
                "{label}"
            );
            assert_eq!(
                f.repo.rev_parse("refs/heads/main").await.expect("main"),
                Some(main_tip.trim().to_owned()),
                "{label}"
            );
            assert_eq!(
                f.repo.rev_parse("refs/heads/none").await.expect("none"),
                None,
                "{label}"
            );
            assert_eq!(
                f.repo.head(f.main_tree()).await.expect("main head"),
                main_tip.trim(),
                "{label}"
            );
        }
    };
    agree("loose").await;
    git(f.main_tree(), &["pack-refs", "--all"]);
    assert!(
        !f.main_tree().join(".git/refs/heads/main").exists(),
        "pack-refs moved the loose refs"
    );
    agree("packed").await;
    assert_eq!(f.repo.default_branch().await.expect("default"), "main");
    // A detached HEAD names no default branch, read from the file as from git.
    git(f.main_tree(), &["checkout", "-q", "--detach"]);
    assert!(matches!(
        f.repo.default_branch().await,
        Err(orch_git::GitError::DetachedHead { .. })
    ));
}

/// A repository whose refs are not files (the reftable storage) is read through git.
#[tokio::test]
async fn a_reftable_repository_is_read_through_git() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("r");
    std::fs::create_dir_all(&root).expect("mkdir");
    let init = std::process::Command::new("git")
        .args(["init", "-q", "-b", "trunk", "--ref-format=reftable", "."])
        .current_dir(&root)
        .output()
        .expect("git runs");
    if !init.status.success() {
        // git older than 2.45 has no reftable storage: nothing to read differently.
        eprintln!("skipped: {}", String::from_utf8_lossy(&init.stderr).trim());
        return;
    }
    write(&root.join("x"), "x\n");
    let repo = Repo::open(&root).await.expect("open");
    let sha = repo
        .commit_all(&root, "first")
        .await
        .expect("commit")
        .expect("a commit");
    assert_eq!(repo.default_branch().await.expect("default"), "trunk");
    assert_eq!(repo.head(&root).await.expect("head"), sha);
    assert_eq!(
        repo.rev_parse("refs/heads/trunk").await.expect("rev-parse"),
        Some(sha)
    );
}

/// Ancestry read from loose commits answers as git does, and a replace ref (which git honours
/// when it walks history) sends the question to git.
#[tokio::test]
async fn is_ancestor_answers_as_git_does() {
    let f = Fixture::new().await;
    let first = f.repo.head(f.main_tree()).await.expect("head");
    git(
        f.main_tree(),
        &["commit", "-q", "--allow-empty", "-m", "second"],
    );
    let second = f.repo.head(f.main_tree()).await.expect("head");
    git(
        f.main_tree(),
        &["commit", "-q", "--allow-empty", "-m", "third"],
    );
    let third = f.repo.head(f.main_tree()).await.expect("head");
    let ask = |a: &str, d: &str| {
        std::process::Command::new("git")
            .args(["merge-base", "--is-ancestor", a, d])
            .current_dir(f.main_tree())
            .status()
            .expect("git")
            .success()
    };
    for (a, d) in [(&first, &third), (&third, &first), (&second, &second)] {
        assert_eq!(f.repo.is_ancestor(a, d).await.expect("answer"), ask(a, d));
    }
    // `third` replaced by a commit with no parent: git's walk no longer reaches `first`.
    let orphan = git(
        f.main_tree(),
        &["commit-tree", "-m", "orphan", &format!("{third}^{{tree}}")],
    );
    git(f.main_tree(), &["replace", &third, orphan.trim()]);
    assert!(!ask(&first, &third));
    assert!(!f.repo.is_ancestor(&first, &third).await.expect("answer"));
}
