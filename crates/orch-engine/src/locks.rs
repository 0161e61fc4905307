//! Exclusive per-project locks shared by every orch process that uses one data directory
//! (`<data_dir>/locks/<kind>-<project>.lock`, `flock`). Released when the value is dropped, or by
//! the kernel when the process dies, so a killed worker never leaves one held.
//!
//! - Merges: git's merge in the default branch's checkout is not safe against a second one. While
//!   the first commits a clean merge, `MERGE_HEAD` exists and `index.lock` does not; a second merge
//!   started then fails, sees `MERGE_HEAD`, and its clean-up (`git merge --abort`) would undo the
//!   first one's merge under it.
//! - Deploys: staging and prod are single instances on fixed ports; two workers deploying one
//!   project at once would take each other's port and orphan an instance.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockKind {
    Merge,
    Deploy,
}

impl LockKind {
    fn as_str(self) -> &'static str {
        match self {
            LockKind::Merge => "merge",
            LockKind::Deploy => "deploy",
        }
    }
}

/// Waits for and takes the lock of `kind` on `project`.
pub(crate) async fn project_lock(
    data_dir: &Path,
    kind: LockKind,
    project: &str,
) -> Result<Flock<File>, EngineError> {
    let path = data_dir
        .join("locks")
        .join(format!("{}-{project}.lock", kind.as_str()));
    let shown = path.display().to_string();
    let locked = tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| std::io::Error::from(errno))
    })
    .await
    .map_err(std::io::Error::other)
    .and_then(|locked| locked);
    locked.map_err(|source| EngineError::Lock {
        path: shown,
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LockKind, project_lock};

    /// A second holder of the same lock waits for the first; another project or kind does not.
    #[tokio::test]
    async fn one_holder_per_project_and_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = project_lock(dir.path(), LockKind::Merge, "billing")
            .await
            .expect("first lock");
        project_lock(dir.path(), LockKind::Merge, "search")
            .await
            .expect("another project is not blocked");
        project_lock(dir.path(), LockKind::Deploy, "billing")
            .await
            .expect("another kind is not blocked");
        let data_dir = dir.path().to_path_buf();
        let second =
            tokio::spawn(async move { project_lock(&data_dir, LockKind::Merge, "billing").await });
        // The event, not a pause: the kernel lists the second request as blocked on the file.
        let lock_file = dir.path().join("locks/merge-billing.lock");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while blocked_waiters(&lock_file) == 0 {
            assert!(
                !second.is_finished(),
                "the second holder took the lock while the first held it"
            );
            assert!(
                std::time::Instant::now() < deadline,
                "the second holder never waited on the lock"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!second.is_finished(), "the second holder must wait");
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), second)
            .await
            .expect("the second holder goes on once the first lock is released")
            .expect("task")
            .expect("second lock");
    }

    /// How many lock requests on `path` the kernel shows as blocked (`->` lines of
    /// `/proc/locks`, matched by the file's inode).
    fn blocked_waiters(path: &std::path::Path) -> usize {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(inode) = std::fs::metadata(path).map(|m| m.ino()) else {
            return 0;
        };
        let suffix = format!(":{inode}");
        std::fs::read_to_string("/proc/locks")
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("->"))
            .filter(|line| line.split_whitespace().any(|f| f.ends_with(&suffix)))
            .count()
    }
}
