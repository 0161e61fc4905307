//! What an agent stage reads from, and checks in, the work tree an agent just had: the stage's
//! artifact, the earlier artifacts copied into the prompt, and the kinds of the files it left.
//!
//! Every read goes through `orch_process::safe_file` (no link followed below the work tree,
//! regular files only, non-blocking, bounded), so nothing an agent plants (a link to
//! `/proc/self/environ`, a FIFO, a link to `/dev/zero`) reaches a prompt, hangs a stage or fills
//! memory. This module must never open a work-tree path any other way, and never turn a doubt
//! about a file into a pass.

use std::path::Path;
use std::time::Duration;

use orch_core::gate::GateFailure;
use orch_core::pipeline::GateKind;
use orch_process::safe_file::{self, FileKind, SafeFileError};
use tokio_util::sync::CancellationToken;

use crate::execute::StageError;

/// The most of one artifact the gates read; a longer one is cut (its frontmatter is at the top).
pub(crate) const MAX_ARTIFACT_BYTES: usize = 256 * 1024;
/// The most of one earlier artifact read for a prompt (the prompt shows less).
const MAX_PROMPT_INPUT_BYTES: usize = 64 * 1024;
/// The least time an artifact read gets, even when the agent used up the stage's timeout.
const MIN_READ_TIME: Duration = Duration::from_secs(2);

/// The stage's artifact orch removed before the agent started: where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    /// Written by an earlier attempt of this item (it is on the item's branch only).
    Stale,
    /// Already on the default branch when the item's branch forked: put there before the item.
    PreSeeded,
}

/// Removes the stage's artifact `rel` from the work tree, so that only a file the agent writes
/// can be there afterwards, and says what was removed. A link is removed itself.
pub(crate) async fn clear_artifact(
    repo: &orch_git::Repo,
    wt: &Path,
    fork: &mut crate::agent_stage::ForkPoint<'_>,
    rel: &str,
) -> Result<Option<Removed>, StageError> {
    if !safe_file::remove_file(wt, Path::new(rel)).map_err(file_error)? {
        return Ok(None);
    }
    Ok(Some(if repo.has_path(fork.get().await?, rel).await? {
        Removed::PreSeeded
    } else {
        Removed::Stale
    }))
}

/// The stage's artifact as the agent left it: its text (`None` when there is none to read), and
/// the failures that say why when it is missing, not a regular file or could not be read.
pub(crate) async fn read_artifact(
    wt: &Path,
    rel: &str,
    removed: Option<Removed>,
    cancel: &CancellationToken,
    left: Duration,
) -> Result<(Option<String>, Vec<GateFailure>), StageError> {
    let read = safe_file::read_regular_within(
        wt,
        Path::new(rel),
        MAX_ARTIFACT_BYTES,
        cancel,
        left.max(MIN_READ_TIME),
    )
    .await;
    let fail = |reason: String| {
        vec![GateFailure {
            gate: GateKind::Verdict,
            reason,
        }]
    };
    Ok(match read {
        Ok(bounded) => (Some(bounded.text()), Vec::new()),
        Err(SafeFileError::NotFound { .. }) => (
            None,
            match removed {
                None => Vec::new(),
                Some(Removed::Stale) => fail(format!(
                    "{rel} was not written by this attempt: the stale one of an earlier attempt \
                     was removed before the agent started"
                )),
                Some(Removed::PreSeeded) => fail(format!(
                    "{rel} was not written by this attempt: a pre-seeded one, on the default \
                     branch before the item started, was removed before the agent started"
                )),
            },
        ),
        Err(SafeFileError::Stopped { .. }) if cancel.is_cancelled() => {
            return Err(StageError::Abandoned);
        }
        Err(e) => (None, fail(format!("the artifact cannot be read: {e}"))),
    })
}

/// The item's artifacts so far, by file name, for the prompt, read off the async threads and
/// given up when the run is cancelled or `limit` passes. A file that is not a regular file is
/// named with the reason it is not shown, never followed.
pub(crate) async fn read_artifacts(
    wt: &Path,
    dir: &str,
    cancel: &CancellationToken,
    limit: Duration,
) -> Result<Vec<(String, String)>, StageError> {
    let (root, rel) = (wt.to_owned(), dir.to_owned());
    let read = tokio::task::spawn_blocking(move || read_artifacts_now(&root, &rel));
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(StageError::Abandoned),
        joined = read => joined.map_err(|e| file_error(SafeFileError::Io {
            path: dir.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })),
        () = tokio::time::sleep(limit) => Err(file_error(SafeFileError::Stopped {
            path: dir.to_owned(),
            why: "it took longer than the run may",
        })),
    }
}

