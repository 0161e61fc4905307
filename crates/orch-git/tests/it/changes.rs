use std::path::PathBuf;

use crate::{Fixture, git, write};

/// A worktree whose state differs from `base` in every way a work tree can: returns it with
/// the base SHA.
async fn busy_worktree(f: &Fixture) -> (PathBuf, String) {
    write(&f.main_tree().join("old-name.txt"), "moving\n");
    write(&f.main_tree().join("doomed.txt"), "bye\n");
    let base = f
        .repo
        .commit_all(f.main_tree(), "base")
        .await
        .expect("commit")
        .expect("a commit");
    let wt = f.worktree("busy", "orch/C-1").await;

    write(&wt.join("committed.txt"), "in a commit\n");
    f.repo
        .commit_all(&wt, "on the branch")
        .await
        .expect("commit")
        .expect("a commit");
    write(&wt.join("README.md"), "changed\n");
    write(&wt.join("staged.txt"), "staged\n");
    git(&wt, &["add", "staged.txt"]);
    git(&wt, &["mv", "old-name.txt", "new-name.txt"]);
    std::fs::remove_file(wt.join("doomed.txt")).expect("rm");
    write(&wt.join("untracked.txt"), "new\n");
    write(&wt.join("target/out.bin"), "ignored build output\n");
    (wt, base)
}

#[tokio::test]
async fn changed_paths_sees_committed_staged_unstaged_untracked_deleted_and_renamed_files() {
    let f = Fixture::new().await;
    let (wt, base) = busy_worktree(&f).await;
    let changed = f
        .repo
        .changed_paths(&wt, &base)
        .await
        .expect("changed paths");
    assert_eq!(
        changed,
        [
            "README.md",
            "committed.txt",
            "doomed.txt",
            "new-name.txt",
            "old-name.txt",
            "staged.txt",
            "untracked.txt"
        ]
    );
}

#[tokio::test]
async fn one_snapshot_serves_several_comparisons_and_matches_a_fresh_one() {
    let f = Fixture::new().await;
    let (wt, base) = busy_worktree(&f).await;
    let tree = f.repo.tree_digest(&wt).await.expect("digest");
    for against in [base.as_str(), "main"] {
        assert_eq!(
            f.repo
                .changed_paths_to(&wt, against, &tree)
                .await
                .expect("from the snapshot"),
            f.repo.changed_paths(&wt, against).await.expect("fresh"),
            "against {against}"
        );
    }
    // The snapshot is of that moment: later writes are not in it.
    write(&wt.join("later.txt"), "later\n");
    let from_snapshot = f
        .repo
        .changed_paths_to(&wt, &base, &tree)
        .await
        .expect("snapshot");
    assert!(!from_snapshot.contains(&"later.txt".to_owned()));
    assert!(
        f.repo
            .changed_paths(&wt, &base)
            .await
            .expect("fresh")
            .contains(&"later.txt".to_owned())
    );
}

#[tokio::test]
async fn changed_paths_of_an_untouched_worktree_is_empty() {
    let f = Fixture::new().await;
    let wt = f.worktree("clean", "orch/C-2").await;
    assert!(
        f.repo
            .changed_paths(&wt, "main")
            .await
            .expect("changed paths")
            .is_empty()
    );
}

#[tokio::test]
async fn reset_to_discards_everything_ignored_files_included() {
    let f = Fixture::new().await;
    let (wt, base) = busy_worktree(&f).await;
    f.repo.reset_to(&wt, &base).await.expect("reset");
    assert_eq!(f.repo.head(&wt).await.expect("head"), base);
    assert!(
        f.repo
            .changed_paths(&wt, &base)
            .await
            .expect("changed paths")
            .is_empty()
    );
    assert_eq!(git(&wt, &["status", "--porcelain"]), "");
    assert!(!wt.join("untracked.txt").exists());
    // An ignored file is a file no diff shows: it must not outlive a reset (an agent's `.env`).
    assert!(!wt.join("target").exists(), "ignored files go too");
}

