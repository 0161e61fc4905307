//! The docker implementation of [`crate::Sandbox`]: the same [`Policy`] as bubblewrap's, run as a
//! container, for hosts that run agents in containers.
//!
//! `docker run --rm` with a name orch chose, from an image orch creates once when it is missing
//! (`docker import` of an archive holding only the host's merged-`/usr` symlinks: nothing is
//! pulled), a read-only root, the host's system folders mounted read-only, the work tree
//! read-write at its own path, tmpfs `/tmp` and home, `--network none` (a loopback interface
//! only) with the same `socat` relays to the model bridge and the egress proxy as bubblewrap's
//! (their folders mounted at the same inside paths), no capabilities, `no-new-privileges`, not
//! root, `--pids-limit`, `--memory` and `--ulimit` from the limits. The child's environment goes
//! through a private `--env-file` (0600, deleted after the run), never the command line, which
//! every user of the machine can read in `/proc`.
//!
//! The container's processes are not in the process group [`crate::run`] kills: the
//! [`Container`] guard runs `docker rm -f <name>` after every run (timeout, cancel, and a dropped
//! run's future included), so nothing of the run keeps running after it. The name holds orch's
//! pid: each run also removes, in the background, the containers of an orch that is gone (killed
//! before it could remove its own).
//!
//! When orch runs as root, the container runs as [`SANDBOX_UID`]; the folders it may write (the
//! work tree, its home, the bridge's and the proxy's) are handed to that uid for the run and
//! given back to their owner after. Otherwise it runs as orch's own (non-root) uid.
//!
//! This module must never mount the docker socket (or anything of orch's but what the policy
//! names), never put the child's environment on a command line, never leave a container behind,
//! and never run the program another way when docker cannot run it: that is an error naming the
//! fix.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::bubblewrap::{
    SYSTEM, TOOL_HOMES, find_on_path, git_dirs, relay_script, relay_start, relays, set, value,
};
use crate::sandbox::{BRIDGE_DIR, Policy, SANDBOX_HOME, SANDBOX_UID, SandboxError};
use crate::spec::Spec;

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

/// A container started for one run. [`Container::remove`] (or, when the run's future is dropped,
/// `Drop`) removes it, deletes the environment file and gives the handed folders back.
#[derive(Debug)]
pub(crate) struct Container {
    docker: PathBuf,
    name: String,
    /// The folder of the `--env-file` (0700), deleted with the guard.
    env_dir: Option<tempfile::TempDir>,
    /// Folders handed to the sandbox's uid, with the owner to give them back to.
    handed: Vec<(PathBuf, u32, u32)>,
    removed: bool,
}

impl Container {
    /// Prepares a container for `spec` under `policy`: checks the daemon, creates the image when
    /// missing, writes the environment file, hands the writable folders over, and returns the
    /// `docker run` spec with its guard.
    pub(crate) async fn prepare(
        policy: &Policy,
        spec: &Spec,
    ) -> Result<(Spec, Self), SandboxError> {
        Self::prepare_with(find_on_path("docker"), policy, spec).await
    }

    /// [`Container::prepare`] with the `docker` CLI found (or not) already.
    async fn prepare_with(
        docker: Option<PathBuf>,
        policy: &Policy,
        spec: &Spec,
    ) -> Result<(Spec, Self), SandboxError> {
        let docker = docker.ok_or(SandboxError::DockerMissing)?;
        let image = image_tag();
        ensure_image(&docker, &image).await?;
        // Containers of an orch that died mid-run (killed, crashed) are not its children:
        // nothing else would ever remove them. In the background: it costs the run nothing.
        tokio::spawn(sweep(docker.clone()));
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let name = format!(
            "orch-sandbox-{}-{}-{nanos:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut container = Container {
            docker: docker.clone(),
            name,
            env_dir: None,
            handed: Vec::new(),
            removed: false,
        };
        // `/proc/self` belongs to orch's effective uid and gid.
        let me = std::fs::metadata("/proc/self").map_err(|e| SandboxError::Path {
            path: "/proc/self".to_owned(),
            reason: e.to_string(),
        })?;
        let root = me.uid() == 0;
        let (uid, gid) = if root {
            (SANDBOX_UID, SANDBOX_UID)
        } else {
            (me.uid(), me.gid())
        };
        let mut args = Args::default();
        args.push_all(["run", "--rm", "-i", "--name"]);
        args.push(&container.name.clone());
        let user = format!("{uid}:{gid}");
        args.push_all([
            "--log-driver",
            "none",
            "--network",
            "none",
            "--ipc",
            "private",
            "--hostname",
            "orch-sandbox",
            "--user",
            &user,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
            "--tmpfs",
            "/tmp:rw,exec,nosuid,nodev,mode=1777",
        ]);
        limits(&mut args, policy);
        for dir in SYSTEM {
            let path = Path::new(dir);
            // Symlinks (`/bin -> usr/bin`) are in the image; folders are mounted.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                args.mount(path, path, true);
            }
        }

