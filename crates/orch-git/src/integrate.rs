//! Integrating an item's branch with the default branch's tip before it is validated, moving
//! the default branch to exactly what was promoted, and the identity of an item's change.
//!
//! orch integrates by **merging the tip into the item's branch**, not by rebasing the branch
//! onto the tip: the commits the reviewer read and the branch a forge shows stay as they were
//! (no force-push of reviewed history), a conflict is resolved once in one merge commit, and
//! the candidate is a plain descendant of the tip, so the default branch can later move to it
//! by a fast-forward.

use std::path::Path;

use crate::command::{Git, check_ref, nul_fields};
use crate::{GitError, Repo, Result};

/// How much of each conflicted file a conflict report carries, and of all of them together.
const EXCERPT_PER_FILE: usize = 4 * 1024;
const EXCERPT_TOTAL: usize = 16 * 1024;

/// What [`Repo::integrate`] made of the branch checked out in a work tree.
///
/// A candidate is always a merge commit whose first parent is the tip and whose second is the
/// item's work (`--no-ff` shape): once the default branch fast-forwards to it, the default
/// branch's first-parent history reads one "Merge ITEM: title" per item, as a merge would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integration {
    /// The branch was already a candidate on this tip: nothing changed.
    AlreadyContains { candidate: String },
    /// The branch moved to a new candidate on the tip (the tip merged cleanly into it, or the
    /// branch already contained the tip and got its merge commit).
    Merged { candidate: String },
    /// The tip conflicts with the branch. The merge was committed on the branch **with its
    /// conflict markers** (so the developer resolves them on the branch, and the next
    /// integration finds the tip already contained); `excerpts` shows both sides.
    Conflict {
        commit: String,
        paths: Vec<String>,
        excerpts: Vec<ConflictExcerpt>,
    },
}

/// The conflicted regions of one file, bounded in size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictExcerpt {
    pub path: String,
    /// The lines from each `<<<<<<<` to its `>>>>>>>` (both sides), cut to a bounded size.
    pub text: String,
}

impl Repo {
    /// Integrates `tip` into the branch checked out in `worktree` (which must be clean at its
    /// head) and makes the candidate: the branch's work on top of the tip, as a merge commit
    /// with `message` whose first parent is the tip. A conflict is committed with its markers
    /// for the developer instead, and no candidate is made.
    pub async fn integrate(
        &self,
        worktree: &Path,
        tip: &str,
        message: &str,
    ) -> Result<Integration> {
        check_ref("revision", tip)?;
        let head = self.head(worktree).await?;
        // Already a candidate on this tip: a merge whose first parent is the tip.
        if matches!(self.parents(&head).await?.as_slice(), [first, _] if first == tip) {
            return Ok(Integration::AlreadyContains { candidate: head });
        }
        let work = if self.is_ancestor(tip, &head).await? {
            head
        } else {
            match self.merge_tip(worktree, tip).await? {
                Ok(merged) => merged,
                Err(conflict) => return Ok(conflict),
            }
        };
        if work == tip {
            // Nothing of the item's own: the tip itself is the candidate.
            return Ok(Integration::AlreadyContains { candidate: work });
        }
        let tree = format!("{work}^{{tree}}");
        let candidate = self
            .git_in(worktree)?
            .committing()
            .args(["commit-tree", &tree, "-p", tip, "-p", &work, "-m", message])
            .run_line()
            .await?;
        // The candidate's tree is `work`'s: an index known to hold `work` holds it after the
        // fast-forward too.
        let (_, git_dir) = self.checked(worktree)?;
        let known = self.index_holding(&git_dir, &work).is_some();
        // With the same tree, a fast-forward only moves the branch: `update-ref` does that
        // (refusing if HEAD is no longer `work`) without `git merge` checking every file of
        // the work tree against the index and starting git's auto-maintenance.
        self.git_in(worktree)?
            .args([
                "update-ref",
                "-m",
                "orch: candidate",
                "HEAD",
                &candidate,
                &work,
            ])
            .run()
            .await?;
        if known {
            self.remember_index(&git_dir, &candidate);
        }
        Ok(Integration::Merged { candidate })
    }

    /// The parents of `commit`, in order.
    async fn parents(&self, commit: &str) -> Result<Vec<String>> {
        if let Some(read) = self
            .objects_dir()
            .and_then(|objects| crate::objects::loose_commit(&objects, commit))
        {
            return Ok(read.parents);
        }
        let line = Git::new(&self.path)
            .args(["rev-list", "--parents", "-n", "1", commit])
            .run_line()
            .await?;
        Ok(line.split_whitespace().skip(1).map(str::to_owned).collect())
    }

