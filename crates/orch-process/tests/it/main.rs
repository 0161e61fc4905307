//! Real processes: exit codes, signals, killing whole groups, output limits, detached sessions.

mod detached;
mod docker;
mod limits;
mod run;
mod sandbox;
#[path = "../../../../test-support/skip.rs"]
mod skip;

use std::path::Path;
use std::time::Duration;

use orch_process::{Observer, Spec, Stream};

/// Every line and the pid, as the run reported them.
#[derive(Debug, Default)]
struct Recorder {
    pid: Option<u32>,
    lines: Vec<(Stream, String)>,
    refused: Vec<orch_process::EgressRefusals>,
}

impl Observer for Recorder {
    fn started(&mut self, pid: u32) {
        self.pid = Some(pid);
    }

    fn line(&mut self, stream: Stream, line: &str) {
        self.lines.push((stream, line.to_owned()));
    }

    fn egress_refused(&mut self, refused: &orch_process::EgressRefusals) {
        self.refused.push(refused.clone());
    }
}

impl Recorder {
    fn stdout(&self) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(s, _)| *s == Stream::Stdout)
            .map(|(_, l)| l.as_str())
            .collect()
    }
}

/// `sh -c script` in `dir` with a short grace so that kill tests stay fast.
fn sh(script: &str, dir: &Path) -> Spec {
    Spec {
        kill_grace: Duration::from_millis(300),
        timeout: Duration::from_secs(20),
        ..Spec::shell(script, dir)
    }
}

/// Polls `done` for up to five seconds; for effects that happen asynchronously in another process.
fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < until {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// Whether a docker daemon answers here. When none does, the test is skipped through
/// [`skip::skip`], which fails it where every dependency is required (CI starts one with
/// `bash .ci/install-docker.sh`).
fn docker_here() -> bool {
    let answers = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !answers {
        skip::skip("no docker daemon answers; run `bash .ci/install-docker.sh`");
    }
    answers
}
