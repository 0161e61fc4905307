//! The git CLI wrapper of orch: a project's repository, its per-item worktrees and branches,
//! commits, snapshots and diffs of work trees, and the final merge into the default branch.
//!
//! orch changes git **only through the `git` program**, never through a library. The CLI is the
//! reference implementation: worktrees, ref locking and merges behave exactly as people who look
//! at the repository with `git` expect. Every call runs with a **cleared environment** (`PATH`,
//! `HOME`, `TMPDIR`, `SSH_AUTH_SOCK` and git's own settings: `LC_ALL=C`, no terminal prompt, no
//! pager), so that nothing git starts sees orch's secrets and an orch started from inside a git
//! hook cannot act on the wrong repository. Work trees are written by agents, which may be
//! hostile, so git never runs code a work tree brings: **hooks and fsmonitor are off** on every
//! command line (`core.hooksPath=/dev/null`, `core.fsmonitor=false`, no `ext::` transport), and
//! before each command in a linked work tree its `.git` must still be the link `git worktree add`
//! wrote, pointing at this repository's administrative directory and back
//! ([`GitError::Tampered`] otherwise). The repository's own hooks therefore do not run on orch's
//! commits; the pipeline's gates are where checks belong.
//!
//! Commits orch makes are always attributed to `orch <orch@localhost>` through
//! `GIT_AUTHOR_*`/`GIT_COMMITTER_*`: the history then says plainly which commits no person
//! typed, and it works on a machine with no identity configured. They are never signed
//! (`commit.gpgSign=false`), because a signing prompt would hang an unattended run.
//!
//! Reads that cost a process each and are asked for several times per stage (the default
//! branch, a work tree's `HEAD`, a branch's tip) come from git's ref files when the repository
//! keeps refs as files (`refs`), in git's documented format; anything else is asked of git.
//!
//! This crate must never pass orch's environment to git, never run git in a work tree whose
//! `.git` it has not just checked, never write the object store or refs behind git's back, never
//! pass a caller's ref name where git could read it as an option, and never touch a work tree's
//! real index to measure it while something may work in it (snapshots use a private index; only
//! a stage whose agent has ended stages into the real one, [`Repo::stage_all`]).

mod command;
mod index;
mod integrate;
mod merge;
mod objects;
mod push;
mod refs;
mod repo;
mod snapshot;
mod worktree;

/// Lower-case hexadecimal, as git writes object ids.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Real git for the unit tests: setting up what the crate must read.
#[cfg(test)]
mod testing {
    use std::path::Path;

    /// Runs `git args` in `dir` with a fixed identity; its stdout. Panics on failure.
    pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@t")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@t")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8(out.stdout).expect("utf-8")
    }
}

use std::path::PathBuf;

pub use integrate::{ConflictExcerpt, Integration};
pub use merge::MergeOutcome;
pub use push::fetched_ref;
pub use repo::{Repo, Reset};
pub use snapshot::{BaseFiles, Snapshot};
pub use worktree::{Ensured, worktree_head};

pub type Result<T, E = GitError> = std::result::Result<T, E>;

/// Why a git operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("could not run `git`: {0}; is git installed and on PATH?")]
    Spawn(#[source] std::io::Error),
    #[error("`git {}` failed ({}): {stderr}", args.join(" "), code.map_or("killed by a signal".to_owned(), |c| format!("exit code {c}")))]
    Command {
        args: Vec<String>,
        code: Option<i32>,
        stderr: String,
    },
    #[error("{} is not the root of a git repository ({reason}); point orch at the repository's top-level directory, or run `git init` there", path.display())]
    NotARepo { path: PathBuf, reason: String },
    #[error("HEAD of {} is detached, so it names no default branch; check the default branch out (`git switch main`) or configure it", path.display())]
    DetachedHead { path: PathBuf },
    #[error("orch never pushes the default branch `{0}`; it changes only through a merge")]
    PushToDefault(String),
    #[error("branch `{0}` does not exist")]
    UnknownBranch(String),
    #[error("{} is already a worktree {found}, not of branch `{wanted}`; remove it or choose another path", path.display())]
    WorktreeMismatch {
        path: PathBuf,
        wanted: String,
        found: String,
    },
    #[error("the work tree {} has uncommitted changes to tracked files ({}); commit or stash them, then merge again", path.display(), paths.join(", "))]
    Dirty { path: PathBuf, paths: Vec<String> },
    #[error("merging `{branch}` into `{into}` conflicts in {}; resolve it on the branch (merge `{into}` into it), then merge again", paths.join(", "))]
    Conflict {
        branch: String,
        into: String,
        paths: Vec<String>,
    },
    #[error("`{branch}` was moved by someone else while orch updated it; run the operation again")]
    ConcurrentUpdate { branch: String },
    #[error("refusing {what} `{value}`: {reason}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("refusing to run git in {}: its `.git` {reason}; an agent may have replaced it to make orch run its code. Inspect the work tree, then remove it (`git worktree remove --force`) so orch makes it again", worktree.display())]
    Tampered { worktree: PathBuf, reason: String },
    #[error("{action}: {source}")]
    Io {
        action: String,
        source: std::io::Error,
    },
}
