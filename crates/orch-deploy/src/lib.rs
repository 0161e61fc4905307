//! orch-deploy: build once, run on staging, check, promote the same build to prod.
//!
//! - [`DeploySpec`] reads a project's `.orch/deploy.toml` (build, run, health, staging checks).
//! - [`run_checks`] measures a staging instance; `orch_core::staging::fold` turns the results into
//!   the verdict (contract 4) and [`report_lines`] prints them.
//! - [`probe_health`] is the health probe of contract 7.
//! - [`Deployer`] is the port the engine calls on the two action stages; [`ProcessDeployer`] is
//!   the default implementation (a build directory keyed by SHA, detached processes on loopback
//!   ports, restore on a failed promotion, freeze on a failed restore); [`HookDeployer`] runs the
//!   project's own deploy script under the exit-code contract (`kind = "hook"`, [`DeployConfig`]);
//!   [`DockerDeployer`] builds one image per SHA with the docker CLI and promotes it by retagging
//!   (`kind = "docker"`).
//! - [`StagingReport::log_markdown`] and [`DeployReport::log_markdown`] render the stage logs.
//!
//! Invariants:
//! - Never a false green: a check that could not be measured is not a pass, and any failure before
//!   or around the checks folds into a FAILED verdict with its reason.
//! - The staging step never touches the prod port or process, and prod only ever runs a build
//!   whose SHA and digest match what passed staging (build once, contract 6).
//! - Probes and checks talk only to loopback addresses; every child process is started through
//!   `orch-process` with a cleared environment.
//! - A restore is never rolled back: if it fails, prod is frozen until a person clears it; if it
//!   succeeds, further promotions pause until a person resumes them ([`resume_promotions`]).

mod artifact;
mod build;
mod checks;
mod config;
mod confine;
mod deployer;
mod docker;
mod error;
mod health;
mod hook;
mod http;
mod instance;
mod layout;
mod pause;
mod process_deployer;
mod report;
mod selfdeploy;
mod soak;
mod template;

pub use build::Build;
pub use checks::{CHECK_LINE_PREFIX, CheckRun, Measurement, report_lines, run_checks};
pub use config::{
    BindMount, BuildSpec, CheckSpec, DEFAULT_DOCKER_BINARY, DEFAULT_HEALTH_PATH,
    DEFAULT_HOOK_TIMEOUT, DEFAULT_PORT_ENV, DeployConfig, DeploySpec, DockerEnvSpec, DockerSpec,
    HealthSpec, HookSpec, HookTarget, JsonExpectation, Mode, Probe, REVISION_LABEL, ReportedCheck,
    RunSpec, SelfDeploySpec, SoakSpec, StagingSpec,
};
pub use confine::Confinement;
pub use deployer::{Deployer, PortHolder, port_is_free};
pub use docker::DockerDeployer;
pub use error::DeployError;
pub use health::{HealthOutcome, probe_health};
pub use hook::{ARTIFACT_LINE_PREFIX, HookDeployer};
pub use instance::{Env, InstanceRecord, Ports};
pub use pause::resume_promotions;
pub use process_deployer::ProcessDeployer;
pub use report::{DeployReport, DeployStatus, StagingReport};
pub use selfdeploy::{DetachedDeploy, DetachedState, SelfDeploy};

/// Configuration errors are [`DeployError::Config`] and [`DeployError::ConfigSyntax`]; the crate
/// keeps one error type, and this name says what [`DeploySpec::from_toml`] reports.
pub type DeployConfigError = DeployError;

/// The port a probe of `url` would reach, or why orch would refuse to probe it (not `http://`,
/// no port, not a loopback address): `orch staging-check` compares it with prod's port.
pub fn probe_port(url: &str) -> Result<u16, String> {
    http::LoopbackUrl::parse(url).map(|target| target.addr.port())
}

/// `GET url` on a loopback address: the status and body, or why nothing could be measured.
/// For people-facing probes (the demo prints what prod answers).
pub async fn http_get(url: &str, timeout: std::time::Duration) -> Result<(u16, String), String> {
    http::get(url, timeout).await.map(|a| (a.status, a.body))
}