fn read_artifacts_now(wt: &Path, dir: &str) -> Vec<(String, String)> {
    let listed = safe_file::read_dir_regular(wt, Path::new(dir), ".md", MAX_PROMPT_INPUT_BYTES);
    match listed {
        Ok(files) => files
            .into_iter()
            .map(|(name, read)| {
                let text = match read {
                    Ok(b) => b.text(),
                    Err(e) => format!("[not shown: {e}]"),
                };
                (name, text)
            })
            .collect(),
        Err(e) => vec![(dir.to_owned(), format!("[not shown: {e}]"))],
    }
}

/// The failures for files in the agent's change that are not regular files: a FIFO, socket or
/// device anywhere in the tree (git does not see them), and a symbolic link among the changed
/// paths (unless `links_inside` and it stays inside the tree). Each names the path.
pub(crate) fn file_failures(
    wt: &Path,
    changes: &[String],
    links_inside: bool,
    special: Option<&[(String, std::fs::FileType)]>,
) -> Vec<GateFailure> {
    let mut reasons = Vec::new();
    // The snapshot's walk may have found them already; otherwise the tree is walked here.
    let found = match special {
        Some(found) => Ok(found
            .iter()
            .map(|(path, kind)| (path.clone(), FileKind::of_type(*kind)))
            .collect()),
        None => safe_file::special_files(wt, false),
    };
    match found {
        Ok(found) => reasons.extend(
            found
                .into_iter()
                .map(|(path, kind)| format!("{path} is a {}", kind.describe())),
        ),
        Err(e) => reasons.push(format!("the work tree could not be checked: {e}")),
    }
    for path in changes {
        match safe_file::kind_of(wt, Path::new(path)) {
            Ok(None | Some(FileKind::Regular)) => {}
            Ok(Some(FileKind::Symlink)) => {
                if let Some(why) = link_refusal(wt, path, links_inside) {
                    reasons.push(format!("{path} is a symbolic link {why}"));
                }
            }
            Ok(Some(kind)) => reasons.push(format!("{path} is a {}", kind.describe())),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    reasons.sort();
    reasons.dedup();
    reasons
        .into_iter()
        .map(|reason| GateFailure {
            gate: GateKind::WriteAllowlist,
            reason: format!("only regular files may be written: {reason}"),
        })
        .collect()
}

/// Why the link `path` is refused, or `None` when links inside the tree are allowed and this
/// one's target, read as written, stays inside it (never into `.git`) through no other link.
fn link_refusal(wt: &Path, path: &str, links_inside: bool) -> Option<String> {
    let target = match safe_file::link_target(wt, Path::new(path)) {
        Ok(t) => t,
        Err(e) => return Some(format!("({e})")),
    };
    let shown = target.display();
    if !links_inside {
        return Some(format!(
            "(to {shown}); links are not allowed in this project"
        ));
    }
    let mut resolved: Vec<&std::ffi::OsStr> = Vec::new();
    let parent = Path::new(path).parent().unwrap_or(Path::new(""));
    for c in parent.components().chain(target.components()) {
        match c {
            std::path::Component::Normal(p) => resolved.push(p),
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if resolved.pop().is_some() => {}
            _ => return Some(format!("(to {shown}) that leaves the work tree")),
        }
    }
    if resolved.first().is_some_and(|first| *first == ".git") {
        return Some(format!("(to {shown}) into git's own files"));
    }
    let inside: std::path::PathBuf = resolved.iter().collect();
    match safe_file::kind_of(wt, &inside) {
        Ok(Some(FileKind::Symlink)) | Err(SafeFileError::Symlink { .. }) => {
            Some(format!("(to {shown}) through another link"))
        }
        _ => None,
    }
}

/// Writes the rendered prompt to `path` below orch's data directory, replacing whatever is there
/// (the agent knows the path: a link it planted for a later attempt is removed, never written
/// through).
pub(crate) fn write_prompt(data_dir: &Path, path: &Path, text: &str) -> Result<(), StageError> {
    let rel = path
        .strip_prefix(data_dir)
        .map_err(|_| file_error(SafeFileError::BadPath(path.display().to_string())))?;
    safe_file::remove_file(data_dir, rel).map_err(file_error)?;
    safe_file::write_regular(data_dir, rel, text.as_bytes()).map_err(file_error)
}

/// Removes whatever is at `path` below orch's data directory unless it is a regular file: the
/// run log is opened for appending by the agent run and again by the command gates, and must not
/// be a link an agent planted there (it would be written through).
pub(crate) fn clear_planted(data_dir: &Path, path: &Path) -> Result<(), StageError> {
    let rel = path
        .strip_prefix(data_dir)
        .map_err(|_| file_error(SafeFileError::BadPath(path.display().to_string())))?;
    match safe_file::kind_of(data_dir, rel) {
        Ok(None | Some(FileKind::Regular)) => Ok(()),
        Ok(Some(_)) => safe_file::remove_file(data_dir, rel)
            .map(drop)
            .map_err(file_error),
        Err(e) => Err(file_error(e)),
    }
}

pub(crate) fn file_error(e: SafeFileError) -> StageError {
    StageError::Engine(crate::EngineError::Config {
        file: "work tree".to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
