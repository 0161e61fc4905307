//! One invocation of `git` with a controlled environment, and the checks on what callers pass.
//!
//! A work tree is written by an agent, which may be hostile, so no git command orch runs may
//! execute anything the work tree brings: every command gets a cleared environment (orch's
//! secrets stay out of whatever git starts), hooks and fsmonitor switched off on the command
//! line (where they beat any configuration file, and reach git's own child processes through
//! `GIT_CONFIG_PARAMETERS`), and [`check_link`] refuses a work tree whose `.git` is no longer
//! the file `git worktree add` wrote. This module must never pass orch's environment through.

use std::ffi::{OsStr, OsString};
use std::io::Read;
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

/// The variables of orch's environment a git command gets: how to find programs, and the home
/// whose configuration (`~/.gitconfig`) is the user's own, trusted like the system's. Anything
/// else may be a secret (`ORCH_API_TOKEN`, forge tokens) that a program git starts would see.
const GIT_INHERITED: &[&str] = &["PATH", "HOME", "TMPDIR", "SSH_AUTH_SOCK"];

/// Configuration given on every command line. Command-line values override every file, and
/// git hands them to the git processes it starts itself (a submodule's status).
/// - hooks: a work tree or a planted hook must never run code as orch;
/// - fsmonitor: its value is a program git runs on `status`, `add`, `diff`;
/// - the `ext::` transport runs a command named by a URL.
const HARDENING: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "protocol.ext.allow=never",
];

/// The most of a `.git` link file orch reads: `gitdir: <path>` and a line end.
const LINK_CAP: u64 = 4096;

/// The `git` a command runs: the first executable `git` in orch's `PATH`, as the OS would find
/// it, named by its full path. Naming the program by path is what lets the standard library
/// start it with `posix_spawn` (a `vfork`): given a bare name and a `PATH` of its own, the child
/// gets it by `fork` and a search of its own instead, copying orch's page tables on every git
/// process, which was most of orch's own CPU per stage. With no such file, the bare name.
/// A relative entry of `PATH` is skipped: it would be looked up from the work tree, where an
/// agent could have put a `git` of its own.
fn program() -> PathBuf {
    program_in(std::env::var_os("PATH").as_deref())
}

fn program_in(path: Option<&OsStr>) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    path.into_iter()
        .flat_map(std::env::split_paths)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join("git"))
        .find(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| PathBuf::from("git"))
}

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
    pub(crate) fn committing(self) -> Self {
        self.args(["-c", "commit.gpgSign=false"])
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
        let mut command = Command::new(program());
        command.env_clear();
        for name in GIT_INHERITED {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        for setting in HARDENING {
            command.arg("-c").arg(setting);
        }
        command.args(&self.args).current_dir(&self.cwd);
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

/// Checks that `worktree`'s `.git` is still the link `git worktree add` wrote: a regular file
/// (not a directory, not a symlink) reading `gitdir: <common_dir>/worktrees/<name>`, whose
/// administrative directory points back at this very `.git`. Anything else may be a repository
/// the agent made, whose configuration and hooks git would obey. Returns that administrative
/// directory.
pub(crate) fn check_link(common_dir: &Path, worktree: &Path) -> Result<PathBuf> {
    let target = link_target(worktree)?;
    check_target(common_dir, worktree, &target)?;
    Ok(target)
}

/// [`check_link`] for a caller that does not know the repository: the repository is the one
/// the link names (`<common_dir>/worktrees/<name>`). Returns its common directory and the work
/// tree's administrative directory.
pub(crate) fn linked_dirs(worktree: &Path) -> Result<(PathBuf, PathBuf)> {
    let target = link_target(worktree)?;
    let common = target
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| GitError::Tampered {
            worktree: worktree.to_owned(),
            reason: format!("points at {}, not into a repository", target.display()),
        })?
        .to_owned();
    check_target(&common, worktree, &target)?;
    Ok((common, target))
}

fn tampered(worktree: &Path, reason: String) -> GitError {
    GitError::Tampered {
        worktree: worktree.to_owned(),
        reason,
    }
}

/// The administrative directory `worktree`'s `.git` names, read from a regular file in the
/// form git writes.
fn link_target(worktree: &Path) -> Result<PathBuf> {
    let tampered = |reason: String| tampered(worktree, reason);
    let link = worktree.join(".git");
    let meta =
        std::fs::symlink_metadata(&link).map_err(|e| tampered(format!("cannot be read ({e})")))?;
    let kind = meta.file_type();
    if kind.is_dir() {
        return Err(tampered(
            "is a directory, not the link file orch made".into(),
        ));
    }
    if !kind.is_file() {
        return Err(tampered("is not a regular file (a symlink?)".into()));
    }
    let mut text = String::new();
    std::fs::File::open(&link)
        .and_then(|file| file.take(LINK_CAP).read_to_string(&mut text))
        .map_err(|e| tampered(format!("cannot be read ({e})")))?;
    let target = text
        .strip_prefix("gitdir: ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .filter(|t| !t.contains('\n'))
        .ok_or_else(|| tampered("does not read `gitdir: <path>` as git writes it".into()))?;
    Ok(PathBuf::from(target))
}

/// `target` is a work tree's directory in `common_dir`'s `worktrees/` that points back at
/// `worktree`'s `.git`.
fn check_target(common_dir: &Path, worktree: &Path, target: &Path) -> Result<()> {
    let tampered = |reason: String| tampered(worktree, reason);
    let admin_root = common_dir.join("worktrees");
    let named = target.parent() == Some(admin_root.as_path())
        && target.file_name().is_some_and(|n| n != ".." && n != ".");
    if !named {
        return Err(tampered(format!(
            "points at {}, outside {}",
            target.display(),
            admin_root.display()
        )));
    }
    let back = std::fs::read_to_string(target.join("gitdir")).map_err(|e| {
        tampered(format!(
            "points at {} which cannot be read ({e})",
            target.display()
        ))
    })?;
    if Path::new(back.trim_end_matches('\n')) != worktree.join(".git") {
        return Err(tampered(format!(
            "points at {}, which belongs to another work tree",
            target.display()
        )));
    }
    Ok(())
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
    fn git_is_named_by_the_first_executable_in_path_and_relative_entries_are_skipped() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let (plain, exec) = (dir.path().join("plain"), dir.path().join("exec"));
        for d in [&plain, &exec] {
            std::fs::create_dir(d).expect("mkdir");
            std::fs::write(d.join("git"), "#!/bin/sh\n").expect("write");
        }
        std::fs::set_permissions(exec.join("git"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        // `plain/git` is not executable, `.` is relative: both passed over.
        let path = std::env::join_paths([Path::new("."), &plain, &exec]).expect("join");
        assert_eq!(program_in(Some(&path)), exec.join("git"));
        let only_relative = std::env::join_paths([Path::new("."), &plain]).expect("join");
        assert_eq!(program_in(Some(&only_relative)), PathBuf::from("git"));
        assert_eq!(program_in(None), PathBuf::from("git"));
    }

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
