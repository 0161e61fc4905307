//! The agent CLIs of `orch doctor`: each model CLI a project's `.orch/agents.toml` names is
//! installed, and its version is the one orch is tested with (orch-agent's `tested` list, the
//! same list `.ci/install-agent-clis.sh` installs).
//!
//! The program is asked `--version` outside the sandbox, with orch's safe environment only (no
//! secret): it is the one the main checkout's `.orch/agents.toml` names, a protected path that
//! reaches the default branch only through the gates, trusted as a deploy hook is.

use orch_agent::AgentKind;
use orch_agent::tested::{tested, version_in};

use super::findings::Finding;
use super::host::version_output;

/// Checks one CLI; `projects` names the projects whose agents run it.
pub async fn cli(kind: AgentKind, program: &str, projects: &str) -> Finding {
    let subject = if program == kind.default_program().unwrap_or_default() {
        kind.name().to_owned()
    } else {
        format!("{} ({program})", kind.name())
    };
    let tested = tested(kind);
    let install = tested
        .as_ref()
        .map(|t| t.install_command())
        .unwrap_or_else(|| format!("install {}", kind.name()));
    let output = match version_output(program).await {
        Ok(output) => output,
        Err(e) => {
            return Finding::fail(
                "agent",
                subject,
                format!("{e}; {projects} run it"),
                format!("{install}, or set `program` in .orch/agents.toml to where it is"),
            );
        }
    };
    let Some(tested) = tested else {
        return Finding::ok("agent", subject, output);
    };
    match version_in(&output) {
        Some(found) if found == tested.version => Finding::ok(
            "agent",
            subject,
            format!("{} {found}, the version orch is tested with", kind.name()),
        ),
        Some(found) => Finding::warn(
            "agent",
            subject,
            format!(
                "{} {found} is installed; orch is tested with {}",
                kind.name(),
                tested.version
            ),
            format!("{install} (its output format may differ from what orch reads)"),
        ),
        None => Finding::warn(
            "agent",
            subject,
            format!("cannot read a version from `{program} --version`: {output:?}"),
            format!("{install}, or check that `program` names the right CLI"),
        ),
    }
}