#[tokio::test]
async fn remove_ignored_names_what_no_diff_shows_and_keeps_the_rest() {
    let f = Fixture::new().await;
    let (wt, base) = busy_worktree(&f).await;
    write(&wt.join("target/debug/app"), "binary\n");
    let before = f.repo.changed_paths(&wt, &base).await.expect("changed");
    assert_eq!(
        f.repo.remove_ignored(&wt).await.expect("removed"),
        ["target"]
    );
    assert!(!wt.join("target").exists());
    // What a diff shows is untouched, untracked files included.
    assert_eq!(
        f.repo.changed_paths(&wt, &base).await.expect("changed"),
        before
    );
    assert!(wt.join("untracked.txt").exists());
    assert!(f.repo.remove_ignored(&wt).await.expect("none").is_empty());
}

#[tokio::test]
async fn has_path_answers_for_a_commits_tree() {
    let f = Fixture::new().await;
    let (_wt, base) = busy_worktree(&f).await;
    assert!(f.repo.has_path(&base, "doomed.txt").await.expect("asked"));
    assert!(
        !f.repo
            .has_path(&base, "untracked.txt")
            .await
            .expect("asked")
    );
    assert!(
        !f.repo
            .has_path(&base, "no/such/dir.md")
            .await
            .expect("asked")
    );
}

#[tokio::test]
async fn tree_digest_follows_the_files_and_leaves_the_index_alone() {
    let f = Fixture::new().await;
    let (wt, base) = busy_worktree(&f).await;
    let status = git(&wt, &["status", "--porcelain"]);
    let staged = git(&wt, &["diff", "--cached", "--name-status"]);

    let digest = f.repo.tree_digest(&wt).await.expect("digest");
    assert_eq!(git(&wt, &["status", "--porcelain"]), status);
    assert_eq!(git(&wt, &["diff", "--cached", "--name-status"]), staged);
    assert_eq!(
        f.repo.tree_digest(&wt).await.expect("digest"),
        digest,
        "same files, same digest"
    );

    write(&wt.join("untracked.txt"), "edited\n");
    let edited = f.repo.tree_digest(&wt).await.expect("digest");
    assert_ne!(edited, digest);
    write(&wt.join("untracked.txt"), "new\n");
    assert_eq!(f.repo.tree_digest(&wt).await.expect("digest"), digest);

    write(&wt.join("target/more.bin"), "ignored\n");
    assert_eq!(
        f.repo.tree_digest(&wt).await.expect("digest"),
        digest,
        "ignored files do not count"
    );

    f.repo.reset_to(&wt, &base).await.expect("reset");
    let base_tree = git(&wt, &["rev-parse", &format!("{base}^{{tree}}")]);
    assert_eq!(
        f.repo.tree_digest(&wt).await.expect("digest"),
        base_tree.trim()
    );
}

#[tokio::test]
async fn diffs_for_display_include_uncommitted_work_and_respect_the_cap() {
    let f = Fixture::new().await;
    let (wt, base) = busy_worktree(&f).await;
    let stat = f.repo.diff_stat(&wt, &base).await.expect("stat");
    assert!(
        stat.contains("README.md") && stat.contains("untracked.txt"),
        "{stat}"
    );

    let full = f.repo.diff(&wt, &base, 1 << 20).await.expect("diff");
    assert!(full.contains("+changed") && full.contains("+new"), "{full}");
    assert!(!full.contains("diff cut"));

    let cut = f.repo.diff(&wt, &base, 40).await.expect("diff");
    assert!(cut.ends_with("\n[diff cut at 40 bytes]\n"), "{cut}");
    assert!(full.starts_with(cut.split('\n').next().expect("a line")));
}

/// A stage commits the very tree it measured: the branch moves there, and the work tree's
/// index is then the commit's, so `git status` shows nothing and the tree is exactly HEAD.
#[tokio::test]
async fn commit_snapshot_commits_the_measured_tree_and_leaves_index_and_tree_at_it() {
    let f = Fixture::new().await;
    let (wt, _) = busy_worktree(&f).await;
    let base = f.repo.head(&wt).await.expect("head");
    f.repo.remove_ignored(&wt).await.expect("removed");
    let digest = f.repo.tree_digest(&wt).await.expect("digest");
    let snapshot = f.repo.stage_all(&wt).await.expect("snapshot");
    let tree = f.repo.tree_id(&wt, &snapshot).await.expect("tree");
    assert_eq!(
        tree, digest,
        "the real index measures what a private one does"
    );
    let sha = f
        .repo
        .commit_snapshot(&wt, snapshot, &base, "stage")
        .await
        .expect("committed");
    assert_eq!(f.repo.head(&wt).await.expect("head"), sha);
    assert_eq!(git(&wt, &["rev-parse", "HEAD^{tree}"]).trim(), tree);
    assert_eq!(git(&wt, &["rev-parse", "HEAD^"]).trim(), base);
    assert_eq!(git(&wt, &["status", "--porcelain", "--ignored"]), "");
    assert_eq!(
        git(&wt, &["log", "-1", "--format=%an <%ae> %s"]).trim(),
        "orch <orch@localhost> stage"
    );
}

