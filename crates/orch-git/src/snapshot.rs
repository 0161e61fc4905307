//! What a work tree holds right now, measured without touching its real index.
//!
//! Each measurement copies the work tree's index into a temporary file (keeping its stat cache,
//! so unchanged files are not hashed again), stages everything into that copy with
//! `GIT_INDEX_FILE` set, and writes its tree. The agent working in the tree, and `git status`,
//! see no difference.
//!
//! A stage measures once more after its agent has ended ([`Repo::stage_all`]): then nothing
//! works in the tree any more, so it stages into the real index, whose content the stage then
//! commits as it is ([`Repo::commit_snapshot`]) instead of staging every file a second time.
//! That snapshot is read from the index in-process (its files, a digest of them); its tree
//! object is written only when a comparison needs git ([`Repo::tree_id`]).

use std::path::{Path, PathBuf};

use std::os::unix::ffi::OsStrExt as _;

use crate::command::{Git, check_ref, nul_fields};
use crate::index::{self, File, Index};
use crate::{GitError, Repo, Result};

fn owned(paths: &[&[u8]]) -> Vec<Vec<u8>> {
    paths.iter().map(|p| p.to_vec()).collect()
}

/// A work tree's files at one moment, staged in its real index: their tree id, and what had to
/// go or be undone for the tree to say what is on disk.
#[derive(Debug)]
pub struct Snapshot {
    /// Names the staged content: equal states give equal digests.
    digest: String,
    /// The tree object, once written (at once when the index is not one orch reads).
    tree: Option<String>,
    ignored: Vec<String>,
    unhidden: Vec<String>,
    /// The tree's files, read from the index that staged them (when orch reads it).
    files: Option<Vec<File>>,
    /// The FIFOs, sockets and devices on disk, when the walk after staging saw every other
    /// file staged (`None`: not known, look).
    special: Option<Vec<(String, std::fs::FileType)>>,
}

/// The files of the commit a stage starts from, read from the work tree's index while orch
/// knows that index holds exactly that commit's tree (see [`Repo::base_files`]).
#[derive(Debug)]
pub struct BaseFiles {
    commit: String,
    files: Vec<File>,
}

impl Snapshot {
    /// Names the staged content: equal states give equal digests (a digest of the files as
    /// the index lists them, or the tree id when orch does not read the index).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The ignored files and directories removed (what no diff shows: `.env`, `target/`),
    /// sorted.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// The files someone had told git to look away from (`assume-unchanged`,
    /// `skip-worktree`), measured as they are on disk instead, sorted.
    pub fn unhidden(&self) -> &[String] {
        &self.unhidden
    }

    /// The FIFOs, sockets and devices in the tree (which git does not see), as the walk that
    /// checked the staging found them; `None` when that walk did not tell (then look).
    pub fn special_files(&self) -> Option<&[(String, std::fs::FileType)]> {
        self.special.as_deref()
    }

    /// Whether the tree was seen holding exactly what was staged: every file on disk in the
    /// index, nothing git cannot see, nothing removed afterwards.
    fn settled(&self) -> bool {
        self.files.is_some() && self.special.as_ref().is_some_and(Vec::is_empty)
    }
}

impl Repo {
    /// The tree id of `worktree`'s current files: tracked ones as they are on disk, and
    /// untracked ones that are not ignored. Equal states give equal ids.
    pub async fn tree_digest(&self, worktree: &Path) -> Result<String> {
        snapshot_tree(self, worktree).await
    }

    /// Stages everything in `worktree` into its real index (`git add -A`) and takes its tree,
    /// for a tree nothing works in any more (the stage's agent has ended), so that
    /// [`Repo::commit_snapshot`] can commit that very tree. Before that, files hidden from git
    /// are shown to it again ([`Repo::unhide`]), and afterwards ignored files are removed (as
    /// [`Repo::remove_ignored`], which is skipped when the index holds every file on disk: then
    /// there is none).
    pub async fn stage_all(&self, worktree: &Path) -> Result<Snapshot> {
        let (tree, git_dir) = self.checked(worktree)?;
        // Something ran in the tree: what was settled before is not any more.
        self.take_settled(&git_dir);
        let unhidden = self.unhide(worktree, &git_dir).await?;
        self.git_in(worktree)?.args(["add", "-A"]).run().await?;
        let staged = Index::read(&git_dir.join("index"));
        // One walk answers both: whether anything on disk is not staged, and what git cannot
        // see. After a clean, what it saw may be gone: then it is not used.
        let survey = staged
            .as_ref()
            .and_then(|index| index.survey(&tree).ok())
            .filter(|survey| survey.all_held);
        let ignored = if survey.is_some() {
            Vec::new()
        } else {
            self.remove_ignored(worktree).await?
        };
        let files = staged.and_then(Index::files);
        let (digest, tree) = match &files {
            Some(files) => (index::digest(files), None),
            None => {
                let tree = self.write_tree(worktree).await?;
                (tree.clone(), Some(tree))
            }
        };
        Ok(Snapshot {
            digest,
            tree,
            ignored,
            unhidden,
            files,
            special: survey.map(|survey| survey.special),
        })
    }

