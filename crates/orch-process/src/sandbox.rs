//! Where a child runs: the [`Sandbox`] port that confines programs running code an agent wrote
//! (the agent itself, the command gates and builds that execute its code), and its policy.
//!
//! A sandbox turns a [`Spec`] into the [`Spec`] that runs it confined (for bubblewrap: `bwrap`
//! with the original program after `--`), so [`crate::run`] keeps its one way of starting, timing
//! out and killing a process group. Inside, the child sees its work tree (read-write), a private
//! home and `/tmp`, the system and toolchains read-only, the folders a policy names read-only,
//! and nothing else: not orch's data directory, not other work trees, not orch's processes, no
//! network but loopback. Not root inside.
//!
//! This module must never fall back to running a program unconfined when its sandbox cannot be
//! set up: that is an error naming the fix. Opting out is [`Sandbox::OptedOut`], chosen by a
//! person and warned about at every run.

use std::path::PathBuf;

use crate::spec::Spec;

/// How a child program is confined.
// One per project and one clone per run: the size of `Policy` inline costs nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sandbox {
    /// A program of orch's own or of the operator's (a deploy hook, git): not code an agent
    /// wrote, run as it is. Deliberately not a `Default`: confinement is always chosen.
    Trusted,
    /// A project that opted out (`sandbox = "none"`): runs as orch's user with orch's view of
    /// the machine, and every run logs a warning saying so.
    OptedOut,
    /// User, PID, mount, IPC, UTS and network namespaces through bubblewrap.
    Bubblewrap(Policy),
    /// The same policy in a docker container (`docker run --network none`, no capabilities, a
    /// read-only root from an empty image with the host's system folders mounted read-only),
    /// for hosts that run agents in containers. See [`crate::docker`].
    Docker(Policy),
}

/// What a confined program may see and use, besides its working directory (read-write).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Host paths visible read-only at the same path (the CLI's install, the prompt file).
    pub read_only: Vec<PathBuf>,
    /// Host paths visible read-write at the same path (a persistent private home).
    pub read_write: Vec<PathBuf>,
    /// The private home: this host folder at the same path, or an empty one when `None`.
    pub home: Option<PathBuf>,
    /// A host folder bound at [`BRIDGE_DIR`] holding [`BRIDGE_SOCKET`], orch's model bridge:
    /// inside, `socat` listens on `127.0.0.1:`[`BRIDGE_PORT`] and forwards there.
    pub bridge: Option<PathBuf>,
    /// Resource limits, applied inside with `prlimit`.
    pub limits: Limits,
    /// `Some`: an egress proxy runs for the run (`HTTP_PROXY`/`HTTPS_PROXY` inside), letting
    /// through these hosts only (`example.com`, `*.example.com`) and recording every refusal in
    /// the run's log. `None`: no proxy, no route out at all, nothing recorded.
    pub allow_hosts: Option<Vec<String>>,
    /// The running proxy's folder, set by [`crate::run`] (not configured).
    pub egress: Option<PathBuf>,
    /// The `cgroup.procs` of the run's pids cgroup, set by [`crate::run`] when orch runs as root
    /// (not configured): bwrap is started inside it.
    pub cgroup_procs: Option<PathBuf>,
}

/// The line an opted-out run's log starts with, so that whoever reads the log (the dashboard's
/// live log too) sees that the run was not confined.
pub const UNCONFINED_WARNING: &str = "orch: WARNING: this run is NOT sandboxed (the project set \
     sandbox = { mode = \"none\" }): it sees orch's files and processes as orch's user";

/// What a person is shown wherever a project that opted out appears (the dashboard's project
/// and item pages, `orch status`, `orch item show`).
pub const OPTED_OUT_NOTICE: &str = "NOT sandboxed: the project set sandbox = { mode = \"none\" }, \
     so its agents and command gates run as orch's user and see orch's files and processes";

/// Where [`Policy::bridge`] appears inside the sandbox.
pub const BRIDGE_DIR: &str = "/run/orch";
/// The Unix socket in [`Policy::bridge`] that the loopback port inside forwards to.
pub const BRIDGE_SOCKET: &str = "model.sock";
/// The loopback port inside the sandbox that leads to [`BRIDGE_SOCKET`] (with a bridge only).
pub const BRIDGE_PORT: u16 = 41000;
/// The uid and gid a confined program runs as: not root.
pub const SANDBOX_UID: u32 = 1000;
/// The home of a sandbox without [`Policy::home`].
pub const SANDBOX_HOME: &str = "/home/agent";