        let mut env: Vec<(String, String)> = spec.env.clone();
        let home = match &policy.home {
            Some(home) => {
                args.mount(home, home, false);
                home.clone()
            }
            None => {
                args.push("--tmpfs");
                args.push(&format!(
                    "{SANDBOX_HOME}:rw,exec,nosuid,nodev,mode=0700,uid={uid},gid={gid}"
                ));
                PathBuf::from(SANDBOX_HOME)
            }
        };
        set(&mut env, "HOME", &home.display().to_string());
        let writable = |dir: &Path| {
            dir.starts_with(&home)
                || dir.starts_with(&spec.cwd)
                || policy.read_write.iter().any(|rw| dir.starts_with(rw))
        };
        if !value(&env, "TMPDIR").is_some_and(|t| writable(Path::new(&t))) {
            set(&mut env, "TMPDIR", "/tmp");
        }
        let orch_home = std::env::var_os("HOME").map(PathBuf::from);
        for (var, default) in TOOL_HOMES {
            let dir = value(&env, var)
                .map(PathBuf::from)
                .or_else(|| orch_home.as_ref().map(|h| h.join(default)));
            if let Some(dir) = dir.filter(|d| d.is_dir()) {
                args.mount(&dir, &dir, true);
                set(&mut env, var, &dir.display().to_string());
            }
        }
        if let Some(path) = value(&env, "PATH") {
            for dir in std::env::split_paths(&path) {
                let system = SYSTEM.iter().any(|s| dir.starts_with(s));
                if dir.is_absolute() && !system && dir.is_dir() {
                    args.mount(&dir, &dir, true);
                }
            }
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
        if root {
            // The repository's git directory stays orch's (root's): git inside, another uid,
            // would refuse it as of "dubious ownership". Command-line scope, which git honours
            // for this setting, through the environment.
            add_git_config(&mut env, "safe.directory", "*");
        }
        args.push_mounts();
        if let Some(path) = args.bad.take() {
            return Err(SandboxError::Path {
                path: path.display().to_string(),
                reason: args.bad_reason.to_owned(),
            });
        }

        let env_dir = tempfile::Builder::new()
            .prefix("orch-docker-env-")
            .tempdir()
            .map_err(|e| SandboxError::Path {
                path: std::env::temp_dir().display().to_string(),
                reason: format!("cannot create the environment file's folder: {e}"),
            })?;
        let env_file = env_dir.path().join("env");
        write_env_file(&env_file, &env)?;
        container.env_dir = Some(env_dir);
        args.push("--env-file").path(&env_file);
        args.push(&image);
        // A shell is pid 1: it enters the work tree, starts the relays, runs the program as its
        // child (it reaps the orphans the program leaves, which pid 1 must) and exits with its
        // status (128 + the signal that killed it). Not docker's `--init`: it mounts itself at
        // /sbin, a symlink into the read-only /usr here. Not `--workdir`: docker then creates
        // the path's folders in the tmpfs /tmp as 0755, /tmp included, which the uid cannot
        // write.
        let mut script = "cd \"$1\" || exit 125; shift; ".to_owned();
        script.push_str(&relay_start(&relays(policy))?);
        script.push_str("\"$@\"; exit $?");
        args.push_all(["/bin/sh", "-c", &script, "orch-init"]);
        args.path(cwd);
        args.push(&spec.program);
        args.push_all(spec.args.iter().map(String::as_str));

        if root {
            let mut hand = vec![cwd.clone()];
            hand.extend(policy.home.iter().cloned());
            hand.extend(policy.read_write.iter().cloned());
            hand.extend(policy.bridge.iter().cloned());
            hand.extend(policy.egress.iter().cloned());
            for path in hand {
                let meta = std::fs::metadata(&path).map_err(|e| SandboxError::Path {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                container
                    .handed
                    .push((path.clone(), meta.uid(), meta.gid()));
                chown_tree(&path, uid, gid).map_err(|e| SandboxError::Path {
                    path: path.display().to_string(),
                    reason: format!("cannot hand it to the sandbox's uid {uid}: {e}"),
                })?;
            }
        }

        let mut cli_env = vec![("PATH".to_owned(), crate::bubblewrap::BWRAP_PATH.to_owned())];
        for name in DOCKER_VARS {
            if let Ok(value) = std::env::var(name) {
                cli_env.push(((*name).to_owned(), value));
            }
        }
        let wrapped = Spec {
            program: docker.display().to_string(),
            args: args.list,
            env: cli_env,
            sandbox: crate::Sandbox::Trusted,
            ..spec.clone()
        };
        Ok((wrapped, container))
    }

    /// Removes the container (killing whatever still runs in it), deletes the environment file
    /// and gives the handed folders back. Called after every run.
    pub(crate) async fn remove(mut self) {
        let removed = tokio::process::Command::new(&self.docker)
            .args(["rm", "-f", &self.name])
            .env_clear()
            .envs(docker_env())
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        if let Ok(out) = &removed
            && !out.status.success()
        {
            let err = String::from_utf8_lossy(&out.stderr);
            // `--rm` may have removed it already.
            if !err.contains("No such container") {
                tracing::warn!(container = %self.name, error = %err.trim(), "cannot remove a sandbox's container");
            }
        }
        self.give_back();
        self.removed = true;
    }

    fn give_back(&mut self) {
        for (path, uid, gid) in self.handed.drain(..) {
            if let Err(error) = chown_tree(&path, uid, gid) {
                tracing::warn!(path = %path.display(), %error, "cannot give a sandbox's folder back to its owner");
            }
        }
        self.env_dir = None;
    }
}

impl Drop for Container {
    /// A run whose future was dropped: a thread removes the container and only then gives the
    /// folders back (a process still running in it as the sandbox's uid could otherwise write
    /// after the hand-back), and deletes the environment file.
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        let mut remove = std::process::Command::new(&self.docker);
        remove
            .args(["rm", "-f", &self.name])
            .env_clear()
            .envs(docker_env())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let handed = std::mem::take(&mut self.handed);
        let env_dir = self.env_dir.take();
        std::thread::spawn(move || {
            let _ = remove.status();
            let mut rest = Container {
                docker: PathBuf::new(),
                name: String::new(),
                env_dir,
                handed,
                removed: true,
            };
            rest.give_back();
        });
    }
}

/// Removes the containers named after an orch process that is gone (`orch-sandbox-<pid>-...`,
/// `<pid>` not running): left by an orch killed before it could remove them.
async fn sweep(docker: PathBuf) {
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
fn docker_env() -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_owned(), crate::bubblewrap::BWRAP_PATH.to_owned())];
    for name in DOCKER_VARS {
        if let Ok(value) = std::env::var(name) {
            env.push(((*name).to_owned(), value));
        }
    }
    env
}