/// The branch moves only from the commit the stage started at: if it moved meanwhile, the
/// commit is refused and nothing is lost.
#[tokio::test]
async fn commit_snapshot_refuses_a_branch_that_moved() {
    let f = Fixture::new().await;
    let (wt, _) = busy_worktree(&f).await;
    let base = f.repo.head(&wt).await.expect("head");
    let snapshot = f.repo.stage_all(&wt).await.expect("snapshot");
    git(
        &wt,
        &["commit", "-q", "--allow-empty", "-m", "someone else"],
    );
    let moved = f.repo.head(&wt).await.expect("head");
    let refused = f.repo.commit_snapshot(&wt, snapshot, &base, "stage").await;
    assert!(
        matches!(refused, Err(orch_git::GitError::ConcurrentUpdate { .. })),
        "{refused:?}"
    );
    assert_eq!(f.repo.head(&wt).await.expect("head"), moved);
}

/// `reset_to` skips its two walks only when the tree is exactly the commit already; anything
/// left in it (a changed file, an untracked or ignored one, a staged change) is reset away.
#[tokio::test]
async fn reset_to_skips_only_a_tree_that_is_exactly_the_commit() {
    let f = Fixture::new().await;
    let (wt, _) = busy_worktree(&f).await;
    let head = f.repo.head(&wt).await.expect("head");
    assert!(
        f.repo.reset_to(&wt, &head).await.expect("reset"),
        "busy: reset"
    );
    assert!(
        !f.repo.reset_to(&wt, &head).await.expect("reset"),
        "clean: skipped"
    );
    type Leave = fn(&std::path::Path);
    let leftovers: [(&str, Leave); 4] = [
        ("a changed file", |wt| {
            write(&wt.join("README.md"), "changed\n")
        }),
        ("an untracked file", |wt| {
            write(&wt.join("stray.txt"), "x\n")
        }),
        ("an ignored file", |wt| write(&wt.join("target/x"), "x\n")),
        ("a staged change", |wt| {
            write(&wt.join("s.txt"), "s\n");
            git(wt, &["add", "s.txt"]);
            std::fs::remove_file(wt.join("s.txt")).expect("rm");
        }),
    ];
    for (what, leave) in leftovers {
        leave(&wt);
        assert!(f.repo.reset_to(&wt, &head).await.expect("reset"), "{what}");
        assert_eq!(
            git(&wt, &["status", "--porcelain", "--ignored"]),
            "",
            "{what}"
        );
    }
    // Empty directories git does not show go without a reset, as `clean -d` would remove them.
    std::fs::create_dir_all(wt.join("empty/deeper")).expect("mkdir");
    assert!(
        !f.repo.reset_to(&wt, &head).await.expect("reset"),
        "no reset"
    );
    assert!(!wt.join("empty").exists());
    // Another commit, even with a clean tree, is a reset.
    assert!(f.repo.reset_to(&wt, "main").await.expect("reset"));
    assert_eq!(
        f.repo.head(&wt).await.expect("head"),
        git(&wt, &["rev-parse", "main"]).trim()
    );
}

/// An agent that tells git to look away from a file (`skip-worktree`, `assume-unchanged`) and
/// changes it: the stage's snapshot measures the file as it is on disk, and a reset restores
/// it, where `git status`, `git add` and even `git reset --hard` would trust the index.
#[tokio::test]
async fn a_file_hidden_from_git_is_measured_and_reset() {
    let f = Fixture::new().await;
    let wt = f.worktree("hide", "orch/H-1").await;
    let base = f.repo.head(&wt).await.expect("head");
    git(&wt, &["update-index", "--skip-worktree", "README.md"]);
    git(&wt, &["update-index", "--assume-unchanged", ".gitignore"]);
    write(&wt.join("README.md"), "hidden change\n");
    write(&wt.join(".gitignore"), "*\n");
    assert_eq!(git(&wt, &["status", "--porcelain"]), "", "git looks away");
    let snapshot = f.repo.stage_all(&wt).await.expect("snapshot");
    assert_eq!(snapshot.unhidden(), [".gitignore", "README.md"]);
    assert_eq!(
        f.repo
            .changed_paths_to(
                &wt,
                &base,
                &f.repo.tree_id(&wt, &snapshot).await.expect("tree")
            )
            .await
            .expect("changed"),
        [".gitignore", "README.md"]
    );

    git(&wt, &["update-index", "--skip-worktree", "README.md"]);
    assert!(f.repo.reset_to(&wt, &base).await.expect("reset"));
    assert_eq!(
        std::fs::read_to_string(wt.join("README.md")).expect("read"),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(wt.join(".gitignore")).expect("read"),
        "target/\n"
    );
    assert_eq!(
        git(&wt, &["ls-files", "-v"]),
        "H .gitignore\nH README.md\n",
        "no entry stays hidden"
    );
}

