//! Per-item worktrees: created, found again and removed idempotently.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::command::{Git, check_ref};
use crate::{GitError, Repo, Result};

/// One entry of `git worktree list --porcelain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Worktree {
    pub(crate) path: PathBuf,
    /// The full ref checked out (`refs/heads/...`); `None` when detached or bare.
    pub(crate) branch: Option<String>,
    /// Its directory is gone; `git worktree prune` would drop it.
    pub(crate) prunable: bool,
}

/// What [`Repo::ensure_worktree`] found or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// The work tree was there already, as it was left (it may hold anything).
    Existing,
    /// Checked out just now from the branch, which existed: clean, at the branch's tip.
    CheckedOut,
    /// The branch was created from the start point and checked out just now: clean, at the
    /// start point's commit then.
    Created,
}

impl Ensured {
    /// Whether git checked the work tree out just now: it holds exactly its HEAD's tree, with
    /// nothing untracked, so resetting and cleaning it would change nothing.
    pub fn is_fresh(self) -> bool {
        self != Ensured::Existing
    }
}

impl Repo {
    /// Makes `worktree` a work tree of `branch`, creating the branch from `from` when it does not
    /// exist. Idempotent: a work tree already there on `branch` is left as it is, and a stale
    /// registration whose directory was deleted is pruned first.
    pub async fn ensure_worktree(
        &self,
        worktree: &Path,
        branch: &str,
        from: &str,
    ) -> Result<Ensured> {
        check_ref("branch", branch)?;
        check_ref("start point", from)?;
        let target = normalize(worktree)?;
        let wanted = format!("refs/heads/{branch}");
        if self.linked_on(&target, &wanted).await {
            return Ok(Ensured::Existing);
        }
        let mut worktrees = self.worktrees().await?;
        if worktrees.iter().any(|w| w.prunable) {
            self.prune_worktrees().await?;
            worktrees = self.worktrees().await?;
        }
        if let Some(existing) = worktrees
            .iter()
            .find(|w| normalize(&w.path).ok().as_ref() == Some(&target))
        {
            if existing.branch.as_deref() == Some(wanted.as_str()) {
                return Ok(Ensured::Existing);
            }
            let found = match &existing.branch {
                Some(other) => format!("of branch `{}`", other.trim_start_matches("refs/heads/")),
                None => "with a detached HEAD".to_owned(),
            };
            return Err(GitError::WorktreeMismatch {
                path: target,
                wanted: branch.to_owned(),
                found,
            });
        }
        let new_branch = self.branch_sha(branch).await?.is_none();
        // Absolute links: the form `check_link` accepts (newer git can write relative ones).
        let add = Git::new(&self.path).args([
            "-c",
            "worktree.useRelativePaths=false",
            "worktree",
            "add",
            "-q",
        ]);
        let add = if new_branch {
            // One git process makes the branch and checks it out (an item's launch waits on it).
            add.args(["--no-track", "-b", branch])
                .arg(&target)
                .arg(from)
        } else {
            add.arg(&target).arg(branch)
        };
        add.run().await?;
        // Checked out just now: the index holds exactly HEAD's tree.
        if let Ok((tree, dir)) = self.checked(&target)
            && let Ok(head) = self.head_at(&tree, &dir).await
        {
            self.remember_index(&dir, &head);
        }
        Ok(if new_branch {
            Ensured::Created
        } else {
            Ensured::CheckedOut
        })
    }

    /// Removes the work tree at `worktree` with whatever it holds, and forgets it. Idempotent:
    /// a path that is no work tree of this repository is left alone.
    pub async fn remove_worktree(&self, worktree: &Path) -> Result<()> {
        let target = normalize(worktree)?;
        if target == self.path {
            return Err(GitError::InvalidArgument {
                what: "worktree",
                value: target.display().to_string(),
                reason: "it is the main work tree of the repository",
            });
        }
        let registered = self
            .worktrees()
            .await?
            .into_iter()
            .any(|w| !w.prunable && normalize(&w.path).ok().as_ref() == Some(&target));
        if registered {
            Git::new(&self.path)
                .args(["worktree", "remove", "--force"])
                .arg(&target)
                .run()
                .await?;
        }
        // `worktree remove` forgets the work tree itself; others whose directory is gone are
        // forgotten too.
        if self.worktrees().await?.iter().any(|w| w.prunable) {
            self.prune_worktrees().await?;
        }
        Ok(())
    }

