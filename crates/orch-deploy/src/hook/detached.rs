//! The hook deployer's detached prod deploy, for a project that is orch itself (`[hook]
//! self_deploy = true`; the files are described in `crate::selfdeploy`).
//!
//! The hook runs under a small `sh` wrapper that writes its own pid, runs the hook, and then
//! writes the hook's exit status to `exit.tmp` and renames it to `exit`: the rename is atomic, so
//! a reader sees either no file or the whole code. The wrapper's command line holds only the
//! deploy directory and the hook's argv from `.orch/deploy.toml`; the documented variables travel
//! in its environment, which is orch's cleared one plus those, as for an attached hook.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use orch_core::gate::ExitOutcome;
use orch_process::DetachedSpec;
use tokio_util::sync::CancellationToken;

use super::{HookDeployer, HookEnv, hook_outcome};
use crate::config::Detach;
use crate::error::DeployError;
use crate::health::probe_health;
use crate::instance::Env;
use crate::layout::{read_record, write_record};
use crate::report::{DeployReport, DeployStatus};
use crate::selfdeploy::{DetachedDeploy, DetachedState, SelfDeploy};
use crate::soak;

/// `$1` is the deploy directory, the rest is the hook's argv. `$$` is the wrapper's own pid,
/// which leads the session `setsid` gave it.
const WRAPPER: &str = r#"dir=$1; shift
echo $$ > "$dir/pid.tmp" && mv -f "$dir/pid.tmp" "$dir/pid"
"$@" </dev/null
code=$?
echo "$code" > "$dir/exit.tmp" && mv -f "$dir/exit.tmp" "$dir/exit""#;

/// The wrapper's `$0`, as `ps` shows it.
const WRAPPER_NAME: &str = "orch-self-deploy";

/// How long a deploy whose start crashed before its pid was known may take to write its pid
/// file before it counts as never started.
const START_GRACE: Duration = Duration::from_secs(10);

/// The time between SIGTERM and SIGKILL when a hook outlived its timeout.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// A shell reports a child killed by signal N as exit status 128 + N.
const SHELL_SIGNAL_BASE: i32 = 128;

impl HookDeployer {
    fn detached_dir(&self, id: &str) -> PathBuf {
        self.root.join("selfdeploy").join(id)
    }

    /// A stopped run leaves its detached hook running (killing a deploy halfway through prod is
    /// worse), so a new deploy of the project waits until no other one still runs: two hooks on
    /// one prod would race.
    fn refuse_if_another_runs(&self, id: &str) -> Result<(), DeployError> {
        let base = self.root.join("selfdeploy");
        let entries = match std::fs::read_dir(&base) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(DeployError::io("read", &base)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(DeployError::io("read", &base))?;
            if entry.file_name().to_str() == Some(id) {
                continue;
            }
            let Some(other) = read_record::<DetachedDeploy>(&entry.path().join("deploy.json"))?
            else {
                continue;
            };
            let pid = other.pid.or_else(|| read_pid(&other.pid_file));
            if let Some(pid) = pid.filter(|pid| orch_process::is_alive(*pid))
                && !other.exit_file.exists()
            {
                return Err(DeployError::DetachedBusy { id: other.id, pid });
            }
        }
        Ok(())
    }

    /// Starts the wrapper outside orch's process tree as `[hook] detach` says: in a transient
    /// systemd unit (its own cgroup: restarting orch's service leaves it running), or in a new
    /// session and process group. Returns the wrapper's pid when known (a unit's comes from the
    /// pid file) and the unit's name.
    fn launch(
        &self,
        id: &str,
        spec: &DetachedSpec,
        pid_file: &Path,
    ) -> Result<(Option<u32>, Option<String>), DeployError> {
        let failed = |e: orch_process::ProcessError| DeployError::StartFailed {
            env: Env::Prod,
            detail: format!("the detached deploy hook: {e}"),
        };
        let detach = self
            .spec
            .self_deploy
            .as_ref()
            .map_or(Detach::Auto, |own| own.detach);
        let unit = format!("orch-self-deploy-{id}");
        // The user's own service manager unless orch runs as root.
        let user = !is_root();
        let in_unit = match detach {
            Detach::Setsid => false,
            Detach::SystemdRun => true,
            Detach::Auto => orch_process::systemd_is_running(),
        };
        if in_unit {
            match orch_process::spawn_in_unit(spec, &unit, user) {
                Ok(()) => return Ok((None, Some(unit))),
                Err(e) if detach == Detach::SystemdRun => return Err(failed(e)),
                // systemd refused before starting anything (no pid file): a new session is
                // second best. If the wrapper did start, never start it twice.
                Err(e) if !pid_file.exists() => {
                    append_line(
                        &spec.log,
                        &format!("orch: {e}; starting the hook with setsid instead"),
                    );
                }
                Err(e) => return Err(failed(e)),
            }
        }
        let pid = orch_process::spawn_detached(spec).map_err(failed)?;
        Ok((Some(pid), None))
    }

