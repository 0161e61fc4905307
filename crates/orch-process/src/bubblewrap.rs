//! The bubblewrap implementation of [`crate::Sandbox`]: the `bwrap` command line for a spec.
//!
//! `bwrap` itself is started with an empty environment but `PATH`: with its own PID namespace it
//! is pid 1 inside, and `/proc/1/environ` would show whatever it was started with. The child's
//! environment travels as `--setenv` after `--clearenv`.
//!
//! This module must never bind anything read-write but the working directory and the folders a
//! policy names, and never bind orch's data directory, configuration or other work trees on its
//! own initiative.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::sandbox::{BRIDGE_DIR, Limits, Policy, SANDBOX_HOME, SANDBOX_UID, SandboxError};
use crate::spec::Spec;

/// The `PATH` bwrap itself gets (it runs nothing by name but the child, found with the child's).
pub(crate) const BWRAP_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// System folders bound read-only when they are folders, recreated when they are symlinks
/// (`/bin -> usr/bin` on merged-/usr systems).
pub(crate) const SYSTEM: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt",
];
/// Toolchain homes a program finds through a variable or, by default, under `$HOME`, which is
/// private inside: bound read-only and named explicitly so the tools still find them.
pub(crate) const TOOL_HOMES: &[(&str, &str)] = &[
    ("CARGO_HOME", ".cargo"),
    ("RUSTUP_HOME", ".rustup"),
    ("PYENV_ROOT", ".pyenv"),
];

/// Returns the `bwrap` invocation that runs `spec` under `policy`.
pub(crate) fn wrap(policy: &Policy, spec: &Spec) -> Result<Spec, SandboxError> {
    wrap_with(find_on_path("bwrap"), policy, spec)
}

/// [`wrap`] with `bwrap` found (or not) already.
fn wrap_with(bwrap: Option<PathBuf>, policy: &Policy, spec: &Spec) -> Result<Spec, SandboxError> {
    let bwrap = bwrap.ok_or(SandboxError::BubblewrapMissing)?;
    probe(&bwrap)?;
    let mut args = Args::default();
    let uid = SANDBOX_UID.to_string();
    args.push_all([
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--uid",
        &uid,
        "--gid",
        &uid,
        "--hostname",
        "orch-sandbox",
        "--cap-drop",
        "ALL",
    ]);
    for dir in SYSTEM {
        let path = Path::new(dir);
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(path) {
                    args.push("--symlink").path(&target).path(path);
                }
            }
            Ok(meta) if meta.is_dir() => {
                args.push("--ro-bind").path(path).path(path);
            }
            _ => {}
        }
    }
    args.push_all(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);

    match &policy.home {
        Some(home) => {
            args.push("--bind").path(home).path(home);
        }
        None => {
            args.push_all(["--dir", SANDBOX_HOME]);
        }
    }
    let (mut env, toolchains) = child_view(policy, spec);
    for dir in &toolchains {
        args.push("--ro-bind").path(dir).path(dir);
    }
    for path in &policy.read_only {
        args.push("--ro-bind").path(path).path(path);
    }
    for path in &policy.read_write {
        args.push("--bind").path(path).path(path);
    }

    // The work tree, read-write at its own path, and what git needs to read it.
    let cwd = &spec.cwd;
    args.push("--bind").path(cwd).path(cwd);
    if let Some((common, admin)) = git_dirs(cwd) {
        args.push("--ro-bind").path(&common).path(&common);
        // The other work trees' administrative folders (their index, HEAD) stay hidden.
        let others = common.join("worktrees");
        if admin.parent() == Some(others.as_path()) {
            args.push("--tmpfs").path(&others);
            args.push("--ro-bind").path(&admin).path(&admin);
        }
    }
    if let Some(bridge) = &policy.bridge {
        args.push("--bind").path(bridge).path(Path::new(BRIDGE_DIR));
    }
    if let Some(egress) = &policy.egress {
        args.push("--bind")
            .path(egress)
            .path(Path::new(crate::egress::EGRESS_DIR));
        let proxy = format!("http://127.0.0.1:{}", crate::egress::EGRESS_PORT);
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
            set(&mut env, name, &proxy);
        }
        // The model bridge is on loopback too and must not go through the proxy.
        for name in ["NO_PROXY", "no_proxy"] {
            set(&mut env, name, "127.0.0.1,localhost");
        }
    }
    args.push("--chdir").path(cwd);
    args.push("--clearenv");
    for (name, value) in &env {
        args.push_all(["--setenv", name, value]);
    }
    args.push("--");
    limits(&mut args, policy.limits)?;
    let relays = relays(policy);
    if !relays.is_empty() {
        relay(&mut args, &relays)?;
    }
    args.push(&spec.program);
    args.push_all(spec.args.iter().map(String::as_str));
    if let Some(path) = args.bad.take() {
        return Err(SandboxError::Path {
            path: path.display().to_string(),
            reason: "its name is not UTF-8".to_owned(),
        });
    }

    let (program, args) = match &policy.cgroup_procs {
        Some(procs) => enter_cgroup(procs, &bwrap, args.list)?,
        None => (bwrap.display().to_string(), args.list),
    };
    Ok(Spec {
        program,
        args,
        env: vec![("PATH".to_owned(), BWRAP_PATH.to_owned())],
        sandbox: crate::Sandbox::Trusted,
        ..spec.clone()
    })
}

