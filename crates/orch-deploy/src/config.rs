//! `.orch/deploy.toml`: how a project is built, run, health-checked and checked on staging.
//!
//! Read once and validated, so the deployer can trust every value. Errors name the field (for a
//! check: its index and id) and say what is allowed, because a person fixes this file by hand.

mod checks;
mod docker;
mod docker_env;
mod hook;
mod hook_target;
mod raw;

use std::collections::BTreeMap;
use std::path::{Component, PathBuf};
use std::time::Duration;

use orch_core::staging::CheckCategory;

use crate::error::DeployError;
use crate::template;
use raw::{RawDeploy, RawHealth, RawSoak};

pub use docker::{DEFAULT_DOCKER_BINARY, DEFAULT_PORT_ENV, DockerSpec, REVISION_LABEL};
pub use docker_env::{BindMount, DockerEnvSpec};
pub use hook::{DEFAULT_HOOK_TIMEOUT, DeployConfig, Detach, HookSpec, SelfDeploySpec};
pub use hook_target::HookTarget;

/// Contract 7: ten tries six seconds apart unless the project says otherwise.
pub const DEFAULT_HEALTH_TRIES: u32 = 10;
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(6);
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEALTH_PATH: &str = "/healthz";
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(600);
pub const DEFAULT_CHECK_TRIES: u32 = 3;
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_SOAK_INTERVAL: Duration = Duration::from_secs(2);

/// Placeholders each configured command may use.
const RUN_PLACEHOLDERS: [&str; 2] = ["artifact", "port"];
const CHECK_PLACEHOLDERS: [&str; 1] = ["base_url"];

/// A project's validated deploy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploySpec {
    pub build: BuildSpec,
    pub run: RunSpec,
    pub health: HealthSpec,
    /// Keep probing prod this long after a promotion before it counts (`[soak]`).
    pub soak: Option<SoakSpec>,
    pub staging: StagingSpec,
}

/// The soak window: after a promotion is healthy, prod's health is probed every `interval` for
/// `duration`; one failed probe fails the promotion (and restores the previous build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoakSpec {
    pub duration: Duration,
    pub interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSpec {
    /// A shell command run in the validated worktree.
    pub command: String,
    /// The built file or directory, relative to the worktree (never escaping it).
    pub artifact: PathBuf,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The argv of the instance; may use `{artifact}` and `{port}`.
    pub command: Vec<String>,
    /// Extra environment of the instance; values may use `{artifact}` and `{port}`.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    pub path: String,
    pub tries: u32,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingSpec {
    /// The only check ids that may be INFRA (contract 4: a narrow, explicit list).
    pub infra_allowlist: Vec<String>,
    pub checks: Vec<CheckSpec>,
}

/// Whether the staging run may spend on live dependencies (LLM calls and the like).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Deterministic and free: the default for every automatic run.
    #[default]
    Stub,
    Live,
}

impl Mode {
    pub const ALL: [Mode; 2] = [Mode::Stub, Mode::Live];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stub => "stub",
            Mode::Live => "live",
        }
    }

    pub fn parse(text: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSpec {
    pub id: String,
    pub category: CheckCategory,
    pub probe: Probe,
    pub tries: u32,
    pub interval: Duration,
    pub initial_delay: Duration,
    pub timeout: Duration,
    /// Consecutive successful tries needed to pass.
    pub successes: u32,
    /// Run and recorded, never deciding.
    pub shadow: bool,
    pub modes: Vec<Mode>,
    /// A suite (`reports = [...]`, command and exec checks only): the ids its output carries, one
    /// `CHECK <id> PASS|FAIL <detail>` line each, in the configured order. Empty for a plain check.
    pub reports: Vec<ReportedCheck>,
}

/// One id a suite reports, classified by orch's own configuration: INFRA only when the id is on
/// `staging.infra_allowlist`, REAL otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedCheck {
    pub id: String,
    pub category: CheckCategory,
}

