//! Runs the child programs orch depends on: agent CLIs, a project's test command, deploy hooks.
//!
//! Every run is contained:
//! - the environment is **cleared** and only [`Spec::env`] is set, normally built from
//!   [`safe_env`], so orch's own secrets (tracker and forge tokens, `ORCH_*` settings) never
//!   reach a program that an agent or a repository controls;
//! - the child leads its **own process group**; on timeout, stall or cancel the whole group gets
//!   SIGTERM and, after a grace period, SIGKILL, so grandchildren (a test runner's workers, a
//!   shell's background jobs) die with it. When [`run`] returns, no member of the group is left;
//! - output is read line by line from both streams at once, and memory stays bounded whatever
//!   the child prints: long lines are cut, the log file is capped, only a short tail is kept.
//!
//! - code an agent wrote runs in a [`Sandbox`] ([`Spec::sandbox`]): bubblewrap namespaces where
//!   it sees its work tree and the system read-only, and nothing of orch's; or the same policy
//!   in a docker container ([`Sandbox::Docker`]).
//!
//! [`spawn_detached`] is the one exception: it starts a process in its own session that is meant
//! to outlive orch (the self-deploy hook).
//!
//! This crate must never pass orch's environment through wholesale, never leave a process group
//! behind after [`run`] returns, and never panic on anything a child prints. Linux only: liveness
//! checks read `/proc`.

mod bubblewrap;
mod cgroup;
mod detached;
mod docker;
mod egress;
mod instance_box;
mod limits;
mod output;
mod run;
pub mod safe_file;
mod sandbox;
mod signal;
mod spec;
mod unit;

use std::path::PathBuf;

pub use detached::spawn_detached;
pub use egress::{
    Destination, EGRESS_DIR, EGRESS_PORT, EGRESS_SOCKET, EgressRefusals, KEPT_DESTINATIONS,
    egress_refusals,
};
pub use instance_box::{InstanceView, confine_instance};
pub use orch_core::gate::ExitOutcome;
pub use run::run;
pub use sandbox::{
    BRIDGE_DIR, BRIDGE_PORT, BRIDGE_SOCKET, Limits, OPTED_OUT_NOTICE, Policy, SANDBOX_HOME,
    SANDBOX_UID, Sandbox, SandboxError, UNCONFINED_WARNING,
};
pub use signal::{Backoff, group_is_alive, is_alive, kill_group, kill_pid};
pub use spec::{DetachedSpec, Finished, Observer, Spec, Stream};
pub use unit::{SYSTEMD_RUN, spawn_in_unit, systemd_is_running, systemd_run_args};

/// Why a process could not be started or signalled.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("`{program}` could not be started: {reason}")]
    Start { program: String, reason: String },
    #[error("cannot open the log file {}: {source}; check that its directory is writable", path.display())]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to signal {target}: {reason}")]
    Refused {
        target: String,
        reason: &'static str,
    },
    #[error("could not signal {target}: {source}")]
    Signal { target: String, source: nix::Error },
}

/// The variables a child may inherit from orch's own environment.
///
/// They are what a program needs to find its tools (`PATH`, the Rust toolchain's homes), its
/// configuration (`HOME`, `USER`) and to print text (`LANG`, `LC_*`, `TERM`, `TZ`). Nothing else
/// is passed because everything else is, or may be, a secret: orch runs with tracker and forge
/// tokens in its environment, and the children are programs that agents and repositories
/// control. A caller adds what the child needs on top (the item id, an agent's own API key).
const INHERITED: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "TZ",
    "TMPDIR",
    "SHELL",
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
];

/// The allowlisted variables (see [`INHERITED`]) that are set in orch's environment, as UTF-8.
pub fn safe_env() -> Vec<(String, String)> {
    INHERITED
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| ((*name).to_owned(), value))
        })
        .collect()
}

/// The program and arguments that run `command` through `sh -c`, for commands configured as one
/// string (a project's test command, a deploy hook).
pub fn shell(command: &str) -> (String, Vec<String>) {
    ("sh".to_owned(), vec!["-c".to_owned(), command.to_owned()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_env_passes_only_allowlisted_names() {
        let env = safe_env();
        assert!(
            env.iter()
                .all(|(name, _)| INHERITED.contains(&name.as_str())),
            "{env:?}"
        );
        if let Ok(path) = std::env::var("PATH") {
            assert!(env.contains(&("PATH".to_owned(), path)));
        }
        // cargo sets this for every test binary it runs; it must not leak through.
        assert!(
            std::env::var("CARGO_PKG_NAME").is_ok(),
            "precondition: run under cargo"
        );
        assert!(env.iter().all(|(name, _)| name != "CARGO_PKG_NAME"));
    }

    #[test]
    fn shell_wraps_the_command_for_sh() {
        assert_eq!(
            shell("cargo test && echo ok"),
            (
                "sh".to_owned(),
                vec!["-c".to_owned(), "cargo test && echo ok".to_owned()]
            )
        );
    }
}