    /// Merges `tip` into the branch checked out in `worktree`: the merge commit, or the conflict
    /// committed with its markers.
    async fn merge_tip(
        &self,
        worktree: &Path,
        tip: &str,
    ) -> Result<std::result::Result<String, Integration>> {
        let message = format!(
            "Integrate {} into this branch",
            tip.get(..12).unwrap_or(tip)
        );
        let message = message.as_str();
        let merge = self.git_in(worktree)?.committing().args([
            "merge",
            "-q",
            "--no-ff",
            "--no-edit",
            "--no-verify",
            "-m",
            message,
            tip,
        ]);
        let output = merge.output().await?;
        if output.status.success() {
            return Ok(Ok(self.head(worktree).await?));
        }
        let listed = self
            .git_in(worktree)?
            .args(["diff", "--name-only", "-z", "--diff-filter=U"])
            .run()
            .await?;
        let mut paths: Vec<String> = nul_fields(&listed).map(str::to_owned).collect();
        paths.dedup();
        let started = self
            .git_in(worktree)?
            .args(["rev-parse", "-q", "--verify", "MERGE_HEAD"])
            .output()
            .await?;
        if paths.is_empty() || !started.status.success() {
            if started.status.success() {
                self.git_in(worktree)?
                    .args(["merge", "--abort"])
                    .run()
                    .await?;
            }
            return Err(merge.failure(&output));
        }
        let excerpts = excerpts(worktree, &paths);
        self.git_in(worktree)?.args(["add", "-A"]).run().await?;
        let message = format!(
            "{message}\n\nConflicts left for the developer to resolve: {}",
            paths.join(", ")
        );
        self.git_in(worktree)?
            .committing()
            .args(["commit", "-q", "--no-verify", "-m", &message])
            .run()
            .await?;
        Ok(Err(Integration::Conflict {
            commit: self.head(worktree).await?,
            paths,
            excerpts,
        }))
    }

    /// The paths among `paths` whose file in `worktree` still holds a conflict marker line
    /// (`<<<<<<< ` or `>>>>>>> ` at the start of a line).
    pub fn unresolved_conflicts(worktree: &Path, paths: &[String]) -> Vec<String> {
        paths
            .iter()
            .filter(|path| {
                read_bounded(&worktree.join(path), 8 * 1024 * 1024).is_some_and(|text| {
                    text.lines()
                        .any(|l| l.starts_with("<<<<<<< ") || l.starts_with(">>>>>>> "))
                })
            })
            .cloned()
            .collect()
    }

    /// The identity of the change from `base` to `head`: a SHA-256 over their diff with the
    /// hunk positions and blob ids left out (as `git patch-id` does), so the same change
    /// integrated onto another tip keeps its identity while any edit of it does not. `None`
    /// when there is no difference.
    pub async fn change_id(&self, base: &str, head: &str) -> Result<Option<String>> {
        check_ref("revision", base)?;
        check_ref("revision", head)?;
        let (diff, truncated) = Git::new(&self.path)
            .args([
                "diff",
                "--no-color",
                "--no-ext-diff",
                "--no-renames",
                "--binary",
                base,
                head,
                "--",
            ])
            .run_capped(256 * 1024 * 1024)
            .await?;
        if truncated {
            return Err(GitError::InvalidArgument {
                what: "diff",
                value: format!("{base}..{head}"),
                reason: "is larger than 256 MiB; orch does not identify changes that large",
            });
        }
        if diff.is_empty() {
            return Ok(None);
        }
        Ok(Some(stable_digest(&diff)))
    }

