//! `orch onboard apply`: create what the survey found missing. It never deletes and never
//! overwrites: files are created with `create_new`, the first commit goes only into a
//! repository without history, and a repository with history gets the kit on its own branch.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

use super::git;
use super::registry::EntryState;
use super::survey::{self, COMMIT_MESSAGE, KitFile, ONBOARDING_BRANCH, RepoState, Survey};

/// Carries out the survey; returns the lines of what was done (and found).
pub fn apply(s: &Survey) -> anyhow::Result<Vec<survey::Line>> {
    let lines = s.lines();
    match &s.state {
        RepoState::Missing | RepoState::NotGit => {
            std::fs::create_dir_all(&s.repo)
                .with_context(|| format!("cannot create {}", s.repo.display()))?;
            git::run(&s.repo, &["init", "-q", "-b", "main"])?;
            fill_work_tree(&s.repo, s)?;
        }
        RepoState::Empty { .. } => fill_work_tree(&s.repo, s)?,
        RepoState::Committed { branch, onboarding } => {
            if s.needs_commit() {
                fill_onboarding_branch(s, branch, *onboarding)?;
            }
        }
    }
    if let EntryState::Absent(entry) = &s.entry {
        let text = s.registry.text_with(entry)?;
        write_replacing(&s.registry.path, &text)?;
    }
    Ok(lines)
}

/// A repository without history: write the missing kit files in place and make the first
/// commit of exactly the kit's paths.
fn fill_work_tree(worktree: &Path, s: &Survey) -> anyhow::Result<()> {
    write_missing(worktree, s.missing())?;
    let paths: Vec<String> = s.files.iter().map(|f| f.rel.clone()).collect();
    git::commit_paths(worktree, &paths, COMMIT_MESSAGE)
}

/// A repository with history: commit the missing kit files on the onboarding branch through a
/// temporary work tree, so neither the default branch nor the user's work tree changes.
fn fill_onboarding_branch(s: &Survey, branch: &str, exists: bool) -> anyhow::Result<()> {
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    let worktree = scratch.path().join("onboarding");
    let worktree_arg = worktree
        .to_str()
        .context("the temporary directory's path is not valid UTF-8")?;
    if exists {
        git::run(
            &s.repo,
            &["worktree", "add", "-q", worktree_arg, ONBOARDING_BRANCH],
        )?;
    } else {
        git::run(
            &s.repo,
            &[
                "worktree",
                "add",
                "-q",
                "-b",
                ONBOARDING_BRANCH,
                worktree_arg,
                branch,
            ],
        )?;
    }
    let result = write_missing(&worktree, s.missing()).and_then(|()| {
        let paths: Vec<String> = s.missing().map(|f| f.rel.clone()).collect();
        git::commit_paths(&worktree, &paths, COMMIT_MESSAGE)
    });
    // Unregister the temporary work tree whatever happened; the branch keeps the commit.
    let removed = git::run(&s.repo, &["worktree", "remove", "--force", worktree_arg]);
    result?;
    removed?;
    Ok(())
}

/// Creates each file; one that appeared meanwhile is left alone (never overwritten).
fn write_missing<'a>(root: &Path, files: impl Iterator<Item = &'a KitFile>) -> anyhow::Result<()> {
    for f in files {
        let path = root.join(&f.rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => file
                .write_all(f.text.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    Ok(())
}

/// Writes `text` to `path` through a sibling temporary file and a rename, so a crash leaves
/// either the old file or the new one, never half of one.
fn write_replacing(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", tmp.path().display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        // Keep the file's permissions (an orch.toml may be private).
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    tmp.persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}