/// `sh -c` that writes its own pid into `procs` (entering the run's cgroup) and then becomes
/// bwrap, so that every process of the run is born inside; it exits 125 when it cannot.
fn enter_cgroup(
    procs: &Path,
    bwrap: &Path,
    args: Vec<String>,
) -> Result<(String, Vec<String>), SandboxError> {
    let not_utf8 = |path: &Path| SandboxError::Path {
        path: path.display().to_string(),
        reason: "its name is not UTF-8".to_owned(),
    };
    let procs_text = procs.to_str().ok_or_else(|| not_utf8(procs))?;
    let bwrap_text = bwrap.to_str().ok_or_else(|| not_utf8(bwrap))?;
    // `env -i`: the shell exports PWD, and bwrap, pid 1 inside, must carry PATH only.
    let script = "echo $$ > \"$0\" || { echo \"orch: cannot enter the sandbox's cgroup ($0)\" >&2; \
                  exit 125; }; exec env -i \"PATH=$PATH\" \"$@\"";
    let mut list = vec![
        "-c".to_owned(),
        script.to_owned(),
        procs_text.to_owned(),
        bwrap_text.to_owned(),
    ];
    list.extend(args);
    Ok(("/bin/sh".to_owned(), list))
}

/// Prepends a shell that starts one `socat` per (loopback port, Unix socket) relay, waits until
/// each listens, and then becomes the program (`exec "$@"`).
fn relay(args: &mut Args, relays: &[(u16, String)]) -> Result<(), SandboxError> {
    let script = relay_script(relays)?;
    args.push_all(["/bin/sh", "-c", &script, "orch-relay"]);
    Ok(())
}

/// The `sh -c` script of [`relay`] (for any runtime whose sandbox has a loopback interface of
/// its own): one `socat` per relay, a wait until each listens, then `exec "$@"`.
pub(crate) fn relay_script(relays: &[(u16, String)]) -> Result<String, SandboxError> {
    let mut script = relay_start(relays)?;
    script.push_str("exec \"$@\"");
    Ok(script)
}

/// The part of [`relay_script`] that starts the relays and waits until they listen.
pub(crate) fn relay_start(relays: &[(u16, String)]) -> Result<String, SandboxError> {
    if relays.is_empty() {
        return Ok(String::new());
    }
    let socat = find_socat().ok_or(SandboxError::SocatMissing)?;
    let mut script = String::new();
    for (port, socket) in relays {
        script.push_str(&format!(
            "{socat} TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:{socket} & "
        ));
    }
    for (port, _) in relays {
        // /proc/net/tcp lists the port in hex, state 0A is LISTEN.
        script.push_str(&format!(
            "i=0; while ! grep -q ':{port:04X} 00000000:0000 0A' /proc/net/tcp; do \
             i=$((i+1)); [ $i -gt 500 ] && echo 'orch: a sandbox relay did not start' >&2 && exit 125; \
             sleep 0.01; done; "
        ));
    }
    Ok(script)
}

