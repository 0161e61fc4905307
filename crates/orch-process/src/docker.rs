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

mod daemon;
mod mounts;

use daemon::{docker_env, ensure_image, image_tag, sweep};
use mounts::{Args, chown_tree, view};

use crate::bubblewrap::{find_on_path, relay_start, relays, set, value};
use crate::sandbox::{Policy, SANDBOX_UID, SandboxError};
use crate::spec::Spec;

pub(crate) use daemon::prerequisites;

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
            // Never a registry: an image that vanished since `ensure_image` fails the run.
            "--pull",
            "never",
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
        let cwd = &spec.cwd;
        let mut env = view(&mut args, policy, spec, (uid, gid))?;
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
        // Only cleaned paths exist inside (`/a/b/../c` is mounted as `/a/c`, and `/a/b` may
        // not be there to walk through).
        let program = Path::new(&spec.program);
        if program.is_absolute() {
            args.path(&mounts::clean(program));
        } else {
            args.push(&spec.program);
        }
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

        let wrapped = Spec {
            program: docker.display().to_string(),
            args: args.list,
            env: docker_env(),
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
}