    /// Whether `target` is already a linked work tree of this repository with `wanted` checked
    /// out, read from the files git keeps (its `.git` file, the admin directory's `HEAD` and
    /// `gitdir`) without running git. Anything unexpected answers `false`, and the caller asks
    /// git.
    async fn linked_on(&self, target: &Path, wanted: &str) -> bool {
        let Ok(text) = tokio::fs::read_to_string(target.join(".git")).await else {
            return false;
        };
        let Some(admin) = text.strip_prefix("gitdir: ").map(|t| t.trim_end()) else {
            return false;
        };
        let admin = PathBuf::from(admin);
        let ours = self.path.join(".git").join("worktrees");
        if !(admin.starts_with(&ours) || admin.starts_with(self.path.join("worktrees"))) {
            return false;
        }
        let head = tokio::fs::read_to_string(admin.join("HEAD")).await;
        let back = tokio::fs::read_to_string(admin.join("gitdir")).await;
        match (head, back) {
            (Ok(head), Ok(back)) => {
                head.trim_end() == format!("ref: {wanted}")
                    && normalize(Path::new(back.trim_end())).ok().as_deref()
                        == Some(target.join(".git").as_path())
            }
            _ => false,
        }
    }

    /// The repository's work trees, as `git worktree list` shows them: read from git's
    /// administrative files when every one is in the form git writes (see [`Repo::listed`]),
    /// else asked of git.
    pub(crate) async fn worktrees(&self) -> Result<Vec<Worktree>> {
        if let Some(listed) = self.listed() {
            return Ok(listed);
        }
        let text = Git::new(&self.path)
            .args(["worktree", "list", "--porcelain", "-z"])
            .run()
            .await?;
        Ok(parse_worktree_list(text.as_bytes()))
    }

    /// The work trees from the files git keeps: the main one (its `HEAD` in the common
    /// directory), then each `worktrees/<id>/` with its `gitdir` (the absolute path of the work
    /// tree's `.git`) and `HEAD`. Stale is what `git worktree list` calls prunable: its `.git`
    /// gone and the entry not `locked`. `None` for anything else (a bare repository, refs not
    /// kept as files, a relative `gitdir`, a `HEAD` that is neither a branch nor an object id).
    fn listed(&self) -> Option<Vec<Worktree>> {
        use crate::refs::Read;
        let branch_of = |dir: &Path| match self.ref_files(dir)?.head_target() {
            Read::Symbolic(target) => Some(Some(target)),
            Read::Found(_) => Some(None),
            Read::Missing | Read::AskGit => None,
        };
        if self.bare {
            return None;
        }
        let mut listed = vec![Worktree {
            path: self.path.clone(),
            branch: branch_of(&self.common_dir)?,
            prunable: false,
        }];
        let admin_root = self.common_dir.join("worktrees");
        let entries = match std::fs::read_dir(&admin_root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Some(listed),
            Err(_) => return None,
        };
        for entry in entries {
            let admin = entry.ok()?.path();
            if !admin.is_dir() {
                return None;
            }
            let gitdir = std::fs::read(admin.join("gitdir")).ok()?;
            let gitdir = PathBuf::from(OsStr::from_bytes(gitdir.strip_suffix(b"\n")?));
            if !gitdir.is_absolute() || gitdir.file_name() != Some(OsStr::new(".git")) {
                return None;
            }
            let gone = !gitdir.exists();
            listed.push(Worktree {
                path: gitdir.parent()?.to_owned(),
                branch: branch_of(&admin)?,
                prunable: gone && !admin.join("locked").exists(),
            });
        }
        Some(listed)
    }

