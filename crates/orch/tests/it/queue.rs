//! Many items at once, one truth: staging validates the item's branch integrated with the
//! default branch's tip, prod is promoted only to a candidate that contains what prod runs, and
//! `main` moves exactly to what prod runs. Real git, the real process deployer, a Python app that
//! serves the changes it was built with.

use serde_json::Value;

use crate::harness::{Orch, git};

/// What drives orch in these scenarios: the harness as it is, or with a forge's token
/// (`queue_forge.rs`).
pub(crate) trait Drives {
    fn ok(&self, args: &[&str]) -> String;
    fn item(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["item", "show", id, "--json"])).expect("json")
    }
}

impl Drives for Orch {
    fn ok(&self, args: &[&str]) -> String {
        Orch::ok(self, args)
    }
}

/// The deployed app: `GET /changes` lists the files under its `changes/` folder, one a line.
const APP: &str = r#"import http.server, os
ROOT = os.path.dirname(os.path.abspath(__file__))

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        found = sorted(os.listdir(os.path.join(ROOT, "changes")))
        body = ("\n".join(found) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// Builds the `app` folder (the server and its `changes/`) and runs it.
const DEPLOY: &str = r#"
[build]
command = "true"
artifact = "app"
timeout_secs = 60

[run]
command = ["python3", "{artifact}/server.py"]
env = { PORT = "{port}" }

[health]
path = "/healthz"
tries = 100
interval_ms = 20
timeout_ms = 1000

[staging]
infra_allowlist = []

[[staging.checks]]
id = "health"
category = "REAL"
kind = "http"
path = "/healthz"
expect_status = 200
"#;

/// Each item adds its own file to the app and, with `shared`, its line to `docs/changes.md`
/// (which conflicts with every other item's line); a second development attempt resolves the
/// conflict the integration left, keeping both sides.
fn scenario(shared: bool) -> String {
    let changes = if shared {
        r##"  { path = "docs/changes.md", content = "# Changes\n- {item}\n" },"##
    } else {
        r##"  { path = "docs/changes/{item}.md", content = "# {item}\n" },"##
    };
    format!(
        r#"[[steps]]
stage = "analysis"
files = [{{ path = "docs/work-items/{{item}}/01-analysis.md", content = "---\nanalysis_status: READY\n---\n" }}]

[[steps]]
stage = "architecture"
files = [{{ path = "docs/work-items/{{item}}/02-design.md", content = "---\ndesign_status: READY\n---\n" }}]

[[steps]]
stage = "development"
attempt = 1
files = [
  {{ path = "app/changes/{{item}}.txt", content = "{{item}}\n" }},
{changes}
  {{ path = "docs/work-items/{{item}}/03-dev-notes.md", content = "---\ndev_status: DONE\n---\n" }},
]

[[steps]]
stage = "development"
files = [
  {{ path = "docs/changes.md", resolve = "union" }},
  {{ path = "docs/work-items/{{item}}/03-dev-notes.md", content = "---\ndev_status: DONE\nattempt: {{attempt}}\n---\n" }},
]

[[steps]]
stage = "review"
files = [{{ path = "docs/work-items/{{item}}/04-review.md", content = "---\nreview_verdict: APPROVE\n---\n" }}]

[[steps]]
stage = "qa"
files = [{{ path = "docs/work-items/{{item}}/05-test-report.md", content = "---\nqa_status: PASS\n---\n" }}]
"#
    )
}

/// The quick project with the app above, `docs/changes.md` started, and `scenario(shared)`.
pub(crate) fn project(shared: bool) -> Orch {
    let orch = Orch::new(None);
    let repo = orch.repo();
    let write = |rel: &str, text: &str| {
        let path = repo.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    write("app/server.py", APP);
    write("app/changes/.keep", "");
    write("docs/changes.md", "# Changes\n");
    write(".orch/deploy.toml", DEPLOY);
    write(".orch/scenario.toml", &scenario(shared));
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "the app and its changes"]);
    orch
}

