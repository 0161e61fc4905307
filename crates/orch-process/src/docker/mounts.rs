//! The mounts of the docker sandbox: `docker run`'s arguments with one `--mount` per
//! destination, the paths `--mount` cannot hold faithfully, the docker socket that is never
//! mounted, and the hand-over of writable folders to the sandbox's uid.
//!
//! This module must never mount the docker daemon's socket, nor a folder holding it, and never
//! follow a symlink when it changes owners.

use std::path::{Path, PathBuf};

use crate::bubblewrap::{SYSTEM, child_view, git_dirs, set};
use crate::sandbox::{BRIDGE_DIR, Policy, SANDBOX_HOME, SandboxError};
use crate::spec::Spec;

/// Mounts what the sandbox shows (the system, the home and `/tmp`, the toolchains, the
/// policy's folders, the work tree and what git needs of the repository, the bridge's and the
/// proxy's folders) at the same paths as bubblewrap binds them, and returns the child's
/// environment as it is inside (`HOME`, `TMPDIR`, the toolchain homes, the proxy variables).
pub(super) fn view(
    args: &mut Args,
    policy: &Policy,
    spec: &Spec,
    (uid, gid): (u32, u32),
) -> Result<Vec<(String, String)>, SandboxError> {
    for dir in SYSTEM {
        let path = Path::new(dir);
        // Symlinks (`/bin -> usr/bin`) are in the image; folders are mounted.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            args.mount(path, path, true);
        }
    }

    match &policy.home {
        Some(home) => args.mount(home, home, false),
        None => {
            args.push("--tmpfs");
            args.push(&format!(
                "{SANDBOX_HOME}:rw,exec,nosuid,nodev,mode=0700,uid={uid},gid={gid}"
            ));
        }
    }
    let (mut env, toolchains) = child_view(policy, spec);
    for dir in &toolchains {
        args.mount(dir, dir, true);
    }
    for path in &policy.read_only {
        args.mount(path, path, true);
    }
    for path in &policy.read_write {
        args.mount(path, path, false);
    }
    let cwd = &spec.cwd;
    args.mount(cwd, cwd, false);
    if let Some((common, admin)) = git_dirs(cwd) {
        args.mount(&common, &common, true);
        let others = common.join("worktrees");
        if admin.parent() == Some(others.as_path()) {
            // The other work trees' administrative folders stay hidden.
            let others = csv_path(&others)?;
            args.add_mount(others, format!("type=tmpfs,dst={others}"));
            args.mount(&admin, &admin, true);
        }
    }
    if let Some(bridge) = &policy.bridge {
        args.mount(bridge, Path::new(BRIDGE_DIR), false);
    }
    if let Some(egress) = &policy.egress {
        args.mount(egress, Path::new(crate::egress::EGRESS_DIR), false);
        let proxy = format!("http://127.0.0.1:{}", crate::egress::EGRESS_PORT);
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            set(&mut env, name, &proxy);
        }
        for name in ["NO_PROXY", "no_proxy"] {
            set(&mut env, name, "127.0.0.1,localhost");
        }
    }
    Ok(env)
}

/// `path` without `.` and with each `..` taking away the name before it, as docker cleans a
/// mount's destination (lexically: Go's `filepath.Clean`).
pub(super) fn clean(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(part);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Sets the owner of `path` and everything under it, never following a symlink.
pub(super) fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Whether `src` is, or is a folder holding, the docker daemon's socket (or containerd's).
fn holds_docker_socket(src: &Path) -> bool {
    let src = src.canonicalize().unwrap_or_else(|_| src.to_owned());
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    let configured = host.strip_prefix("unix://").map(PathBuf::from);
    [
        "/run/docker.sock",
        "/var/run/docker.sock",
        "/run/containerd/containerd.sock",
    ]
    .into_iter()
    .map(PathBuf::from)
    .chain(configured)
    .any(|sock| {
        let sock = sock.canonicalize().unwrap_or(sock);
        sock.starts_with(&src)
    })
}

/// A path as a value of `--mount`'s comma-separated fields.
pub(super) fn csv_path(path: &Path) -> Result<&str, SandboxError> {
    let text = path.to_str().ok_or_else(|| SandboxError::Path {
        path: path.display().to_string(),
        reason: "its name is not UTF-8".to_owned(),
    })?;
    if text.contains([',', '"', '\n']) {
        return Err(SandboxError::Path {
            path: text.to_owned(),
            reason: "docker's --mount cannot hold a comma, a quote or a line break".to_owned(),
        });
    }
    Ok(text)
}