/// What a check measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    Http {
        path: String,
        expect_status: u16,
        body_contains: Option<String>,
        json: Option<JsonExpectation>,
    },
    /// A shell command; `{base_url}` is replaced by the staging URL.
    Command { run: String, expect_exit: i32 },
    /// An argv run inside the staging container with `docker exec` (docker deployer only; no
    /// shell, because a `FROM scratch` image has none); `{base_url}` is replaced as above.
    Exec { argv: Vec<String>, expect_exit: i32 },
}

/// A dotted path into a JSON answer (`a.b.0`) and the value it must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonExpectation {
    pub field: String,
    pub equals: String,
}

impl DeploySpec {
    /// Parses and validates the text of `.orch/deploy.toml` of a `process` deployer; a file
    /// saying `kind = "hook"` is an error here (read it with [`DeployConfig::from_toml`]).
    pub fn from_toml(text: &str) -> Result<DeploySpec, DeployError> {
        match DeployConfig::from_toml(text)? {
            DeployConfig::Process(spec) => Ok(spec),
            DeployConfig::Hook(_) | DeployConfig::Docker(_) => Err(config_err(
                "kind",
                "is not \"process\", but this needs the process deployer's [build] and [run]",
            )),
        }
    }

    /// Validates the sections of a `process` deployer (`kind` is absent or `"process"`).
    fn from_raw(raw: RawDeploy) -> Result<DeploySpec, DeployError> {
        for (field, present) in [
            ("hook", raw.hook.is_some()),
            ("docker", raw.docker.is_some()),
        ] {
            if present {
                return Err(config_err(
                    field,
                    format!(
                        "is set, but kind is \"process\"; set kind = \"{field}\" or remove [{field}]"
                    ),
                ));
            }
        }
        let build = raw.build.ok_or_else(|| {
            config_err(
                "build",
                "is missing; the process deployer needs [build] command and artifact",
            )
        })?;
        let run = raw.run.ok_or_else(|| {
            config_err(
                "run",
                "is missing; the process deployer needs [run] command",
            )
        })?;
        Ok(DeploySpec {
            build: build_from_raw(build)?,
            run: run_from_raw(run)?,
            health: health_from_raw(raw.health.unwrap_or_default())?,
            soak: soak_from_raw(raw.soak)?,
            staging: checks::staging_from_raw(raw.staging).and_then(|staging| {
                checks::refuse_exec_checks(&staging, "process").map(|()| staging)
            })?,
        })
    }
}

fn config_err(field: impl Into<String>, problem: impl Into<String>) -> DeployError {
    DeployError::Config {
        field: field.into(),
        problem: problem.into(),
    }
}

fn build_from_raw(raw: raw::RawBuild) -> Result<BuildSpec, DeployError> {
    if raw.command.trim().is_empty() {
        return Err(config_err(
            "build.command",
            "is empty; give the shell command that builds the artifact",
        ));
    }
    let artifact = relative_inside("build.artifact", &raw.artifact)?;
    if artifact.file_name().is_none() {
        return Err(config_err(
            "build.artifact",
            format!("`{}` must name a file or directory", raw.artifact),
        ));
    }
    Ok(BuildSpec {
        command: raw.command,
        artifact,
        timeout: positive_secs(
            "build.timeout_secs",
            raw.timeout_secs,
            DEFAULT_BUILD_TIMEOUT,
        )?,
    })
}

/// A path that stays inside the worktree: relative, without `..`.
fn relative_inside(field: &str, text: &str) -> Result<PathBuf, DeployError> {
    let path = PathBuf::from(text);
    let stays_inside = !text.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if stays_inside {
        Ok(path)
    } else {
        Err(config_err(
            field,
            format!("`{text}` must be a relative path inside the worktree (no `..`, not absolute)"),
        ))
    }
}

/// Refuses a name a shell or `docker run -e` could not carry as an environment variable.
fn check_env_name(field: &str, name: &str) -> Result<(), DeployError> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(config_err(
            field,
            "is not a valid environment variable name",
        ))
    }
}