fn prod_port(orch: &Orch) -> u16 {
    let text = std::fs::read_to_string(orch.path().join("orch.toml")).expect("orch.toml");
    let line = text
        .lines()
        .find(|l| l.starts_with("prod_port"))
        .expect("prod_port");
    line.split('=')
        .nth(1)
        .expect("value")
        .trim()
        .parse()
        .expect("port")
}

/// What prod serves at `/changes`.
pub(crate) fn prod_changes(orch: &Orch) -> Vec<String> {
    let port = prod_port(orch);
    let out = std::process::Command::new("curl")
        .args(["-fsS", &format!("http://127.0.0.1:{port}/changes")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "prod does not answer on {port}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty() && *l != ".keep")
        .map(str::to_owned)
        .collect()
}

/// The invariant after every deploy: prod's build commit is the default branch's tip.
fn assert_prod_is_main(orch: &Orch) {
    let record = std::fs::read_to_string(orch.path().join("deploy/quick/prod/current.json"))
        .expect("prod record");
    let record: Value = serde_json::from_str(&record).expect("json");
    let main = git(&orch.repo(), &["rev-parse", "main"]);
    assert_eq!(
        record["sha"].as_str(),
        Some(main.trim()),
        "prod runs main's tip"
    );
    // The checkout people look at follows, with nothing left over.
    assert_eq!(git(&orch.repo(), &["status", "--porcelain"]), "");
}

fn main_files(orch: &Orch) -> Vec<String> {
    git(
        &orch.repo(),
        &["ls-tree", "--name-only", "main", "app/changes/"],
    )
    .lines()
    .map(|l| l.trim_start_matches("app/changes/").to_owned())
    .filter(|l| l != ".keep")
    .collect()
}

pub(crate) fn status(orch: &impl Drives, id: &str) -> String {
    let item = orch.item(id);
    if item["status"] == "blocked" {
        eprintln!("{id} is blocked: {}", item["blocked_reason"]);
        for r in item["runs"].as_array().into_iter().flatten() {
            eprintln!(
                "  {} {} {} {}",
                r["stage"], r["attempt"], r["state"], r["verdict"]["reasons"]
            );
        }
    }
    item["status"].as_str().unwrap_or_default().to_owned()
}

pub(crate) fn runs_of(item: &Value, stage: &str) -> Vec<Value> {
    item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["stage"] == stage)
        .cloned()
        .collect()
}

pub(crate) fn events_of<'a>(item: &'a Value, kind: &str) -> Vec<&'a Value> {
    item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[test]