/// A stage's changes come from the index when orch knows it held the base: the same paths git's
/// diff names; an index someone else changed meanwhile is not trusted.
#[tokio::test]
async fn changes_measured_from_the_index_are_git_diffs() {
    let f = Fixture::new().await;
    let wt = f.worktree("idx", "orch/I-1").await;
    let base = f.repo.head(&wt).await.expect("head");
    let files = f.repo.base_files(&wt, &base).expect("read");
    assert!(
        files.is_some(),
        "a work tree checked out just now holds its HEAD"
    );
    write(&wt.join("README.md"), "changed\n");
    write(&wt.join("src/new.rs"), "fn main() {}\n");
    std::fs::remove_file(wt.join(".gitignore")).expect("rm");
    let snapshot = f.repo.stage_all(&wt).await.expect("snapshot");
    let by_git = f
        .repo
        .changed_paths_to(
            &wt,
            &base,
            &f.repo.tree_id(&wt, &snapshot).await.expect("tree"),
        )
        .await
        .expect("diff");
    assert_eq!(by_git, [".gitignore", "README.md", "src/new.rs"]);
    assert_eq!(
        f.repo
            .changed_since(&wt, &base, files.as_ref(), &snapshot)
            .await
            .expect("changed"),
        by_git
    );

    assert!(f.repo.reset_to(&wt, &base).await.expect("reset"));
    assert!(f.repo.base_files(&wt, &base).expect("read").is_some());
    assert!(
        f.repo.base_files(&wt, "main").expect("read").is_none(),
        "known by commit id only"
    );
    write(&wt.join("staged.txt"), "s\n");
    git(&wt, &["add", "staged.txt"]);
    std::fs::remove_file(wt.join("staged.txt")).expect("rm");
    assert!(
        f.repo.base_files(&wt, &base).expect("read").is_none(),
        "an index changed behind orch's back"
    );
}

