//! `kind = "hook"`: the project's own deploy script does the building and running; orch gives it
//! the documented environment, judges its exit code (contract 3) and runs the staging checks.

use std::time::Duration;

use super::hook_target::{HookTarget, target_from_raw};
use super::raw::{RawDeploy, RawHook};
use super::{
    DeploySpec, DockerSpec, HealthSpec, SoakSpec, StagingSpec, checks, config_err, docker,
    health_from_raw, positive_secs, soak_from_raw,
};
use crate::error::DeployError;

/// A deploy hook may build an image; ten minutes unless the project says otherwise.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// The deployers `.orch/deploy.toml` can choose with `kind`.
const KINDS: [&str; 3] = ["process", "hook", "docker"];

/// A project's validated deploy settings, one variant per deployer kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployConfig {
    Process(DeploySpec),
    Hook(HookSpec),
    Docker(DockerSpec),
}

/// The settings of a hook deployer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    /// The argv of the hook; a relative program (`./deploy.sh`) is found in the validated worktree.
    pub command: Vec<String>,
    /// A hook still running after this is killed and FAILED.
    pub timeout: Duration,
    /// Set when the project is orch itself (`[hook] self_deploy = true`): prod's hook then runs
    /// detached, because it restarts the very process that would wait for it (contract 8).
    pub self_deploy: Option<SelfDeploySpec>,
    /// `[hook.staging]`: arguments, service and image names for deploy-staging.
    pub on_staging: HookTarget,
    /// `[hook.prod]`: the same for deploy.
    pub on_prod: HookTarget,
    pub staging: StagingSpec,
}

/// How orch judges its own detached prod deploy: the hook's exit code is not enough, prod must
/// answer its health probe (and stay healthy through the soak, if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfDeploySpec {
    pub health: HealthSpec,
    pub soak: Option<SoakSpec>,
    /// How phase B leaves orch's process tree (`[hook] detach`).
    pub detach: Detach,
}

/// How a self-deploy's prod hook is started so that it outlives orch's restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Detach {
    /// `systemd-run` where systemd runs (falling back to `setsid` when it refuses), else `setsid`.
    #[default]
    Auto,
    /// Always a transient systemd unit of its own; a deploy that cannot get one does not start.
    SystemdRun,
    /// Always a new session and process group (`setsid`), in orch's cgroup.
    Setsid,
}

impl Detach {
    const NAMES: [(&'static str, Detach); 3] = [
        ("auto", Detach::Auto),
        ("systemd-run", Detach::SystemdRun),
        ("setsid", Detach::Setsid),
    ];

    fn parse(text: &str) -> Option<Detach> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, detach)| *detach)
    }
}

impl DeployConfig {
    /// Parses and validates the text of `.orch/deploy.toml` for whichever `kind` it names.
    pub fn from_toml(text: &str) -> Result<DeployConfig, DeployError> {
        let raw: RawDeploy = orch_core::toml_error::parse(text)
            .map_err(|message| DeployError::ConfigSyntax { message })?;
        match raw.kind.as_deref().unwrap_or("process") {
            "process" => DeploySpec::from_raw(raw).map(DeployConfig::Process),
            "hook" => hook_from_raw(raw).map(DeployConfig::Hook),
            "docker" => docker::docker_from_raw(raw).map(DeployConfig::Docker),
            other => Err(config_err(
                "kind",
                format!(
                    "`{other}` is not a deployer; use one of: {}",
                    KINDS.join(", ")
                ),
            )),
        }
    }

    /// The staging checks, whichever deployer runs them.
    pub fn staging(&self) -> &StagingSpec {
        match self {
            DeployConfig::Process(spec) => &spec.staging,
            DeployConfig::Hook(spec) => &spec.staging,
            DeployConfig::Docker(spec) => &spec.staging,
        }
    }
}