fn three_items_at_once_each_deploy_holds_every_change_merged_so_far() {
    let orch = project(true);
    for title in ["A", "B", "C"] {
        orch.ok(&["item", "add", "--title", title]);
    }
    orch.ok(&["run"]);
    for id in ["QUICK-1", "QUICK-2", "QUICK-3"] {
        assert_eq!(status(&orch, id), "awaiting-approval", "{id}");
    }
    let mut deployed: Vec<String> = Vec::new();
    for id in ["QUICK-1", "QUICK-2", "QUICK-3"] {
        // Approve, run; a conflict goes back to the developer, whose new change needs a new
        // approval; nobody merges by hand.
        for _ in 0..3 {
            if status(&orch, id) == "awaiting-approval" {
                orch.ok(&["approve", id, "--by", "alice"]);
            }
            orch.ok(&["run"]);
            if status(&orch, id) == "done" {
                break;
            }
        }
        let item = orch.item(id);
        assert_eq!(item["status"], "done", "{item:#}");
        deployed.push(format!("{id}.txt"));
        assert_eq!(
            prod_changes(&orch),
            deployed,
            "prod serves every change so far"
        );
        assert_eq!(
            main_files(&orch),
            deployed,
            "main holds every change so far"
        );
        assert_prod_is_main(&orch);
        crate::harness::assert_clean_history(&item);
    }
    // The second and third items met a moved main: re-validated, conflicted, resolved by their
    // developers with both lines kept.
    for id in ["QUICK-2", "QUICK-3"] {
        let item = orch.item(id);
        assert!(
            !events_of(&item, "git.conflict").is_empty(),
            "{id} conflicted"
        );
        let dev = runs_of(&item, "development");
        assert_eq!(
            dev.len(),
            2,
            "{id}: one development run to resolve the conflict"
        );
        assert!(
            events_of(&item, "gate.verdict")
                .iter()
                .any(|e| e["data"]["class"] == "revalidate"),
            "{id} went back to staging when main moved"
        );
    }
    let changes = git(&orch.repo(), &["show", "main:docs/changes.md"]);
    assert_eq!(changes, "# Changes\n- QUICK-1\n- QUICK-2\n- QUICK-3\n");
    // The conflict reached the developer's prompt with both sides.
    let prompt = std::fs::read_to_string(
        orch.path()
            .join("logs/quick/QUICK-2/development-2.prompt.md"),
    )
    .expect("prompt");
    assert!(prompt.contains("conflicts in docs/changes.md"), "{prompt}");
    assert!(
        prompt.contains("- QUICK-1") && prompt.contains("- QUICK-2"),
        "{prompt}"
    );
}

#[test]
fn a_clean_reintegration_keeps_the_approval_and_revalidates_without_an_agent() {
    let orch = project(false);
    orch.ok(&["item", "add", "--title", "A"]);
    orch.ok(&["item", "add", "--title", "B"]);
    orch.ok(&["run"]);
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    // The queue shows who is next, in approval order.
    let status_json: Value =
        serde_json::from_str(&orch.ok(&["status", "--json"])).expect("status json");
    let queue = status_json["promotion_queue"]["quick"]
        .as_array()
        .expect("a queue");
    let rows: Vec<(&str, &str)> = queue
        .iter()
        .map(|e| {
            (
                e["item"].as_str().unwrap_or_default(),
                e["waiting_for"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("QUICK-1", "its turn to be promoted"),
            ("QUICK-2", "a person's approval")
        ]
    );
    let table = orch.ok(&["status"]);
    assert!(table.contains("Promotion queue of quick"), "{table}");
    orch.ok(&["approve", "QUICK-2", "--by", "bob"]);
    orch.ok(&["run"]);
    assert_eq!(status(&orch, "QUICK-1"), "done");
    let b = orch.item("QUICK-2");
    assert_eq!(b["status"], "done", "{b:#}");
    assert_eq!(prod_changes(&orch), ["QUICK-1.txt", "QUICK-2.txt"]);
    assert_prod_is_main(&orch);
    // B went back to staging once, with no agent run, and its approval carried over.
    assert_eq!(runs_of(&b, "deploy-staging").len(), 2, "{b:#}");
    assert_eq!(runs_of(&b, "development").len(), 1);
    let approvals = events_of(&b, "approval.granted");
    assert_eq!(approvals.len(), 2, "{approvals:#?}");
    assert_eq!(approvals[1]["data"]["by"], "bob");
    assert_eq!(
        approvals[1]["data"]["carried_from"],
        approvals[0]["data"]["sha"]
    );
    assert_eq!(
        approvals[1]["data"]["change_id"],
        approvals[0]["data"]["change_id"]
    );
    assert_ne!(approvals[1]["data"]["sha"], approvals[0]["data"]["sha"]);
}

#[test]
fn main_moved_by_a_person_is_integrated_and_validated_before_prod_moves() {
    let orch = project(false);
    orch.ok(&["item", "add", "--title", "A"]);
    orch.ok(&["run"]);
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    // A person pushes to main between the approval and the deploy.
    let repo = orch.repo();
    std::fs::write(repo.join("app/changes/hotfix.txt"), "hotfix\n").expect("write");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "hotfix by a person"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    assert_eq!(prod_changes(&orch), ["QUICK-1.txt", "hotfix.txt"]);
    assert_prod_is_main(&orch);
    assert_eq!(runs_of(&item, "deploy-staging").len(), 2);
    assert_eq!(runs_of(&item, "development").len(), 1, "no agent ran again");
}

#[test]
fn with_reapproval_on_every_reintegration_a_person_approves_again() {
    let orch = project(false);
    let config = orch.path().join("orch.toml");
    let text = std::fs::read_to_string(&config).expect("orch.toml");
    std::fs::write(
        &config,
        format!("{text}reapprove_on_reintegration = true\n"),
    )
    .expect("orch.toml");
    orch.ok(&["item", "add", "--title", "A"]);
    orch.ok(&["run"]);
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    let repo = orch.repo();
    std::fs::write(repo.join("app/changes/hotfix.txt"), "hotfix\n").expect("write");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "hotfix by a person"]);
    orch.ok(&["run"]);
    assert_eq!(status(&orch, "QUICK-1"), "awaiting-approval");
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    orch.ok(&["run"]);
    assert_eq!(status(&orch, "QUICK-1"), "done");
    assert_prod_is_main(&orch);
}

