//! [`spawn_in_unit`]: a detached process in a transient systemd unit of its own
//! (`systemd-run`). A new session is not enough under systemd: stopping or restarting orch's
//! own service (`KillMode=control-group`, the default) kills every process in its cgroup,
//! whatever their session. A unit of its own is a cgroup of its own.
//!
//! It must never put anything on `systemd-run`'s command line but the spec's own environment
//! (built from [`crate::safe_env`] plus documented variables: no secret), and never wait for the
//! unit to end: `systemd-run` returns once the unit has started.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::ProcessError;
use crate::spec::DetachedSpec;

pub const SYSTEMD_RUN: &str = "systemd-run";

/// How long `systemd-run` may take to start the unit before orch stops waiting.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Variables `systemd-run --user` needs to reach the user's service manager; not secrets.
const BUS_VARIABLES: [&str; 3] = ["PATH", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"];

/// Whether systemd is the running service manager (`sd_booted(3)`: `/run/systemd/system`).
pub fn systemd_is_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether a unit name is one `systemd-run --unit` takes as is.
fn valid_unit(unit: &str) -> bool {
    !unit.is_empty()
        && unit.len() <= 200
        && unit
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// `systemd-run`'s arguments for `spec` in the transient service `unit`: the working directory,
/// output appended to the log, the environment, `KillMode=process` (what the hook starts in the
/// background outlives it, as with a new session) and `--collect` (a failed unit is not kept).
pub fn systemd_run_args(spec: &DetachedSpec, unit: &str, user: bool) -> Vec<String> {
    let mut args = Vec::new();
    if user {
        args.push("--user".to_owned());
    }
    args.extend([
        format!("--unit={unit}"),
        "--collect".to_owned(),
        "--quiet".to_owned(),
        "--service-type=exec".to_owned(),
        format!("--working-directory={}", spec.cwd.display()),
        format!("--property=StandardOutput=append:{}", spec.log.display()),
        format!("--property=StandardError=append:{}", spec.log.display()),
        "--property=StandardInput=null".to_owned(),
        "--property=KillMode=process".to_owned(),
    ]);
    args.extend(
        spec.env
            .iter()
            .map(|(name, value)| format!("--setenv={name}={value}")),
    );
    args.push("--".to_owned());
    args.push(spec.program.clone());
    args.extend(spec.args.iter().cloned());
    args
}

/// Starts `spec` as the transient service `unit` (of the user's service manager when `user`).
/// `Ok` once systemd started it; an error says why not, with what `systemd-run` printed.
pub fn spawn_in_unit(spec: &DetachedSpec, unit: &str, user: bool) -> Result<(), ProcessError> {
    let start_error = |reason: String| ProcessError::Start {
        program: SYSTEMD_RUN.to_owned(),
        reason,
    };
    if !valid_unit(unit) {
        return Err(start_error(format!("`{unit}` is not a unit name")));
    }
    if let Some(dir) = spec.log.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| ProcessError::Log {
            path: spec.log.clone(),
            source,
        })?;
    }
    let bus: Vec<(String, String)> = BUS_VARIABLES
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
        .collect();
    let mut child = Command::new(SYSTEMD_RUN)
        .args(systemd_run_args(spec, unit, user))
        .env_clear()
        .envs(bus)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| start_error(format!("could not be run: {e}")))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(start_error(format!(
                    "did not start unit {unit} within {}s",
                    START_TIMEOUT.as_secs()
                )));
            }
            Err(e) => return Err(start_error(format!("could not be waited for: {e}"))),
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        use std::io::Read as _;
        let _ = (&mut stderr).take(2048).read_to_string(&mut said);
    }
    Err(start_error(format!(
        "could not start unit {unit} ({status}): {}",
        said.trim()
    )))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn spec() -> DetachedSpec {
        DetachedSpec {
            program: "sh".into(),
            args: vec!["-c".into(), "echo $1".into(), "wrapper".into()],
            cwd: PathBuf::from("/srv/work tree"),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("TARGET_SERVICE".into(), "prod".into()),
            ],
            log: PathBuf::from("/var/lib/orch/deploy/hook.log"),
        }
    }

    #[test]
    fn the_unit_gets_the_working_directory_log_environment_and_argv() {
        assert_eq!(
            systemd_run_args(&spec(), "orch-self-deploy-run-7", false),
            [
                "--unit=orch-self-deploy-run-7",
                "--collect",
                "--quiet",
                "--service-type=exec",
                "--working-directory=/srv/work tree",
                "--property=StandardOutput=append:/var/lib/orch/deploy/hook.log",
                "--property=StandardError=append:/var/lib/orch/deploy/hook.log",
                "--property=StandardInput=null",
                "--property=KillMode=process",
                "--setenv=PATH=/usr/bin:/bin",
                "--setenv=TARGET_SERVICE=prod",
                "--",
                "sh",
                "-c",
                "echo $1",
                "wrapper",
            ]
        );
        assert_eq!(systemd_run_args(&spec(), "u", true)[0], "--user");
    }

    #[test]
    fn a_unit_name_systemd_would_misread_is_refused_before_anything_runs() {
        let error = spawn_in_unit(&spec(), "a b", false).expect_err("refused");
        assert!(error.to_string().contains("not a unit name"), "{error}");
        assert!(!valid_unit("x/y") && !valid_unit("") && valid_unit("orch-self-deploy-run-1"));
    }

    /// Without a running systemd (this machine, a container), starting a unit fails with
    /// systemd-run's own reason, never silently.
    #[test]
    fn without_systemd_starting_a_unit_is_an_error() {
        if systemd_is_running() {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = DetachedSpec {
            log: dir.path().join("hook.log"),
            cwd: dir.path().to_owned(),
            ..spec()
        };
        assert!(spawn_in_unit(&spec, "orch-test-unit", false).is_err());
    }
}
