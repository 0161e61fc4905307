//! `orch onboard` with a tracker and a forge: the real binary against the fake Plane and Gitea
//! (in-process servers following the documented API shapes, a real bare repository behind the
//! Gitea). plan sends GET requests only; apply creates the repository, pushes into it once,
//! creates the states, labels and webhook; a second apply sends nothing but GETs; verify checks
//! it all; what a host refuses is a manual step and a gap until done.

use std::path::Path;
use std::process::Output;

use orch_core::states::CANONICAL_STATES;
use orch_integrations::fake::gitea::FakeGitea;
use orch_integrations::fake::plane::FakePlane;
use orch_integrations::fake::{FakeApi, FakeServer, Recorded};

use crate::harness::{BIN, free_port, git};

const PLANE_TOKEN: &str = "plane_onboard_token_7a7a";
const GITEA_TOKEN: &str = "gitea_onboard_token_8b8b";
const HOOK_SECRET: &str = "global-gitea-secret-9c9c";
const PROJECT: &str = "5e1d0000-0000-4000-8000-0000000000cc";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn onboard(config: &Path, args: &[String]) -> Run {
    let out: Output = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("onboard")
        .args(args)
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .env("ONBOARD_PLANE_TOKEN", PLANE_TOKEN)
        .env("ONBOARD_GITEA_TOKEN", GITEA_TOKEN)
        .env("ORCH_GITEA_WEBHOOK_SECRET", HOOK_SECRET)
        .output()
        .await
        .expect("orch runs");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for secret in [PLANE_TOKEN, GITEA_TOKEN, HOOK_SECRET] {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "a secret was printed:\n{}\n{}",
            run.stdout,
            run.stderr
        );
    }
    run
}

fn expect(run: &Run, code: i32) -> &str {
    assert_eq!(
        run.code,
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    &run.stdout
}

fn args(action: &str, repo: &Path, extra: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = [action, "--name", "billing", "--repo"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    all.push(repo.display().to_string());
    for (flag, port) in [
        ("--staging-port", free_port()),
        ("--prod-port", free_port()),
    ] {
        all.push(flag.into());
        all.push(port.to_string());
    }
    all.extend(extra.iter().map(|s| (*s).to_owned()));
    all
}

fn mutations(requests: &[Recorded]) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|r| r.method != "GET")
        .cloned()
        .collect()
}

fn writes<A: FakeApi>(server: &FakeServer<A>) -> usize {
    mutations(&server.requests()).len()
}

