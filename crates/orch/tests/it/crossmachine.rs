//! Workers on different machines continue one item through the forge: two `orch worker`
//! processes with separate data directories and separate clones of the project (both cloned
//! from the fake Gitea's bare repository) share one store. Worker A runs analysis and
//! architecture and exits (`--exit-after-runs 2`); worker B, whose clone has never seen A's
//! commits, runs the rest. And the hand-off fails closed: a branch missing from the forge blocks
//! the next stage before it runs, a push the forge refuses blocks the stage that made it, and
//! the merge merges only the commit the last stage recorded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use orch_integrations::fake::FakeServer;
use orch_integrations::fake::gitea::FakeGitea;
use serde_json::Value;

use crate::harness::{Orch, git};

const TOKEN: &str = "gitea_crossmachine_token";
const ITEM: &str = "QUICK-1";
const BRANCH: &str = "orch/QUICK-1";

/// One "machine": a data directory with its own `orch.toml` and its own clone of the project.
struct Machine {
    orch: Orch,
}

impl Machine {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.orch.command(args);
        c.env("E2E_GITEA_TOKEN", TOKEN);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("orch runs");
        assert!(
            out.status.success(),
            "orch {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn item(&self) -> Value {
        serde_json::from_str(&self.ok(&["item", "show", ITEM, "--json"])).expect("json")
    }

    fn clone_dir(&self) -> PathBuf {
        self.orch.path().join("clone")
    }

    /// Starts `orch worker` with `extra` arguments; killed when the guard drops.
    fn worker(&self, extra: &[&str]) -> Worker {
        let mut args = vec!["worker", "--poll-secs", "1"];
        args.extend_from_slice(extra);
        Worker(
            self.command(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("worker starts"),
        )
    }
}

/// Kills a worker when the test ends, however it ends.
struct Worker(Child);

impl Worker {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits for the worker to exit by itself and requires exit 0.
    fn wait_exit(&mut self, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                assert!(status.success(), "the worker exits 0: {status:?}");
                return;
            }
            assert!(
                start.elapsed() < limit,
                "the worker did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two machines over one SQLite store (A's) and one fake Gitea whose bare repository holds the
/// project; each machine's `orch.toml` names its own clone.
struct Cluster {
    a: Machine,
    b: Machine,
    bare: PathBuf,
    gitea: FakeServer<FakeGitea>,
}

async fn cluster() -> Cluster {
    let source = Orch::new(None);
    let bare = source.path().join("remote.git");
    let gitea = FakeServer::start(
        FakeGitea::new(TOKEN, "acme", "web", &bare)
            .await
            .expect("fake gitea"),
    )
    .await
    .expect("serve gitea");
    git(
        &source.repo(),
        &["push", "-q", &bare.display().to_string(), "main"],
    );
    let config = std::fs::read_to_string(source.path().join("orch.toml")).expect("orch.toml");
    let store = format!("sqlite://{}", source.path().join("orch.db").display());
    let config = format!(
        "[store]\nurl = \"{store}\"\n\n{}\n[projects.forge]\nkind = \"gitea\"\nbase_url = \"{}\"\n\
         owner = \"acme\"\nrepo = \"web\"\ntoken_env = \"E2E_GITEA_TOKEN\"\n",
        config.replace("repo = \"repo\"", "repo = \"clone\""),
        gitea.base_url()
    );
    let machine = |orch: Orch| {
        std::fs::write(orch.path().join("orch.toml"), &config).expect("orch.toml");
        git(
            orch.path(),
            &["clone", "-q", &bare.display().to_string(), "clone"],
        );
        Machine { orch }
    };
    let a = machine(source);
    let b = machine(Orch {
        dir: tempfile::tempdir().expect("tempdir"),
    });
    Cluster { a, b, bare, gitea }
}

fn runs_of<'a>(item: &'a Value, stage: &str) -> Vec<&'a Value> {
    item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["stage"] == stage)
        .collect()
}

/// The data of the item's events of `kind` about `run`.
fn run_events<'a>(item: &'a Value, run: &Value, kind: &str) -> Vec<&'a Value> {
    item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == kind && e["run_id"] == run["id"])
        .map(|e| &e["data"])
        .collect()
}

