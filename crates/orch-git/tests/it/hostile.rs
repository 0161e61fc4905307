//! A work tree is written by an agent, which may be hostile: nothing it leaves there may make
//! orch's own git commands run its code. Each test plants one door and then lets orch run the
//! git commands it runs after every agent run; the planted program must never have run.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use orch_git::GitError;

use crate::{Fixture, git, write};

/// A script that records that it ran (and with which environment) in `<dir>/pwned`.
fn payload(dir: &Path) -> (PathBuf, PathBuf) {
    let marker = dir.join("pwned");
    let script = dir.join("payload.sh");
    write(
        &script,
        &format!("#!/bin/sh\nenv > '{}'\nexit 0\n", marker.display()),
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, marker)
}

/// What orch does with a work tree after an agent ran there: measure it, then commit it.
async fn orch_measures_and_commits(f: &Fixture, wt: &Path) -> Vec<GitError> {
    let mut errors = Vec::new();
    if let Err(e) = f.repo.changed_paths(wt, "main").await {
        errors.push(e);
    }
    if let Err(e) = f.repo.commit_all(wt, "agent work").await {
        errors.push(e);
    }
    errors
}

fn assert_not_run(marker: &Path) {
    assert!(
        !marker.exists(),
        "orch's git ran the agent's program; its environment was:\n{}",
        std::fs::read_to_string(marker).unwrap_or_default()
    );
}

/// The attack of issue 14: `.git` replaced by a directory whose config sets `core.fsmonitor`
/// and whose hooks hold a `pre-commit`.
#[tokio::test]
async fn a_git_directory_planted_in_place_of_the_link_is_refused() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    let (script, marker) = payload(&f.root);
    std::fs::remove_file(wt.join(".git")).expect("rm .git");
    git(&f.root, &["clone", "-q", "--bare", "repo", "evil.git"]);
    std::fs::rename(f.root.join("evil.git"), wt.join(".git")).expect("plant");
    git(&wt, &["config", "core.bare", "false"]);
    git(
        &wt,
        &["config", "core.fsmonitor", &script.display().to_string()],
    );
    let hook = wt.join(".git/hooks/pre-commit");
    std::fs::copy(&script, &hook).expect("hook");
    write(&wt.join("work.txt"), "agent output\n");

    let errors = orch_measures_and_commits(&f, &wt).await;
    assert_not_run(&marker);
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, GitError::Tampered { .. })),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors[0].to_string().contains(".git"), "{}", errors[0]);
}

/// `.git` still a file, but pointing at a repository the agent made.
#[tokio::test]
async fn a_link_rewritten_to_another_git_directory_is_refused() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    let (script, marker) = payload(&f.root);
    git(&f.root, &["clone", "-q", "--bare", "repo", "evil.git"]);
    let evil = f.root.join("evil.git");
    git(&evil, &["config", "core.bare", "false"]);
    git(
        &evil,
        &["config", "core.worktree", &wt.display().to_string()],
    );
    git(
        &evil,
        &["config", "core.fsmonitor", &script.display().to_string()],
    );
    write(&wt.join(".git"), &format!("gitdir: {}\n", evil.display()));
    write(&wt.join("work.txt"), "agent output\n");

    let errors = orch_measures_and_commits(&f, &wt).await;
    assert_not_run(&marker);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, GitError::Tampered { .. }))
    );
}

/// `.git` as a symlink to the real administrative directory is not the file orch wrote either.
#[tokio::test]
async fn a_link_replaced_by_a_symlink_is_refused() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    let text = std::fs::read_to_string(wt.join(".git")).expect(".git");
    let admin = text.trim().trim_start_matches("gitdir: ").to_owned();
    std::fs::remove_file(wt.join(".git")).expect("rm");
    std::os::unix::fs::symlink(&admin, wt.join(".git")).expect("symlink");
    let errors = orch_measures_and_commits(&f, &wt).await;
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| matches!(e, GitError::Tampered { .. }))
    );
}