/// The relays a policy asks for: the model bridge's and the egress proxy's.
pub(crate) fn relays(policy: &Policy) -> Vec<(u16, String)> {
    let mut relays = Vec::new();
    if policy.bridge.is_some() {
        relays.push((
            crate::sandbox::BRIDGE_PORT,
            format!("{BRIDGE_DIR}/{}", crate::sandbox::BRIDGE_SOCKET),
        ));
    }
    if policy.egress.is_some() {
        relays.push((
            crate::egress::EGRESS_PORT,
            format!(
                "{}/{}",
                crate::egress::EGRESS_DIR,
                crate::egress::EGRESS_SOCKET
            ),
        ));
    }
    relays
}

/// Prepends `prlimit` with the limits that are set.
fn limits(args: &mut Args, limits: Limits) -> Result<(), SandboxError> {
    let mib = |m: u64| m.saturating_mul(1024 * 1024);
    let mut flags = Vec::new();
    if let Some(m) = limits.memory_mib {
        flags.push(format!("--data={}", mib(m)));
    }
    if let Some(n) = limits.processes {
        flags.push(format!("--nproc={n}"));
    }
    if let Some(m) = limits.file_mib {
        flags.push(format!("--fsize={}", mib(m)));
    }
    if flags.is_empty() {
        return Ok(());
    }
    let prlimit = find_prlimit().ok_or(SandboxError::PrlimitMissing)?;
    args.push(prlimit);
    args.push_all(flags.iter().map(String::as_str));
    args.push("--");
    Ok(())
}

/// The repository's git directory a linked work tree's `.git` file leads to, and the work
/// tree's administrative folder in it, for git inside to read (read-only: a writable one would
/// let the agent change what orch's own git obeys).
/// What either runtime shows a child besides the system: its environment as it is inside
/// (`HOME` the policy's home or [`SANDBOX_HOME`], a `TMPDIR` outside the folders it can write
/// replaced by `/tmp`, the toolchain homes it finds) and the toolchain folders to show it
/// read-only (its `PATH`'s folders outside the system ones, and those homes).
pub(crate) fn child_view(policy: &Policy, spec: &Spec) -> (Vec<(String, String)>, Vec<PathBuf>) {
    let mut env: Vec<(String, String)> = spec.env.clone();
    let home = policy
        .home
        .clone()
        .unwrap_or_else(|| PathBuf::from(SANDBOX_HOME));
    set(&mut env, "HOME", &home.display().to_string());
    // A TMPDIR the child was given inside a writable folder it sees stays (a CLI keeps its
    // reports there); any other would not exist inside.
    let writable = |dir: &Path| {
        dir.starts_with(&home)
            || dir.starts_with(&spec.cwd)
            || policy.read_write.iter().any(|rw| dir.starts_with(rw))
    };
    if !value(&env, "TMPDIR").is_some_and(|t| writable(Path::new(&t))) {
        set(&mut env, "TMPDIR", "/tmp");
    }
    let mut toolchains = Vec::new();
    let orch_home = std::env::var_os("HOME").map(PathBuf::from);
    for (var, default) in TOOL_HOMES {
        let dir = value(&env, var)
            .map(PathBuf::from)
            .or_else(|| orch_home.as_ref().map(|h| h.join(default)));
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            set(&mut env, var, &dir.display().to_string());
            toolchains.push(dir);
        }
    }
    if let Some(path) = value(&env, "PATH") {
        for dir in std::env::split_paths(&path) {
            let system = SYSTEM.iter().any(|s| dir.starts_with(s));
            if dir.is_absolute() && !system && dir.is_dir() {
                toolchains.push(dir);
            }
        }
    }
    (env, toolchains)
}

pub(crate) fn git_dirs(worktree: &Path) -> Option<(PathBuf, PathBuf)> {
    let text = std::fs::read_to_string(worktree.join(".git")).ok()?;
    let admin = PathBuf::from(text.strip_prefix("gitdir: ")?.trim_end())
        .canonicalize()
        .ok()?;
    let common = std::fs::read_to_string(admin.join("commondir")).ok()?;
    let common = admin.join(common.trim_end()).canonicalize().ok()?;
    Some((common, admin))
}

/// Checks once per process that bwrap can create the namespaces here, so that a machine that
/// cannot is told what to change instead of seeing every agent fail with bwrap's message.
pub(crate) fn probe(bwrap: &Path) -> Result<(), SandboxError> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        let output = std::process::Command::new(bwrap)
            .env_clear()
            .env("PATH", BWRAP_PATH)
            .args(["--unshare-all", "--unshare-user", "--uid", "1000"])
            .args(["--ro-bind", "/", "/", "--", "true"])
            .stdin(std::process::Stdio::null())
            .output();
        match output {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).trim().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    });
    result.clone().map_err(SandboxError::NoNamespaces)
}

