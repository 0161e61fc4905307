//! Merging an item's branch into the default branch, with or without a checkout.

use std::path::Path;

use crate::command::{Git, check_ref, nul_fields};
use crate::{GitError, Repo, Result};

/// What [`Repo::merge_into_default`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The branch was already part of the default branch; nothing changed.
    AlreadyMerged,
    /// A merge commit was made; the default branch now points at it.
    Merged { sha: String },
}

impl Repo {
    /// Merges `branch` into the default branch with a merge commit, even when a fast-forward
    /// would do, so that the history shows each item as one unit.
    ///
    /// Idempotent: a branch that is already an ancestor of the default branch gives
    /// [`MergeOutcome::AlreadyMerged`]. When the default branch is checked out in a work tree,
    /// the merge happens there with `git merge` (refused if that tree has uncommitted changes to
    /// tracked files, aborted on conflict), so the files people see follow the branch. Otherwise
    /// (a bare repository, or another branch checked out) the merge is computed without a
    /// checkout and the branch is moved with a compare-and-swap, so a concurrent move is
    /// detected rather than overwritten.
    pub async fn merge_into_default(&self, branch: &str, message: &str) -> Result<MergeOutcome> {
        check_ref("branch", branch)?;
        let default = self.default_branch().await?;
        let theirs = self
            .branch_sha(branch)
            .await?
            .ok_or_else(|| GitError::UnknownBranch(branch.to_owned()))?;
        let ours = self
            .branch_sha(&default)
            .await?
            .ok_or_else(|| GitError::UnknownBranch(default.clone()))?;
        if self.is_ancestor(&theirs, &ours).await? {
            return Ok(MergeOutcome::AlreadyMerged);
        }
        let default_ref = format!("refs/heads/{default}");
        let checkout = self
            .worktrees()
            .await?
            .into_iter()
            .find(|w| !w.prunable && w.branch.as_deref() == Some(default_ref.as_str()));
        let sha = match checkout {
            Some(worktree) => {
                self.merge_in_worktree(&worktree.path, branch, &default, message)
                    .await?
            }
            None => {
                self.merge_without_checkout(branch, &theirs, &default, &ours, message)
                    .await?
            }
        };
        Ok(MergeOutcome::Merged { sha })
    }

    async fn merge_in_worktree(
        &self,
        worktree: &Path,
        branch: &str,
        default: &str,
        message: &str,
    ) -> Result<String> {
        let dirty = tracked_changes(self, worktree).await?;
        if !dirty.is_empty() {
            return Err(GitError::Dirty {
                path: worktree.to_owned(),
                paths: dirty,
            });
        }
        let merge = self.git_in(worktree)?.committing().args([
            "merge",
            "-q",
            "--no-ff",
            "--no-edit",
            "-m",
            message,
            branch,
        ]);
        let output = merge.output().await?;
        if output.status.success() {
            return self.head(worktree).await;
        }
        let conflicts = self
            .git_in(worktree)?
            .args(["diff", "--name-only", "-z", "--diff-filter=U"])
            .run()
            .await?;
        let conflicts: Vec<String> = nul_fields(&conflicts).map(str::to_owned).collect();
        // git refuses some merges before starting them (an untracked file in the way): then
        // there is nothing to abort.
        let started = self
            .git_in(worktree)?
            .args(["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .output()
            .await?;
        if started.status.success() {
            self.git_in(worktree)?
                .args(["merge", "--abort"])
                .run()
                .await?;
        }
        if conflicts.is_empty() {
            Err(merge.failure(&output))
        } else {
            Err(GitError::Conflict {
                branch: branch.to_owned(),
                into: default.to_owned(),
                paths: conflicts,
            })
        }
    }

    async fn merge_without_checkout(
        &self,
        branch: &str,
        theirs: &str,
        default: &str,
        ours: &str,
        message: &str,
    ) -> Result<String> {
        let merge_tree = Git::new(&self.path).args([
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--no-messages",
            ours,
            theirs,
        ]);
        let output = merge_tree.output().await?;
        let text = String::from_utf8_lossy(&output.stdout);
        let mut fields = nul_fields(&text);
        let tree = match output.status.code() {
            Some(0) => fields.next().unwrap_or_default().to_owned(),
            Some(1) => {
                // The first field is the tree with conflict markers; the rest are the paths.
                let mut paths: Vec<String> = fields.skip(1).map(str::to_owned).collect();
                paths.dedup();
                return Err(GitError::Conflict {
                    branch: branch.to_owned(),
                    into: default.to_owned(),
                    paths,
                });
            }
            _ => return Err(merge_tree.failure(&output)),
        };
        let commit = Git::new(&self.path)
            .committing()
            .args([
                "commit-tree",
                &tree,
                "-p",
                ours,
                "-p",
                theirs,
                "-m",
                message,
            ])
            .run_line()
            .await?;
        let reflog = format!("orch: merge {branch}");
        let default_ref = format!("refs/heads/{default}");
        let update =
            Git::new(&self.path).args(["update-ref", "-m", &reflog, &default_ref, &commit, ours]);
        let output = update.output().await?;
        if !output.status.success() {
            // The old value did not match: someone moved the branch since it was read.
            if self.branch_sha(default).await?.as_deref() != Some(ours) {
                return Err(GitError::ConcurrentUpdate {
                    branch: default.to_owned(),
                });
            }
            return Err(update.failure(&output));
        }
        Ok(commit)
    }
}

/// Paths with staged or unstaged changes to tracked files in `worktree` (untracked ones are
/// not in the way of a merge unless git says so itself).
async fn tracked_changes(repo: &Repo, worktree: &Path) -> Result<Vec<String>> {
    let text = repo
        .git_in(worktree)?
        .args(["status", "--porcelain=v1", "-z", "--untracked-files=no"])
        .run()
        .await?;
    let mut paths = Vec::new();
    let mut records = nul_fields(&text);
    while let Some(record) = records.next() {
        let (status, path) = (
            record.get(..2).unwrap_or_default(),
            record.get(3..).unwrap_or_default(),
        );
        paths.push(path.to_owned());
        // A rename or copy is followed by its source path, in a record of its own.
        if status.contains('R') || status.contains('C') {
            if let Some(source) = records.next() {
                paths.push(source.to_owned());
            }
        }
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}
