//! What a work tree holds right now, measured without touching its real index.
//!
//! Each measurement copies the work tree's index into a temporary file (keeping its stat cache,
//! so unchanged files are not hashed again), stages everything into that copy with
//! `GIT_INDEX_FILE` set, and writes its tree. The agent working in the tree, and `git status`,
//! see no difference.
//!
//! A stage measures once more after its agent has ended ([`Repo::stage_all`]): then nothing
//! works in the tree any more, so it stages into the real index, whose tree the stage then
//! commits as it is ([`Repo::commit_snapshot`]) instead of staging every file a second time.

use std::path::{Path, PathBuf};

use crate::command::{Git, check_ref, nul_fields};
use crate::{GitError, Repo, Result};

/// A work tree's files at one moment, staged in its real index: their tree id.
#[derive(Debug)]
pub struct Snapshot {
    tree: String,
}

impl Snapshot {
    /// The tree id: equal states give equal ids.
    pub fn tree(&self) -> &str {
        &self.tree
    }
}

impl Repo {
    /// The tree id of `worktree`'s current files: tracked ones as they are on disk, and
    /// untracked ones that are not ignored. Equal states give equal ids.
    pub async fn tree_digest(&self, worktree: &Path) -> Result<String> {
        snapshot_tree(self, worktree).await
    }

    /// Stages everything in `worktree` into its real index (`git add -A`) and takes its tree:
    /// what [`Repo::tree_digest`] measures, for a tree nothing works in any more (the stage's
    /// agent has ended), so that [`Repo::commit_snapshot`] can commit that very tree.
    pub async fn stage_all(&self, worktree: &Path) -> Result<Snapshot> {
        self.git_in(worktree)?.args(["add", "-A"]).run().await?;
        let tree = self
            .git_in(worktree)?
            .args(["write-tree"])
            .run_line()
            .await?;
        Ok(Snapshot { tree })
    }

    /// Commits `snapshot`'s tree on top of `parent` with `message` and moves the work tree's
    /// branch there (compare-and-swap: only from `parent`, [`GitError::ConcurrentUpdate`]
    /// otherwise): two git processes (`commit-tree`, `update-ref`) instead of staging every
    /// file again. The index already holds that tree; the caller vouches that nothing changed
    /// the work tree since [`Repo::stage_all`], so the tree, the index and the new HEAD agree.
    pub async fn commit_snapshot(
        &self,
        worktree: &Path,
        snapshot: Snapshot,
        parent: &str,
        message: &str,
    ) -> Result<String> {
        check_ref("parent", parent)?;
        let sha = self
            .git_in(worktree)?
            .committing()
            .args(["commit-tree", &snapshot.tree, "-p", parent, "-m", message])
            .run_line()
            .await?;
        let update =
            self.git_in(worktree)?
                .args(["update-ref", "-m", message, "HEAD", &sha, parent]);
        let output = update.output().await?;
        if !output.status.success() {
            return Err(match self.head(worktree).await {
                Ok(head) if head != parent => GitError::ConcurrentUpdate {
                    branch: "HEAD".to_owned(),
                },
                _ => update.failure(&output),
            });
        }
        Ok(sha)
    }

    /// Every path that differs between `base` and `worktree`'s current files, committed or not,
    /// staged or not, untracked (not ignored) included; relative to the root, sorted, once each.
    /// A rename counts as both of its paths.
    pub async fn changed_paths(&self, worktree: &Path, base: &str) -> Result<Vec<String>> {
        let tree = snapshot_tree(self, worktree).await?;
        self.changed_paths_to(worktree, base, &tree).await
    }

