//! [`Repo`]: a project's main repository, its branches and commits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::command::{Git, check_link, check_ref};
use crate::index::Index;
use crate::objects;
use crate::refs::{Read, RefFiles};
use crate::{GitError, Result};

/// What [`Repo::reset_to_base`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// The tree was not the commit: it was reset and cleaned (a FIFO or a socket, which git
    /// does not remove, may remain).
    Reset,
    /// The tree was the commit as `git status` sees it, which does not see a FIFO or a socket.
    CleanToGit,
    /// The tree was the commit, compared in-process: every file on disk is one of the commit's.
    Exactly,
}

/// A commit whose tree a work tree's index holds exactly, and the index file's checksum then.
#[derive(Debug, Clone)]
struct KnownIndex {
    commit: String,
    sum: [u8; 20],
    /// Set when orch saw the tree exactly as this index holds it after the last process it
    /// started there had ended, and wrote this token to the git directory's [`SETTLED`] file
    /// (see [`Repo::settle`]).
    settled: Option<[u8; 16]>,
}

/// The file in a work tree's git directory that says which orch settled the tree last (see
/// [`Repo::settle`]). Every start of work in the tree empties it first, whichever orch process
/// starts it, so a token read back there means no one has started anything since.
const SETTLED: &str = "orch-settled";

/// A project's main repository: a work tree root or a bare repository.
///
/// Worktree arguments of its methods are directories of this repository's work trees (the main
/// one or one made by [`Repo::ensure_worktree`]); git runs there.
#[derive(Debug, Clone)]
pub struct Repo {
    pub(crate) path: PathBuf,
    /// The repository's git directory (`.git`, or the bare repository itself): linked work
    /// trees' administrative directories live in its `worktrees/`.
    pub(crate) common_dir: PathBuf,
    pub(crate) bare: bool,
    /// Whether refs are kept as files orch can read without starting git (see `refs`).
    ref_files: bool,
    /// Set when the default branch is not simply what HEAD of the main repository points at.
    default_branch: Option<String>,
    /// Work trees (by git directory) whose index orch left holding exactly a commit's tree:
    /// the commit, and the index file's checksum then. While both still hold, the index needs
    /// no comparison with the commit (see [`Repo::reset_to`]).
    known_index: Arc<Mutex<HashMap<PathBuf, KnownIndex>>>,
}

impl Repo {
    /// Creates a repository at `path` (and the directory) whose first branch is `default_branch`.
    pub async fn init(path: &Path, default_branch: &str) -> Result<Self> {
        check_ref("branch", default_branch)?;
        tokio::fs::create_dir_all(path)
            .await
            .map_err(|source| GitError::Io {
                action: format!("creating {}", path.display()),
                source,
            })?;
        Git::new(path)
            .args(["init", "-q", "-b", default_branch, "."])
            .run()
            .await?;
        Self::open(path).await
    }

