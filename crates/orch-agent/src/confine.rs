//! What an agent's program needs to see inside its sandbox, added to the project's policy: the
//! prompt file (read-only), the program's install (read-only), and the private folders orch made
//! for this run beside its log (read-write: the CLI's `HOME`, `CODEX_HOME`, aider's files).
//!
//! This module must never add a folder that holds anything of orch's but this run's own files.

use std::path::{Path, PathBuf};

use orch_process::Sandbox;

use crate::AgentRequest;

/// The sandbox of `program` run for `req` with the environment `env`.
pub(crate) fn sandbox_for(req: &AgentRequest, program: &str, env: &[(String, String)]) -> Sandbox {
    let Some(mut policy) = req.sandbox.policy().cloned() else {
        return req.sandbox.clone();
    };
    if req.prompt_file.is_file() {
        policy.read_only.push(req.prompt_file.clone());
    }
    policy.read_only.extend(install_dirs(program, env));
    let home = env
        .iter()
        .find(|(name, _)| name == "HOME")
        .map(|(_, value)| PathBuf::from(value));
    for dir in private_dirs(&req.log) {
        if home.as_ref() == Some(&dir) {
            policy.home = Some(dir);
        } else {
            policy.read_write.push(dir);
        }
    }
    // The project's runtime (bubblewrap or docker), with the widened policy.
    req.sandbox.with_policy(policy)
}

/// The folders orch made for this run beside its log (a CLI's home, `CODEX_HOME`, aider's
/// message and history files), however the CLI is told about them (a variable, an argument).
fn private_dirs(log: &Path) -> Vec<PathBuf> {
    let Some(dir) = log.parent() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_private_dir(log, p))
        .collect();
    dirs.sort();
    dirs
}

/// A folder orch made for this run beside its log (`<stage>-<attempt>.<name>`).
fn is_private_dir(log: &Path, path: &Path) -> bool {
    let (Some(dir), Some(stem)) = (log.parent(), log.file_stem()) else {
        return false;
    };
    let prefix = format!("{}.", stem.to_string_lossy());
    path.parent() == Some(dir)
        && path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        && path.is_dir()
}

/// What of the program's install to show: for the path it is found at and the file that path
/// leads to, the whole `node_modules` it lives in (a Node CLI's dependencies), the venv whose
/// `bin` holds it (a Python CLI), else the file alone: never the folder around a lone program,
/// which may be a home or orch's data directory.
fn install_dirs(program: &str, env: &[(String, String)]) -> Vec<PathBuf> {
    let Some(found) = locate(program, env) else {
        return Vec::new();
    };
    let mut dirs = Vec::new();
    for path in [Some(found.clone()), found.canonicalize().ok()]
        .into_iter()
        .flatten()
    {
        let system = ["/usr/", "/bin/", "/sbin/", "/lib/"]
            .iter()
            .any(|s| path.starts_with(s));
        // A path that does not exist (a relative program the child finds itself) would make
        // bwrap refuse to start.
        if system || !path.exists() {
            continue;
        }
        let widened = path
            .ancestors()
            .find(|a| a.file_name().is_some_and(|n| n == "node_modules"))
            .map(Path::to_owned)
            .or_else(|| {
                let venv = path.parent()?.parent()?;
                let in_bin = path.parent()?.file_name().is_some_and(|n| n == "bin");
                (in_bin && venv.join("pyvenv.cfg").is_file()).then(|| venv.to_owned())
            })
            .or_else(|| Some(path.clone()));
        if let Some(dir) = widened.filter(|d| !dirs.contains(d)) {
            dirs.push(dir);
        }
    }
    dirs
}

/// Where `program` is: itself when it names a path, else the first match on the child's PATH.
fn locate(program: &str, env: &[(String, String)]) -> Option<PathBuf> {
    if program.contains('/') {
        return std::path::absolute(program).ok();
    }
    let path = env.iter().rev().find(|(n, _)| n == "PATH")?.1.clone();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_beside_the_log_named_after_it_are_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("develop-1.log");
        let home = dir.path().join("develop-1.home");
        let other = dir.path().join("develop-2.home");
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::create_dir_all(&other).expect("mkdir");
        assert!(is_private_dir(&log, &home));
        assert!(!is_private_dir(&log, &other));
        assert!(!is_private_dir(&log, dir.path()));
    }

    #[test]
    fn a_node_cli_brings_its_whole_node_modules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let modules = dir.path().join("node_modules");
        let cli = modules.join("pkg/cli.js");
        std::fs::create_dir_all(cli.parent().expect("parent")).expect("mkdir");
        std::fs::create_dir_all(modules.join(".bin")).expect("mkdir");
        std::fs::write(&cli, "").expect("write");
        let link = modules.join(".bin/tool");
        std::os::unix::fs::symlink("../pkg/cli.js", &link).expect("symlink");
        let dirs = install_dirs(&link.display().to_string(), &[]);
        assert!(!dirs.is_empty());
        assert!(dirs.iter().all(|d| d.ends_with("node_modules")), "{dirs:?}");
    }

    #[test]
    fn a_lone_program_shows_itself_only_and_a_venv_shows_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A program lying in a folder that holds other things (a home, a data directory).
        let lone = dir.path().join("agent.sh");
        std::fs::write(&lone, "").expect("write");
        std::fs::write(dir.path().join("orch.toml"), "secret").expect("write");
        assert_eq!(install_dirs(&lone.display().to_string(), &[]), [lone]);
        // A program that does not exist shows nothing (bwrap would refuse a missing source).
        assert!(install_dirs("/nonexistent/agent", &[]).is_empty());
        let venv = dir.path().join("venv");
        std::fs::create_dir_all(venv.join("bin")).expect("mkdir");
        std::fs::write(venv.join("pyvenv.cfg"), "").expect("write");
        let tool = venv.join("bin/tool");
        std::fs::write(&tool, "").expect("write");
        assert_eq!(install_dirs(&tool.display().to_string(), &[]), [venv]);
    }
}