/// `--pids-limit`, `--memory` and `--ulimit` from the policy's limits.
fn limits(args: &mut Args, policy: &Policy) {
    let mib = |m: u64| m.saturating_mul(1024 * 1024);
    let limits = policy.limits;
    if let Some(n) = limits.processes {
        // A cgroup of the container's own, exact whoever runs orch. (No RLIMIT_NPROC: it counts
        // every process of the uid on the host, other runs' containers included.)
        args.push("--pids-limit").push(&n.to_string());
    }
    if let Some(m) = limits.memory_mib {
        args.push("--ulimit").push(&format!("data={}", mib(m)));
        // The container as a whole (its tmpfs included) gets the same, swap included.
        args.push("--memory").push(&format!("{m}m"));
        args.push("--memory-swap").push(&format!("{m}m"));
    }
    if let Some(m) = limits.file_mib {
        args.push("--ulimit").push(&format!("fsize={}", mib(m)));
    }
}

/// Adds one `git -c` setting through `GIT_CONFIG_COUNT`, after any the child already has.
fn add_git_config(env: &mut Vec<(String, String)>, key: &str, val: &str) {
    let n: usize = value(env, "GIT_CONFIG_COUNT")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    set(env, &format!("GIT_CONFIG_KEY_{n}"), key);
    set(env, &format!("GIT_CONFIG_VALUE_{n}"), val);
    set(env, "GIT_CONFIG_COUNT", &(n + 1).to_string());
}

