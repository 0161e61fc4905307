//! Integration before validation: the tip merged into an item's branch, conflicts committed for
//! the developer, the change's identity across re-integrations, and the fast-forward of main.

use orch_git::{GitError, Integration};

use crate::{Fixture, git, write};

/// Commits `content` to `file` on the checked-out `main`; returns the new tip.
async fn commit_on_main(f: &Fixture, file: &str, content: &str) -> String {
    write(&f.main_tree().join(file), content);
    f.repo
        .commit_all(f.main_tree(), &format!("main: {file}"))
        .await
        .expect("commit")
        .expect("a commit")
}

/// The parents of `rev`.
fn parents(dir: &std::path::Path, rev: &str) -> Vec<String> {
    git(dir, &["rev-list", "--parents", "-n", "1", rev])
        .split_whitespace()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn a_candidate_is_a_merge_on_the_tip_made_once() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    write(&wt.join("a.txt"), "a\n");
    let head = f
        .repo
        .commit_all(&wt, "a")
        .await
        .expect("commit")
        .expect("sha");
    let tip = f.repo.default_tip().await.expect("tip");
    let got = f
        .repo
        .integrate(&wt, &tip, "Merge A-1: a")
        .await
        .expect("integrates");
    let Integration::Merged { candidate } = got else {
        panic!("expected a candidate, got {got:?}")
    };
    assert_eq!(parents(&wt, &candidate), [tip.clone(), head]);
    assert_eq!(
        git(&wt, &["log", "-1", "--format=%s"]).trim(),
        "Merge A-1: a"
    );
    assert_eq!(
        f.repo.head(&wt).await.expect("head"),
        candidate,
        "the branch moved to it"
    );
    assert_eq!(
        git(&wt, &["rev-parse", "refs/heads/orch/A-1"]).trim(),
        candidate,
        "HEAD still names the item's branch, which moved"
    );
    assert_eq!(
        git(&wt, &["status", "--porcelain", "--untracked-files=all"]),
        "",
        "the work tree and the index hold the candidate's tree"
    );
    // Integrating the same tip again changes nothing.
    assert_eq!(
        f.repo
            .integrate(&wt, &tip, "Merge A-1: a")
            .await
            .expect("integrates"),
        Integration::AlreadyContains { candidate }
    );
}

#[tokio::test]
async fn a_clean_tip_is_merged_into_the_branch_and_main_fast_forwards_to_it() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    write(&wt.join("a.txt"), "a\n");
    let branch = f
        .repo
        .commit_all(&wt, "a")
        .await
        .expect("commit")
        .expect("sha");
    let tip = commit_on_main(&f, "b.txt", "b\n").await;

    let Integration::Merged { candidate } = f
        .repo
        .integrate(&wt, &tip, "Integrate main")
        .await
        .expect("integrates")
    else {
        panic!("expected a clean merge")
    };
    assert!(
        f.repo
            .is_ancestor(&tip, &candidate)
            .await
            .expect("ancestry")
    );
    assert!(
        f.repo
            .is_ancestor(&branch, &candidate)
            .await
            .expect("ancestry")
    );
    assert!(wt.join("b.txt").exists() && wt.join("a.txt").exists());

    // The item's change keeps its identity: against the tip it contains, it is what it was
    // against the tip it forked from.
    let fork = git(f.main_tree(), &["rev-parse", "HEAD~1"]);
    let before = f.repo.change_id(fork.trim(), &branch).await.expect("id");
    let after = f.repo.change_id(&tip, &candidate).await.expect("id");
    assert!(before.is_some());
    assert_eq!(before, after);
    assert_eq!(f.repo.change_id(&tip, &tip).await.expect("id"), None);

    // main moves exactly to the candidate, and the checkout follows.
    f.repo
        .advance_default(&tip, &candidate)
        .await
        .expect("advances");
    assert_eq!(f.repo.default_tip().await.expect("tip"), candidate);
    assert_eq!(f.repo.head(f.main_tree()).await.expect("head"), candidate);
    assert!(f.main_tree().join("a.txt").exists());
    assert_eq!(git(f.main_tree(), &["status", "--porcelain"]), "");
    // Idempotent once there.
    f.repo
        .advance_default(&tip, &candidate)
        .await
        .expect("again");
}

#[tokio::test]
async fn main_moved_by_someone_is_never_overwritten() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    write(&wt.join("a.txt"), "a\n");
    let tip = f.repo.default_tip().await.expect("tip");
    let candidate = f
        .repo
        .commit_all(&wt, "a")
        .await
        .expect("commit")
        .expect("sha");
    let pushed = commit_on_main(&f, "person.txt", "pushed by a person\n").await;

    let err = f
        .repo
        .advance_default(&tip, &candidate)
        .await
        .expect_err("refused");
    assert!(matches!(err, GitError::ConcurrentUpdate { .. }), "{err}");
    assert_eq!(f.repo.default_tip().await.expect("tip"), pushed);

    // Not a descendant: refused too, even when the expected tip matches.
    let err = f
        .repo
        .advance_default(&pushed, &candidate)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("only fast-forwards"), "{err}");
    assert_eq!(f.repo.default_tip().await.expect("tip"), pushed);
}

#[tokio::test]
async fn a_conflict_is_committed_on_the_branch_with_both_sides_for_the_developer() {
    let f = Fixture::new().await;
    commit_on_main(&f, "changes.md", "# changes\n").await;
    let wt = f.worktree("b", "orch/B-1").await;
    write(&wt.join("changes.md"), "# changes\n- B\n");
    f.repo
        .commit_all(&wt, "b")
        .await
        .expect("commit")
        .expect("sha");
    let tip = commit_on_main(&f, "changes.md", "# changes\n- A\n").await;

    let got = f
        .repo
        .integrate(&wt, &tip, "Integrate main")
        .await
        .expect("reported");
    let Integration::Conflict {
        commit,
        paths,
        excerpts,
    } = got
    else {
        panic!("expected a conflict, got {got:?}")
    };
    assert_eq!(paths, ["changes.md"]);
    assert!(
        excerpts[0].text.contains("- A") && excerpts[0].text.contains("- B"),
        "{excerpts:?}"
    );
    assert_eq!(f.repo.head(&wt).await.expect("head"), commit);
    assert!(f.repo.is_ancestor(&tip, &commit).await.expect("ancestry"));
    assert_eq!(
        git(&wt, &["status", "--porcelain"]),
        "",
        "nothing left half-merged"
    );
    assert_eq!(
        orch_git::Repo::unresolved_conflicts(&wt, &paths),
        ["changes.md"]
    );

    // The developer resolves it on the branch; the next integration finds the tip contained.
    write(&wt.join("changes.md"), "# changes\n- A\n- B\n");
    let resolved = f
        .repo
        .commit_all(&wt, "resolve")
        .await
        .expect("commit")
        .expect("sha");
    assert!(orch_git::Repo::unresolved_conflicts(&wt, &paths).is_empty());
    let got = f
        .repo
        .integrate(&wt, &tip, "again")
        .await
        .expect("integrates");
    let Integration::Merged { candidate } = got else {
        panic!("expected a candidate, got {got:?}")
    };
    assert_eq!(parents(&wt, &candidate), [tip, resolved]);
}