fn run_from_raw(raw: raw::RawRun) -> Result<RunSpec, DeployError> {
    if raw
        .command
        .first()
        .is_none_or(|program| program.trim().is_empty())
    {
        return Err(config_err(
            "run.command",
            "is empty; give the argv that starts the app, e.g. [\"{artifact}\"]",
        ));
    }
    let dummy: Vec<(&str, &str)> = RUN_PLACEHOLDERS.iter().map(|name| (*name, "")).collect();
    for (index, arg) in raw.command.iter().enumerate() {
        check_placeholders(
            &format!("run.command[{index}]"),
            arg,
            &dummy,
            &RUN_PLACEHOLDERS,
        )?;
    }
    for (name, value) in &raw.env {
        check_env_name(&format!("run.env.{name}"), name)?;
        check_placeholders(&format!("run.env.{name}"), value, &dummy, &RUN_PLACEHOLDERS)?;
    }
    Ok(RunSpec {
        command: raw.command,
        env: raw.env,
    })
}

fn health_from_raw(raw: RawHealth) -> Result<HealthSpec, DeployError> {
    let path = raw.path.unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_owned());
    check_url_path("health.path", &path)?;
    Ok(HealthSpec {
        path,
        tries: positive_count("health.tries", raw.tries, DEFAULT_HEALTH_TRIES)?,
        interval: raw
            .interval_ms
            .map_or(DEFAULT_HEALTH_INTERVAL, Duration::from_millis),
        timeout: positive_ms("health.timeout_ms", raw.timeout_ms, DEFAULT_HEALTH_TIMEOUT)?,
    })
}

fn soak_from_raw(raw: Option<RawSoak>) -> Result<Option<SoakSpec>, DeployError> {
    let Some(raw) = raw else { return Ok(None) };
    let secs = raw.secs.ok_or_else(|| {
        config_err(
            "soak.secs",
            "is missing; say how many seconds prod is watched after a promotion, or remove [soak]",
        )
    })?;
    let duration = positive_secs("soak.secs", Some(secs), Duration::ZERO)?;
    let interval = positive_ms("soak.interval_ms", raw.interval_ms, DEFAULT_SOAK_INTERVAL)?;
    if interval > duration {
        return Err(config_err(
            "soak.interval_ms",
            format!(
                "is longer than the soak itself ({secs}s); prod would never be probed during it"
            ),
        ));
    }
    Ok(Some(SoakSpec { duration, interval }))
}

fn check_placeholders(
    field: &str,
    text: &str,
    dummy: &[(&str, &str)],
    known: &[&str],
) -> Result<(), DeployError> {
    template::fill(text, dummy).map(drop).map_err(|name| {
        config_err(
            field,
            format!("unknown placeholder `{{{name}}}`; known: {}", braced(known)),
        )
    })
}

fn braced(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{{n}}}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_url_path(field: &str, path: &str) -> Result<(), DeployError> {
    if path.starts_with('/') && !path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(())
    } else {
        Err(config_err(
            field,
            format!("`{path}` must start with `/` and contain no spaces"),
        ))
    }
}

fn positive_count(field: &str, value: Option<u32>, default: u32) -> Result<u32, DeployError> {
    match value {
        Some(0) => Err(config_err(field, "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

fn positive_ms(
    field: &str,
    value: Option<u64>,
    default: Duration,
) -> Result<Duration, DeployError> {
    match value {
        Some(0) => Err(config_err(field, "must be more than 0")),
        Some(ms) => Ok(Duration::from_millis(ms)),
        None => Ok(default),
    }
}

fn positive_secs(
    field: &str,
    value: Option<u64>,
    default: Duration,
) -> Result<Duration, DeployError> {
    match value {
        Some(0) => Err(config_err(field, "must be more than 0")),
        Some(secs) => Ok(Duration::from_secs(secs)),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests;