/// Writes `env` as docker's `--env-file` (`NAME=value` per line), readable by orch only. A value
/// the format cannot hold (a line break) is an error, never a truncated variable.
fn write_env_file(path: &Path, env: &[(String, String)]) -> Result<(), SandboxError> {
    use std::io::Write;
    let mut text = String::new();
    for (name, val) in env {
        let bad_name = name.is_empty()
            || name.starts_with('#')
            || name.contains(|c: char| c == '=' || c.is_whitespace() || c == '\0');
        if bad_name {
            return Err(SandboxError::DockerEnv {
                name: name.clone(),
                reason: "docker's environment file cannot hold this name".to_owned(),
            });
        }
        if val.contains(['\n', '\r', '\0']) {
            return Err(SandboxError::DockerEnv {
                name: name.clone(),
                reason: "its value holds a line break, which docker's environment file cannot hold"
                    .to_owned(),
            });
        }
        text.push_str(&format!("{name}={val}\n"));
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    written.map_err(|e| SandboxError::Path {
        path: path.display().to_string(),
        reason: format!("cannot write the environment file: {e}"),
    })
}

/// The image tag for this host's layout: which system folders are symlinks, and to where.
fn image_tag() -> String {
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
async fn ensure_image(docker: &Path, image: &str) -> Result<(), SandboxError> {
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

/// Sets the owner of `path` and everything under it, never following a symlink.
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
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
fn csv_path(path: &Path) -> Result<&str, SandboxError> {
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

/// `docker run`'s arguments, as the strings [`Spec::args`] holds.
#[derive(Default)]
struct Args {
    list: Vec<String>,
    /// A path that cannot be passed faithfully, and why.
    bad: Option<PathBuf>,
    bad_reason: &'static str,
    /// `--mount` values by their destination.
    mounts: Vec<(String, String)>,
}

impl Args {
    fn push(&mut self, arg: &str) -> &mut Self {
        self.list.push(arg.to_owned());
        self
    }

    fn path(&mut self, path: &Path) -> &mut Self {
        match path.to_str() {
            Some(text) => self.list.push(text.to_owned()),
            None => self.refuse(path, "its name is not UTF-8"),
        }
        self
    }

    /// A bind mount of `src` at `dst` (`--mount`, which, unlike `-v`, refuses a missing source
    /// instead of creating it).
    fn mount(&mut self, src: &Path, dst: &Path, read_only: bool) {
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
    fn add_mount(&mut self, dst: &str, spec: String) {
        self.mounts.retain(|(d, _)| d != dst);
        self.mounts.push((dst.to_owned(), spec));
    }

    /// The mounts, as `--mount` arguments (docker orders them by depth itself).
    fn push_mounts(&mut self) {
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

    fn push_all<'a>(&mut self, args: impl IntoIterator<Item = &'a str>) {
        self.list.extend(args.into_iter().map(str::to_owned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_file_is_private_and_refuses_what_it_cannot_hold() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("env");
        let env = vec![("A".to_owned(), "one two=three".to_owned())];
        write_env_file(&file, &env).expect("written");
        let meta = std::fs::metadata(&file).expect("meta");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "A=one two=three\n"
        );
        let broken = vec![("B".to_owned(), "line\nINJECTED=1".to_owned())];
        let err = write_env_file(&dir.path().join("env2"), &broken).expect_err("refused");
        assert!(
            matches!(err, SandboxError::DockerEnv { ref name, .. } if name == "B"),
            "{err}"
        );
    }

    #[test]
    fn git_settings_are_added_after_the_childs_own() {
        let mut env = vec![
            ("GIT_CONFIG_COUNT".to_owned(), "1".to_owned()),
            ("GIT_CONFIG_KEY_0".to_owned(), "user.name".to_owned()),
            ("GIT_CONFIG_VALUE_0".to_owned(), "agent".to_owned()),
        ];
        add_git_config(&mut env, "safe.directory", "*");
        assert_eq!(value(&env, "GIT_CONFIG_COUNT").as_deref(), Some("2"));
        assert_eq!(
            value(&env, "GIT_CONFIG_KEY_0").as_deref(),
            Some("user.name")
        );
        assert_eq!(
            value(&env, "GIT_CONFIG_KEY_1").as_deref(),
            Some("safe.directory")
        );
    }

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

    #[tokio::test]
    async fn a_missing_cli_or_a_stopped_daemon_refuses_the_run_naming_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = Spec::new("true", dir.path());
        let missing = Container::prepare_with(None, &Policy::default(), &spec).await;
        let err = missing.expect_err("refused");
        assert_eq!(err, SandboxError::DockerMissing);
        assert!(
            err.to_string().contains("apt-get install docker.io"),
            "{err}"
        );
        // A CLI whose daemon does not answer, as docker says it.
        let fake = dir.path().join("docker");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. \
             Is the docker daemon running?' >&2\nexit 1\n",
        )
        .expect("write");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let stopped = Container::prepare_with(Some(fake), &Policy::default(), &spec).await;
        let err = stopped.expect_err("refused");
        assert!(
            matches!(err, SandboxError::DockerDaemon(ref m) if m.contains("Cannot connect")),
            "{err}"
        );
        assert!(err.to_string().contains("start it"), "{err}");
        assert!(
            err.fix().contains("start the docker daemon"),
            "{}",
            err.fix()
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
