//! Build once (contract 6): build the validated worktree at its SHA, keep a copy of the artifact
//! in a directory keyed by that SHA, labelled with its digest, and reuse it while it still
//! matches the label.

use std::fs;
use std::path::{Path, PathBuf};

use orch_process::{Observer, Spec, Stream};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::artifact;
use crate::config::BuildSpec;
use crate::error::DeployError;
use crate::layout::{Layout, read_record, write_record};

/// A kept build: what was built, from which commit, and where its copy lives.
///
/// The docker deployer reports its image the same way: `digest` is the image id, `dir` its
/// records directory and `artifact` the SHA-tagged image name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Build {
    pub sha: String,
    pub digest: String,
    /// `<root>/builds/<sha>` (docker: `<root>/docker`).
    pub dir: PathBuf,
    /// The absolute path of the kept copy of the artifact (what `{artifact}` stands for);
    /// docker: the image name `orch-<project>:<sha>`.
    pub artifact: PathBuf,
    pub built_at: String,
    /// `true` when an existing build of this SHA was reused instead of building again.
    pub reused: bool,
}

/// `build.json`: the label a build carries, like an image label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildLabel {
    pub sha: String,
    pub digest: String,
    pub built_at: String,
    /// The artifact's file name inside `artifact/`.
    pub artifact: String,
}

const LABEL_FILE: &str = "build.json";
const ARTIFACT_DIR: &str = "artifact";

impl BuildLabel {
    fn into_build(self, dir: PathBuf, reused: bool) -> Build {
        let artifact = dir.join(ARTIFACT_DIR).join(&self.artifact);
        Build {
            sha: self.sha,
            digest: self.digest,
            dir,
            artifact,
            built_at: self.built_at,
            reused,
        }
    }
}

/// Reads the build in `dir` and checks that its files still hash to its label's digest.
pub(crate) fn load_verified(dir: &Path) -> Result<Build, DeployError> {
    let label_path = dir.join(LABEL_FILE);
    let label: BuildLabel =
        read_record(&label_path)?.ok_or_else(|| DeployError::BuildTampered {
            build_dir: dir.to_owned(),
            detail: "its build.json is missing".to_owned(),
        })?;
    let build = label.into_build(dir.to_owned(), true);
    let on_disk = artifact::digest(&build.artifact).map_err(|e| DeployError::BuildTampered {
        build_dir: dir.to_owned(),
        detail: format!("its artifact cannot be read: {e}"),
    })?;
    if on_disk != build.digest {
        return Err(DeployError::BuildTampered {
            build_dir: dir.to_owned(),
            detail: format!(
                "the files hash to {on_disk}, the label says {}",
                build.digest
            ),
        });
    }
    Ok(build)
}

/// Returns the kept build of `sha`, building it first unless a matching one exists.
///
/// The worktree must be at `sha` (checked with git): the label must tell the truth about the
/// commit the artifact came from.
pub(crate) async fn ensure_build(
    layout: &Layout,
    spec: &BuildSpec,
    sandbox: &orch_process::Sandbox,
    worktree: &Path,
    sha: &str,
    cancel: &CancellationToken,
    refused: &mut orch_process::EgressRefusals,
) -> Result<Build, DeployError> {
    check_worktree_at(worktree, sha).await?;
    let dir = layout.build_dir(sha);
    if dir.exists() {
        match load_verified(&dir) {
            Ok(build) if build.sha == sha => return Ok(build),
            Ok(build) => {
                tracing::warn!(dir = %dir.display(), label_sha = %build.sha, "kept build is labelled with another SHA; rebuilding")
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "kept build does not match its label; rebuilding")
            }
        }
    }
    run_build_command(layout, spec, sandbox, worktree, sha, cancel, refused).await?;
    keep_artifact(layout, spec, worktree, sha).await
}

/// Checks that `sha` is a full SHA and that `worktree` is checked out at it: a build's label must
/// tell the truth about the commit it came from.
pub(crate) async fn check_worktree_at(worktree: &Path, sha: &str) -> Result<(), DeployError> {
    check_sha_format(sha)?;
    let head = worktree_head(worktree).await?;
    if head != sha {
        return Err(DeployError::WorktreeNotAtSha {
            worktree: worktree.to_owned(),
            expected: sha.to_owned(),
            head,
        });
    }
    Ok(())
}

/// A SHA names a directory, so it must be exactly a full hex object id.
pub(crate) fn check_sha_format(sha: &str) -> Result<(), DeployError> {
    let is_full_sha = matches!(sha.len(), 40 | 64)
        && sha
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
    if is_full_sha {
        Ok(())
    } else {
        Err(DeployError::InvalidSha {
            sha: sha.to_owned(),
        })
    }
}