    /// Moves the default branch from `expected` to `to`, a descendant of it, and nothing else:
    /// a fast-forward. Where the default branch is checked out, that work tree follows
    /// (`git merge --ff-only`, refused when its own changes are in the way); elsewhere the ref
    /// moves by compare-and-swap. Either way a default branch moved by someone since
    /// `expected` was read is [`GitError::ConcurrentUpdate`], never overwritten.
    pub async fn advance_default(&self, expected: &str, to: &str) -> Result<()> {
        check_ref("revision", expected)?;
        check_ref("revision", to)?;
        let default = self.default_branch().await?;
        let now = self
            .branch_sha(&default)
            .await?
            .ok_or_else(|| GitError::UnknownBranch(default.clone()))?;
        if now == to {
            return Ok(());
        }
        if now != expected {
            return Err(GitError::ConcurrentUpdate { branch: default });
        }
        if !self.is_ancestor(expected, to).await? {
            return Err(GitError::InvalidArgument {
                what: "commit",
                value: to.to_owned(),
                reason: "does not contain the default branch's tip; orch only fast-forwards it",
            });
        }
        let default_ref = format!("refs/heads/{default}");
        let checkout = self
            .worktrees()
            .await?
            .into_iter()
            .find(|w| !w.prunable && w.branch.as_deref() == Some(default_ref.as_str()));
        if let Some(checkout) = checkout {
            self.git_in(&checkout.path)?
                .args(["merge", "-q", "--ff-only", "--no-verify", to])
                .run()
                .await?;
            return Ok(());
        }
        let update = Git::new(&self.path).args([
            "update-ref",
            "-m",
            "orch: promoted",
            &default_ref,
            to,
            expected,
        ]);
        let output = update.output().await?;
        if !output.status.success() {
            if self.branch_sha(&default).await?.as_deref() != Some(expected) {
                return Err(GitError::ConcurrentUpdate { branch: default });
            }
            return Err(update.failure(&output));
        }
        Ok(())
    }

    /// The SHA the default branch points at.
    pub async fn default_tip(&self) -> Result<String> {
        let default = self.default_branch().await?;
        self.branch_sha(&default)
            .await?
            .ok_or(GitError::UnknownBranch(default))
    }
}

/// SHA-256 over the diff's lines, without `index` lines and hunk positions.
fn stable_digest(diff: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for line in diff.split(|b| *b == b'\n') {
        if line.starts_with(b"index ") {
            continue;
        }
        if line.starts_with(b"@@") {
            // `@@ -a,b +c,d @@ context`: keep only what follows the positions.
            let rest = line
                .windows(2)
                .skip(2)
                .position(|w| w == b"@@")
                .map_or(&line[..0], |at| &line[at + 4..]);
            hasher.update(b"@@");
            hasher.update(rest);
        } else {
            hasher.update(line);
        }
        hasher.update(b"\n");
    }
    crate::hex(&hasher.finalize())
}

/// The conflicted regions of each path, bounded per file and in all.
fn excerpts(worktree: &Path, paths: &[String]) -> Vec<ConflictExcerpt> {
    let mut out = Vec::new();
    let mut budget = EXCERPT_TOTAL;
    for path in paths {
        let text = match read_bounded(&worktree.join(path), 8 * 1024 * 1024) {
            Some(text) => regions(&text),
            None => "(not a readable text file: both sides changed it)".to_owned(),
        };
        let take = text.len().min(EXCERPT_PER_FILE).min(budget);
        let mut cut = take;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut shown = text[..cut].to_owned();
        if cut < text.len() {
            shown.push_str("\n[... cut]");
        }
        budget -= cut;
        out.push(ConflictExcerpt {
            path: path.clone(),
            text: shown,
        });
    }
    out
}

/// The lines from each `<<<<<<<` through its `>>>>>>>`.
fn regions(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("<<<<<<< ") {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line.starts_with(">>>>>>> ") {
            inside = false;
        }
    }
    if out.is_empty() {
        "(no conflict markers: a file deleted on one side and changed on the other, or binary)"
            .to_owned()
    } else {
        out
    }
}

/// A regular file's text, at most `max` bytes; `None` for anything else (a link, a FIFO, a
/// directory, an unreadable file), which is never followed or waited on.
fn read_bounded(path: &Path, max: u64) -> Option<String> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.file_type().is_file() {
        return None;
    }
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_positions_and_blob_ids_but_not_content() {
        let a = b"diff --git a/x b/x\nindex 111..222 100644\n--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@ fn f\n a\n+b\n";
        let moved = b"diff --git a/x b/x\nindex 333..444 100644\n--- a/x\n+++ b/x\n@@ -10,2 +10,3 @@ fn f\n a\n+b\n";
        let edited = b"diff --git a/x b/x\nindex 111..222 100644\n--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@ fn f\n a\n+c\n";
        assert_eq!(stable_digest(a), stable_digest(moved));
        assert_ne!(stable_digest(a), stable_digest(edited));
    }

    #[test]
    fn regions_show_both_sides_only() {
        let text = "keep\n<<<<<<< HEAD\nmine\n=======\ntheirs\n>>>>>>> abc\nafter\n";
        assert_eq!(
            regions(text),
            "<<<<<<< HEAD\nmine\n=======\ntheirs\n>>>>>>> abc\n"
        );
    }
}
