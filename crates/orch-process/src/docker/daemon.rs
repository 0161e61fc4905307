//! The docker daemon's side of the docker sandbox: the `docker` CLI's environment, the empty
//! image (created once by `docker import`, never pulled), the sweep of containers an orch that
//! is gone left behind, and the prerequisites `orch doctor` checks.
//!
//! This module must never pull an image or remove a container that is not named after an orch
//! process that no longer runs (or the run's own).

use std::path::{Path, PathBuf};

use crate::bubblewrap::{SYSTEM, find_on_path, relay_script};
use crate::sandbox::SandboxError;

/// The repository of the images orch creates; the tag names the host's layout.
const IMAGE_REPO: &str = "orch-sandbox";
/// orch's own variables that say which daemon the `docker` CLI talks to.
const DOCKER_VARS: &[&str] = &[
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
];

/// Removes the containers named after an orch process that is gone (`orch-sandbox-<pid>-...`,
/// `<pid>` not running): left by an orch killed before it could remove them.
pub(super) async fn sweep(docker: PathBuf) {
    let listed = tokio::process::Command::new(&docker)
        .args([
            "ps",
            "-a",
            "--filter",
            "name=orch-sandbox-",
            "--format",
            "{{.Names}}",
        ])
        .env_clear()
        .envs(docker_env())
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    let Ok(listed) = listed else { return };
    let stale: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|name| {
            let owner = name
                .strip_prefix("orch-sandbox-")
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            owner.is_some_and(|pid| {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            })
        })
        .map(str::to_owned)
        .collect();
    if stale.is_empty() {
        return;
    }
    tracing::warn!(containers = ?stale, "removing sandbox containers left by an orch that is gone");
    let _ = tokio::process::Command::new(&docker)
        .args(["rm", "-f"])
        .args(&stale)
        .env_clear()
        .envs(docker_env())
        .stdin(std::process::Stdio::null())
        .output()
        .await;
}

/// The `docker` CLI's environment: `PATH` and the variables that name the daemon.
pub(super) fn docker_env() -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_owned(), crate::bubblewrap::BWRAP_PATH.to_owned())];
    for name in DOCKER_VARS {
        if let Ok(value) = std::env::var(name) {
            env.push(((*name).to_owned(), value));
        }
    }
    env
}

/// The image tag for this host's layout: which system folders are symlinks, and to where.
pub(super) fn image_tag() -> String {
    let layout = symlinks();
    // FNV-1a: stable across builds, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (link, target) in &layout {
        for byte in link
            .bytes()
            .chain([b'>'])
            .chain(target.bytes())
            .chain([b';'])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{IMAGE_REPO}:empty-{:012x}", hash & 0xffff_ffff_ffff)
}

/// The system folders that are symlinks on this host (`bin -> usr/bin`), relative to `/`.
fn symlinks() -> Vec<(String, String)> {
    SYSTEM
        .iter()
        .filter_map(|dir| {
            let meta = std::fs::symlink_metadata(dir).ok()?;
            if !meta.file_type().is_symlink() {
                return None;
            }
            let target = std::fs::read_link(dir).ok()?;
            Some((
                dir.trim_start_matches('/').to_owned(),
                target.to_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Checks that the daemon answers and creates the image when it is missing: an archive of the
/// layout's symlinks, imported (no registry is ever asked).
pub(super) async fn ensure_image(docker: &Path, image: &str) -> Result<(), SandboxError> {
    let inspect = tokio::process::Command::new(docker)
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .env_clear()
        .envs(docker_env())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| SandboxError::DockerDaemon(format!("cannot run {}: {e}", docker.display())))?;
    if inspect.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&inspect.stderr).trim().to_owned();
    if !err.to_ascii_lowercase().contains("no such image") {
        return Err(SandboxError::DockerDaemon(err));
    }
    let failed = |reason: String| SandboxError::DockerImage {
        image: image.to_owned(),
        reason,
    };
    let dir = tempfile::tempdir().map_err(|e| failed(e.to_string()))?;
    for (link, target) in symlinks() {
        std::os::unix::fs::symlink(&target, dir.path().join(&link))
            .map_err(|e| failed(e.to_string()))?;
    }
    // `tar` writes the archive (of nothing but the symlinks) into `docker import`'s input.
    let script = "tar -C \"$1\" -cf - . | \"$2\" import - \"$3\"";
    let out = tokio::process::Command::new("/bin/sh")
        .args(["-c", script, "orch-import"])
        .arg(dir.path())
        .arg(docker)
        .arg(image)
        .env_clear()
        .envs(docker_env())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Each program a docker sandbox needs, looked up as a run looks them up.
pub(crate) fn prerequisites() -> Vec<(&'static str, Result<String, SandboxError>)> {
    let docker = find_on_path("docker").ok_or(SandboxError::DockerMissing);
    let daemon = match &docker {
        Ok(path) => daemon_version(path),
        Err(e) => Err(e.clone()),
    };
    let socat = relay_script(&[(0, String::new())]).map(|_| "found".to_owned());
    vec![
        ("docker CLI", docker.map(|p| p.display().to_string())),
        ("docker daemon", daemon),
        ("socat", socat),
    ]
}

/// The daemon's version, or why it does not answer.
fn daemon_version(docker: &Path) -> Result<String, SandboxError> {
    let out = std::process::Command::new(docker)
        .args(["version", "--format", "{{.Server.Version}}"])
        .env_clear()
        .envs(docker_env())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| SandboxError::DockerDaemon(e.to_string()))?;
    if out.status.success() {
        Ok(format!(
            "the daemon answers (version {})",
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    } else {
        Err(SandboxError::DockerDaemon(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}
