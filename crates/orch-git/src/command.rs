//! One invocation of `git` with a controlled environment, and the checks on what callers pass.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::{GitError, Result};

/// The identity of every commit orch makes (see the crate doc).
const IDENTITY_NAME: &str = "orch";
const IDENTITY_EMAIL: &str = "orch@localhost";
/// How much of git's stderr an error keeps.
const STDERR_CAP: usize = 2000;

/// Variables that would make git act on another repository, index or object store than the
/// one orch names by its working directory.
const REPOSITORY_SELECTORS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
];

/// A `git` command run in a directory.
#[derive(Debug)]
pub(crate) struct Git {
    cwd: PathBuf,
    args: Vec<OsString>,
    index: Option<PathBuf>,
    /// Configuration passed through `GIT_CONFIG_*` variables rather than `-c`, so that a value
    /// (an authorization header) never shows in the arguments an error reports.
    hidden_config: Vec<(String, String)>,
}

impl Git {
    pub(crate) fn new(cwd: &Path) -> Self {
        Self {
            cwd: cwd.to_owned(),
            args: Vec::new(),
            index: None,
            hidden_config: Vec::new(),
        }
    }

    /// For commands that create commits: never sign (a prompt would hang an unattended run).
    pub(crate) fn committing(cwd: &Path) -> Self {
        Self::new(cwd).args(["-c", "commit.gpgSign=false"])
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Uses `index` instead of the work tree's real index.
    pub(crate) fn index(mut self, index: &Path) -> Self {
        self.index = Some(index.to_owned());
        self
    }

    /// Sets a configuration value for this command only, kept out of its arguments.
    pub(crate) fn hidden_config(mut self, key: &str, value: &str) -> Self {
        self.hidden_config.push((key.to_owned(), value.to_owned()));
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new("git");
        command.args(&self.args).current_dir(&self.cwd);
        for name in REPOSITORY_SELECTORS {
            command.env_remove(name);
        }
        command
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_PAGER", "cat")
            .env("PAGER", "cat")
            // Reads such as `status` then leave the index alone while an agent works in the tree.
            .env("GIT_OPTIONAL_LOCKS", "0")
            .env("GIT_AUTHOR_NAME", IDENTITY_NAME)
            .env("GIT_AUTHOR_EMAIL", IDENTITY_EMAIL)
            .env("GIT_COMMITTER_NAME", IDENTITY_NAME)
            .env("GIT_COMMITTER_EMAIL", IDENTITY_EMAIL)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(index) = &self.index {
            command.env("GIT_INDEX_FILE", index);
        }
        if !self.hidden_config.is_empty() {
            command.env("GIT_CONFIG_COUNT", self.hidden_config.len().to_string());
            for (i, (key, value)) in self.hidden_config.iter().enumerate() {
                command
                    .env(format!("GIT_CONFIG_KEY_{i}"), key)
                    .env(format!("GIT_CONFIG_VALUE_{i}"), value);
            }
        }
        command
    }

    /// Runs to the end, whatever the exit code.
    pub(crate) async fn output(&self) -> Result<Output> {
        self.command().output().await.map_err(GitError::Spawn)
    }

    /// Runs and returns stdout; a non-zero exit is [`GitError::Command`].
    pub(crate) async fn run(&self) -> Result<String> {
        let output = self.output().await?;
        if !output.status.success() {
            return Err(self.failure(&output));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs and returns the first line of stdout, trimmed (a SHA, a ref name).
    pub(crate) async fn run_line(&self) -> Result<String> {
        Ok(self
            .run()
            .await?
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned())
    }

    /// Runs and returns at most `max_bytes` of stdout, and whether there was more. git is
    /// stopped once the limit is reached, so a huge diff costs no more memory than the limit.
    pub(crate) async fn run_capped(&self, max_bytes: usize) -> Result<(Vec<u8>, bool)> {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(GitError::Spawn)?;
        let io_error = |source| GitError::Io {
            action: "reading git's output".to_owned(),
            source,
        };
        let mut stdout = Vec::new();
        if let Some(pipe) = child.stdout.take() {
            let limit = u64::try_from(max_bytes)
                .unwrap_or(u64::MAX)
                .saturating_add(1);
            pipe.take(limit)
                .read_to_end(&mut stdout)
                .await
                .map_err(io_error)?;
        }
        if stdout.len() > max_bytes {
            stdout.truncate(max_bytes);
            // git may be blocked writing the rest, which is not wanted.
            let _ = child.kill().await;
            return Ok((stdout, true));
        }
        // Read only after stdout ended: git's messages are far smaller than a pipe's buffer.
        let mut stderr = Vec::new();
        if let Some(mut pipe) = child.stderr.take() {
            pipe.read_to_end(&mut stderr).await.map_err(io_error)?;
        }
        let status = child.wait().await.map_err(GitError::Spawn)?;
        if !status.success() {
            return Err(self.failure(&Output {
                status,
                stdout: Vec::new(),
                stderr,
            }));
        }
        Ok((stdout, false))
    }

    pub(crate) fn failure(&self, output: &Output) -> GitError {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let mut stderr = stderr.trim().to_owned();
        if stderr.len() > STDERR_CAP {
            let mut cut = STDERR_CAP;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
            stderr.push('…');
        }
        GitError::Command {
            args: self
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            code: output.status.code(),
            stderr,
        }
    }
}

/// Refuses a ref or revision that git could read as something else than a name: an option
/// (`--output=...`), or nothing at all.
pub(crate) fn check_ref<'a>(what: &'static str, value: &'a str) -> Result<&'a str> {
    let reason = if value.is_empty() {
        "it is empty"
    } else if value.starts_with('-') {
        "it starts with `-` and git would read it as an option"
    } else if value.chars().any(|c| c.is_control()) {
        "it contains a control character"
    } else {
        return Ok(value);
    };
    Err(GitError::InvalidArgument {
        what,
        value: value.to_owned(),
        reason,
    })
}

/// Splits NUL-terminated output into its non-empty fields.
pub(crate) fn nul_fields(text: &str) -> impl Iterator<Item = &str> {
    text.split('\0').filter(|f| !f.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_that_git_would_misread_are_refused() {
        for bad in ["", "-b", "--output=/tmp/x", "main\n", "a\0b"] {
            assert!(
                matches!(
                    check_ref("branch", bad),
                    Err(GitError::InvalidArgument { .. })
                ),
                "{bad:?}"
            );
        }
        for good in ["main", "orch/DEMO-1", "HEAD~1", "a-b"] {
            assert_eq!(check_ref("branch", good).ok(), Some(good));
        }
    }

    #[test]
    fn nul_fields_skip_empty_ones() {
        assert_eq!(nul_fields("a\0b c\0\0").collect::<Vec<_>>(), ["a", "b c"]);
    }
}