/// The pid part of the lease owner (`host:pid:nonce`) that first claimed `run`.
fn claimed_by(item: &Value, run: &Value) -> u32 {
    let claims = run_events(item, run, "run.claimed");
    let owner = claims[0]["owner"].as_str().expect("owner");
    owner
        .split(':')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("host:pid:nonce")
}

fn has_commit(repo: &Path, sha: &str) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "-e", &format!("{sha}^{{commit}}")])
        .status()
        .expect("git runs")
        .success()
}

fn forge_branch(bare: &Path) -> String {
    git(bare, &["rev-parse", &format!("refs/heads/{BRANCH}")])
        .trim()
        .to_owned()
}

/// Waits until `probe` holds, showing the item when it never does.
fn wait_until(m: &Machine, what: &str, limit: Duration, probe: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let item = m.item();
        if probe(&item) {
            return;
        }
        assert_ne!(
            item["status"], "blocked",
            "while waiting for {what}: {item:#}"
        );
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}: {item:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Worker A runs the first two stages and exits; returns the head architecture recorded.
fn machine_a_runs_analysis_and_architecture(c: &Cluster) -> (String, u32) {
    c.a.ok(&["item", "add", "--title", "crosses machines"]);
    let mut a = c.a.worker(&["--exit-after-runs", "2"]);
    a.wait_exit(Duration::from_secs(60));
    let item = c.a.item();
    assert_eq!(
        crate::harness::passed_stages(&item),
        ["analysis", "architecture"],
        "A ran exactly its two runs: {item:#}"
    );
    let architecture = runs_of(&item, "architecture")[0];
    let head = architecture["verdict"]["head"]
        .as_str()
        .expect("architecture recorded its head")
        .to_owned();
    (head, a.pid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_machine_continues_from_the_commit_the_first_pushed() {
    let c = cluster().await;
    let (head, pid_a) = machine_a_runs_analysis_and_architecture(&c);
    // The forge got the branch before architecture's pass was recorded; B's clone never saw it.
    assert_eq!(forge_branch(&c.bare), head);
    assert!(!has_commit(&c.b.clone_dir(), &head));
    let pushed = c.a.item();
    let architecture = runs_of(&pushed, "architecture")[0];
    assert_eq!(
        run_events(&pushed, architecture, "git.pushed")[0]["sha"],
        head.as_str()
    );

    let b = c.b.worker(&[]);
    wait_until(&c.b, "confirm-deploy", Duration::from_secs(120), |i| {
        i["status"] == "awaiting-approval"
    });
    c.b.ok(&["approve", ITEM, "--by", "tester"]);
    wait_until(&c.b, "done", Duration::from_secs(120), |i| {
        i["status"] == "done"
    });
    let item = c.b.item();
    crate::harness::assert_clean_history(&item);

    // Development ran on B, from exactly the commit A recorded, fetched from the forge.
    let development = runs_of(&item, "development")[0];
    let started = run_events(&item, development, "run.started");
    assert_eq!(started[0]["base"], head.as_str(), "{item:#}");
    assert_eq!(started[0]["fetched"], true, "{item:#}");
    assert_eq!(claimed_by(&item, development), b.pid());
    for stage in ["analysis", "architecture"] {
        assert_eq!(
            claimed_by(&item, runs_of(&item, stage)[0]),
            pid_a,
            "{stage}"
        );
    }
    // Every later stage pushed what it recorded, so the forge's branch is the last stage's head.
    let deploy = runs_of(&item, "deploy")[0];
    assert_eq!(
        forge_branch(&c.bare),
        deploy["verdict"]["head"].as_str().expect("head")
    );

    // The forge merged, and its default branch holds every stage's artifact and the change.
    let main = git(&c.bare, &["rev-parse", "refs/heads/main"]);
    git(
        &c.bare,
        &[
            "merge-base",
            "--is-ancestor",
            &forge_branch(&c.bare),
            main.trim(),
        ],
    );
    for file in [
        "01-analysis.md",
        "02-design.md",
        "03-dev-notes.md",
        "04-review.md",
        "05-test-report.md",
    ] {
        git(
            &c.bare,
            &[
                "cat-file",
                "-e",
                &format!("main:docs/work-items/{ITEM}/{file}"),
            ],
        );
    }
    git(
        &c.bare,
        &["cat-file", "-e", &format!("main:changes/{ITEM}.txt")],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_missing_from_the_forge_blocks_the_next_stage_before_it_runs() {
    let c = cluster().await;
    let (head, _) = machine_a_runs_analysis_and_architecture(&c);
    // Someone deletes the item's branch on the forge between the stages.
    git(
        &c.bare,
        &["update-ref", "-d", &format!("refs/heads/{BRANCH}")],
    );

    c.b.ok(&["run"]);
    let item = c.b.item();
    assert_eq!(item["status"], "blocked", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&head) && reason.contains(BRANCH) && reason.contains("infrastructure"),
        "the reason names the commit, the branch and the kind of fault: {reason}"
    );
    let development = runs_of(&item, "development")[0];
    assert!(
        run_events(&item, development, "run.started").is_empty()
            && run_events(&item, development, "agent.finished").is_empty(),
        "nothing ran on another base: {item:#}"
    );
    assert_eq!(development["verdict"]["class"], "block");
    assert!(
        !has_commit(&c.b.clone_dir(), &head),
        "B did not invent the commit"
    );
    // B's branch was not pushed over the forge's (missing) one either.
    assert!(
        git(&c.bare, &["branch", "--list", BRANCH])
            .trim()
            .is_empty(),
        "nothing was pushed in its place"
    );

    // The branch is restored on the forge; `orch retry` continues from the recorded commit.
    git(
        &c.a.clone_dir(),
        &["push", "-q", &c.bare.display().to_string(), BRANCH],
    );
    c.b.ok(&["retry", ITEM]);
    c.b.ok(&["run"]);
    let item = c.b.item();
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    let retried = runs_of(&item, "development")[1];
    assert_eq!(
        run_events(&item, retried, "run.started")[0]["base"],
        head.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_the_forge_refuses_blocks_the_stage_instead_of_passing_it() {
    let c = cluster().await;
    c.a.ok(&["item", "add", "--title", "forge down"]);
    // The forge's repository is gone for a while: every push fails.
    let away = c.bare.with_extension("away");
    std::fs::rename(&c.bare, &away).expect("move the bare repository away");
    c.a.ok(&["run"]);
    let item = c.a.item();
    assert_eq!(item["status"], "blocked", "{item:#}");
    assert!(
        crate::harness::passed_stages(&item).is_empty(),
        "no stage passed with work on one machine only: {item:#}"
    );
    let analysis = runs_of(&item, "analysis")[0];
    assert_eq!(analysis["verdict"]["class"], "block");
    assert!(
        analysis["verdict"].get("head").is_none(),
        "a head the forge did not take is not recorded: {analysis:#}"
    );
    let failed = run_events(&item, analysis, "git.push-failed");
    assert_eq!(failed.len(), 1, "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("did not take branch") && reason.contains(BRANCH),
        "{reason}"
    );
    // The stage's commit is kept in A's repository, as the reason says.
    let kept = failed[0]["sha"].as_str().expect("sha");
    assert!(has_commit(&c.a.clone_dir(), kept));

    // The forge is back: a retry runs analysis again, pushes, and the item goes on.
    std::fs::rename(&away, &c.bare).expect("move it back");
    c.a.ok(&["retry", ITEM]);
    c.a.ok(&["run"]);
    let item = c.a.item();
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    let staged = runs_of(&item, "deploy-staging")[0];
    assert_eq!(
        forge_branch(&c.bare),
        staged["verdict"]["head"].as_str().expect("head")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promotion_merges_only_the_commit_staging_validated() {
    let c = cluster().await;
    c.a.ok(&["item", "add", "--title", "merged as passed"]);
    c.a.ok(&["run"]);
    c.a.ok(&["approve", ITEM, "--by", "tester"]);
    let prod_record = c.a.orch.path().join("deploy/quick/prod/current.json");
    // The forge refuses writes for a while: the pull request cannot be opened, so the deploy
    // blocks before prod is touched.
    c.gitea
        .with(|g| g.missing_scope = Some("write:repository".into()))
        .await;
    c.a.ok(&["run"]);
    let item = c.a.item();
    assert_eq!(item["status"], "blocked", "{item:#}");
    assert!(!prod_record.exists(), "prod was not touched");
    let recorded = runs_of(&item, "deploy-staging")
        .last()
        .and_then(|r| r["verdict"]["head"].as_str())
        .expect("deploy-staging recorded its candidate")
        .to_owned();
    assert_eq!(forge_branch(&c.bare), recorded);

    // Meanwhile the forge's branch moves to a commit no stage passed.
    let tree = git(&c.bare, &["rev-parse", &format!("{recorded}^{{tree}}")]);
    let foreign = git(
        &c.bare,
        &[
            "commit-tree",
            tree.trim(),
            "-p",
            &recorded,
            "-m",
            "not from orch",
        ],
    );
    git(
        &c.bare,
        &[
            "update-ref",
            &format!("refs/heads/{BRANCH}"),
            foreign.trim(),
        ],
    );
    c.gitea.with(|g| g.missing_scope = None).await;
    c.a.ok(&["retry", ITEM]);
    c.a.ok(&["run"]);
    let item = c.a.item();
    assert_eq!(item["status"], "blocked", "not promoted: {item:#}");
    assert!(
        item["blocked_reason"]
            .as_str()
            .unwrap_or_default()
            .contains("not at the validated candidate"),
        "{item:#}"
    );
    assert!(!prod_record.exists(), "prod was not touched");
    assert!(
        c.gitea.with(|g| g.pulls.iter().all(|p| !p.merged)).await,
        "no pull request was merged"
    );

    // Back at the recorded commit, the promotion merges it: main is exactly that commit.
    git(
        &c.bare,
        &["update-ref", &format!("refs/heads/{BRANCH}"), &recorded],
    );
    c.a.ok(&["retry", ITEM]);
    c.a.ok(&["run"]);
    assert_eq!(c.a.item()["status"], "done");
    let main = git(&c.bare, &["rev-parse", "refs/heads/main"]);
    assert_eq!(
        main.trim(),
        recorded,
        "the forge's main is the validated candidate"
    );
    let foreign_merged = Command::new("git")
        .arg("-C")
        .arg(&c.bare)
        .args(["merge-base", "--is-ancestor", foreign.trim(), main.trim()])
        .status()
        .expect("git runs")
        .success();
    assert!(!foreign_merged, "the commit no stage passed is not on main");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_short_on_one_machine_starts_over_on_another_from_the_same_base() {
    let c = cluster().await;
    c.a.ok(&["item", "add", "--title", "crash in the middle"]);
    let mut a = c.a.worker(&["--exit-after-runs", "1"]);
    a.wait_exit(Duration::from_secs(60));
    let item = c.a.item();
    let analysed = runs_of(&item, "analysis")[0]["verdict"]["head"]
        .as_str()
        .expect("analysis recorded its head")
        .to_owned();
    // A starts architecture (its base checkpointed) and dies during the agent run.
    let died =
        c.a.command(&["run"])
            .env("ORCH_CRASHPOINT", "during-agent")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("orch runs");
    assert!(!died.success(), "A was killed: {died:?}");
    let item = c.a.item();
    let architecture = runs_of(&item, "architecture")[0];
    assert_eq!(architecture["checkpoint"]["base"], analysed.as_str());
    assert!(!has_commit(&c.b.clone_dir(), &analysed));

    // B frees the dead run and executes it again, from the checkpointed base it fetched.
    c.b.ok(&["run"]);
    let item = c.b.item();
    assert_eq!(item["status"], "awaiting-approval", "{item:#}");
    let architecture = runs_of(&item, "architecture")[0];
    assert_eq!(architecture["state"], "passed");
    assert_eq!(architecture["verdict"]["base"], analysed.as_str());
    assert!(has_commit(&c.b.clone_dir(), &analysed));
    let claims = run_events(&item, architecture, "run.claimed");
    assert_eq!(claims.len(), 2, "claimed by A, then again by B: {item:#}");
    crate::harness::assert_clean_history(&item);
}