    /// The verdict on prod after its hook exited 0: orch's own health probe, then the soak.
    async fn judge_prod(
        &self,
        cancel: &CancellationToken,
        lines: &mut Vec<String>,
    ) -> Result<(), DeployError> {
        let Some(own) = &self.spec.self_deploy else {
            return Err(DeployError::Config {
                field: "hook.self_deploy".to_owned(),
                problem: "is not set, yet a detached deploy was judged".to_owned(),
            });
        };
        let health = &own.health;
        let url = format!("http://127.0.0.1:{}{}", self.ports.prod, health.path);
        let outcome =
            probe_health(&url, health.tries, health.interval, health.timeout, cancel).await;
        if !outcome.healthy {
            return Err(DeployError::Unhealthy {
                env: Env::Prod,
                detail: format!(
                    "GET {} after {} tries: {}",
                    health.path, outcome.tries_used, outcome.last_detail
                ),
                log: self.root.join("selfdeploy"),
            });
        }
        lines.push(format!(
            "prod: healthy after {} tries ({})",
            outcome.tries_used, outcome.last_detail
        ));
        if let Some(window) = own.soak {
            let probes = soak::soak(&url, window, health.timeout, cancel, || None).await?;
            lines.push(soak::passed_line(window, probes));
        }
        Ok(())
    }
}

#[async_trait]
impl SelfDeploy for HookDeployer {
    fn start_detached(&self, id: &str, validated_sha: &str) -> Result<DetachedDeploy, DeployError> {
        check_id(id)?;
        let proof = self.validated(validated_sha)?;
        let dir = self.detached_dir(id);
        let record = dir.join("deploy.json");
        if let Some(started) = read_record::<DetachedDeploy>(&record)? {
            return Ok(started);
        }
        self.refuse_if_another_runs(id)?;
        let mut deploy = DetachedDeploy {
            id: id.to_owned(),
            sha: validated_sha.to_owned(),
            artifact: proof.artifact.clone(),
            pid: None,
            started_at_ms: now_ms(),
            pid_file: dir.join("pid"),
            exit_file: dir.join("exit"),
            log: dir.join("hook.log"),
            dir: dir.clone(),
            unit: None,
        };
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent).map_err(DeployError::io("create", parent))?;
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            // An earlier start got this far, then died before writing its record: it may have
            // started the hook, so never start another; the wrapper's pid file will say.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(deploy),
            Err(e) => return Err(DeployError::io("create", &dir)(e)),
        }
        let target_image = self.prod_image(&proof.sha);
        let hook = self.hook_spec(
            Env::Prod,
            &HookEnv::prod(&proof, &target_image),
            &deploy.log,
        );
        let mut args = vec![
            "-c".to_owned(),
            WRAPPER.to_owned(),
            WRAPPER_NAME.to_owned(),
            dir.display().to_string(),
            hook.program,
        ];
        args.extend(hook.args);
        let spec = DetachedSpec {
            program: "sh".to_owned(),
            args,
            cwd: hook.cwd,
            env: hook.env,
            log: deploy.log.clone(),
        };
        let (pid, unit) = self.launch(id, &spec, &deploy.pid_file)?;
        deploy.pid = pid;
        deploy.unit = unit;
        write_record(&record, &deploy)?;
        Ok(deploy)
    }

    async fn poll(&self, deploy: &DetachedDeploy) -> DetachedState {
        if let Some(ended) = read_exit(deploy) {
            return DetachedState::Ended(ended);
        }
        let elapsed = Duration::from_millis(now_ms().saturating_sub(deploy.started_at_ms));
        let pid = deploy.pid.or_else(|| read_pid(&deploy.pid_file));
        match pid {
            Some(pid) if orch_process::is_alive(pid) => {
                if elapsed <= self.spec.timeout {
                    return DetachedState::Running;
                }
                // The wrapper leads its own group: the hook and whatever it started die with it.
                let _ = orch_process::kill_group(pid, KILL_GRACE).await;
                DetachedState::Ended(Ok(ExitOutcome::TimedOut {
                    secs: self.spec.timeout.as_secs(),
                }))
            }
            None if elapsed < START_GRACE => DetachedState::Running,
            // Gone: it may have written its exit code between the two looks.
            _ => DetachedState::Ended(read_exit(deploy).unwrap_or_else(|| {
                Err(DeployError::DetachedVanished {
                    id: deploy.id.clone(),
                    exit_file: deploy.exit_file.clone(),
                    log: deploy.log.clone(),
                })
            })),
        }
    }

    async fn conclude(
        &self,
        deploy: &DetachedDeploy,
        ended: Result<ExitOutcome, DeployError>,
        cancel: &CancellationToken,
    ) -> DeployReport {
        let mut report = DeployReport {
            infra_error: false,
            status: DeployStatus::Success,
            sha: deploy.sha.clone(),
            digest: Some(deploy.artifact.clone()),
            restored: None,
            frozen: false,
            lines: vec![format!(
                "promoting {} ({}) with the detached self-deploy {} (output in {})",
                deploy.sha,
                deploy.artifact,
                deploy.id,
                deploy.log.display()
            )],
        };
        let log = deploy.log.clone();
        let result = match ended {
            Ok(ExitOutcome::Exited(0)) => {
                report.lines.push("prod: the hook exited 0".to_owned());
                self.judge_prod(cancel, &mut report.lines).await
            }
            Ok(ExitOutcome::Exited(2)) => Err(DeployError::HookMisuse {
                env: Env::Prod,
                log,
            }),
            Ok(outcome) => Err(DeployError::HookFailed {
                env: Env::Prod,
                outcome: hook_outcome(&outcome),
                log,
            }),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            let reason = e.to_string();
            report.lines.push(format!("FAILED: {reason}"));
            report.status = DeployStatus::Failed { reason };
            // A misused hook or a deploy that vanished needs a person, not another development.
            report.infra_error = !e.caused_by_change();
        }
        report
    }
}