    /// Whether `worktree` still holds exactly what its index staged (every file as git
    /// recorded it, nothing else on disk; empty directories removed), read in-process: after
    /// [`Repo::stage_all`], nothing changed the tree since. `false` when in doubt.
    pub fn still_staged(&self, worktree: &Path) -> Result<bool> {
        let (tree, git_dir) = self.checked(worktree)?;
        Ok(Index::read(&git_dir.join("index"))
            .is_some_and(|index| index.tree_is_exactly(&tree).unwrap_or(false)))
    }

    /// The tree id of `snapshot`: its tree object written from the index now if it was not
    /// yet (the caller vouches that the index still holds what was staged).
    pub async fn tree_id(&self, worktree: &Path, snapshot: &Snapshot) -> Result<String> {
        match &snapshot.tree {
            Some(tree) => Ok(tree.clone()),
            None => self.write_tree(worktree).await,
        }
    }

    async fn write_tree(&self, worktree: &Path) -> Result<String> {
        self.git_in(worktree)?.args(["write-tree"]).run_line().await
    }

    /// The files of `commit` as `worktree`'s index holds them, when orch left that index
    /// holding exactly `commit`'s tree and it is unchanged since (after [`Repo::reset_to`], or
    /// a work tree checked out just now); `None` otherwise. No git process runs.
    pub fn base_files(&self, worktree: &Path, commit: &str) -> Result<Option<BaseFiles>> {
        let (_, git_dir) = self.checked(worktree)?;
        Ok(self
            .index_holding(&git_dir, commit)
            .and_then(Index::files)
            .map(|files| BaseFiles {
                commit: commit.to_owned(),
                files,
            }))
    }

    /// [`Repo::changed_paths_to`] from `base` to `snapshot`'s tree, compared in-process when
    /// both sides' files are known (`base_files` of `base`, and the snapshot's own), else by
    /// git.
    pub async fn changed_since(
        &self,
        worktree: &Path,
        base: &str,
        base_files: Option<&BaseFiles>,
        snapshot: &Snapshot,
    ) -> Result<Vec<String>> {
        match (base_files, &snapshot.files) {
            (Some(old), Some(new)) if old.commit == base => Ok(index::changed(&old.files, new)),
            _ => {
                let tree = self.tree_id(worktree, snapshot).await?;
                self.changed_paths_to(worktree, base, &tree).await
            }
        }
    }

    /// Clears the `assume-unchanged` and `skip-worktree` bits of the index of `worktree` (its
    /// git directory `git_dir`), which make `git status` and `git add` trust the index instead
    /// of the file: an agent that set one and changed the file would hide the change from every
    /// measurement while the gates ran on it. Returns the paths unhidden, sorted; an index orch
    /// cannot read is asked of git (`ls-files -v`).
    pub(crate) async fn unhide(&self, worktree: &Path, git_dir: &Path) -> Result<Vec<String>> {
        let (assumed, skipped) = match Index::read(&git_dir.join("index")) {
            Some(index) => {
                let (a, s) = index.hidden();
                (owned(&a), owned(&s))
            }
            None => self.hidden_by_git(worktree).await?,
        };
        for (flag, paths) in [
            ("--no-assume-unchanged", &assumed),
            ("--no-skip-worktree", &skipped),
        ] {
            for chunk in paths.chunks(500) {
                self.git_in(worktree)?
                    .args(["update-index", flag, "--"])
                    .args(chunk.iter().map(|p| std::ffi::OsStr::from_bytes(p)))
                    .run()
                    .await?;
            }
        }
        let mut all: Vec<String> = assumed
            .iter()
            .chain(&skipped)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        all.sort();
        all.dedup();
        Ok(all)
    }

