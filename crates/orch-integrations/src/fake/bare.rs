//! The fake forges' git side on disk: the bare repository a fake holds, read and merged the
//! way a forge's server does it (no checkout, the base branch moved with a compare-and-swap).
//!
//! It runs `git` directly in the bare repository and never touches another directory; it is
//! test support, not orch's git wrapper (`orch-git`), so that a bug in the wrapper cannot hide
//! behind the fake agreeing with it.

use std::path::Path;

/// The identity of the merge commits the fake forges make (a forge signs its merges as itself).
const NAME: &str = "Fake Forge";
const EMAIL: &str = "forge@fake.invalid";

fn git(bare: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("git");
    command
        .current_dir(bare)
        .env_remove("GIT_DIR")
        .env_remove("GIT_INDEX_FILE")
        .env("GIT_AUTHOR_NAME", NAME)
        .env("GIT_AUTHOR_EMAIL", EMAIL)
        .env("GIT_COMMITTER_NAME", NAME)
        .env("GIT_COMMITTER_EMAIL", EMAIL);
    command
}

async fn line(bare: &Path, args: &[&str]) -> Result<String, String> {
    let output = git(bare)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if !output.status.success() {
        return Err(format!(
            "git {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Creates an empty bare repository at `path` whose first branch is `branch`.
pub(crate) async fn init(path: &Path, branch: &str) -> std::io::Result<()> {
    let status = tokio::process::Command::new("git")
        .args(["init", "-q", "--bare", "-b", branch])
        .arg(path)
        .status()
        .await?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("git init --bare failed"))
    }
}

/// The commit `branch` points at, if the branch exists.
pub(crate) async fn branch_sha(bare: &Path, branch: &str) -> Option<String> {
    line(
        bare,
        &[
            "rev-parse",
            "-q",
            "--verify",
            &format!("refs/heads/{branch}^{{commit}}"),
        ],
    )
    .await
    .ok()
    .filter(|s| !s.is_empty())
}

/// Why a merge did not happen.
#[derive(Debug)]
pub(crate) enum MergeRefusal {
    /// The head or base branch does not exist.
    NoBranch(String),
    /// The two branches conflict.
    Conflict,
    /// The base branch moved while the merge was computed.
    Moved,
    /// A fast-forward was asked for, and the head does not contain the base.
    NotFastForward,
    Git(String),
}

/// Merges `head` (at commit `theirs`) into branch `base` with a merge commit, as a forge's merge
/// button does; a head already contained in the base changes nothing. Returns the base's new
/// commit.
pub(crate) async fn merge(
    bare: &Path,
    base: &str,
    theirs: &str,
    message: &str,
) -> Result<String, MergeRefusal> {
    let ours = branch_sha(bare, base)
        .await
        .ok_or_else(|| MergeRefusal::NoBranch(base.to_owned()))?;
    let contained = git(bare)
        .args(["merge-base", "--is-ancestor", theirs, &ours])
        .status()
        .await
        .is_ok_and(|s| s.success());
    if contained {
        return Ok(ours);
    }
    let output = git(bare)
        .args(["merge-tree", "--write-tree", "--no-messages", &ours, theirs])
        .output()
        .await
        .map_err(|e| MergeRefusal::Git(e.to_string()))?;
    let tree = match output.status.code() {
        Some(0) => String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        Some(1) => return Err(MergeRefusal::Conflict),
        _ => {
            return Err(MergeRefusal::Git(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
    };
    let commit = line(
        bare,
        &[
            "commit-tree",
            &tree,
            "-p",
            &ours,
            "-p",
            theirs,
            "-m",
            message,
        ],
    )
    .await
    .map_err(MergeRefusal::Git)?;
    let reference = format!("refs/heads/{base}");
    line(bare, &["update-ref", &reference, &commit, &ours])
        .await
        .map_err(|_| MergeRefusal::Moved)?;
    Ok(commit)
}

/// Moves branch `base` to `to` when `to` contains it (a fast-forward, compare-and-swap on the
/// base's commit), as a forge's fast-forward-only merge or reference update does. Returns the
/// base's new commit.
pub(crate) async fn fast_forward(
    bare: &Path,
    base: &str,
    to: &str,
) -> Result<String, MergeRefusal> {
    let ours = branch_sha(bare, base)
        .await
        .ok_or_else(|| MergeRefusal::NoBranch(base.to_owned()))?;
    let contains = git(bare)
        .args(["merge-base", "--is-ancestor", &ours, to])
        .status()
        .await
        .is_ok_and(|s| s.success());
    if !contains {
        return Err(MergeRefusal::NotFastForward);
    }
    let reference = format!("refs/heads/{base}");
    line(bare, &["update-ref", &reference, to, &ours])
        .await
        .map_err(|_| MergeRefusal::Moved)?;
    Ok(to.to_owned())
}

/// Whether commit `head` is contained in branch `base` (a forge then shows its pull request as
/// merged).
pub(crate) async fn contains(bare: &Path, base: &str, head: &str) -> bool {
    let Some(ours) = branch_sha(bare, base).await else {
        return false;
    };
    git(bare)
        .args(["merge-base", "--is-ancestor", head, &ours])
        .status()
        .await
        .is_ok_and(|s| s.success())
}