/// An agent that committed its work, or left HEAD on another branch: HEAD goes back on the
/// item's branch at the base, with the files and what is staged kept.
#[tokio::test]
async fn restore_head_puts_head_back_on_the_branch_at_the_base() {
    let f = Fixture::new().await;
    let wt = f.worktree("r", "orch/R-1").await;
    let base = f.repo.head(&wt).await.expect("head");
    assert!(
        !f.repo
            .restore_head(&wt, "orch/R-1", &base)
            .await
            .expect("restore"),
        "nothing moved"
    );
    write(&wt.join("work.txt"), "work\n");
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-qm", "the agent's own"]);
    git(&wt, &["checkout", "-q", "-b", "elsewhere"]);
    assert!(
        f.repo
            .restore_head(&wt, "orch/R-1", &base)
            .await
            .expect("restore")
    );
    assert_eq!(
        git(&wt, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/orch/R-1"
    );
    assert_eq!(f.repo.head(&wt).await.expect("head"), base);
    assert_eq!(git(&wt, &["status", "--porcelain"]), "A  work.txt\n");
}

/// A snapshot's digest names the staged content: the same files in two work trees give the
/// same digest, one byte more gives another, and the tree written on demand is git's.
#[tokio::test]
async fn a_snapshot_digest_names_its_content() {
    let f = Fixture::new().await;
    let a = f.worktree("da", "orch/DA-1").await;
    let b = f.worktree("db", "orch/DB-1").await;
    for wt in [&a, &b] {
        write(&wt.join("src/x.rs"), "fn x() {}\n");
    }
    let first = f.repo.stage_all(&a).await.expect("snapshot");
    let second = f.repo.stage_all(&b).await.expect("snapshot");
    assert_eq!(first.digest(), second.digest());
    write(&b.join("src/x.rs"), "fn x() {} \n");
    let third = f.repo.stage_all(&b).await.expect("snapshot");
    assert_ne!(first.digest(), third.digest());
    let tree = f.repo.tree_id(&a, &first).await.expect("tree");
    assert_eq!(tree, git(&a, &["write-tree"]).trim());
}

/// After `stage_all`, the tree is still what was staged until something writes in it.
#[tokio::test]
async fn still_staged_until_something_writes_in_the_tree() {
    let f = Fixture::new().await;
    let wt = f.worktree("st", "orch/ST-1").await;
    write(&wt.join("src/a.rs"), "a\n");
    f.repo.stage_all(&wt).await.expect("snapshot");
    assert!(f.repo.still_staged(&wt).expect("read"));
    write(&wt.join("target/out"), "built\n");
    assert!(!f.repo.still_staged(&wt).expect("read"), "an ignored file");
    std::fs::remove_dir_all(wt.join("target")).expect("rm");
    assert!(f.repo.still_staged(&wt).expect("read"));
    write(&wt.join("src/a.rs"), "b\n");
    assert!(!f.repo.still_staged(&wt).expect("read"), "a changed file");
}

/// The whole branch's change since it forked from the default branch, staged work included,
/// in one diff: what the merge base and a diff of the staged tree name.
#[tokio::test]
async fn staged_since_fork_is_the_branch_since_its_merge_base() {
    let f = Fixture::new().await;
    let wt = f.worktree("fk", "orch/FK-1").await;
    write(&wt.join("first.txt"), "1\n");
    git(&wt, &["add", "-A"]);
    git(&wt, &["commit", "-qm", "first stage"]);
    write(&f.main_tree().join("main-only.txt"), "m\n");
    git(f.main_tree(), &["add", "-A"]);
    git(f.main_tree(), &["commit", "-qm", "main moved"]);
    write(&wt.join("second.txt"), "2\n");
    let snapshot = f.repo.stage_all(&wt).await.expect("snapshot");
    let fork = f
        .repo
        .merge_base("main", &f.repo.head(&wt).await.expect("head"))
        .await
        .expect("fork");
    let tree = f.repo.tree_id(&wt, &snapshot).await.expect("tree");
    let by_diff = f
        .repo
        .changed_paths_to(&wt, &fork, &tree)
        .await
        .expect("diff");
    assert_eq!(by_diff, ["first.txt", "second.txt"]);
    assert_eq!(
        f.repo
            .staged_since_fork(&wt, "main")
            .await
            .expect("since fork"),
        by_diff
    );
}

/// A FIFO is invisible to `git status` and `git clean`: a tree holding one is never reported
/// as exactly its commit compared in-process, so the caller sweeps it.
#[tokio::test]
async fn a_fifo_keeps_a_tree_from_being_exactly_its_commit() {
    let f = Fixture::new().await;
    let wt = f.worktree("ff", "orch/FF-1").await;
    let base = f.repo.head(&wt).await.expect("head");
    assert_eq!(
        f.repo.reset_to_base(&wt, &base).await.expect("reset"),
        orch_git::Reset::Exactly
    );
    let status = std::process::Command::new("mkfifo")
        .arg(wt.join("pipe"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    assert_ne!(
        f.repo.reset_to_base(&wt, &base).await.expect("reset"),
        orch_git::Reset::Exactly
    );
}

/// A stage that commits what it staged, with every file on disk staged: returns the commit.
async fn settled_stage(f: &Fixture, wt: &std::path::Path, file: &str) -> String {
    let base = f.repo.head(wt).await.expect("head");
    write(&wt.join(file), "the stage's work\n");
    let snapshot = f.repo.stage_all(wt).await.expect("snapshot");
    f.repo
        .commit_snapshot(wt, snapshot, &base, "stage")
        .await
        .expect("committed")
}

/// The note a settled tree leaves in its git directory.
fn note(wt: &std::path::Path) -> PathBuf {
    PathBuf::from(git(wt, &["rev-parse", "--absolute-git-dir"]).trim()).join("orch-settled")
}

/// What `reset_to_base` finds after a file changed behind orch's back, and whether the change
/// is still there afterwards.
async fn start_after_a_change(
    repo: &orch_git::Repo,
    wt: &std::path::Path,
    commit: &str,
) -> (orch_git::Reset, bool) {
    write(&wt.join("README.md"), "changed behind orch's back\n");
    let found = repo.reset_to_base(wt, commit).await.expect("reset");
    let kept = std::fs::read_to_string(wt.join("README.md")).expect("read")
        == "changed behind orch's back\n";
    (found, kept)
}

/// After a stage whose snapshot saw every file on disk staged and which committed it, the next
/// start in that tree does not walk it: nothing has run there since (the agent and the gates had
/// ended before the snapshot). The proof that it did not look is a change made behind orch's
/// back, which only a walk would see; the note is good for one start only.
#[tokio::test]
async fn the_start_after_a_settled_commit_trusts_the_tree_once() {
    let f = Fixture::new().await;
    let wt = f.worktree("settled", "orch/S-1").await;
    let sha = settled_stage(&f, &wt, "work.txt").await;
    assert_eq!(
        start_after_a_change(&f.repo, &wt, &sha).await,
        (orch_git::Reset::Exactly, true),
        "trusted: not walked"
    );
    assert_eq!(
        start_after_a_change(&f.repo, &wt, &sha).await,
        (orch_git::Reset::Reset, false),
        "once only: the second start walks and resets"
    );
}

/// Everything else makes the next start walk: another orch process that started work in the
/// tree since, a forged note, an index someone changed, another commit, a snapshot that had to
/// clean ignored files, and work started by staging again.
#[tokio::test]
async fn a_settled_tree_is_walked_again_after_anything_else_touched_it() {
    type Touch = fn(&Fixture, &std::path::Path);
    let touches: [(&str, Touch); 4] = [
        ("a forged note", |_, wt| {
            write(&note(wt), "00112233445566778899aabbccddeeff");
        }),
        ("a note removed", |_, wt| {
            std::fs::remove_file(note(wt)).expect("the note is there");
        }),
        ("a note emptied", |_, wt| {
            write(&note(wt), "");
        }),
        ("the index changed", |_, wt| {
            git(wt, &["update-index", "--assume-unchanged", ".gitignore"]);
        }),
    ];
    for (what, touch) in touches {
        let (f, wt, sha) = settled_tree(&[]).await;
        touch(&f, &wt);
        assert_walks(&f.repo, &wt, &sha, what).await;
    }

    // Another orch process starting work in the tree ends the first one's note, even when it
    // finds nothing to reset.
    let (f, wt, sha) = settled_tree(&[]).await;
    let other = orch_git::Repo::open(f.main_tree()).await.expect("open");
    assert_ne!(
        other.reset_to_base(&wt, &sha).await.expect("reset"),
        orch_git::Reset::Reset,
        "it found the tree exactly the commit (asking git: it knows nothing of this index)"
    );
    assert_walks(&f.repo, &wt, &sha, "another orch started here").await;

    // A start at another commit walks.
    let (f, wt, sha) = settled_tree(&[]).await;
    let first = git(&wt, &["rev-parse", &format!("{sha}^")]);
    assert_walks(&f.repo, &wt, first.trim(), "another commit").await;

    // A snapshot that removed an ignored file saw the tree before it: no note.
    let (f, wt, sha) = settled_tree(&["target/out.bin"]).await;
    assert_walks(&f.repo, &wt, &sha, "cleaned").await;

    // Staging again is work in the tree: the note ends.
    let (f, wt, sha) = settled_tree(&[]).await;
    f.repo.stage_all(&wt).await.expect("snapshot");
    assert_walks(&f.repo, &wt, &sha, "staged again").await;
}

/// A new repository with a work tree after a stage that committed `work.txt` (and found the
/// `leftovers` there too): the fixture, the tree and the stage's commit.
async fn settled_tree(leftovers: &[&str]) -> (Fixture, PathBuf, String) {
    let f = Fixture::new().await;
    let wt = f.worktree("settled", "orch/S-1").await;
    for path in leftovers {
        write(&wt.join(path), "left by the stage\n");
    }
    let sha = settled_stage(&f, &wt, "work.txt").await;
    (f, wt, sha)
}

/// That the next start at `commit` walks the tree: a change made behind orch's back is reset.
async fn assert_walks(repo: &orch_git::Repo, wt: &std::path::Path, commit: &str, what: &str) {
    assert_eq!(
        start_after_a_change(repo, wt, commit).await,
        (orch_git::Reset::Reset, false),
        "{what}"
    );
}
