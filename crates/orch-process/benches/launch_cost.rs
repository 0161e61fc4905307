//! The cost of the sandbox per run: the same `true` started unconfined and in bubblewrap (with
//! and without the limits' `prlimit`, the egress proxy and the model relay), the unconfined
//! launch being the baseline of the same run, and the same policies in a docker container where a
//! daemon answers. A measurement, not a test:
//! `cargo bench -p orch-process --bench launch_cost`.

use std::time::{Duration, Instant};

use orch_process::{ExitOutcome, Limits, Policy, Sandbox, Spec};
use tokio_util::sync::CancellationToken;

const RUNS: usize = 40;

async fn median_launch(sandbox: Sandbox) -> Duration {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec::new("true", dir.path()).sandbox(sandbox);
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let finished = orch_process::run(&spec, &CancellationToken::new(), &mut ()).await;
        times.push(started.elapsed());
        assert_eq!(finished.outcome, ExitOutcome::Exited(0), "{finished:?}");
    }
    times.sort();
    times[RUNS / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let plain = median_launch(Sandbox::Trusted).await;
    let bwrap = median_launch(Sandbox::Bubblewrap(Policy::default())).await;
    let limited = median_launch(Sandbox::Bubblewrap(Policy {
        limits: Limits::AGENT,
        ..Policy::default()
    }))
    .await;
    // What an agent run gets by default: limits and the egress proxy with its relay.
    let agent = median_launch(Sandbox::for_agents()).await;
    // The model relay starts `socat` and waits until it listens (no connection is made).
    let bridge = tempfile::tempdir().expect("tempdir");
    let Sandbox::Bubblewrap(defaults) = Sandbox::for_agents() else {
        unreachable!("agents are sandboxed by bubblewrap")
    };
    let relayed = median_launch(Sandbox::Bubblewrap(Policy {
        bridge: Some(bridge.path().to_owned()),
        ..defaults
    }))
    .await;
    // The same policies in a docker container (where a daemon answers): the container's
    // creation and removal (`docker run --rm`, then `docker rm -f`) are the cost.
    let docker = docker_answers();
    let mut docker_rows = Vec::new();
    if docker {
        docker_rows.push((
            "docker",
            median_launch(Sandbox::Docker(Policy::default())).await,
        ));
        docker_rows.push((
            "docker + limits",
            median_launch(Sandbox::Docker(Policy {
                limits: Limits::AGENT,
                ..Policy::default()
            }))
            .await,
        ));
        docker_rows.push((
            "docker + egress proxy (an agent's default)",
            median_launch(Sandbox::docker_for_agents()).await,
        ));
        let Sandbox::Docker(defaults) = Sandbox::docker_for_agents() else {
            unreachable!("docker_for_agents is docker")
        };
        docker_rows.push((
            "docker + model bridge relay",
            median_launch(Sandbox::Docker(Policy {
                bridge: Some(bridge.path().to_owned()),
                ..defaults
            }))
            .await,
        ));
    }
    println!("median of {RUNS} launches of `true` (ratio to the unconfined baseline):");
    for (what, took) in [
        ("unconfined (baseline)", plain),
        ("bubblewrap", bwrap),
        ("+ prlimit", limited),
        ("+ egress proxy (an agent's default)", agent),
        ("+ model bridge relay", relayed),
    ]
    .into_iter()
    .chain(docker_rows)
    {
        println!(
            "  {what:<44} {took:>10.2?}  x{:.1}",
            took.as_secs_f64() / plain.as_secs_f64()
        );
    }
    if !docker {
        println!("  (no docker daemon answers: the docker rows are left out)");
    }
}

fn docker_answers() -> bool {
    std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}