    async fn prune_worktrees(&self) -> Result<()> {
        Git::new(&self.path)
            .args(["worktree", "prune"])
            .run()
            .await
            .map(drop)
    }
}

/// Parses `git worktree list --porcelain -z`: NUL-terminated `key value` attributes, entries
/// separated by an empty attribute.
fn parse_worktree_list(bytes: &[u8]) -> Vec<Worktree> {
    let mut worktrees: Vec<Worktree> = Vec::new();
    for field in bytes.split(|&b| b == 0) {
        if let Some(path) = field.strip_prefix(b"worktree ") {
            let path = PathBuf::from(OsStr::from_bytes(path));
            worktrees.push(Worktree {
                path,
                branch: None,
                prunable: false,
            });
        } else if let Some(current) = worktrees.last_mut() {
            if let Some(branch) = field.strip_prefix(b"branch ") {
                current.branch = Some(String::from_utf8_lossy(branch).into_owned());
            } else if field == b"prunable" || field.starts_with(b"prunable ") {
                current.prunable = true;
            }
        }
    }
    worktrees
}

/// An absolute path with symlinks resolved as far as it exists, so that the paths callers pass
/// and the paths git prints compare equal. A path that does not exist yet keeps its last parts.
pub(crate) fn normalize(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|source| GitError::Io {
        action: format!("resolving {}", path.display()),
        source,
    })?;
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return Ok(rest.iter().rev().fold(real, |dir, part| dir.join(part)));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return Ok(absolute),
        }
    }
}

/// The full SHA of the commit checked out in `worktree`, for a caller without a [`Repo`] (the
/// deployer checking that a build comes from the commit it is labelled with). A linked work
/// tree's HEAD is read from git's own files when they are plain files and the link is the one
/// git made; anything else is asked of git.
pub async fn worktree_head(worktree: &Path) -> Result<String> {
    let tree = normalize(worktree)?;
    if let Some(sha) = linked_head(&tree) {
        return Ok(sha);
    }
    Git::new(&tree)
        .args(["rev-parse", "--verify", "HEAD"])
        .run_line()
        .await
}

