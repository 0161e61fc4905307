//! `orch serve` with a Plane tracker and a Gitea forge (the in-process fakes of
//! orch-integrations): a work item moved to Ready in Plane arrives as a signed webhook, runs
//! the whole pipeline, and reaches main through a pull request the fake Gitea really merges;
//! STOP and Approved arrive as webhooks too; forged, replayed and foreign deliveries change
//! nothing; a missed webhook is caught by the reconciliation poll; a tracker that fails for a
//! while is waited for.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use orch_integrations::fake::gitea::FakeGitea;
use orch_integrations::fake::plane::FakePlane;
use orch_integrations::fake::webhook::{Delivery, sign};
use orch_integrations::fake::{FakeServer, Fault};
use serde_json::Value;

use crate::harness::{Orch, free_port, git};

const PLANE_TOKEN: &str = "plane_api_e2e_token";
const GITEA_TOKEN: &str = "gitea_e2e_token";
const WEBHOOK_SECRET: &str = "plane-webhook-secret";
const PROJECT: &str = "4af6d1a2-0b1c-4e5f-9a7b-1c2d3e4f5a6b";

/// Kills `orch serve` when the test ends, however it ends.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `probe` until it gives a value, up to `limit`.
async fn wait_for<T>(what: &str, limit: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs an `orch` command with the tokens every command of a tracked project needs.
fn orch_json(orch: &Orch, args: &[&str]) -> Value {
    let out = orch
        .command(args)
        .env("E2E_PLANE_TOKEN", PLANE_TOKEN)
        .env("E2E_GITEA_TOKEN", GITEA_TOKEN)
        .output()
        .expect("orch runs");
    assert!(
        out.status.success(),
        "orch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn items(orch: &Orch) -> Vec<Value> {
    orch_json(orch, &["item", "list", "--json"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn show(orch: &Orch, id: &str) -> Value {
    orch_json(orch, &["item", "show", id, "--json"])
}

fn status_of(orch: &Orch, id: &str) -> String {
    show(orch, id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plane_item_runs_the_pipeline_and_merges_through_gitea() {
    let orch = Orch::new(None);
    let bare = orch.path().join("remote.git");
    let gitea = FakeServer::start(
        FakeGitea::new(GITEA_TOKEN, "acme", "web", &bare)
            .await
            .expect("fake gitea"),
    )
    .await
    .expect("serve gitea");
    git(
        &orch.repo(),
        &["push", "-q", &bare.display().to_string(), "main"],
    );
    let plane =
        FakeServer::start(FakePlane::new(PLANE_TOKEN, "acme", PROJECT).with_canonical_states())
            .await
            .expect("serve plane");
    // Already in Ready before orch starts, and announced by no webhook: the poll files it.
    let missed = plane
        .with(|p| p.add_work_item("Missed by the webhook", "", "Ready"))
        .await;

    let config = orch.path().join("orch.toml");
    let mut toml = std::fs::read_to_string(&config).expect("orch.toml");
    toml.push_str(&format!(
        "\n[projects.tracker]\nkind = \"plane\"\nbase_url = \"{}\"\nworkspace = \"acme\"\n\
         project = \"{PROJECT}\"\ntoken_env = \"E2E_PLANE_TOKEN\"\npoll_secs = 1\n\n\
         [projects.forge]\nkind = \"gitea\"\nbase_url = \"{}\"\nowner = \"acme\"\nrepo = \"web\"\n\
         token_env = \"E2E_GITEA_TOKEN\"\n",
        plane.base_url(),
        gitea.base_url()
    ));
    std::fs::write(&config, toml).expect("write orch.toml");

    let port = free_port();
    let served = Served(
        orch.command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("ORCH_PLANE_WEBHOOK_SECRET", WEBHOOK_SECRET)
            .env("E2E_PLANE_TOKEN", PLANE_TOKEN)
            .env("E2E_GITEA_TOKEN", GITEA_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("orch serve starts"),
    );
    let hook = format!("http://127.0.0.1:{port}/hooks/plane");
    wait_for("the server", Duration::from_secs(20), async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
    })
    .await;

    // The missed item is filed by the reconciliation poll.
    let first = wait_for(
        "the poll to file the missed item",
        Duration::from_secs(20),
        async || {
            items(&orch)
                .first()
                .and_then(|i| i["id"].as_str().map(str::to_owned))
        },
    )
    .await;
    // Then it is stopped in Plane, again without a webhook: the poll stops it.
    plane
        .with(|p| p.move_work_item(&missed, "STOP", "Ada"))
        .await;
    wait_for(
        "the poll to stop the missed item",
        Duration::from_secs(30),
        async || (status_of(&orch, &first) == "cancelled").then_some(()),
    )
    .await;

    // A forged signature: 401, nothing filed.
    let wanted = plane
        .with(|p| p.add_work_item("Change the greeting", "Say hello from orch", "Todo"))
        .await;
    let to_ready = plane
        .with(|p| p.move_work_item(&wanted, "Ready", "Ada"))
        .await
        .expect("delivery");
    let (status, _) = to_ready
        .send_with_signature(&hook, &sign("not-the-secret", &to_ready.body))
        .await
        .expect("send");
    assert_eq!(status, 401);
    assert_eq!(items(&orch).len(), 1, "a forged delivery files nothing");

    // The real delivery files it; a replay does nothing more.
    let (status, body) = to_ready.send(&hook, WEBHOOK_SECRET).await.expect("send");
    assert_eq!(
        (status, body.contains("\"created\"")),
        (202, true),
        "{body}"
    );
    let (status, body) = to_ready.send(&hook, WEBHOOK_SECRET).await.expect("send");
    assert_eq!(status, 200, "{body}");
    assert_eq!(items(&orch).len(), 2, "a replay files nothing");
    let item = items(&orch)
        .iter()
        .find(|i| i["title"] == "Change the greeting")
        .and_then(|i| i["id"].as_str().map(str::to_owned))
        .expect("the item");

    // A delivery about another Plane project: accepted, nothing done.
    let mut foreign: Value = serde_json::from_slice(&to_ready.body).expect("json");
    foreign["data"]["project"] = Value::from("00000000-0000-4000-8000-000000000000");
    let foreign = Delivery::new(
        orch_integrations::fake::webhook::Sender::Plane,
        "foreign-1",
        "issue",
        &foreign,
    );
    let (status, body) = foreign.send(&hook, WEBHOOK_SECRET).await.expect("send");
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"ignored\""), "{body}");
    assert_eq!(items(&orch).len(), 2);

    // A second item, stopped by a STOP webhook.
    let doomed = plane.with(|p| p.add_work_item("Doomed", "", "Todo")).await;
    let d1 = plane
        .with(|p| p.move_work_item(&doomed, "Ready", "Ada"))
        .await
        .expect("delivery");
    assert_eq!(d1.send(&hook, WEBHOOK_SECRET).await.expect("send").0, 202);
    let d2 = plane
        .with(|p| p.move_work_item(&doomed, "STOP", "Ada"))
        .await
        .expect("delivery");
    let (status, body) = d2.send(&hook, WEBHOOK_SECRET).await.expect("send");
    assert_eq!(status, 202);
    assert!(body.contains("\"stopped\""), "{body}");
    let doomed_id = items(&orch)
        .iter()
        .find(|i| i["title"] == "Doomed")
        .and_then(|i| i["id"].as_str().map(str::to_owned))
        .expect("doomed");
    assert_eq!(status_of(&orch, &doomed_id), "cancelled");

    // Then Plane fails for a while (a STOP is acted on only once Plane confirms it, so the
    // outage comes after it) (500s, a 429): the item keeps its place and the follower waits.
    // Sixteen failed answers are four calls that give up after their retries: even if the
    // reconciliation poll takes three of them, the event follower meets one.
    plane.fail_next(
        std::iter::repeat_n(Fault::Status(500), 15)
            .chain([Fault::RateLimited { reset_in_secs: 1 }]),
    );

    // The pipeline runs to the approval; Plane shows it.
    wait_for("the approval", Duration::from_secs(180), async || {
        (status_of(&orch, &item) == "awaiting-approval").then_some(())
    })
    .await;
    wait_for(
        "Plane to show Confirm Deploy",
        Duration::from_secs(30),
        async || {
            let state = plane.with(|p| p.state_name_of(&wanted)).await;
            (state.as_deref() == Some("Confirm Deploy")).then_some(())
        },
    )
    .await;
    let outage_shown = [&first, &item, &doomed_id].iter().any(|id| {
        show(&orch, id)["events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| e["kind"] == "remote.unreachable"))
    });
    assert!(
        outage_shown,
        "the outage shows as `remote.unreachable` on an item"
    );

    // The pull request was opened after development, and verdicts are commit statuses.
    let (pulls, statuses) = gitea.with(|g| (g.pulls.clone(), g.statuses.clone())).await;
    let branch = format!("orch/{item}");
    let ours: Vec<_> = pulls.iter().filter(|p| p.head == branch).collect();
    assert_eq!(ours.len(), 1, "one pull request for the item: {pulls:?}");
    let number = ours[0].number;
    // Statuses are set on the commits of the item's branch.
    let branch_commits = git(&orch.repo(), &["rev-list", &branch]);
    let contexts: Vec<&str> = statuses
        .iter()
        .filter(|s| branch_commits.contains(&s.sha))
        .map(|s| s.context.as_str())
        .collect();
    for stage in ["orch/development", "orch/review", "orch/qa"] {
        assert!(contexts.contains(&stage), "{stage} in {contexts:?}");
    }

    // Approved in Plane: deploy, then merge through the forge.
    let approve = plane
        .with(|p| p.move_work_item(&wanted, "Approved", "Ada"))
        .await
        .expect("delivery");
    let (status, body) = approve.send(&hook, WEBHOOK_SECRET).await.expect("send");
    assert_eq!(status, 202);
    assert!(body.contains("\"approved\""), "{body}");
    wait_for("done", Duration::from_secs(120), async || {
        (status_of(&orch, &item) == "done").then_some(())
    })
    .await;
    let merged = gitea
        .with(|g| g.pulls.iter().any(|p| p.number == number && p.merged))
        .await;
    // The pull requests of stopped items were closed, never merged.
    let others = gitea
        .with(|g| {
            g.pulls
                .iter()
                .filter(|p| p.number != number)
                .cloned()
                .collect::<Vec<_>>()
        })
        .await;
    assert!(
        others.iter().all(|p| p.closed && !p.merged),
        "{others:?}\n{:#}",
        show(&orch, &first)["events"]
    );
    assert!(merged, "the pull request is merged by the forge");
    let main = git(&bare, &["rev-parse", "refs/heads/main"]);
    let head = git(&bare, &["rev-parse", &format!("refs/heads/orch/{item}")]);
    git(
        &bare,
        &["merge-base", "--is-ancestor", head.trim(), main.trim()],
    );
    wait_for("Plane to show Done", Duration::from_secs(30), async || {
        let state = plane.with(|p| p.state_name_of(&wanted)).await;
        (state.as_deref() == Some("Done")).then_some(())
    })
    .await;
    let comments = plane.with(|p| p.comments.clone()).await;
    assert!(
        comments
            .iter()
            .any(|(id, c)| *id == wanted && c.contains("development attempt 1: PASS")),
        "{comments:?}"
    );
    assert!(
        gitea.requests().iter().all(|r| !r.path.contains("..")),
        "no odd paths"
    );
    drop(served);
}
