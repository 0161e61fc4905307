//! Where a process deployer keeps its state, and how its JSON records are read and written.
//!
//! ```text
//! <root>/builds/<sha>/build.json          the label: sha, digest, built_at, artifact name
//! <root>/builds/<sha>/artifact/<name>     the kept copy of the artifact (file or directory)
//! <root>/builds/<sha>.build.log           the build command's output
//! <root>/staging/current.json             the running staging instance
//! <root>/staging/instance.log             its output
//! <root>/prod/current.json                the running prod instance
//! <root>/prod/previous.json               the prod instance a promotion replaced (the restore target)
//! <root>/prod/FROZEN                      present after a failed restore; blocks promotion
//! <root>/prod/PAUSED                      present after a restore; blocks promotion until resumed
//! ```
//!
//! Records are written to a temporary file and renamed into place, so a crash leaves either the
//! old or the new record, never half of one.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::DeployError;
use crate::instance::Env;

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }

    pub fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }

    pub fn build_dir(&self, sha: &str) -> PathBuf {
        self.builds().join(sha)
    }

    pub fn build_log(&self, sha: &str) -> PathBuf {
        self.builds().join(format!("{sha}.build.log"))
    }

    pub fn env_dir(&self, env: Env) -> PathBuf {
        self.root.join(env.as_str())
    }

    pub fn current(&self, env: Env) -> PathBuf {
        self.env_dir(env).join("current.json")
    }

    /// `<env>/starting.json`: the marker of an instance being started, written before its
    /// spawn and removed once its record is written, so a crash between the two leaves a way
    /// to find the process (see `instance::reap_unrecorded`).
    pub fn starting(&self, env: Env) -> PathBuf {
        self.env_dir(env).join("starting.json")
    }

    pub fn instance_log(&self, env: Env) -> PathBuf {
        self.env_dir(env).join("instance.log")
    }

    pub fn previous_prod(&self) -> PathBuf {
        self.env_dir(Env::Prod).join("previous.json")
    }

    /// The proof that a build passed staging: its SHA and digest when staging said SUCCESS.
    pub fn validation(&self, sha: &str) -> PathBuf {
        self.builds().join(format!("{sha}.validated.json"))
    }

    pub fn frozen_marker(&self) -> PathBuf {
        self.env_dir(Env::Prod).join("FROZEN")
    }

    pub fn paused_marker(&self) -> PathBuf {
        self.env_dir(Env::Prod).join("PAUSED")
    }
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub(crate) fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, DeployError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(DeployError::io("read", path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| DeployError::Record {
            path: path.to_owned(),
            detail: e.to_string(),
        })
}

/// Writes a JSON record atomically (temporary file, then rename).
pub(crate) fn write_record<T: Serialize>(path: &Path, record: &T) -> Result<(), DeployError> {
    let text = serde_json::to_string_pretty(record).map_err(|e| DeployError::Record {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(DeployError::io("create", parent))?;
    }
    let temporary = path.with_extension("json.tmp");
    fs::write(&temporary, text + "\n").map_err(DeployError::io("write", &temporary))?;
    fs::rename(&temporary, path).map_err(DeployError::io("write", path))
}

/// Removes a file; a file that is already gone is fine.
pub(crate) fn remove_file(path: &Path) -> Result<(), DeployError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(DeployError::io("remove", path)(e))
        }
        _ => Ok(()),
    }
}
