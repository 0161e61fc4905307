//! The confinement of a staging or prod instance: the agent's code running as a service, detached
//! from orch and outliving it.
//!
//! An instance is started through `bwrap` with its own PID namespace (orch and every other
//! process of the host are invisible, `/proc/<orch pid>/environ` does not exist), its own IPC
//! namespace, and a mount namespace in which the folders [`InstanceView::hidden`] names (orch's
//! data directory: `orch.db`, `orch.toml`, logs, work trees, other builds) are empty, and the
//! folders [`InstanceView::read_only`] names (its own build) are visible again, read-only. The
//! network is the host's: an instance listens on its loopback port, where orch probes it. The
//! environment is the cleared one the deployer built; bwrap itself gets `PATH` and the variables
//! the caller adds after wrapping (the start marker), since inside it is pid 1.
//!
//! No `--die-with-parent` and no `--new-session`: prod outlives orch, and every process of the
//! instance stays in the process group of the session `setsid` gave the outer `bwrap`, whose pid
//! is the one the deployer records, checks and signals.
//!
//! This module must never start an instance unconfined because bwrap is missing or cannot set
//! up its namespaces: that is an error naming the fix.

use std::path::{Path, PathBuf};

use crate::sandbox::SandboxError;
use crate::spec::DetachedSpec;

/// What an instance's mount namespace hides and shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceView {
    /// Folders that are empty inside (orch's data directory). Each must exist.
    pub hidden: Vec<PathBuf>,
    /// Folders visible again, read-only, at their own path (the instance's build, inside a
    /// hidden folder).
    pub read_only: Vec<PathBuf>,
}

/// The [`DetachedSpec`] that starts `spec` through `bwrap` with the view `view`.
pub fn confine_instance(
    spec: &DetachedSpec,
    view: &InstanceView,
) -> Result<DetachedSpec, SandboxError> {
    let bwrap = crate::bubblewrap::find_on_path("bwrap").ok_or(SandboxError::BubblewrapMissing)?;
    crate::bubblewrap::probe(&bwrap)?;
    // Found as execvp inside will look for it: a missing program fails the start here, not as
    // bwrap's exit status in the instance's log after orch returned.
    crate::detached::find_program(&spec.program, &spec.env).map_err(|reason| {
        SandboxError::Path {
            path: spec.program.clone(),
            reason,
        }
    })?;
    let mut args: Vec<String> = [
        "--unshare-pid",
        "--unshare-ipc",
        "--bind",
        "/",
        "/",
        "--dev-bind",
        "/dev",
        "/dev",
        "--proc",
        "/proc",
    ]
    .map(str::to_owned)
    .to_vec();
    let text = |path: &Path| {
        path.to_str()
            .map(str::to_owned)
            .ok_or_else(|| SandboxError::Path {
                path: path.display().to_string(),
                reason: "its name is not UTF-8".to_owned(),
            })
    };
    for dir in &view.hidden {
        if !dir.is_dir() {
            return Err(SandboxError::Path {
                path: dir.display().to_string(),
                reason: "a folder to hide from the instance is not a folder".to_owned(),
            });
        }
        args.extend(["--tmpfs".to_owned(), text(dir)?]);
    }
    for dir in &view.read_only {
        let dir = text(dir)?;
        args.extend(["--ro-bind".to_owned(), dir.clone(), dir]);
    }
    args.extend([
        "--chdir".to_owned(),
        text(&spec.cwd)?,
        "--clearenv".to_owned(),
    ]);
    for (name, value) in &spec.env {
        args.extend(["--setenv".to_owned(), name.clone(), value.clone()]);
    }
    args.push("--".to_owned());
    args.push(spec.program.clone());
    args.extend(spec.args.iter().cloned());
    Ok(DetachedSpec {
        program: bwrap.display().to_string(),
        args,
        cwd: spec.cwd.clone(),
        env: vec![("PATH".to_owned(), crate::bubblewrap::BWRAP_PATH.to_owned())],
        log: spec.log.clone(),
    })
}
