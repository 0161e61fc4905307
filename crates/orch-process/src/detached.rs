//! [`spawn_detached`]: a process that outlives orch (the self-deploy hook restarts orch itself).
//!
//! The new session comes from util-linux's `setsid` program, because calling `setsid(2)` between
//! fork and exec needs `pre_exec`, which is `unsafe` and forbidden here. `setsid` is started
//! without `--fork`: orch's child is never a process group leader, so `setsid` can call
//! `setsid(2)` itself and `exec` the program in the same process. The pid orch gets is then the
//! program's own pid, in a session of its own (`--fork` would hide that pid behind an exited
//! parent).

use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::ProcessError;
use crate::spec::DetachedSpec;

const SETSID: &str = "setsid";

/// Starts `spec` in a session of its own, detached from orch's terminal and process group, with
/// standard input from `/dev/null` and both output streams appended to `spec.log`. Returns its
/// pid; the process keeps running when orch exits or is killed.
pub fn spawn_detached(spec: &DetachedSpec) -> Result<u32, ProcessError> {
    let start_error = |reason: String| ProcessError::Start {
        program: spec.program.clone(),
        reason,
    };
    if !spec.cwd.is_dir() {
        return Err(start_error(format!(
            "the working directory {} does not exist",
            spec.cwd.display()
        )));
    }
    find_program(&spec.program, &spec.env).map_err(start_error)?;
    let log_error = |source| ProcessError::Log {
        path: spec.log.clone(),
        source,
    };
    if let Some(dir) = spec.log.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(log_error)?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(log_error)?;
    let log_for_stderr = log.try_clone().map_err(log_error)?;
    let child = Command::new(SETSID)
        // `--` so that a program whose name starts with `-` is not read as an option of setsid.
        .arg("--")
        .arg(&spec.program)
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .env_clear()
        .envs(spec.env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_for_stderr)
        .spawn()
        .map_err(|e| start_error(format!("`{SETSID}` (util-linux) could not be run: {e}")))?;
    let pid = child.id();
    reap_in_background(child);
    Ok(pid)
}

/// Looks `program` up as `execvp` will (through the child's `PATH`), because once `setsid` runs,
/// a missing program would only show as `setsid` exiting 127 in the log, after orch returned.
pub(crate) fn find_program(program: &str, env: &[(String, String)]) -> Result<PathBuf, String> {
    if program.is_empty() {
        return Err("the program name is empty".to_owned());
    }
    if program.contains('/') {
        let path = PathBuf::from(program);
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(format!("`{program}`: no such executable file"))
        };
    }
    on_path(program, env).ok_or_else(|| format!("`{program}`: not found on PATH"))
}

/// The executable file `program` (a bare name) names in the child's `PATH` (glibc's default
/// `/bin:/usr/bin` without one), as `execvp` would find it but in absolute entries only: a
/// relative one (`.`, or empty) would be looked up in the child's working directory, which may
/// be an agent's work tree.
pub(crate) fn on_path(program: &str, env: &[(String, String)]) -> Option<PathBuf> {
    let search = env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map_or("/bin:/usr/bin", |(_, value)| value);
    search
        .split(':')
        .map(Path::new)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Waits for the child on a thread of its own so that it does not stay a zombie while orch
/// runs; if orch exits first, the process is re-parented and reaped by init.
fn reap_in_background(mut child: Child) {
    let spawned = std::thread::Builder::new()
        .name("orch-detached-reaper".to_owned())
        .spawn(move || {
            let _ = child.wait();
        });
    if let Err(error) = spawned {
        // Not fatal: the process runs all the same and only its exit status lingers.
        tracing::warn!(%error, "cannot start a thread to reap a detached process");
    }
}