/// `docker run`'s arguments, as the strings [`Spec::args`] holds.
#[derive(Default)]
pub(super) struct Args {
    pub(super) list: Vec<String>,
    /// A path that cannot be passed faithfully, and why.
    pub(super) bad: Option<PathBuf>,
    pub(super) bad_reason: &'static str,
    /// `--mount` values by their destination.
    mounts: Vec<(String, String)>,
}

impl Args {
    pub(super) fn push(&mut self, arg: &str) -> &mut Self {
        self.list.push(arg.to_owned());
        self
    }

    pub(super) fn path(&mut self, path: &Path) -> &mut Self {
        match path.to_str() {
            Some(text) => self.list.push(text.to_owned()),
            None => self.refuse(path, "its name is not UTF-8"),
        }
        self
    }

    /// A bind mount of `src` at `dst` (`--mount`, which, unlike `-v`, refuses a missing source
    /// instead of creating it).
    pub(super) fn mount(&mut self, src: &Path, dst: &Path, read_only: bool) {
        // docker cleans a destination (`a/../b` is `b`) before it looks for duplicates.
        let dst = &clean(dst);
        if holds_docker_socket(src) {
            // Whoever reaches the daemon's socket is root on the host.
            return self.refuse(src, "it holds the docker daemon's socket");
        }
        match (csv_path(src), csv_path(dst)) {
            (Ok(s), Ok(d)) => {
                let ro = if read_only { ",readonly" } else { "" };
                self.add_mount(d, format!("type=bind,src={s},dst={d}{ro}"));
            }
            (Err(SandboxError::Path { reason, .. }), _)
            | (_, Err(SandboxError::Path { reason, .. })) => {
                let bad = if csv_path(src).is_err() { src } else { dst };
                let reason = if reason.contains("UTF-8") {
                    "its name is not UTF-8"
                } else {
                    "docker's --mount cannot hold a comma, a quote or a line break"
                };
                self.refuse(bad, reason);
            }
            _ => self.refuse(src, "it cannot be mounted"),
        }
    }

    /// docker refuses two mounts at one place; as with bwrap, the later one wins.
    pub(super) fn add_mount(&mut self, dst: &str, spec: String) {
        self.mounts.retain(|(d, _)| d != dst);
        self.mounts.push((dst.to_owned(), spec));
    }

    /// The mounts, as `--mount` arguments (docker orders them by depth itself).
    pub(super) fn push_mounts(&mut self) {
        for (_, spec) in std::mem::take(&mut self.mounts) {
            self.list.push("--mount".to_owned());
            self.list.push(spec);
        }
    }

    fn refuse(&mut self, path: &Path, reason: &'static str) {
        if self.bad.is_none() {
            self.bad = Some(path.to_owned());
            self.bad_reason = reason;
        }
    }

    pub(super) fn push_all<'a>(&mut self, args: impl IntoIterator<Item = &'a str>) {
        self.list.extend(args.into_iter().map(str::to_owned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_docker_cannot_mount_faithfully_is_refused() {
        let mut args = Args::default();
        args.mount(Path::new("/tmp/a,readonly=false"), Path::new("/x"), true);
        assert!(args.mounts.is_empty());
        assert_eq!(
            args.bad.as_deref(),
            Some(Path::new("/tmp/a,readonly=false"))
        );
        let mut args = Args::default();
        args.mount(Path::new("/usr"), Path::new("/usr"), false);
        args.mount(Path::new("/usr"), Path::new("/usr"), true);
        args.push_mounts();
        assert_eq!(
            args.list,
            ["--mount", "type=bind,src=/usr,dst=/usr,readonly"]
        );
    }

    #[test]
    fn a_folder_named_twice_is_mounted_once() {
        let mut args = Args::default();
        args.mount(
            Path::new("/opt/tools/node_modules"),
            Path::new("/opt/tools/node_modules"),
            true,
        );
        args.mount(
            Path::new("/opt/x/../tools/./node_modules"),
            Path::new("/opt/x/../tools/./node_modules"),
            true,
        );
        args.push_mounts();
        let mounts: Vec<&String> = args.list.iter().filter(|a| a.contains("dst=")).collect();
        assert_eq!(
            mounts,
            ["type=bind,src=/opt/x/../tools/./node_modules,dst=/opt/tools/node_modules,readonly"]
        );
    }

    #[test]
    fn the_docker_socket_is_never_mounted() {
        for path in [
            "/run",
            "/var/run",
            "/var/run/docker.sock",
            "/",
            "/run/docker.sock",
        ] {
            let mut args = Args::default();
            args.mount(Path::new(path), Path::new("/x"), true);
            assert!(args.mounts.is_empty(), "{path} mounted: {:?}", args.mounts);
            assert_eq!(args.bad_reason, "it holds the docker daemon's socket");
        }
    }
}