/// A hook in the repository's hooks folder (an agent that could write there without a
/// sandbox) does not run on orch's commit.
#[tokio::test]
async fn a_planted_hook_does_not_run_on_orchs_commit() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    let (script, marker) = payload(&f.root);
    for hook in [
        "pre-commit",
        "commit-msg",
        "post-commit",
        "post-index-change",
    ] {
        std::fs::copy(&script, f.main_tree().join(".git/hooks").join(hook)).expect("hook");
    }
    write(&wt.join("work.txt"), "agent output\n");
    let errors = orch_measures_and_commits(&f, &wt).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_not_run(&marker);
    assert_eq!(
        git(&wt, &["log", "-1", "--format=%s"]).trim(),
        "agent work",
        "the commit itself is made"
    );
}

/// `core.fsmonitor` reached through an include of a file inside the work tree, from the
/// per-worktree configuration: the command line's `core.fsmonitor=false` wins.
#[tokio::test]
async fn fsmonitor_through_an_include_does_not_run() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    let (script, marker) = payload(&f.root);
    write(
        &wt.join("evil.cfg"),
        &format!(
            "[core]\n\tfsmonitor = {}\n\thooksPath = {}\n",
            script.display(),
            f.root.display()
        ),
    );
    git(
        f.main_tree(),
        &["config", "extensions.worktreeConfig", "true"],
    );
    git(
        &wt,
        &[
            "config",
            "--worktree",
            "include.path",
            &wt.join("evil.cfg").display().to_string(),
        ],
    );
    write(&wt.join("work.txt"), "agent output\n");
    let errors = orch_measures_and_commits(&f, &wt).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_not_run(&marker);
}

/// A submodule checkout the agent adds has its own config; git runs commands inside it.
#[tokio::test]
async fn an_embedded_repository_with_fsmonitor_does_not_run() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    let (script, marker) = payload(&f.root);
    let sub = wt.join("sub");
    std::fs::create_dir_all(&sub).expect("mkdir");
    git(&sub, &["init", "-q"]);
    write(&sub.join("f.txt"), "x\n");
    git(&sub, &["add", "-A"]);
    git(&sub, &["commit", "-q", "-m", "sub"]);
    git(
        &sub,
        &["config", "core.fsmonitor", &script.display().to_string()],
    );
    let errors = orch_measures_and_commits(&f, &wt).await;
    // Committing it as a gitlink and measuring it again after a change inside.
    write(&sub.join("f.txt"), "changed\n");
    let again = orch_measures_and_commits(&f, &wt).await;
    assert!(
        errors.is_empty() && again.is_empty(),
        "{errors:?} {again:?}"
    );
    assert_not_run(&marker);
}

/// What git starts (here a clean filter the repository's own config defines, which is trusted
/// and keeps working) sees none of orch's environment: not the variables cargo sets for this
/// test, which stand for orch's tokens.
#[tokio::test]
async fn programs_git_starts_see_a_cleared_environment() {
    let f = Fixture::new().await;
    let (script, marker) = payload(&f.root);
    let filter = format!("{} && cat", script.display());
    git(f.main_tree(), &["config", "filter.spy.clean", &filter]);
    let wt = f.worktree("a", "orch/A-1").await;
    write(&wt.join(".gitattributes"), "*.txt filter=spy\n");
    write(&wt.join("work.txt"), "agent output\n");
    assert!(std::env::var("CARGO_PKG_NAME").is_ok(), "precondition");
    let errors = orch_measures_and_commits(&f, &wt).await;
    assert!(errors.is_empty(), "{errors:?}");
    let seen = std::fs::read_to_string(&marker).expect("the filter ran");
    let names: Vec<&str> = seen.lines().filter_map(|l| l.split('=').next()).collect();
    assert!(!names.contains(&"CARGO_PKG_NAME"), "{seen}");
    assert!(names.contains(&"PATH"), "{seen}");
}

/// A FIFO left in the work tree would block a reader forever: orch's measurement and commit
/// must finish anyway (git does not open special files).
#[tokio::test]
async fn a_fifo_left_in_the_work_tree_does_not_block_orch() {
    let f = Fixture::new().await;
    let wt = f.worktree("a", "orch/A-1").await;
    let made = std::process::Command::new("mkfifo")
        .arg(wt.join("trap"))
        .status()
        .expect("mkfifo");
    assert!(made.success());
    write(&wt.join("work.txt"), "agent output\n");
    let errors = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        orch_measures_and_commits(&f, &wt),
    )
    .await
    .expect("orch's git finished");
    assert!(errors.is_empty(), "{errors:?}");
}