    /// Opens the repository whose top-level directory (or bare repository directory) is `path`.
    /// A subdirectory or a linked worktree is refused: orch needs the main repository.
    pub async fn open(path: &Path) -> Result<Self> {
        let not_a_repo = |reason: &str| GitError::NotARepo {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let root = path
            .canonicalize()
            .map_err(|e| not_a_repo(&e.to_string()))?;
        // One git process answers all four; in a bare repository it prints the first three
        // and then fails on `--show-toplevel`, which is how a bare repository is told apart.
        let output = Git::new(&root)
            .args([
                "rev-parse",
                "--is-bare-repository",
                "--path-format=absolute",
                "--git-dir",
                "--git-common-dir",
                "--show-toplevel",
            ])
            .output()
            .await?;
        let text = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<&str> = text.lines().collect();
        let (bare, git_dir, common_dir, top) = match (output.status.success(), lines.as_slice()) {
            (true, ["false", git_dir, common_dir, top]) => (false, *git_dir, *common_dir, *top),
            (false, ["true", git_dir, common_dir]) => (true, *git_dir, *common_dir, *git_dir),
            (true, _) => return Err(not_a_repo("git rev-parse printed what orch did not expect")),
            (false, _) => return Err(not_a_repo("git does not find a repository there")),
        };
        if git_dir != common_dir {
            return Err(not_a_repo("it is a linked worktree"));
        }
        let top = PathBuf::from(top);
        if top.canonicalize().ok().as_deref() != Some(root.as_path()) {
            return Err(not_a_repo(&format!(
                "the repository's root is {}",
                top.display()
            )));
        }
        let common_dir = PathBuf::from(common_dir);
        Ok(Self {
            ref_files: RefFiles::readable(&common_dir),
            path: root,
            common_dir,
            bare,
            default_branch: None,
            known_index: Arc::default(),
        })
    }

    /// Names the default branch instead of taking HEAD of the main repository.
    pub fn with_default_branch(mut self, branch: &str) -> Result<Self> {
        self.default_branch = Some(check_ref("branch", branch)?.to_owned());
        Ok(self)
    }

    /// The repository's directory (canonical).
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_bare(&self) -> bool {
        self.bare
    }

    /// The branch items are merged into: as configured, else the one HEAD of the main
    /// repository points at (`main` typically).
    pub async fn default_branch(&self) -> Result<String> {
        if let Some(branch) = &self.default_branch {
            return Ok(branch.clone());
        }
        match self.ref_files(&self.common_dir).map(|f| f.head_target()) {
            Some(Read::Symbolic(target)) => {
                if let Some(branch) = target.strip_prefix("refs/heads/") {
                    return Ok(branch.to_owned());
                }
            }
            Some(Read::Found(_)) => {
                return Err(GitError::DetachedHead {
                    path: self.path.clone(),
                });
            }
            _ => {}
        }
        let output = Git::new(&self.path)
            .args(["symbolic-ref", "--short", "-q", "HEAD"])
            .output()
            .await?;
        match output.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned()),
            Some(1) => Err(GitError::DetachedHead {
                path: self.path.clone(),
            }),
            _ => Err(Git::new(&self.path)
                .args(["symbolic-ref", "--short", "-q", "HEAD"])
                .failure(&output)),
        }
    }

    /// A git command in `worktree`: the main work tree, or a linked one whose `.git` must still
    /// be the link git wrote (see [`check_link`]), checked now, right before git runs there.
    pub(crate) fn git_in(&self, worktree: &Path) -> Result<Git> {
        self.checked(worktree).map(|(tree, _)| Git::new(&tree))
    }

    /// `worktree` normalized, with its git directory (the common one for the main work tree,
    /// else its administrative one), after [`check_link`].
    pub(crate) fn checked(&self, worktree: &Path) -> Result<(PathBuf, PathBuf)> {
        let tree = crate::worktree::normalize(worktree)?;
        let dir = if tree == self.path {
            self.common_dir.clone()
        } else {
            check_link(&self.common_dir, &tree)?
        };
        Ok((tree, dir))
    }

    /// The refs of this repository as files, seen from the work tree whose git directory is
    /// `worktree_dir`; `None` when they are not kept as files.
    pub(crate) fn ref_files<'a>(&'a self, worktree_dir: &'a Path) -> Option<RefFiles<'a>> {
        self.ref_files.then_some(RefFiles {
            common: &self.common_dir,
            worktree_dir,
        })
    }

    /// The full SHA of the commit checked out in `worktree`.
    pub async fn head(&self, worktree: &Path) -> Result<String> {
        let (tree, dir) = self.checked(worktree)?;
        self.head_at(&tree, &dir).await
    }

    /// [`Repo::head`] of a work tree [`Repo::checked`] just now, whose git directory is `dir`.
    pub(crate) async fn head_at(&self, tree: &Path, dir: &Path) -> Result<String> {
        if let Some(Read::Found(sha)) = self.ref_files(dir).map(|f| f.resolve("HEAD")) {
            return Ok(sha);
        }
        Git::new(tree)
            .args(["rev-parse", "--verify", "HEAD"])
            .run_line()
            .await
    }

    /// Puts `worktree`'s HEAD back on `branch` at `commit` when something moved it (an agent
    /// that committed its work itself, switched branches or detached HEAD), keeping the files and
    /// the index as they are (`git symbolic-ref`, `git reset --soft`): the stage then measures and
    /// commits the tree against its base as always, and the agent's own commits are no history.
    /// Returns whether HEAD had moved; reading where it is costs no process.
    pub async fn restore_head(&self, worktree: &Path, branch: &str, commit: &str) -> Result<bool> {
        check_ref("branch", branch)?;
        check_ref("commit", commit)?;
        let (tree, dir) = self.checked(worktree)?;
        let wanted = format!("refs/heads/{branch}");
        let on_branch = match self.ref_files(&dir).map(|f| f.head_target()) {
            Some(Read::Symbolic(target)) => target == wanted,
            Some(Read::Found(_)) => false,
            _ => {
                let output = Git::new(&tree)
                    .args(["symbolic-ref", "-q", "HEAD"])
                    .output()
                    .await?;
                String::from_utf8_lossy(&output.stdout).trim() == wanted
            }
        };
        if on_branch && self.head_at(&tree, &dir).await? == commit {
            return Ok(false);
        }
        self.git_in(worktree)?
            .args(["symbolic-ref", "HEAD", &wanted])
            .run()
            .await?;
        self.git_in(worktree)?
            .args(["reset", "-q", "--soft", commit])
            .run()
            .await?;
        Ok(true)
    }

    /// The full SHA `rev` names, or `None` when it names nothing.
    pub async fn rev_parse(&self, rev: &str) -> Result<Option<String>> {
        check_ref("revision", rev)?;
        if rev.starts_with("refs/") {
            match self.ref_files(&self.common_dir).map(|f| f.resolve(rev)) {
                Some(Read::Found(sha)) => return Ok(Some(sha)),
                Some(Read::Missing) => return Ok(None),
                _ => {}
            }
        }
        let git = Git::new(&self.path).args(["rev-parse", "--verify", "-q", rev]);
        let output = git.output().await?;
        match output.status.code() {
            Some(0) => Ok(Some(
                String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            )),
            Some(1) => Ok(None),
            _ => Err(git.failure(&output)),
        }
    }

    /// Whether `ancestor` is reachable from `descendant` (a commit is its own ancestor).
    pub async fn is_ancestor(&self, ancestor: &str, descendant: &str) -> Result<bool> {
        check_ref("revision", ancestor)?;
        check_ref("revision", descendant)?;
        // Recent commits are loose objects, read in-process (a commit is its own ancestor);
        // anything else is asked of git.
        if let Some(answer) = self
            .objects_dir()
            .and_then(|objects| objects::reaches(&objects, descendant, ancestor))
        {
            return Ok(answer);
        }
        let git = Git::new(&self.path).args(["merge-base", "--is-ancestor", ancestor, descendant]);
        let output = git.output().await?;
        match output.status.code() {
            Some(0) => Ok(true),
            Some(1) => Ok(false),
            _ => Err(git.failure(&output)),
        }
    }

    /// Where the repository's commits can be read in-process (every work tree shares them):
    /// `None` when git would not read history as it is stored (replace refs, grafts, a shallow
    /// clone), so that git answers.
    pub(crate) fn objects_dir(&self) -> Option<PathBuf> {
        let common = &self.common_dir;
        let packed_replace = std::fs::read_to_string(common.join("packed-refs"))
            .is_ok_and(|text| text.contains(" refs/replace/"));
        let rewritten = packed_replace
            || common.join("refs/replace").exists()
            || common.join("info/grafts").exists()
            || common.join("shallow").exists();
        (!rewritten).then(|| common.join("objects"))
    }

    /// The best common ancestor of `a` and `b`: where a branch forked from the default branch.
    pub async fn merge_base(&self, a: &str, b: &str) -> Result<String> {
        check_ref("revision", a)?;
        check_ref("revision", b)?;
        Git::new(&self.path)
            .args(["merge-base", a, b])
            .run_line()
            .await
    }

    /// Deletes `branch`, merged or not; a branch that does not exist is already deleted.
    pub async fn delete_branch(&self, branch: &str) -> Result<()> {
        check_ref("branch", branch)?;
        if self.branch_sha(branch).await?.is_some() {
            Git::new(&self.path)
                .args(["branch", "-q", "-D", branch])
                .run()
                .await?;
        }
        Ok(())
    }

    /// Stages everything in `worktree` (`git add -A`) and commits it with `message`. Returns
    /// the new commit's SHA, or `None` when there was nothing to commit, which is a normal
    /// outcome. The repository's hooks run as for any commit.
    pub async fn commit_all(&self, worktree: &Path, message: &str) -> Result<Option<String>> {
        self.git_in(worktree)?.args(["add", "-A"]).run().await?;
        let staged = self.git_in(worktree)?.args(["diff", "--cached", "--quiet"]);
        let output = staged.output().await?;
        match output.status.code() {
            Some(0) => return Ok(None),
            Some(1) => {}
            _ => return Err(staged.failure(&output)),
        }
        self.git_in(worktree)?
            .committing()
            .args(["commit", "-q", "-m", message])
            .run()
            .await?;
        let (tree, git_dir) = self.checked(worktree)?;
        let head = self.head_at(&tree, &git_dir).await?;
        // A commit of the whole index: the index holds the new HEAD's tree.
        self.remember_index(&git_dir, &head);
        Ok(Some(head))
    }

    /// Makes `worktree` exactly `commit`: tracked files reset, untracked files removed, ignored
    /// ones too (`.env`, `target/`): what is in the tree is then exactly what the commit holds, so
    /// no file an agent left where no diff shows it reaches a gate or a build. Files git was told
    /// to look away from are shown to it first ([`Repo::unhide`]), or even a reset keeps them.
    /// Returns `false` when the tree already was exactly `commit` (HEAD there, no operation in
    /// progress, and nothing changed, staged, untracked or ignored), which one walk of the tree
    /// answers where the reset and the clean take two.
    pub async fn reset_to(&self, worktree: &Path, commit: &str) -> Result<bool> {
        Ok(self.reset_to_base(worktree, commit).await? != Reset::Exactly)
    }

    /// [`Repo::reset_to`], telling what it found ([`Reset`]).
    ///
    /// A tree orch settled when it committed there last ([`Repo::settle`]) is known to be
    /// exactly that commit without a walk: nothing has run in it since. Every other start walks
    /// it (in-process, or `git status`) and resets it when it is not exactly `commit`.
    pub async fn reset_to_base(&self, worktree: &Path, commit: &str) -> Result<Reset> {
        check_ref("commit", commit)?;
        let (tree, git_dir) = self.checked(worktree)?;
        if let Some(settled) = self.take_settled(&git_dir)
            && settled == commit
            && self.at_rest(&tree, &git_dir, commit).await?
        {
            return Ok(Reset::Exactly);
        }
        let unhidden = self.unhide(worktree, &git_dir).await?;
        if unhidden.is_empty() {
            match self.is_exactly(&tree, &git_dir, commit).await? {
                Some(true) => return Ok(Reset::Exactly),
                Some(false) => return Ok(Reset::CleanToGit),
                None => {}
            }
        }
        self.git_in(worktree)?
            .args(["reset", "-q", "--hard", commit])
            .run()
            .await?;
        self.git_in(worktree)?
            .args(["clean", "-q", "-f", "-f", "-d", "-x"])
            .run()
            .await?;
        self.remember_index(&git_dir, commit);
        Ok(Reset::Reset)
    }

    /// Whether HEAD of the work tree `tree` is `commit` with no merge, cherry-pick, revert,
    /// rebase or bisect under way (each keeps state a reset clears).
    async fn at_rest(&self, tree: &Path, git_dir: &Path, commit: &str) -> Result<bool> {
        const IN_PROGRESS: &[&str] = &[
            "MERGE_HEAD",
            "CHERRY_PICK_HEAD",
            "REVERT_HEAD",
            "rebase-merge",
            "rebase-apply",
            "BISECT_LOG",
            "sequencer",
        ];
        Ok(!IN_PROGRESS.iter().any(|f| git_dir.join(f).exists())
            && self.head_at(tree, git_dir).await? == commit)
    }

    /// Whether the work tree `tree` (checked just now, its git directory `git_dir`) is exactly
    /// `commit` already (see [`Repo::reset_to`]); empty directories, which git does not track,
    /// are removed on the way, as `clean -d` would remove them.
    ///
    /// When orch itself left the index holding `commit`'s tree and the index is byte for byte
    /// what it was then, the files are compared with the index in-process (git's own stat
    /// comparison, see `index`); otherwise `git status` compares all three.
    ///
    /// `Some(true)`: exactly, compared in-process (every file on disk is one of the commit's);
    /// `Some(false)`: exactly as `git status` sees it (which does not see a FIFO or a socket);
    /// `None`: not exactly.
    async fn is_exactly(&self, tree: &Path, git_dir: &Path, commit: &str) -> Result<Option<bool>> {
        if !self.at_rest(tree, git_dir, commit).await? {
            return Ok(None);
        }
        if self
            .index_holding(git_dir, commit)
            .is_some_and(|index| index.tree_is_exactly(tree).unwrap_or(false))
        {
            return Ok(Some(true));
        }
        // Git tracks no directory, so `status` shows no empty one, which `clean -d` would
        // remove: they go here (a tree too deep to walk takes the reset and the clean).
        let status = Git::new(tree)
            .args([
                "status",
                "--porcelain",
                "-z",
                "--ignored",
                "--untracked-files=normal",
                "--no-renames",
            ])
            .run()
            .await?;
        let exactly = status.is_empty() && crate::index::remove_empty_dirs(tree).is_ok();
        if exactly {
            self.remember_index(git_dir, commit);
        }
        Ok(exactly.then_some(false))
    }

    /// The index in `git_dir`, when orch left it holding exactly `commit`'s tree and it is byte
    /// for byte what it was then.
    pub(crate) fn index_holding(&self, git_dir: &Path, commit: &str) -> Option<Index> {
        let known = self.known_index.lock().ok()?.get(git_dir).cloned()?;
        let index = Index::read(&git_dir.join("index"))?;
        (known.commit == commit && index.checksum == Some(known.sum)).then_some(index)
    }

    /// Notes that the index in `git_dir` holds exactly `commit`'s tree now.
    pub(crate) fn remember_index(&self, git_dir: &Path, commit: &str) {
        // The trailer names the content; `index_holding` verifies it when it reads the index.
        let sum = crate::index::trailer(&git_dir.join("index"));
        if let Ok(mut known) = self.known_index.lock() {
            match sum {
                Some(sum) => known.insert(
                    git_dir.to_owned(),
                    KnownIndex {
                        commit: commit.to_owned(),
                        sum,
                        settled: None,
                    },
                ),
                None => known.remove(git_dir),
            };
        }
    }

    /// Notes, after [`Repo::remember_index`] of `commit`, that the tree was seen exactly as
    /// the index holds it after every process orch started there had ended: the next
    /// [`Repo::reset_to_base`] to `commit` then needs no walk. The note is a random token kept
    /// here and written to the git directory, where any start of work by any orch process
    /// empties it first; without both, or with the index changed, the next start walks.
    pub(crate) fn settle(&self, git_dir: &Path, commit: &str) {
        let mut token = [0u8; 16];
        if getrandom::getrandom(&mut token).is_err() {
            return;
        }
        let Ok(mut known) = self.known_index.lock() else {
            return;
        };
        let Some(entry) = known.get_mut(git_dir).filter(|k| k.commit == commit) else {
            return;
        };
        if std::fs::write(git_dir.join(SETTLED), crate::hex(&token)).is_ok() {
            entry.settled = Some(token);
        }
    }

    /// Ends what [`Repo::settle`] noted for the work tree of `git_dir` (work is starting there):
    /// the settled commit, when this orch's token is still the one in the git directory and the
    /// index is still the one it left.
    pub(crate) fn take_settled(&self, git_dir: &Path) -> Option<String> {
        let marker = git_dir.join(SETTLED);
        let written = std::fs::read(&marker).ok().filter(|w| !w.is_empty());
        if written.is_some() {
            // Another start, by another orch process, must find nothing to trust. The file is
            // emptied rather than removed: creating a file costs more than writing one.
            let _ = std::fs::write(&marker, b"");
        }
        let known = {
            let mut all = self.known_index.lock().ok()?;
            let entry = all.get_mut(git_dir)?;
            let token = entry.settled.take()?;
            (written? == crate::hex(&token).into_bytes()).then(|| entry.clone())?
        };
        (crate::index::trailer(&git_dir.join("index")) == Some(known.sum)).then_some(known.commit)
    }

    /// The SHA of `refs/heads/<branch>`, or `None` when there is no such branch.
    pub(crate) async fn branch_sha(&self, branch: &str) -> Result<Option<String>> {
        self.rev_parse(&format!("refs/heads/{branch}")).await
    }
}