/// Per-run resource limits. `None` leaves a limit as orch's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// The data memory of each process (`RLIMIT_DATA`: heap and private writable mappings, not
    /// the address space a JavaScript engine reserves without using), in MiB.
    pub memory_mib: Option<u64>,
    /// The processes of the sandbox's user (`RLIMIT_NPROC`).
    pub processes: Option<u64>,
    /// The largest file a process may write (`RLIMIT_FSIZE`), in MiB.
    pub file_mib: Option<u64>,
}

impl Limits {
    /// The defaults of an agent run: generous for a build, fatal for a fork bomb.
    pub const AGENT: Limits = Limits {
        memory_mib: Some(16 * 1024),
        processes: Some(1024),
        file_mib: Some(4 * 1024),
    };
}

/// Why a sandbox could not be set up. The run then fails: it never runs unconfined.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SandboxError {
    #[error(
        "the agent sandbox needs bubblewrap (`bwrap`), which is not on orch's PATH; install it \
         (`apt-get install bubblewrap`), or opt this project out with `sandbox = \"none\"` in \
         orch.toml (the agent then runs unconfined)"
    )]
    BubblewrapMissing,
    #[error(
        "bubblewrap cannot create the sandbox's namespaces on this machine ({0}); allow \
         unprivileged user namespaces (`sysctl kernel.unprivileged_userns_clone=1`, and on \
         Ubuntu `sysctl kernel.apparmor_restrict_unprivileged_userns=0`), or opt this project \
         out with `sandbox = \"none\"` in orch.toml"
    )]
    NoNamespaces(String),
    #[error("the sandbox cannot hold {path}: {reason}")]
    Path { path: String, reason: String },
    #[error(
        "the agent sandbox's model bridge needs socat, which is not installed; install it \
         (`apt-get install socat`)"
    )]
    SocatMissing,
    #[error("`prlimit` (util-linux) is needed to apply the sandbox's limits and is not installed")]
    PrlimitMissing,
    #[error(
        "the project's sandbox runs in docker (`runtime = \"docker\"`), and the `docker` CLI is \
         not on orch's PATH; install docker (`apt-get install docker.io`), or set `runtime = \
         \"bubblewrap\"` in the project's sandbox settings"
    )]
    DockerMissing,
    #[error(
        "the project's sandbox runs in docker and the docker daemon does not answer ({0}); start \
         it (`systemctl start docker`, or `dockerd`) and make its socket usable by orch's user \
         (the `docker` group), or set `runtime = \"bubblewrap\"` in the project's sandbox settings"
    )]
    DockerDaemon(String),
    #[error("the docker sandbox's empty image {image} cannot be created: {reason}")]
    DockerImage { image: String, reason: String },
    #[error(
        "a docker sandbox is started by `orch_process::run` only (it names and removes the container)"
    )]
    DockerOutsideRun,
    #[error("the docker sandbox cannot pass the variable {name}: {reason}")]
    DockerEnv { name: String, reason: String },
}

impl SandboxError {
    /// The one-line fix of a missing prerequisite, for `orch doctor` (the error's own message
    /// says it too, for a run's log).
    pub fn fix(&self) -> String {
        let opt_out = "or opt the project out with `sandbox = { mode = \"none\" }` in orch.toml";
        match self {
            SandboxError::BubblewrapMissing => {
                format!("install bubblewrap (`apt-get install bubblewrap`), {opt_out}")
            }
            SandboxError::NoNamespaces(_) => format!(
                "allow unprivileged user namespaces (`sysctl kernel.unprivileged_userns_clone=1`; on \
                 Ubuntu also `sysctl kernel.apparmor_restrict_unprivileged_userns=0`), {opt_out}"
            ),
            SandboxError::SocatMissing => "install socat (`apt-get install socat`)".to_owned(),
            SandboxError::PrlimitMissing => {
                "install util-linux, which has prlimit (`apt-get install util-linux`)".to_owned()
            }
            SandboxError::Path { path, .. } => format!("make {path} a folder orch can bind"),
            SandboxError::DockerMissing => "install docker (`apt-get install docker.io`), or set \
                 `runtime = \"bubblewrap\"` in the project's sandbox settings"
                .to_owned(),
            SandboxError::DockerDaemon(_) => "start the docker daemon (`systemctl start docker`, \
                 or `dockerd`) and let orch's user use its socket (the `docker` group)"
                .to_owned(),
            SandboxError::DockerImage { .. } => "check that `docker import` works for orch's \
                 user (disk space, the daemon's storage driver)"
                .to_owned(),
            SandboxError::DockerOutsideRun => "run the spec with `orch_process::run`".to_owned(),
            SandboxError::DockerEnv { name, .. } => {
                format!("give {name} a value without a line break")
            }
        }
    }
}