#[test]
fn a_prod_port_held_by_another_program_blocks_with_the_cause_and_no_agent_runs_again() {
    let orch = project(false);
    orch.ok(&["item", "add", "--title", "A"]);
    orch.ok(&["run"]);
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    let main_before = git(&orch.repo(), &["rev-parse", "main"]);
    let squatter =
        std::net::TcpListener::bind(("127.0.0.1", prod_port(&orch))).expect("take the port");
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("is in use by another program") && reason.contains("not the change"),
        "{reason}"
    );
    assert_eq!(runs_of(&item, "development").len(), 1, "no agent ran again");
    assert_eq!(
        git(&orch.repo(), &["rev-parse", "main"]),
        main_before,
        "main did not move"
    );
    drop(squatter);
    orch.ok(&["retry", "QUICK-1"]);
    orch.ok(&["run"]);
    assert_eq!(status(&orch, "QUICK-1"), "done");
    assert_prod_is_main(&orch);
}

#[test]
fn paused_promotions_block_the_deploy_with_the_cause_and_no_agent_runs_again() {
    let orch = project(false);
    orch.ok(&["item", "add", "--title", "A"]);
    orch.ok(&["run"]);
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    // A person has not yet looked at why an earlier promotion was rolled back.
    let marker = orch.path().join("deploy/quick/prod/PAUSED");
    std::fs::create_dir_all(marker.parent().expect("dir")).expect("mkdir");
    std::fs::write(&marker, "prod was restored to abc123 after def456 failed\n").expect("pause");
    let main_before = git(&orch.repo(), &["rev-parse", "main"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("paused") && reason.contains("not the change"),
        "{reason}"
    );
    assert_eq!(runs_of(&item, "development").len(), 1, "no agent ran again");
    assert_eq!(git(&orch.repo(), &["rev-parse", "main"]), main_before);
    assert!(
        !orch.path().join("deploy/quick/prod/current.json").exists(),
        "nothing was promoted"
    );
    orch.ok(&["resume-promotions"]);
    orch.ok(&["retry", "QUICK-1"]);
    orch.ok(&["run"]);
    assert_eq!(status(&orch, "QUICK-1"), "done");
    assert_prod_is_main(&orch);
}

/// The recorded prod instance's pid.
fn prod_pid(orch: &Orch) -> i32 {
    let record = std::fs::read_to_string(orch.path().join("deploy/quick/prod/current.json"))
        .expect("prod record");
    let record: Value = serde_json::from_str(&record).expect("json");
    i32::try_from(record["pid"].as_i64().expect("pid")).expect("pid fits")
}

/// Kills orch at `point` while the second of two items is integrated or promoted, restarts it,
/// and checks the invariant: prod runs main's tip, holds both changes, and once orch's own
/// prod instance is stopped nothing else holds the prod port.
fn crash_while_promoting_the_second(point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let orch = project(false);
    orch.ok(&["item", "add", "--title", "A"]);
    orch.ok(&["item", "add", "--title", "B"]);
    orch.ok(&["run"]);
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    orch.ok(&["run"]);
    assert_eq!(status(&orch, "QUICK-1"), "done");
    orch.ok(&["approve", "QUICK-2", "--by", "bob"]);
    let out = orch
        .command(&["run"])
        .env("ORCH_CRASHPOINT", point)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.signal(),
        Some(9),
        "orch must die at {point}: {out:?}"
    );
    orch.ok(&["run"]);
    let b = orch.item("QUICK-2");
    assert_eq!(b["status"], "done", "{b:#}");
    crate::harness::assert_clean_history(&b);
    assert_eq!(prod_changes(&orch), ["QUICK-1.txt", "QUICK-2.txt"]);
    assert_prod_is_main(&orch);
    assert!(!events_of(&b, "deploy.prod").is_empty());
    let pid = nix::unistd::Pid::from_raw(prod_pid(&orch));
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
    let port = prod_port(&orch);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "something orch does not track still holds the prod port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_crash_while_integrating_again_finishes_with_prod_on_main() {
    crash_while_promoting_the_second("during-integrate");
}

