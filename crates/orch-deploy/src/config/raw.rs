//! The literal shape of `.orch/deploy.toml`, as serde reads it. Every field a person may write is
//! listed here; anything else is rejected by `deny_unknown_fields` so a typo never silently falls
//! back to a default. Meaning and defaults are given in `config.rs`, which validates this shape.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeploy {
    /// `"process"` (the default), `"hook"` or `"docker"`.
    pub kind: Option<String>,
    pub build: Option<RawBuild>,
    pub run: Option<RawRun>,
    pub health: Option<RawHealth>,
    pub hook: Option<RawHook>,
    pub docker: Option<RawDocker>,
    pub soak: Option<RawSoak>,
    #[serde(default)]
    pub staging: RawStaging,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSoak {
    pub secs: Option<u64>,
    pub interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDocker {
    pub binary: Option<String>,
    pub host: Option<String>,
    pub dockerfile: Option<String>,
    pub context: Option<String>,
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    pub build_timeout_secs: Option<u64>,
    pub port_env: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// `[docker.staging]` and `[docker.prod]`: an env file and bind mounts per environment.
    pub staging: Option<RawDockerEnv>,
    pub prod: Option<RawDockerEnv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDockerEnv {
    pub env_file: Option<String>,
    #[serde(default)]
    pub mounts: Vec<RawMount>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMount {
    pub source: String,
    pub target: String,
    #[serde(default)]
    pub read_write: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuild {
    pub command: String,
    pub artifact: String,
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRun {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHook {
    pub command: Option<Vec<String>>,
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub self_deploy: bool,
    /// How a self-deploy's prod hook is detached: `auto`, `systemd-run` or `setsid`.
    pub detach: Option<String>,
    /// `[hook.staging]` and `[hook.prod]`: what the hook is told per environment.
    pub staging: Option<RawHookTarget>,
    pub prod: Option<RawHookTarget>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHookTarget {
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub service: Option<String>,
    pub image: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub path: Option<String>,
    pub tries: Option<u32>,
    pub interval_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStaging {
    #[serde(default)]
    pub infra_allowlist: Vec<String>,
    #[serde(default)]
    pub checks: Vec<RawCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub id: String,
    pub category: Option<String>,
    pub kind: String,
    // http
    pub path: Option<String>,
    pub expect_status: Option<u16>,
    pub body_contains: Option<String>,
    pub json_field: Option<String>,
    pub json_equals: Option<String>,
    // command
    pub run: Option<String>,
    pub expect_exit: Option<i32>,
    // exec (docker deployer only)
    pub exec: Option<Vec<String>>,
    // command or exec: a suite that prints one `CHECK <id> PASS|FAIL` line per id listed here
    pub reports: Option<Vec<String>>,
    // retries and scope
    pub tries: Option<u32>,
    pub interval_ms: Option<u64>,
    pub initial_delay_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub successes: Option<u32>,
    #[serde(default)]
    pub shadow: bool,
    pub modes: Option<Vec<String>>,
}