/// Collects a child's stdout lines.
#[derive(Default)]
pub(crate) struct StdoutLines(pub Vec<String>);

impl Observer for StdoutLines {
    fn line(&mut self, stream: Stream, line: &str) {
        if stream == Stream::Stdout {
            self.0.push(line.to_owned());
        }
    }
}

/// The commit `worktree` has checked out, read from git's files when they are plain (no git
/// process per build), else asked of git.
async fn worktree_head(worktree: &Path) -> Result<String, DeployError> {
    orch_git::worktree_head(worktree)
        .await
        .map_err(|e| DeployError::Git {
            detail: format!("the HEAD of {}: {e}", worktree.display()),
        })
}

async fn run_build_command(
    layout: &Layout,
    spec: &BuildSpec,
    sandbox: &orch_process::Sandbox,
    worktree: &Path,
    sha: &str,
    cancel: &CancellationToken,
    refused: &mut orch_process::EgressRefusals,
) -> Result<(), DeployError> {
    let log = layout.build_log(sha);
    fs::create_dir_all(layout.builds()).map_err(DeployError::io("create", layout.builds()))?;
    // A rebuild starts a fresh log: the previous attempt's output would only mislead.
    crate::layout::remove_file(&log)?;
    // The build script is the item's code: it runs where the project's command gates run.
    let run = Spec::shell(&spec.command, worktree)
        .timeout(spec.timeout)
        .log(&log)
        .sandbox(sandbox.clone());
    let finished = orch_process::run(&run, cancel, &mut Refusals(refused)).await;
    if cancel.is_cancelled() {
        return Err(DeployError::Cancelled);
    }
    if finished.outcome.success() {
        return Ok(());
    }
    Err(build_failed(&spec.command, &finished))
}

/// Keeps what the build's egress proxy refused, for the item's events.
struct Refusals<'a>(&'a mut orch_process::EgressRefusals);

impl orch_process::Observer for Refusals<'_> {
    fn egress_refused(&mut self, refused: &orch_process::EgressRefusals) {
        refused.clone_into(self.0);
    }
}

/// [`DeployError::BuildFailed`] for a build that ended as `finished`, with its last lines.
pub(crate) fn build_failed(command: &str, finished: &orch_process::Finished) -> DeployError {
    let tail: Vec<&str> = finished.tail.lines().rev().take(5).collect();
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!(
            "; its last lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    };
    DeployError::BuildFailed {
        command: command.to_owned(),
        outcome: finished.outcome.describe(),
        tail,
    }
}

/// Copies the built artifact into `builds/<sha>` through a temporary directory renamed into
/// place, so a crash never leaves a half-copied build that looks complete.
async fn keep_artifact(
    layout: &Layout,
    spec: &BuildSpec,
    worktree: &Path,
    sha: &str,
) -> Result<Build, DeployError> {
    let source = worktree.join(&spec.artifact);
    if fs::symlink_metadata(&source).is_err() {
        return Err(DeployError::ArtifactMissing { path: source });
    }
    let name = spec
        .artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".to_owned());
    let final_dir = layout.build_dir(sha);
    let dir_for_error = final_dir.clone();
    let incoming = layout.builds().join(format!(".incoming-{sha}"));
    let sha = sha.to_owned();
    let task = tokio::task::spawn_blocking(move || -> Result<Build, DeployError> {
        if incoming.exists() {
            fs::remove_dir_all(&incoming).map_err(DeployError::io("remove", &incoming))?;
        }
        fs::create_dir_all(incoming.join(ARTIFACT_DIR))
            .map_err(DeployError::io("create", &incoming))?;
        let kept = incoming.join(ARTIFACT_DIR).join(&name);
        artifact::copy(&source, &kept)?;
        let digest = artifact::digest(&kept)?;
        let label = BuildLabel {
            sha,
            digest,
            built_at: chrono::Utc::now().to_rfc3339(),
            artifact: name,
        };
        write_record(&incoming.join(LABEL_FILE), &label)?;
        if final_dir.exists() {
            fs::remove_dir_all(&final_dir)
                .map_err(DeployError::io("remove the stale build", &final_dir))?;
        }
        fs::rename(&incoming, &final_dir)
            .map_err(DeployError::io("move the build into", &final_dir))?;
        Ok(label.into_build(final_dir, false))
    });
    task.await.map_err(|e| DeployError::Io {
        action: "copy the artifact into",
        path: dir_for_error,
        source: std::io::Error::other(e.to_string()),
    })?
}
