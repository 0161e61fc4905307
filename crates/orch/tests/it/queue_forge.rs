//! Many items at once through a forge's pull requests (the fake Gitea and the fake GitHub, which
//! serve real git over HTTP and really merge): candidates are integrated with the forge's default
//! branch, and each promotion merges the item's pull request as a fast-forward to exactly the
//! candidate prod runs, inside the promotion. After every deploy: prod's build commit is the
//! forge's default branch tip (and the local one's), and every change deployed so far is in both.

use std::path::{Path, PathBuf};

use orch_integrations::fake::gitea::{FakeGitea, GiteaPull};
use orch_integrations::fake::github::FakeGitHub;
use orch_integrations::fake::{FakeApi, FakeServer};
use serde_json::Value;

use crate::harness::{Orch, git};
use crate::queue::{Drives, events_of, prod_changes, project, runs_of, status};

pub(crate) const TOKEN: &str = "forge-token-7f3a";
pub(crate) const TOKEN_ENV: &str = "E2E_FORGE_TOKEN";

/// The quick project with the queue scenario, its forge configured.
pub(crate) struct Forged {
    pub(crate) orch: Orch,
    pub(crate) bare: PathBuf,
}

impl Drives for Forged {
    fn ok(&self, args: &[&str]) -> String {
        let out = self
            .orch
            .command(args)
            .env(TOKEN_ENV, TOKEN)
            .output()
            .expect("orch runs");
        assert!(
            out.status.success(),
            "orch {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Forged {
    /// The forge's default branch tip.
    fn forge_main(&self) -> String {
        git(&self.bare, &["rev-parse", "refs/heads/main"])
            .trim()
            .to_owned()
    }

    pub(crate) fn prod_sha(&self) -> String {
        let path = self.orch.path().join("deploy/quick/prod/current.json");
        let record: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("prod record"))
                .expect("json");
        record["sha"].as_str().expect("sha").to_owned()
    }

    /// The invariant after every deploy, on the forge and locally.
    pub(crate) fn assert_prod_is_main(&self) {
        let prod = self.prod_sha();
        assert_eq!(
            self.forge_main(),
            prod,
            "the forge's main is what prod runs"
        );
        let local = git(&self.orch.repo(), &["rev-parse", "main"]);
        assert_eq!(local.trim(), prod, "the local main followed the forge's");
    }

    /// The scripted developer's second attempt changes a file of its own (a fix), so that a
    /// return to development makes a new candidate; committed and pushed to the forge.
    pub(crate) fn second_development_attempt_fixes(&self) {
        let repo = self.orch.repo();
        let scenario = repo.join(".orch/scenario.toml");
        let text = std::fs::read_to_string(&scenario).expect("scenario");
        let resolve = r#"  { path = "docs/changes.md", resolve = "union" },"#;
        assert!(text.contains(resolve), "{text}");
        let text = text.replace(
            resolve,
            &format!(
                "{resolve}\n  {{ path = \"app/fix.txt\", content = \"attempt {{attempt}}\\n\" }},"
            ),
        );
        std::fs::write(&scenario, text).expect("scenario");
        git(
            &repo,
            &["commit", "-qam", "a second development attempt fixes"],
        );
        git(
            &repo,
            &["push", "-q", &self.bare.display().to_string(), "main"],
        );
    }

    /// A person pushes a commit straight to the forge's main.
    fn person_pushes_to_main(&self, file: &str) {
        let clone = self.orch.path().join("person");
        if !clone.exists() {
            git(
                self.orch.path(),
                &["clone", "-q", &self.bare.display().to_string(), "person"],
            );
        }
        git(&clone, &["pull", "-q", "--ff-only", "origin", "main"]);
        std::fs::write(clone.join(file), "a person's change\n").expect("write");
        git(&clone, &["add", "-A"]);
        git(
            &clone,
            &[
                "-c",
                "user.name=p",
                "-c",
                "user.email=p@p",
                "commit",
                "-qm",
                "a person's push",
            ],
        );
        git(&clone, &["push", "-q", "origin", "main"]);
    }
}

/// A fake Gitea whose repository is the bare one at `bare`.
pub(crate) async fn gitea(bare: &Path) -> FakeGitea {
    FakeGitea::new(TOKEN, "acme", "web", bare)
        .await
        .expect("fake gitea")
}

/// A fake GitHub whose repository is the bare one at `bare`.
pub(crate) async fn github(bare: &Path) -> FakeGitHub {
    FakeGitHub::new(TOKEN, "acme", "web", bare)
        .await
        .expect("fake github")
}

/// `project(shared)` with its main on a fake forge of `kind` served by `fake`.
pub(crate) async fn forged<A: FakeApi>(
    shared: bool,
    kind: &str,
    fake: impl AsyncFnOnce(&Path) -> A,
) -> (Forged, FakeServer<A>) {
    let orch = project(shared);
    let bare = orch.path().join("remote.git");
    let server = FakeServer::start(fake(&bare).await)
        .await
        .expect("serve the forge");
    git(
        &orch.repo(),
        &["push", "-q", &bare.display().to_string(), "main"],
    );
    let config = orch.path().join("orch.toml");
    let mut toml = std::fs::read_to_string(&config).expect("orch.toml");
    toml.push_str(&format!(
        "\n[projects.forge]\nkind = \"{kind}\"\nbase_url = \"{}\"\nowner = \"acme\"\n\
         repo = \"web\"\ntoken_env = \"{TOKEN_ENV}\"\n",
        server.base_url()
    ));
    std::fs::write(&config, toml).expect("write orch.toml");
    (Forged { orch, bare }, server)
}

/// Three items filed together, approved one after the other, each conflicting with the one
/// before on `docs/changes.md`; `pulls` reads the forge's pull requests.
async fn three_items_through_pull_requests(f: &Forged, pulls: impl AsyncFn() -> Vec<GiteaPull>) {
    for title in ["A", "B", "C"] {
        f.ok(&["item", "add", "--title", title]);
    }
    f.ok(&["run"]);
    let mut deployed: Vec<String> = Vec::new();
    for id in ["QUICK-1", "QUICK-2", "QUICK-3"] {
        for _ in 0..3 {
            if status(f, id) == "awaiting-approval" {
                f.ok(&["approve", id, "--by", "alice"]);
            }
            f.ok(&["run"]);
            if status(f, id) == "done" {
                break;
            }
        }
        let item = f.item(id);
        assert_eq!(item["status"], "done", "{item:#}");
        deployed.push(format!("{id}.txt"));
        assert_eq!(
            prod_changes(&f.orch),
            deployed,
            "prod serves every change so far"
        );
        f.assert_prod_is_main();
        let branch = format!("orch/{id}");
        let merged: Vec<GiteaPull> = pulls()
            .await
            .into_iter()
            .filter(|p| p.head == branch)
            .collect();
        assert_eq!(merged.len(), 1, "one pull request for {id}: {merged:?}");
        assert!(merged[0].merged, "{id}'s pull request is merged");
        // The pull request's head is the very commit prod runs: merged by a fast-forward.
        assert_eq!(
            git(&f.bare, &["rev-parse", &format!("refs/heads/{branch}")]).trim(),
            f.prod_sha()
        );
        let advanced = events_of(&item, "git.main-advanced");
        assert_eq!(
            advanced.last().map(|e| e["data"]["to"].clone()),
            Some(Value::from(f.prod_sha())),
            "{item:#}"
        );
    }
    let changes = git(&f.bare, &["show", "refs/heads/main:docs/changes.md"]);
    assert_eq!(changes, "# Changes\n- QUICK-1\n- QUICK-2\n- QUICK-3\n");
    // Every merge on the forge's main is an item's candidate: no merge commit of the forge's.
    let merges = git(
        &f.bare,
        &[
            "log",
            "--first-parent",
            "--merges",
            "--format=%s",
            "refs/heads/main",
        ],
    );
    let subjects: Vec<&str> = merges.lines().collect();
    assert_eq!(
        subjects,
        ["Merge QUICK-3: C", "Merge QUICK-2: B", "Merge QUICK-1: A"],
        "{merges}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_items_reach_prod_and_the_gitea_main_through_their_pull_requests() {
    let (f, server) = forged(true, "gitea", gitea).await;
    three_items_through_pull_requests(&f, async || server.with(|g| g.pulls.clone()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_items_reach_prod_and_the_github_main_through_their_pull_requests() {
    let (f, server) = forged(true, "github", github).await;
    three_items_through_pull_requests(&f, async || server.with(|g| g.state.pulls.clone()).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_the_forges_main_after_approval_is_integrated_and_validated_first() {
    let (f, server) = forged(false, "gitea", gitea).await;
    f.ok(&["item", "add", "--title", "A"]);
    f.ok(&["run"]);
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    f.person_pushes_to_main("hotfix.txt");
    let pushed = f.forge_main();
    f.ok(&["run"]);
    let item = f.item("QUICK-1");
    assert_eq!(item["status"], "done", "{item:#}");
    f.assert_prod_is_main();
    // Validated again against the person's commit, the approval carried, no agent ran again.
    assert!(
        events_of(&item, "gate.verdict")
            .iter()
            .any(|e| e["data"]["class"] == "revalidate"),
        "{item:#}"
    );
    assert_eq!(runs_of(&item, "development").len(), 1);
    assert_eq!(events_of(&item, "approval.granted").len(), 2);
    git(
        &f.bare,
        &["merge-base", "--is-ancestor", &pushed, &f.forge_main()],
    );
    assert!(server.with(|g| g.pulls.iter().all(|p| p.merged)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forge_that_refuses_the_merge_leaves_prod_untouched_and_blocks() {
    let (f, server) = forged(false, "gitea", gitea).await;
    f.ok(&["item", "add", "--title", "A"]);
    f.ok(&["run"]);
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    let main_before = f.forge_main();
    // The token loses its write scope: the pull request cannot be opened or merged.
    server
        .with(|g| g.missing_scope = Some("write:repository".into()))
        .await;
    f.ok(&["run"]);
    let item = f.item("QUICK-1");
    assert_eq!(item["status"], "blocked", "{item:#}");
    let reason = item["blocked_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("prod was not touched"), "{reason}");
    assert!(
        !f.orch
            .path()
            .join("deploy/quick/prod/current.json")
            .exists(),
        "nothing was promoted"
    );
    assert_eq!(f.forge_main(), main_before);
    // Fixed, retried: delivered, with prod on the forge's main.
    server.with(|g| g.missing_scope = None).await;
    f.ok(&["retry", "QUICK-1"]);
    f.ok(&["run"]);
    assert_eq!(status(&f, "QUICK-1"), "done");
    f.assert_prod_is_main();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_promotion_and_the_forge_merge_finishes_with_prod_on_main() {
    use std::os::unix::process::ExitStatusExt;
    let (f, server) = forged(false, "gitea", gitea).await;
    f.ok(&["item", "add", "--title", "A"]);
    f.ok(&["item", "add", "--title", "B"]);
    f.ok(&["run"]);
    f.ok(&["approve", "QUICK-1", "--by", "alice"]);
    f.ok(&["run"]);
    assert_eq!(status(&f, "QUICK-1"), "done");
    f.ok(&["approve", "QUICK-2", "--by", "bob"]);
    for point in ["during-integrate", "after-promote"] {
        let out = f
            .orch
            .command(&["run"])
            .env(TOKEN_ENV, TOKEN)
            .env("ORCH_CRASHPOINT", point)
            .output()
            .expect("runs");
        assert_eq!(out.status.signal(), Some(9), "orch must die at {point}");
    }
    f.ok(&["run"]);
    let b = f.item("QUICK-2");
    assert_eq!(b["status"], "done", "{b:#}");
    crate::harness::assert_clean_history(&b);
    assert_eq!(prod_changes(&f.orch), ["QUICK-1.txt", "QUICK-2.txt"]);
    f.assert_prod_is_main();
    let pulls = server.with(|g| g.pulls.clone()).await;
    assert_eq!(pulls.len(), 2, "one pull request each: {pulls:?}");
    assert!(pulls.iter().all(|p| p.merged), "{pulls:?}");
}

/// The candidate the item's last deploy-staging validated.
pub(crate) fn candidate(item: &Value) -> String {
    runs_of(item, "deploy-staging")
        .last()
        .and_then(|r| r["verdict"]["sha"].as_str().map(str::to_owned))
        .expect("a validated candidate")
}