fn hook_from_raw(raw: RawDeploy) -> Result<HookSpec, DeployError> {
    // The hook builds, runs and health-checks by itself: process settings would be ignored, and
    // an ignored setting misleads whoever reads the file. Only a self-deploy is judged by orch's
    // own health probe (its hook outlives the orch that started it), so only it may say how.
    let self_deploy = raw.hook.as_ref().is_some_and(|hook| hook.self_deploy);
    let process_only = [
        ("build", raw.build.is_some()),
        ("run", raw.run.is_some()),
        ("health", raw.health.is_some() && !self_deploy),
        ("soak", raw.soak.is_some() && !self_deploy),
        ("docker", raw.docker.is_some()),
    ];
    if let Some((field, _)) = process_only.iter().find(|(_, present)| *present) {
        return Err(config_err(
            *field,
            format!(
                "does not apply to kind = \"hook\" without hook.self_deploy = true; remove [{field}] (the hook builds, runs and health-checks by itself)"
            ),
        ));
    }
    let detach = match raw.hook.as_ref().and_then(|hook| hook.detach.as_deref()) {
        None => Detach::Auto,
        Some(_) if !self_deploy => {
            return Err(config_err(
                "hook.detach",
                "applies only with hook.self_deploy = true (only a self-deploy's prod hook is detached)",
            ));
        }
        Some(text) => Detach::parse(text).ok_or_else(|| {
            config_err(
                "hook.detach",
                format!("`{text}` is not one of: auto, systemd-run, setsid"),
            )
        })?,
    };
    let self_deploy = if self_deploy {
        Some(SelfDeploySpec {
            health: health_from_raw(raw.health.unwrap_or_default())?,
            soak: soak_from_raw(raw.soak)?,
            detach,
        })
    } else {
        None
    };
    let RawHook {
        command,
        timeout_secs,
        self_deploy: _,
        detach: _,
        staging: on_staging,
        prod: on_prod,
    } = raw.hook.ok_or_else(|| {
        config_err(
            "hook.command",
            "is missing; kind = \"hook\" needs [hook] command = [\"./deploy.sh\"]",
        )
    })?;
    let command = command.unwrap_or_default();
    if command
        .first()
        .is_none_or(|program| program.trim().is_empty())
    {
        return Err(config_err(
            "hook.command",
            "is missing or empty; give the hook's argv, e.g. [\"./deploy.sh\"]",
        ));
    }
    Ok(HookSpec {
        command,
        timeout: positive_secs("hook.timeout_secs", timeout_secs, DEFAULT_HOOK_TIMEOUT)?,
        self_deploy,
        on_staging: target_from_raw("hook.staging", on_staging)?,
        on_prod: target_from_raw("hook.prod", on_prod)?,
        staging: checks::staging_from_raw(raw.staging)
            .and_then(|staging| checks::refuse_exec_checks(&staging, "hook").map(|()| staging))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(text: &str) -> String {
        match DeployConfig::from_toml(text) {
            Err(DeployError::Config { field, .. }) => field,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn a_hook_config_reads_its_command_timeout_and_checks() {
        let text =
            "kind = \"hook\"\n[hook]\ncommand = [\"./deploy.sh\", \"--all\"]\ntimeout_secs = 5\n";
        let Ok(DeployConfig::Hook(spec)) = DeployConfig::from_toml(text) else {
            panic!("a valid hook config");
        };
        assert_eq!(spec.command, ["./deploy.sh", "--all"]);
        assert_eq!(spec.timeout, Duration::from_secs(5));
        let default = "kind = \"hook\"\n[hook]\ncommand = [\"./deploy.sh\"]\n";
        let Ok(DeployConfig::Hook(spec)) = DeployConfig::from_toml(default) else {
            panic!("a valid hook config");
        };
        assert_eq!(spec.timeout, DEFAULT_HOOK_TIMEOUT);
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field_of("kind = \"hook\"\n"), "hook.command");
        assert_eq!(
            field_of("kind = \"hook\"\n[hook]\ntimeout_secs = 3\n"),
            "hook.command"
        );
        assert_eq!(
            field_of("kind = \"hook\"\n[hook]\ncommand = []\n"),
            "hook.command"
        );
        let both = "kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\n[build]\ncommand = \"make\"\nartifact = \"app\"\n";
        assert_eq!(field_of(both), "build");
        let process_with_hook = "[hook]\ncommand = [\"./d.sh\"]\n[build]\ncommand = \"make\"\nartifact = \"app\"\n[run]\ncommand = [\"{artifact}\"]\n";
        assert_eq!(field_of(process_with_hook), "hook");
        assert_eq!(field_of("kind = \"podman\"\n"), "kind");
        assert_eq!(
            field_of("kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\ntimeout_secs = 0\n"),
            "hook.timeout_secs"
        );
        assert_eq!(field_of("[run]\ncommand = [\"x\"]\n"), "build");
    }

    #[test]
    fn a_self_deploy_hook_takes_a_health_probe_and_a_soak() {
        let text = "kind = \"hook\"\n[hook]\ncommand = [\"./deploy.sh\"]\nself_deploy = true\n\
                    [health]\npath = \"/up\"\ntries = 3\n[soak]\nsecs = 4\ninterval_ms = 500\n";
        let Ok(DeployConfig::Hook(spec)) = DeployConfig::from_toml(text) else {
            panic!("a valid self-deploy config");
        };
        let Some(self_deploy) = spec.self_deploy else {
            panic!("self_deploy is set");
        };
        assert_eq!(self_deploy.health.path, "/up");
        assert_eq!(self_deploy.health.tries, 3);
        assert_eq!(
            self_deploy.soak,
            Some(SoakSpec {
                duration: Duration::from_secs(4),
                interval: Duration::from_millis(500)
            })
        );
        let plain = "kind = \"hook\"\n[hook]\ncommand = [\"./deploy.sh\"]\nself_deploy = true\n";
        let Ok(DeployConfig::Hook(spec)) = DeployConfig::from_toml(plain) else {
            panic!("a valid self-deploy config");
        };
        let health = spec.self_deploy.map(|s| s.health.path);
        assert_eq!(health.as_deref(), Some(super::super::DEFAULT_HEALTH_PATH));
    }

    #[test]
    fn health_and_soak_need_a_self_deploy_and_name_their_field() {
        let hook = "kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\n";
        assert_eq!(field_of(&format!("{hook}[health]\ntries = 2\n")), "health");
        assert_eq!(field_of(&format!("{hook}[soak]\nsecs = 2\n")), "soak");
        let own = "kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\nself_deploy = true\n";
        assert_eq!(
            field_of(&format!("{own}[soak]\ninterval_ms = 10\n")),
            "soak.secs"
        );
        assert_eq!(field_of(&format!("{own}[soak]\nsecs = 0\n")), "soak.secs");
        assert_eq!(
            field_of(&format!("{own}[soak]\nsecs = 1\ninterval_ms = 5000\n")),
            "soak.interval_ms"
        );
        assert_eq!(field_of("kind = \"docker\"\n[soak]\nsecs = 3\n"), "soak");
    }

    #[test]
    fn detach_is_read_for_a_self_deploy_only() {
        let own = "kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\nself_deploy = true\n";
        let detach_of = |extra: &str| match DeployConfig::from_toml(&format!("{own}{extra}")) {
            Ok(DeployConfig::Hook(spec)) => spec.self_deploy.map(|s| s.detach),
            other => panic!("{other:?}"),
        };
        assert_eq!(detach_of(""), Some(Detach::Auto));
        assert_eq!(detach_of("detach = \"setsid\"\n"), Some(Detach::Setsid));
        assert_eq!(
            detach_of("detach = \"systemd-run\"\n"),
            Some(Detach::SystemdRun)
        );
        assert_eq!(
            field_of(&format!("{own}detach = \"nohup\"\n")),
            "hook.detach"
        );
        assert_eq!(
            field_of("kind = \"hook\"\n[hook]\ncommand = [\"./d.sh\"]\ndetach = \"setsid\"\n"),
            "hook.detach"
        );
    }

    #[test]
    fn the_process_reader_refuses_a_hook_config() {
        let text = "kind = \"hook\"\n[hook]\ncommand = [\"./deploy.sh\"]\n";
        assert!(matches!(
            DeploySpec::from_toml(text),
            Err(DeployError::Config { field, .. }) if field == "kind"
        ));
    }
}
