//! A pids cgroup per sandboxed run when orch runs as root, where `RLIMIT_NPROC` binds nothing:
//! the kernel does not count root's processes against it, and a sandbox's processes are root's
//! on the host. (`RLIMIT_DATA` and `RLIMIT_FSIZE` bind root too, so memory and file size need
//! no cgroup.)
//!
//! cgroup v2 (the unified hierarchy at `/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` with the
//! pids controller): `<mount>/orch-sandbox/run-<orch pid>-<n>/pids.max`, the controller enabled
//! in `orch-sandbox`'s `cgroup.subtree_control`. cgroup v1 (a `pids` hierarchy at
//! `/sys/fs/cgroup/pids`): the same folder names there. The run is placed by a shell that writes
//! its own pid into the cgroup's `cgroup.procs` and then becomes bwrap, so every process of the
//! run is born inside; the folder is removed when the run ends.
//!
//! This module must never let a run start outside the cgroup it created for it: when the shell
//! cannot enter it, the run fails (exit 125) naming the file. Where no cgroup can be created
//! (not root, no writable pids hierarchy) the run goes on with its rlimits, as documented.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The folder under a hierarchy's root that holds orch's run cgroups.
const PARENT: &str = "orch-sandbox";

/// The pids cgroup of one run; dropping it removes the folder.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    dir: PathBuf,
}

impl RunCgroup {
    /// A cgroup limiting the run to `processes` tasks, when orch is root and a pids hierarchy is
    /// writable; `None` otherwise (the rlimit is then all there is).
    pub(crate) fn create(processes: u64) -> Option<Self> {
        if !running_as_root() {
            return None;
        }
        let Some(parent) = pids_parent() else {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "orch runs as root and no pids cgroup hierarchy is writable: sandboxed runs \
                     are not limited in their number of processes (RLIMIT_NPROC does not bind \
                     root); run orch as its own user"
                );
            });
            return None;
        };
        sweep(&parent);
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "run-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = parent.join(name);
        let made = std::fs::create_dir(&dir)
            .and_then(|()| std::fs::write(dir.join("pids.max"), processes.to_string()));
        match made {
            Ok(()) => Some(Self { dir }),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot create the sandbox's pids cgroup; the run has its rlimits only");
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// The file a process writes its pid into to enter the cgroup.
    pub(crate) fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// Removes the folder once the kernel has let the run's last tasks go: the sandbox's
    /// processes (another session, killed with bwrap's PID namespace) may take a moment after
    /// the run's own group is gone.
    pub(crate) async fn remove(mut self) {
        let deadline = tokio::time::Instant::now() + REMOVE_WAIT;
        loop {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(error) => {
                    tracing::warn!(dir = %self.dir.display(), %error, "cannot remove a sandbox run's cgroup");
                    break;
                }
            }
        }
        self.dir = PathBuf::new();
    }
}

/// How long [`RunCgroup::remove`] waits for the cgroup to empty.
const REMOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl Drop for RunCgroup {
    /// A run whose future was dropped: one try, the kernel keeps nothing else of it.
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Removes the cgroups of runs whose orch is gone (it crashed, or a dropped run's cgroup was not
/// empty yet): an empty folder goes, one still holding tasks stays.
fn sweep(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = name
            .to_str()
            .and_then(|n| n.strip_prefix("run-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let gone = owner.is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        });
        if gone {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Whether orch's effective user is root (`/proc/self` belongs to it).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `orch-sandbox` in a writable hierarchy with the pids controller, created when missing.
fn pids_parent() -> Option<PathBuf> {
    for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        let mount = Path::new(mount);
        let controllers = std::fs::read_to_string(mount.join("cgroup.controllers"));
        if controllers.is_ok_and(|c| c.split_whitespace().any(|n| n == "pids")) {
            return v2_parent(mount);
        }
    }
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").is_file() && !v1.join("cgroup.controllers").exists() {
        let parent = v1.join(PARENT);
        return (parent.is_dir() || std::fs::create_dir(&parent).is_ok()).then_some(parent);
    }
    None
}

/// cgroup v2: the pids controller must be enabled for the children of the root and of
/// `orch-sandbox` (which holds no process itself, as v2 requires).
fn v2_parent(mount: &Path) -> Option<PathBuf> {
    let enabled = |dir: &Path| {
        std::fs::read_to_string(dir.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|n| n == "pids"))
    };
    let enable = |dir: &Path| {
        enabled(dir) || std::fs::write(dir.join("cgroup.subtree_control"), "+pids").is_ok()
    };
    let parent = mount.join(PARENT);
    let ok = enable(mount)
        && (parent.is_dir() || std::fs::create_dir(&parent).is_ok())
        && enable(&parent);
    ok.then_some(parent)
}