    /// [`Repo::changed_paths`] against a tree [`Repo::tree_digest`] already took: one snapshot
    /// then serves several comparisons (a stage measures against its base and its fork point).
    pub async fn changed_paths_to(
        &self,
        worktree: &Path,
        base: &str,
        tree: &str,
    ) -> Result<Vec<String>> {
        check_ref("base", base)?;
        check_ref("tree", tree)?;
        let text = self
            .git_in(worktree)?
            .args([
                "diff",
                "--name-only",
                "-z",
                "--no-renames",
                "--no-relative",
                base,
                tree,
                "--",
            ])
            .run()
            .await?;
        let mut paths: Vec<String> = nul_fields(&text).map(str::to_owned).collect();
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Removes every ignored file and directory in `worktree` (what `.gitignore` hides from
    /// every diff: `.env`, `target/`) and returns their paths, sorted. After it the tree holds
    /// only what a snapshot records, so a gate or a build sees what the diff shows.
    pub async fn remove_ignored(&self, worktree: &Path) -> Result<Vec<String>> {
        let text = self
            .git_in(worktree)?
            .args(["clean", "-f", "-f", "-d", "-X"])
            .run()
            .await?;
        let mut paths: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Removing "))
            .map(|p| p.trim_end_matches('/').to_owned())
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// Whether `commit`'s tree holds `path` (relative to the root).
    pub async fn has_path(&self, commit: &str, path: &str) -> Result<bool> {
        check_ref("commit", commit)?;
        let git = Git::new(&self.path).args(["cat-file", "-e", &format!("{commit}:{path}")]);
        let output = git.output().await?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(128 | 1) => Ok(false),
            _ => Err(git.failure(&output)),
        }
    }

    /// `git diff --stat` between `base` and `worktree`'s current files, for display.
    pub async fn diff_stat(&self, worktree: &Path, base: &str) -> Result<String> {
        check_ref("base", base)?;
        let tree = snapshot_tree(self, worktree).await?;
        self.git_in(worktree)?
            .args([
                "diff",
                "--stat",
                "--no-color",
                "--no-relative",
                base,
                &tree,
                "--",
            ])
            .run()
            .await
    }

    /// The patch between `base` and `worktree`'s current files, cut at `max_bytes` (a line at the
    /// end then says so), for display.
    pub async fn diff(&self, worktree: &Path, base: &str, max_bytes: usize) -> Result<String> {
        check_ref("base", base)?;
        let tree = snapshot_tree(self, worktree).await?;
        let (bytes, cut) = self
            .git_in(worktree)?
            .args([
                "diff",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--no-relative",
                base,
                &tree,
                "--",
            ])
            .run_capped(max_bytes)
            .await?;
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if cut {
            // A cut may fall inside a character, which lossy decoding turned into U+FFFD.
            text.push_str(&format!("\n[diff cut at {max_bytes} bytes]\n"));
        }
        Ok(text)
    }
}

/// Stages `worktree`'s files into a private copy of its index and returns the tree id.
async fn snapshot_tree(repo: &Repo, worktree: &Path) -> Result<String> {
    // Checked before its `.git` is read below.
    let git = || repo.git_in(worktree);
    git()?;
    let scratch = tempfile::Builder::new()
        .prefix("orch-index-")
        .tempdir()
        .map_err(|source| GitError::Io {
            action: "creating a temporary index".to_owned(),
            source,
        })?;
    let index = scratch.path().join("index");
    let real_index = match index_of_linked(worktree).await {
        Some(path) => path,
        None => PathBuf::from(
            git()?
                .args(["rev-parse", "--path-format=absolute", "--git-path", "index"])
                .run_line()
                .await?,
        ),
    };
    match tokio::fs::copy(&real_index, &index).await {
        Ok(_) => {}
        // A fresh repository has no index yet: start from an empty one.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(GitError::Io {
                action: format!("copying the index {}", real_index.display()),
                source,
            });
        }
    }
    git()?.index(&index).args(["add", "-A"]).run().await?;
    git()?.index(&index).args(["write-tree"]).run_line().await
}

/// The index of a linked work tree, read from its `.git` file (`gitdir: <admin dir>`) without
/// running git; `None` for anything else (a main work tree, an unusual layout), which the
/// caller asks git about.
async fn index_of_linked(worktree: &Path) -> Option<PathBuf> {
    let text = tokio::fs::read_to_string(worktree.join(".git"))
        .await
        .ok()?;
    let admin = PathBuf::from(
        text.strip_prefix("gitdir: ")?
            .trim_end_matches(['\n', '\r']),
    );
    // Only the layout git itself writes: an absolute admin directory that exists.
    (admin.is_absolute() && admin.join("HEAD").is_file()).then(|| admin.join("index"))
}