impl Sandbox {
    /// The spec that runs `spec` confined; `None` when it runs as it is.
    pub fn wrap(&self, spec: &Spec) -> Result<Option<Spec>, SandboxError> {
        match self {
            Sandbox::Trusted => Ok(None),
            Sandbox::OptedOut => {
                tracing::warn!(
                    program = %spec.program,
                    cwd = %spec.cwd.display(),
                    "running agent code WITHOUT a sandbox (the project set sandbox = \"none\"): \
                     it sees orch's files and processes as orch's user"
                );
                Ok(None)
            }
            Sandbox::Bubblewrap(policy) => crate::bubblewrap::wrap(policy, spec).map(Some),
            // A container needs a name, an environment file and its removal around the run:
            // only `crate::run` starts one (it prepares them and hands `run_spec` the result).
            Sandbox::Docker(_) => Err(SandboxError::DockerOutsideRun),
        }
    }

    /// The policy of a confined sandbox (bubblewrap or docker), `None` for the others.
    pub fn policy(&self) -> Option<&Policy> {
        match self {
            Sandbox::Bubblewrap(policy) | Sandbox::Docker(policy) => Some(policy),
            Sandbox::Trusted | Sandbox::OptedOut => None,
        }
    }

    /// The same runtime with another policy (a caller widening the project's for one run); a
    /// sandbox without a policy is returned as it is.
    pub fn with_policy(&self, policy: Policy) -> Sandbox {
        match self {
            Sandbox::Bubblewrap(_) => Sandbox::Bubblewrap(policy),
            Sandbox::Docker(_) => Sandbox::Docker(policy),
            Sandbox::Trusted | Sandbox::OptedOut => self.clone(),
        }
    }

    /// The docker runtime with the defaults of [`Sandbox::for_agents`].
    pub fn docker_for_agents() -> Self {
        match Sandbox::for_agents() {
            Sandbox::Bubblewrap(policy) => Sandbox::Docker(policy),
            other => other,
        }
    }

    /// What a docker sandbox needs on this machine (the `docker` CLI, a daemon that answers,
    /// `socat`), checked the way a run checks them.
    pub fn docker_prerequisites() -> Vec<(&'static str, Result<String, SandboxError>)> {
        crate::docker::prerequisites()
    }

    /// The sandbox of code an agent wrote when nothing else is configured: bubblewrap with the
    /// default limits.
    pub fn for_agents() -> Self {
        Sandbox::Bubblewrap(Policy {
            limits: Limits::AGENT,
            allow_hosts: Some(Vec::new()),
            ..Policy::default()
        })
    }

    pub fn is_confined(&self) -> bool {
        matches!(self, Sandbox::Bubblewrap(_) | Sandbox::Docker(_))
    }

    /// What a bubblewrap sandbox needs on this machine (`bwrap`, unprivileged user namespaces,
    /// `socat`, `prlimit`), each checked the way a run checks it: the name, and where it was
    /// found or the error a run would fail with.
    pub fn prerequisites() -> Vec<(&'static str, Result<String, SandboxError>)> {
        crate::bubblewrap::prerequisites()
    }

    /// A person chose to run this project's agents unconfined: say so wherever it shows.
    pub fn is_opted_out(&self) -> bool {
        matches!(self, Sandbox::OptedOut)
    }

    /// One word for listings: `bubblewrap`, `docker`, `NONE` (opted out) or `trusted`.
    pub fn label(&self) -> &'static str {
        match self {
            Sandbox::Trusted => "trusted",
            Sandbox::OptedOut => "NONE",
            Sandbox::Bubblewrap(_) => "bubblewrap",
            Sandbox::Docker(_) => "docker",
        }
    }
}