#[test]
fn a_crash_just_before_the_promotion_finishes_with_prod_on_main() {
    crash_while_promoting_the_second("before-promote");
}

#[test]
fn a_crash_between_the_promotion_and_main_moving_finishes_with_prod_on_main() {
    crash_while_promoting_the_second("after-promote");
}

#[test]
fn a_stop_during_the_promotion_lets_it_finish_and_leaves_prod_on_main() {
    let orch = project(false);
    // The app takes a second to come up, so the promotion is in flight when STOP arrives.
    let server = orch.repo().join("app/server.py");
    let slow = APP.replacen(
        "import http.server, os",
        "import http.server, os, time\ntime.sleep(2.5)",
        1,
    );
    std::fs::write(&server, slow).expect("write");
    git(&orch.repo(), &["commit", "-qam", "a slow start"]);
    orch.ok(&["item", "add", "--title", "A"]);
    orch.ok(&["item", "add", "--title", "B"]);
    orch.ok(&["run"]);
    orch.ok(&["approve", "QUICK-1", "--by", "alice"]);
    orch.ok(&["run"]);
    assert_eq!(prod_changes(&orch), ["QUICK-1.txt"]);
    orch.ok(&["approve", "QUICK-2", "--by", "alice"]);
    let main_before = git(&orch.repo(), &["rev-parse", "main"]);
    let mut running = orch.command(&["run"]).spawn().expect("orch run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let item = orch.item("QUICK-2");
        let promoting = item["runs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["stage"] == "deploy" && r["state"] == "running" && r["attempt"] == 2);
        if promoting {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second deploy never started: {item:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Inside the promotion: prod's old instance is being replaced by the slow new one.
    std::thread::sleep(std::time::Duration::from_millis(400));
    orch.ok(&["stop", "QUICK-2"]);
    let status = running.wait().expect("orch run ends");
    assert!(status.success(), "{status:?}");
    assert_eq!(orch.item("QUICK-2")["status"], "cancelled");
    // The promotion was not cut short: prod and main moved together, or neither did; prod is
    // not frozen and answers.
    assert!(!orch.path().join("deploy/quick/prod/FROZEN").exists());
    let main_after = git(&orch.repo(), &["rev-parse", "main"]);
    assert_prod_is_main(&orch);
    if main_after == main_before {
        assert_eq!(prod_changes(&orch), ["QUICK-1.txt"]);
    } else {
        assert_eq!(prod_changes(&orch), ["QUICK-1.txt", "QUICK-2.txt"]);
    }
}