/// The hook's ending as the wrapper recorded it; `None` while there is no exit file.
fn read_exit(deploy: &DetachedDeploy) -> Option<Result<ExitOutcome, DeployError>> {
    let text = match std::fs::read_to_string(&deploy.exit_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some(Err(DeployError::io("read", &deploy.exit_file)(e))),
    };
    Some(match text.trim().parse::<i32>() {
        Ok(code) => Ok(outcome_of_status(code)),
        Err(_) => Err(DeployError::DetachedExitUnreadable {
            id: deploy.id.clone(),
            exit_file: deploy.exit_file.clone(),
            text: text.trim().chars().take(40).collect(),
        }),
    })
}

/// A shell's `$?`: 129 to 192 is a death by signal 1 to 64, anything else an exit code.
fn outcome_of_status(code: i32) -> ExitOutcome {
    match code.saturating_sub(SHELL_SIGNAL_BASE) {
        signal @ 1..=64 => ExitOutcome::Signaled(signal),
        _ => ExitOutcome::Exited(code),
    }
}

/// Whether orch runs as root (then `systemd-run` talks to the system's service manager).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|uids| uids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Appends a line to the hook's log (best effort: the log is for people).
fn append_line(log: &Path, line: &str) {
    use std::io::Write as _;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(file, "{line}");
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// An id becomes a directory name: nothing that could climb out of it.
fn check_id(id: &str) -> Result<(), DeployError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(DeployError::InvalidDeployId { id: id.to_owned() })
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shell_status_above_128_is_a_signal() {
        assert_eq!(outcome_of_status(0), ExitOutcome::Exited(0));
        assert_eq!(outcome_of_status(2), ExitOutcome::Exited(2));
        assert_eq!(outcome_of_status(128), ExitOutcome::Exited(128));
        assert_eq!(outcome_of_status(137), ExitOutcome::Signaled(9));
        assert_eq!(outcome_of_status(143), ExitOutcome::Signaled(15));
        assert_eq!(outcome_of_status(255), ExitOutcome::Exited(255));
        assert_eq!(outcome_of_status(i32::MIN), ExitOutcome::Exited(i32::MIN));
    }

    #[test]
    fn ids_cannot_climb_out_of_the_deploy_directory() {
        assert!(check_id("run-42").is_ok());
        for bad in ["", "..", "a/b", "run 1", "run-1/../x", &"x".repeat(65)] {
            assert!(
                matches!(check_id(bad), Err(DeployError::InvalidDeployId { .. })),
                "{bad}"
            );
        }
    }
}