/// [`worktree_head`] from the files: the `.git` link (checked as every other read checks it)
/// names the work tree's git directory inside the repository's `worktrees/`; `None` when any
/// of it is not as git writes it.
fn linked_head(tree: &Path) -> Option<String> {
    let (common, dir) = crate::command::linked_dirs(tree).ok()?;
    if !crate::refs::RefFiles::readable(&common) {
        return None;
    }
    let refs = crate::refs::RefFiles {
        common: &common,
        worktree_dir: &dir,
    };
    match refs.resolve("HEAD") {
        crate::refs::Read::Found(sha) => Some(sha),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::git;

    #[test]
    fn parses_porcelain_entries_with_branches_detached_heads_and_stale_ones() {
        let text = b"worktree /r\0HEAD 1111\0branch refs/heads/main\0\0\
worktree /w/a b\0HEAD 2222\0detached\0\0\
worktree /w/gone\0HEAD 3333\0branch refs/heads/orch/X-1\0prunable gitdir file points to non-existent location\0\0";
        assert_eq!(
            parse_worktree_list(text),
            [
                Worktree {
                    path: "/r".into(),
                    branch: Some("refs/heads/main".into()),
                    prunable: false
                },
                Worktree {
                    path: "/w/a b".into(),
                    branch: None,
                    prunable: false
                },
                Worktree {
                    path: "/w/gone".into(),
                    branch: Some("refs/heads/orch/X-1".into()),
                    prunable: true
                },
            ]
        );
    }

    /// The work trees read from git's administrative files are the ones `git worktree list`
    /// shows: on branches, detached, deleted (prunable), deleted but locked (not prunable).
    #[tokio::test]
    async fn worktrees_read_from_git_files_are_what_git_lists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let main = root.join("repo");
        let repo = Repo::init(&main, "main").await.expect("init");
        git(&main, &["commit", "-q", "--allow-empty", "-m", "initial"]);
        let tree = |name: &str| root.join(format!("wt-{name}"));
        for name in ["a", "b", "c", "d"] {
            let branch = format!("orch/{name}");
            repo.ensure_worktree(&tree(name), &branch, "main")
                .await
                .expect("worktree");
        }
        git(&tree("b"), &["checkout", "-q", "--detach"]);
        git(
            &main,
            &["worktree", "lock", &tree("d").display().to_string()],
        );
        std::fs::remove_dir_all(tree("c")).expect("rm");
        std::fs::remove_dir_all(tree("d")).expect("rm");
        let sorted = |mut list: Vec<Worktree>| {
            list.sort_by(|x, y| x.path.cmp(&y.path));
            list
        };
        let by_git = sorted(parse_worktree_list(
            git(&main, &["worktree", "list", "--porcelain", "-z"]).as_bytes(),
        ));
        let read = sorted(repo.listed().expect("read from files"));
        assert_eq!(read, by_git);
        assert_eq!(read.len(), 5);
        assert_eq!(read.iter().filter(|w| w.prunable).count(), 1, "{read:?}");
        assert_eq!(read.iter().filter(|w| w.branch.is_none()).count(), 1);

        // A `gitdir` in a form git may write but orch does not read: git is asked.
        let admin = main.join(".git/worktrees/wt-a");
        std::fs::write(admin.join("gitdir"), "../../../wt-a/.git\n").expect("write");
        assert!(repo.listed().is_none());
    }

    #[tokio::test]
    async fn a_work_tree_head_is_read_from_git_files_as_git_reads_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        let main = root.join("repo");
        let repo = Repo::init(&main, "main").await.expect("init");
        git(&main, &["commit", "-q", "--allow-empty", "-m", "initial"]);
        let wt = root.join("wt");
        repo.ensure_worktree(&wt, "orch/a", "main")
            .await
            .expect("worktree");
        git(
            &wt,
            &["commit", "-q", "--allow-empty", "-m", "on the branch"],
        );
        let by_git = git(&wt, &["rev-parse", "HEAD"]).trim().to_owned();
        assert_eq!(linked_head(&wt).as_deref(), Some(by_git.as_str()));
        assert_eq!(worktree_head(&wt).await.expect("head"), by_git);
        git(&wt, &["checkout", "-q", "--detach", "HEAD~1"]);
        let detached = git(&wt, &["rev-parse", "HEAD"]).trim().to_owned();
        assert_eq!(linked_head(&wt).as_deref(), Some(detached.as_str()));

        // A link that is not the one git made is not read: git answers (here: no repository).
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir_all(elsewhere.join("worktrees/wt")).expect("mkdir");
        // It names a commit, but nothing there points back at this work tree.
        std::fs::write(
            elsewhere.join("worktrees/wt/HEAD"),
            format!("{}\n", "1".repeat(40)),
        )
        .expect("write");
        std::fs::write(
            wt.join(".git"),
            format!("gitdir: {}\n", elsewhere.join("worktrees/wt").display()),
        )
        .expect("write");
        assert_eq!(linked_head(&wt), None);
        // The main work tree's `.git` is a directory: git answers.
        assert_eq!(linked_head(&main), None);
        assert_eq!(
            worktree_head(&main).await.expect("head"),
            git(&main, &["rev-parse", "HEAD"]).trim()
        );
    }

    #[test]
    fn normalizes_paths_that_do_not_exist_yet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().canonicalize().expect("canonical");
        assert_eq!(
            normalize(&dir.path().join("a/b")).expect("normalized"),
            real.join("a/b")
        );
        assert_eq!(
            normalize(&dir.path().join("a")).expect("normalized"),
            real.join("a")
        );
    }
}