fn bare_main(bare: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["rev-parse", "--verify", "-q", "refs/heads/main"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_onboards_onto_plane_and_a_new_gitea_repository() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("billing");
    let bare = dir.path().join("billing.git");
    let gitea = FakeServer::start(
        FakeGitea::absent(GITEA_TOKEN, "acme", "billing", &bare)
            .await
            .expect("fake gitea"),
    )
    .await
    .expect("serve gitea");
    let mut fake_plane = FakePlane::new(PLANE_TOKEN, "acme", PROJECT);
    fake_plane.add_state("Backlog", "backlog");
    let plane = FakeServer::start(fake_plane).await.expect("serve plane");
    let remotes = [
        "--tracker",
        "plane",
        "--tracker-url",
        plane.base_url(),
        "--tracker-token-env",
        "ONBOARD_PLANE_TOKEN",
        "--plane-workspace",
        "acme",
        "--plane-project",
        PROJECT,
        "--forge",
        "gitea",
        "--forge-url",
        gitea.base_url(),
        "--forge-token-env",
        "ONBOARD_GITEA_TOKEN",
        "--owner",
        "acme",
        "--webhook-url",
        "https://orch.example.com",
    ];

    let plan = onboard(&config, &args("plan", &repo, &remotes)).await;
    let text = expect(&plan, 0);
    for line in [
        "create  gitea: repository acme/billing  [POST /api/v1/user/repos]",
        "push    gitea: first push of main into acme/billing",
        "exists  plane: state Backlog (backlog)",
        "create  plane: state STOP (cancelled)  [POST /api/v1/workspaces/acme/projects/",
        "manual  plane: webhook https://orch.example.com/hooks/plane: Plane's API cannot create webhooks",
    ] {
        assert!(text.contains(line), "`{line}` in:\n{text}");
    }
    assert_eq!(mutations(&gitea.requests()), [], "plan sends GET only");
    assert_eq!(mutations(&plane.requests()), [], "plan sends GET only");
    assert!(!repo.exists() && !config.exists(), "plan writes nothing");

    let apply = onboard(&config, &args("apply", &repo, &remotes)).await;
    let text = expect(&apply, 0);
    assert!(text.contains("pushed  gitea: first push of main"), "{text}");
    let local_main = git(&repo, &["rev-parse", "main"]).trim().to_owned();
    assert_eq!(bare_main(&bare).as_deref(), Some(local_main.as_str()));
    let states = plane
        .with(|p| {
            p.states
                .iter()
                .map(|s| (s.name.clone(), s.group.clone()))
                .collect::<Vec<_>>()
        })
        .await;
    for state in CANONICAL_STATES {
        assert!(
            states.contains(&(state.name.to_owned(), state.group.as_str().to_owned())),
            "{} ({}) in {states:?}",
            state.name,
            state.group.as_str()
        );
    }
    assert_eq!(states.len(), CANONICAL_STATES.len());
    let toml = std::fs::read_to_string(&config).expect("orch.toml");
    assert!(
        toml.contains("[projects.tracker]") && toml.contains("[projects.forge]"),
        "{toml}"
    );
    assert!(
        toml.contains("token_env = \"ONBOARD_GITEA_TOKEN\"") && !toml.contains(GITEA_TOKEN),
        "the registry names the variable, never the token:\n{toml}"
    );

    let (gitea_writes, plane_writes) = (writes(&gitea), writes(&plane));
    let again = onboard(&config, &args("apply", &repo, &remotes)).await;
    assert!(
        expect(&again, 0).contains("Nothing to do"),
        "{}",
        again.stdout
    );
    assert_eq!(
        (writes(&gitea), writes(&plane)),
        (gitea_writes, plane_writes),
        "a second apply changes nothing"
    );

    let verify = onboard(
        &config,
        &args(
            "verify",
            &repo,
            &["--webhook-url", "https://orch.example.com"],
        ),
    )
    .await;
    let text = expect(&verify, 0);
    assert!(
        text.contains("exists  plane: state STOP (cancelled)"),
        "{text}"
    );
    assert!(text.contains("exists  gitea: first push of main"), "{text}");
    assert!(text.contains("nothing is missing"), "{text}");
    assert_eq!(
        (writes(&gitea), writes(&plane)),
        (gitea_writes, plane_writes),
        "verify only reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_label_is_a_manual_step_and_a_gap_until_apply_completes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("billing");
    let bare = dir.path().join("billing.git");
    let mut fake = FakeGitea::absent(GITEA_TOKEN, "acme", "billing", &bare)
        .await
        .expect("fake gitea");
    fake.refuse_label = Some("state/Needs Info".into());
    let gitea = FakeServer::start(fake).await.expect("serve gitea");
    let remotes = [
        "--tracker",
        "gitea",
        "--forge",
        "gitea",
        "--forge-url",
        gitea.base_url(),
        "--forge-token-env",
        "ONBOARD_GITEA_TOKEN",
        "--owner",
        "acme",
        "--webhook-url",
        "http://127.0.0.1:8500/",
    ];
    let apply = onboard(&config, &args("apply", &repo, &remotes)).await;
    let text = expect(&apply, 1);
    assert!(
        text.contains("manual  gitea: label state/Needs Info (started): gitea refused it"),
        "{text}"
    );
    assert!(
        text.contains("created gitea: webhook http://127.0.0.1:8500/hooks/gitea"),
        "{text}"
    );
    let hooks = gitea.with(|g| g.hooks.clone()).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(
        hooks[0]["config"]["secret"], HOOK_SECRET,
        "the webhook reuses the global secret orch serve verifies with"
    );

    let verify = onboard(
        &config,
        &args("verify", &repo, &["--webhook-url", "http://127.0.0.1:8500"]),
    )
    .await;
    let text = expect(&verify, 1);
    assert!(
        text.contains("gap     gitea: label state/Needs Info (started) is missing"),
        "{text}"
    );

    gitea.with(|g| g.refuse_label = None).await;
    let completed = onboard(&config, &args("apply", &repo, &remotes)).await;
    let text = expect(&completed, 0);
    assert!(
        text.contains("created gitea: label state/Needs Info"),
        "{text}"
    );
    assert!(text.contains("exists  gitea: webhook"), "{text}");
    assert_eq!(gitea.with(|g| g.hooks.len()).await, 1, "no second webhook");
    let verify = onboard(
        &config,
        &args("verify", &repo, &["--webhook-url", "http://127.0.0.1:8500"]),
    )
    .await;
    expect(&verify, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_repository_with_other_history_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("billing");
    let bare = dir.path().join("billing.git");
    let fake = FakeGitea::new(GITEA_TOKEN, "acme", "billing", &bare)
        .await
        .expect("fake gitea");
    let theirs = dir.path().join("theirs");
    std::fs::create_dir_all(&theirs).expect("mkdir");
    git(&theirs, &["init", "-q", "-b", "main"]);
    std::fs::write(theirs.join("x"), "x").expect("write");
    git(&theirs, &["add", "x"]);
    git(&theirs, &["commit", "-q", "-m", "theirs"]);
    git(
        &theirs,
        &["push", "-q", &bare.display().to_string(), "main"],
    );
    let before = bare_main(&bare);
    let gitea = FakeServer::start(fake).await.expect("serve gitea");
    let remotes = [
        "--forge",
        "gitea",
        "--forge-url",
        gitea.base_url(),
        "--forge-token-env",
        "ONBOARD_GITEA_TOKEN",
        "--owner",
        "acme",
    ];
    let apply = onboard(&config, &args("apply", &repo, &remotes)).await;
    let text = expect(&apply, 1);
    assert!(
        text.contains("refused gitea: first push of main into acme/billing: acme/billing exists and is not empty"),
        "{text}"
    );
    assert_eq!(bare_main(&bare), before, "the forge's history is untouched");
    assert_eq!(
        mutations(&gitea.requests()),
        [],
        "nothing was sent but GETs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracker_and_forge_flags_are_checked_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("billing");
    for (extra, named) in [
        (
            vec!["--forge", "bitbucket"],
            "--forge: `bitbucket` is not a forge",
        ),
        (
            vec!["--forge", "gitea", "--owner", "acme"],
            "--forge-url is required",
        ),
        (vec!["--tracker", "plane"], "--tracker-url is required"),
        (
            vec!["--owner", "acme"],
            "--owner needs --tracker or --forge",
        ),
        (
            vec![
                "--forge",
                "gitea",
                "--forge-url",
                "http://127.0.0.1:9",
                "--forge-token-env",
                "ONBOARD_SURELY_UNSET",
                "--owner",
                "acme",
            ],
            "the environment variable `ONBOARD_SURELY_UNSET` is not set",
        ),
    ] {
        let run = onboard(&config, &args("plan", &repo, &extra)).await;
        assert_eq!(run.code, Some(2), "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(named), "`{named}` in: {}", run.stderr);
    }
    assert!(!config.exists() && !repo.exists());
}

/// Fail-closed on the tracker: a Plane state in the wrong group (STOP under `started`, so not
/// terminal on Plane's board) and a missing label are gaps with their fix named; apply creates
/// the labels and never edits the state; verify passes once a person moved it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_on_a_state_in_the_wrong_group_and_a_missing_label() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("billing");
    let mut fake_plane = FakePlane::new(PLANE_TOKEN, "acme", PROJECT);
    for state in CANONICAL_STATES {
        let group = if state.name == "STOP" {
            "started"
        } else {
            state.group.as_str()
        };
        fake_plane.add_state(state.name, group);
    }
    let plane = FakeServer::start(fake_plane).await.expect("serve plane");
    let tracker = [
        "--tracker",
        "plane",
        "--tracker-url",
        plane.base_url(),
        "--tracker-token-env",
        "ONBOARD_PLANE_TOKEN",
        "--plane-workspace",
        "acme",
        "--plane-project",
        PROJECT,
        "--label",
        "sandbox-infra",
    ];
    let stop_gap = "plane: state STOP (cancelled): it is in group `started`, not `cancelled`: move it to `cancelled` in Plane → Project settings → States";

    let apply = onboard(&config, &args("apply", &repo, &tracker)).await;
    let text = expect(&apply, 1);
    assert!(
        text.contains("created plane: label sandbox-infra"),
        "{text}"
    );
    assert!(text.contains(&format!("refused {stop_gap}")), "{text}");
    let labels: Vec<String> = plane
        .with(|p| p.labels.iter().map(|l| l.name.clone()).collect())
        .await;
    assert_eq!(labels, ["sandbox-infra"]);
    assert_eq!(
        plane
            .with(|p| p
                .states
                .iter()
                .find(|s| s.name == "STOP")
                .map(|s| s.group.clone()))
            .await
            .as_deref(),
        Some("started"),
        "orch never edits a state"
    );

    let labelled = ["--label", "sandbox-infra"];
    let verify = onboard(&config, &args("verify", &repo, &labelled)).await;
    let text = expect(&verify, 1);
    assert!(text.contains(&format!("gap     {stop_gap}")), "{text}");
    assert!(
        text.contains("exists  plane: label sandbox-infra"),
        "{text}"
    );

    // A person moves STOP to its group: nothing is missing any more.
    plane
        .with(|p| {
            if let Some(stop) = p.states.iter_mut().find(|s| s.name == "STOP") {
                stop.group = "cancelled".into();
            }
        })
        .await;
    let verify = onboard(&config, &args("verify", &repo, &labelled)).await;
    assert!(
        expect(&verify, 0).contains("nothing is missing"),
        "{}",
        verify.stdout
    );

    // A label the project lacks is a gap naming apply.
    let verify = onboard(
        &config,
        &args("verify", &repo, &["--label", "needs-design"]),
    )
    .await;
    let text = expect(&verify, 1);
    assert!(
        text.contains("gap     plane: label needs-design is missing (run `orch onboard apply`)"),
        "{text}"
    );
    // --label is for Plane only, and names a label once.
    let twice = onboard(
        &config,
        &args("verify", &repo, &["--label", "a", "--label", "a"]),
    )
    .await;
    assert_eq!(twice.code, Some(2), "{}", twice.stderr);
    assert!(
        twice.stderr.contains("--label `a` is given twice"),
        "{}",
        twice.stderr
    );
}