    /// The hidden entries as `git ls-files -v` tags them: a lower-case tag is
    /// `assume-unchanged`, `S` is `skip-worktree`.
    async fn hidden_by_git(&self, worktree: &Path) -> Result<(Vec<Vec<u8>>, Vec<Vec<u8>>)> {
        let text = self
            .git_in(worktree)?
            .args(["ls-files", "-v", "-z"])
            .run()
            .await?;
        let (mut assumed, mut skipped) = (Vec::new(), Vec::new());
        for field in nul_fields(&text) {
            let Some((tag, path)) = field.split_once(' ') else {
                continue;
            };
            let path = path.as_bytes().to_vec();
            if tag.chars().any(|c| c.is_ascii_lowercase()) {
                assumed.push(path.clone());
            }
            if tag.eq_ignore_ascii_case("s") {
                skipped.push(path);
            }
        }
        Ok((assumed, skipped))
    }

    /// Commits what `snapshot` staged on top of `parent` with `message`, and moves the work
    /// tree's branch there: one `git commit` of the index (which holds what was staged: the
    /// caller vouches that nothing changed the work tree or the index since
    /// [`Repo::stage_all`]), without hooks, signing or automatic maintenance. Only from
    /// `parent`: HEAD is read before (in-process), git moves the branch with a compare-and-swap
    /// from what it read, and the reflog shows after that it moved from `parent`
    /// ([`GitError::ConcurrentUpdate`] otherwise). When the snapshot saw the tree holding
    /// exactly what it staged, the tree is noted settled: the next [`Repo::reset_to_base`] to
    /// the new commit needs no walk (a command that ran in the tree since must have been
    /// checked with [`Repo::still_staged`]).
    pub async fn commit_snapshot(
        &self,
        worktree: &Path,
        snapshot: Snapshot,
        parent: &str,
        message: &str,
    ) -> Result<String> {
        check_ref("parent", parent)?;
        let settled = snapshot.settled();
        drop(snapshot);
        let (tree, git_dir) = self.checked(worktree)?;
        let moved = || GitError::ConcurrentUpdate {
            branch: "HEAD".to_owned(),
        };
        if self.head_at(&tree, &git_dir).await? != parent {
            return Err(moved());
        }
        self.git_in(worktree)?
            .committing()
            .args([
                "-c",
                "maintenance.auto=false",
                "commit",
                "-q",
                "--no-verify",
                "--cleanup=verbatim",
                "-m",
                message,
            ])
            .run()
            .await?;
        let sha = self.head_at(&tree, &git_dir).await?;
        let from = match last_move(&git_dir) {
            Some((old, new)) if new == sha => old,
            _ => {
                self.git_in(worktree)?
                    .args(["rev-parse", "--verify", "HEAD^"])
                    .run_line()
                    .await?
            }
        };
        if from != parent {
            return Err(moved());
        }
        // The index holds what was committed, and so does the tree when the snapshot saw it so.
        self.remember_index(&git_dir, &sha);
        if settled {
            self.settle(&git_dir, &sha);
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
        self.diff_names(worktree, &[base, tree]).await
    }

    /// Every path the branch checked out in `worktree` changes since it forked from `default`
    /// (their merge base), up to what the index holds now: the whole branch's change, staged
    /// work included, in one `git diff --cached --merge-base`. Sorted, once each.
    pub async fn staged_since_fork(&self, worktree: &Path, default: &str) -> Result<Vec<String>> {
        check_ref("branch", default)?;
        self.diff_names(worktree, &["--cached", "--merge-base", default])
            .await
    }

    /// The paths `git diff <what>` names in `worktree` (renames as both of their paths),
    /// sorted, once each.
    async fn diff_names(&self, worktree: &Path, what: &[&str]) -> Result<Vec<String>> {
        let text = self
            .git_in(worktree)?
            .args(["diff", "--name-only", "-z", "--no-renames", "--no-relative"])
            .args(what)
            .arg("--")
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

/// The last move of HEAD its reflog records (`<old> <new> <who> <when>\t<message>`), as
/// (old, new) object ids; `None` when there is no reflog or its last line is not in that form.
fn last_move(git_dir: &Path) -> Option<(String, String)> {
    let log = std::fs::read_to_string(git_dir.join("logs/HEAD")).ok()?;
    let mut fields = log.lines().last()?.split(' ');
    let (old, new) = (fields.next()?, fields.next()?);
    let id = |s: &str| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit());
    (id(old) && id(new)).then(|| (old.to_owned(), new.to_owned()))
}