/// `socat`, looked up where the sandbox's relay script starts it from.
fn find_socat() -> Option<&'static str> {
    ["/usr/bin/socat", "/bin/socat"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

/// `prlimit`, looked up where the sandbox's command line starts it from.
fn find_prlimit() -> Option<&'static str> {
    ["/usr/bin/prlimit", "/bin/prlimit"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
}

/// Each program and kernel feature a bubblewrap sandbox needs, looked up exactly as a run looks
/// them up (the same PATH search, the same namespace probe, the same fixed paths), with where it
/// was found or why it is missing. For `orch doctor`: a machine it passes on can start runs.
pub(crate) fn prerequisites() -> Vec<(&'static str, Result<String, SandboxError>)> {
    let bwrap = find_on_path("bwrap").ok_or(SandboxError::BubblewrapMissing);
    let namespaces = match &bwrap {
        Ok(path) => probe(path).map(|()| "bwrap can create them".to_owned()),
        Err(e) => Err(e.clone()),
    };
    vec![
        ("bwrap", bwrap.map(|p| p.display().to_string())),
        ("user namespaces", namespaces),
        (
            "socat",
            find_socat()
                .map(str::to_owned)
                .ok_or(SandboxError::SocatMissing),
        ),
        (
            "prlimit",
            find_prlimit()
                .map(str::to_owned)
                .ok_or(SandboxError::PrlimitMissing),
        ),
    ]
}

/// `name` in one of the folders of orch's own `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn value(env: &[(String, String)], name: &str) -> Option<String> {
    env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
}

pub(crate) fn set(env: &mut Vec<(String, String)>, name: &str, value: &str) {
    env.retain(|(n, _)| n != name);
    env.push((name.to_owned(), value.to_owned()));
}

/// bwrap's arguments, as the strings [`Spec::args`] holds.
#[derive(Default)]
struct Args {
    list: Vec<String>,
    /// A path that is not UTF-8: binding its lossy name would bind another path.
    bad: Option<PathBuf>,
}

impl Args {
    fn push(&mut self, arg: &str) -> &mut Self {
        self.list.push(arg.to_owned());
        self
    }

    fn path(&mut self, path: &Path) -> &mut Self {
        match path.to_str() {
            Some(text) => self.list.push(text.to_owned()),
            None => self.bad = Some(path.to_owned()),
        }
        self
    }

    fn push_all<'a>(&mut self, args: impl IntoIterator<Item = &'a str>) {
        self.list.extend(args.into_iter().map(str::to_owned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_bwrap_the_run_is_refused_naming_the_package() {
        let spec = Spec::new("true", "/tmp");
        let err = wrap_with(None, &Policy::default(), &spec).expect_err("refused");
        assert_eq!(err, SandboxError::BubblewrapMissing);
        assert!(
            err.to_string().contains("apt-get install bubblewrap"),
            "{err}"
        );
    }

    #[test]
    fn the_child_runs_after_the_separator_with_its_environment_set_inside() {
        let Some(bwrap) = find_on_path("bwrap") else {
            return assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "bwrap missing in CI"
            );
        };
        let spec = Spec::new("printenv", "/tmp")
            .args(["A"])
            .env("A", "secret-for-the-child");
        let wrapped = wrap_with(Some(bwrap), &Policy::default(), &spec).expect("wrapped");
        // bwrap itself gets PATH only; the child's variables travel as --setenv.
        assert_eq!(wrapped.env, [("PATH".to_owned(), BWRAP_PATH.to_owned())]);
        let separator = wrapped.args.iter().position(|a| a == "--").expect("--");
        assert_eq!(wrapped.args[separator + 1..], ["printenv", "A"]);
        let setenv = wrapped
            .args
            .windows(3)
            .any(|w| w == ["--setenv", "A", "secret-for-the-child"]);
        assert!(setenv, "{:?}", wrapped.args);
        assert!(wrapped.args.contains(&"--clearenv".to_owned()));
        assert_eq!(wrapped.sandbox, crate::Sandbox::Trusted);
    }
}
