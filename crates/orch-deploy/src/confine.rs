//! How the process deployer confines the code of the item's branch that it runs: the build
//! command (a build script is the agent's code) and the staging and prod instances.
//!
//! - The build runs in the project's agent sandbox, as its command gates do: the work tree
//!   read-write, the system and toolchains read-only, a private home and `/tmp`, nothing of
//!   orch's data directory, no network but the egress proxy's `allow_hosts`.
//! - An instance runs in its own PID and IPC namespaces with the folders [`Confinement::hidden`]
//!   names empty (orch's data directory) and its own build visible read-only; it shares the
//!   host's network, so it listens on its loopback port (see `orch_process::confine_instance`).
//!
//! This module must never relax either on its own: only a project that opted out
//! (`sandbox = "none"`) runs its builds and instances as orch's user with orch's view.

use std::path::PathBuf;

use orch_process::Sandbox;

/// The confinement of one project's builds and instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// Where the build command runs.
    pub build: Sandbox,
    /// `Some`: instances run in their own PID namespace with these folders hidden (orch's data
    /// directory, and the deployer's own root in any case). `None`: as they are (opted out).
    pub hidden: Option<Vec<PathBuf>>,
}

impl Confinement {
    /// Builds in the agents' default sandbox, instances with `hidden` hidden.
    pub fn confined(hidden: Vec<PathBuf>) -> Self {
        Self {
            build: Sandbox::for_agents(),
            hidden: Some(hidden),
        }
    }

    /// The confinement that goes with a project's agent sandbox: the same sandbox for its
    /// builds; for its instances, `hidden` hidden unless the project opted out.
    pub fn of_project(sandbox: &Sandbox, hidden: Vec<PathBuf>) -> Self {
        Self {
            build: sandbox.clone(),
            hidden: (!sandbox.is_opted_out()).then_some(hidden),
        }
    }
}
