//! The machine's part of `orch doctor`: git, the agent sandbox's prerequisites, loopback ports,
//! and the one way the doctor asks a program its version.
//!
//! Nothing here changes the machine: programs are only asked `--version`, ports are bound and
//! released at once.

use std::time::Duration;

use super::findings::Finding;

/// The oldest git orch works with: `git merge-tree --write-tree` (integration of candidates
/// without a checkout) came with git 2.38.
pub const MIN_GIT: (u32, u32) = (2, 38);

/// How long a program may take to print its version (a Node CLI's first start is slow).
const VERSION_TIMEOUT: Duration = Duration::from_secs(20);

/// What `program --version` printed on standard output (standard error when that is empty),
/// run with orch's safe environment only, or why it could not be run.
pub async fn version_output(program: &str) -> Result<String, String> {
    let mut command = tokio::process::Command::new(program);
    command
        .arg("--version")
        .env_clear()
        .envs(orch_process::safe_env())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(VERSION_TIMEOUT, command.output()).await {
        Err(_) => {
            return Err(format!(
                "`{program} --version` did not answer within {} s",
                VERSION_TIMEOUT.as_secs()
            ));
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("`{program}` is not installed (not found on PATH)"));
        }
        Ok(Err(e)) => return Err(format!("`{program}` could not be started: {e}")),
        Ok(Ok(output)) => output,
    };
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let text = if stdout.is_empty() {
        String::from_utf8_lossy(&output.stderr).trim().to_owned()
    } else {
        stdout
    };
    if !output.status.success() {
        return Err(format!(
            "`{program} --version` failed ({}): {}",
            output.status,
            text.lines().next().unwrap_or("")
        ));
    }
    Ok(text)
}

/// git is installed and at least [`MIN_GIT`].
pub async fn git() -> Finding {
    let (major, minor) = MIN_GIT;
    let fix = format!("install git {major}.{minor} or later (`apt-get install git`)");
    let output = match version_output("git").await {
        Ok(output) => output,
        Err(e) => return Finding::fail("git", "", e, fix),
    };
    let Some(found) = orch_agent::tested::version_in(&output) else {
        return Finding::fail(
            "git",
            "",
            format!("cannot read git's version from {output:?}"),
            fix,
        );
    };
    let mut parts = found.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    if have >= MIN_GIT {
        Finding::ok(
            "git",
            "",
            format!("git {found} (orch needs {major}.{minor} or later)"),
        )
    } else {
        Finding::fail(
            "git",
            "",
            format!(
                "git {found} is older than {major}.{minor}, which orch needs (merge-tree --write-tree)"
            ),
            fix,
        )
    }
}

/// The bubblewrap sandbox's prerequisites, checked as a run checks them; `who` names the
/// projects that need the sandbox.
pub fn sandbox(who: &str) -> Vec<Finding> {
    orch_process::Sandbox::prerequisites()
        .into_iter()
        .map(|(name, result)| match result {
            Ok(found) => Finding::ok("sandbox", name, found),
            Err(e) => Finding::fail(
                "sandbox",
                name,
                format!("{} (needed by {who})", cause(&e)),
                e.fix(),
            ),
        })
        .collect()
}

/// The docker sandbox's prerequisites (the `docker` CLI, a daemon that answers, `socat`),
/// checked as a run checks them; `who` names the projects that chose `runtime = "docker"`.
pub fn docker_sandbox(who: &str) -> Vec<Finding> {
    orch_process::Sandbox::docker_prerequisites()
        .into_iter()
        .map(|(name, result)| match result {
            Ok(found) => Finding::ok("sandbox", name, found),
            Err(e) => Finding::fail(
                "sandbox",
                name,
                format!("{} (needed by {who})", cause(&e)),
                e.fix(),
            ),
        })
        .collect()
}

/// The first clause of a sandbox error: what is wrong, without the fix its message also says.
fn cause(e: &orch_process::SandboxError) -> String {
    use orch_process::SandboxError as E;
    match e {
        E::BubblewrapMissing => "bubblewrap (`bwrap`) is not on orch's PATH".to_owned(),
        E::NoNamespaces(why) => {
            format!("bubblewrap cannot create the sandbox's namespaces here: {why}")
        }
        E::SocatMissing => "socat is not installed (the model bridge and egress relay)".to_owned(),
        E::PrlimitMissing => "prlimit is not installed (the sandbox's limits)".to_owned(),
        E::DockerMissing => "the `docker` CLI is not on orch's PATH".to_owned(),
        E::DockerDaemon(why) => format!("the docker daemon does not answer: {why}"),
        other => other.to_string(),
    }
}

/// A loopback port orch itself will listen on (the demo's dashboard, staging and prod) is free.
pub fn free_port(subject: &str, port: u16, flag: &str) -> Finding {
    if orch_deploy::port_is_free(port) {
        Finding::ok("port", subject, format!("port {port} is free"))
    } else {
        Finding::fail(
            "port",
            subject,
            format!("port {port} is in use by another program"),
            format!("stop what listens there (`ss -ltnp 'sport = :{port}'`) or pass {flag}"),
        )
    }
}
