//! Gates that cannot be fooled (issue 15, points 1 to 5): one attack per door, each by an agent
//! that tries. A stage passes only on an artifact this attempt wrote, as a regular file, in the
//! item's own folder; nothing in a work tree is read through a link; ignored files reach no gate;
//! the pipeline's own files need a role that names them; a lone CR hides no line.

use serde_json::Value;

use crate::harness::{Orch, git, quick_pipeline};

/// The bench agents, with `role` replaced by a shell command agent running `script`.
fn agents_with(role: &str, script: &str) -> String {
    format!(
        "{}\n[roles.{role}]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", '''\nmkdir -p \"$ORCH_ARTIFACT_DIR\"\n{script}\n''']\n",
        include_str!("../../kit/bench/agents.toml")
    )
}

/// Writes `rel` in the project repository and commits it (new files too).
fn commit(orch: &Orch, rel: &str, text: &str) {
    let path = orch.repo().join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    git(&orch.repo(), &["add", "-A"]);
    git(&orch.repo(), &["commit", "-qm", &format!("test: {rel}")]);
}

fn run_of<'a>(item: &'a Value, stage: &str, attempt: i64) -> &'a Value {
    item["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .find(|r| r["stage"] == stage && r["attempt"] == attempt)
        .unwrap_or_else(|| panic!("no run {stage}#{attempt}: {item:#}"))
}

/// The event of `kind` recorded for `run`.
fn event_of<'a>(item: &'a Value, kind: &str, run: &Value) -> &'a Value {
    item["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == kind && e["run_id"] == run["id"])
        .unwrap_or_else(|| panic!("no {kind} event for run {}: {item:#}", run["id"]))
}

/// Runs the project's agents without the sandbox (`sandbox = { mode = "none" }`, on the
/// project's table, the last of orch.toml), as a project may choose: then nothing but orch's
/// own checks stands between an agent and the repository.
fn unsandboxed(orch: &Orch) {
    let config = orch.path().join("orch.toml");
    let mut text = std::fs::read_to_string(&config).expect("orch.toml");
    text.push_str("sandbox = { mode = \"none\" }\n");
    std::fs::write(&config, text).expect("write orch.toml");
}

fn reasons(run: &Value) -> String {
    run["verdict"]["reasons"].to_string()
}

/// Adds one item and runs until nothing moves; returns the item.
fn run_item(orch: &Orch) -> Value {
    orch.ok(&["item", "add", "--title", "attack"]);
    orch.ok(&["run"]);
    orch.item("QUICK-1")
}

#[test]
fn a_pre_seeded_artifact_does_not_pass_an_agent_that_wrote_nothing() {
    let orch = Orch::new(Some(&agents_with("analyst", "true")));
    commit(
        &orch,
        "docs/work-items/QUICK-1/01-analysis.md",
        "---\nanalysis_status: READY\n---\n",
    );
    let item = run_item(&orch);
    let first = run_of(&item, "analysis", 1);
    assert_eq!(first["state"], "failed", "{item:#}");
    assert!(reasons(first).contains("pre-seeded"), "{}", reasons(first));
}

#[test]
fn a_rerun_does_not_pass_on_the_stale_artifact_of_an_earlier_attempt() {
    // The developer writes its notes on attempt 1 only; the reviewer sends it back once.
    let dev = r##"echo "code $ORCH_ATTEMPT" > "code.txt"
mkdir -p docs && echo "# doc" > docs/x.md
if [ "$ORCH_ATTEMPT" = 1 ]; then printf -- '---\ndev_status: DONE\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT"; fi"##;
    let orch = Orch::new(Some(&agents_with("developer", dev)));
    let scenario = std::fs::read_to_string(orch.repo().join(".orch/scenario.toml")).expect("s");
    commit(
        &orch,
        ".orch/scenario.toml",
        &format!(
            "[[steps]]\nstage = \"review\"\nattempt = 1\nfiles = [{{ path = \"docs/work-items/{{item}}/04-review.md\", content = \"---\\nreview_verdict: REQUEST_CHANGES\\n---\\n\" }}]\n{scenario}"
        ),
    );
    let item = run_item(&orch);
    assert_eq!(
        run_of(&item, "development", 1)["state"],
        "passed",
        "{item:#}"
    );
    let second = run_of(&item, "development", 2);
    assert_eq!(second["state"], "failed", "{item:#}");
    assert!(reasons(second).contains("stale"), "{}", reasons(second));
}

#[test]
fn an_agent_that_writes_the_same_artifact_again_passes() {
    // The developer writes the very same notes on every attempt; the reviewer sends it back once.
    let dev = r##"echo "code $ORCH_ATTEMPT" > "code.txt"
mkdir -p docs && echo "# doc" > docs/x.md
printf -- '---\ndev_status: DONE\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##;
    let orch = Orch::new(Some(&agents_with("developer", dev)));
    let scenario = std::fs::read_to_string(orch.repo().join(".orch/scenario.toml")).expect("s");
    commit(
        &orch,
        ".orch/scenario.toml",
        &format!(
            "[[steps]]\nstage = \"review\"\nattempt = 1\nfiles = [{{ path = \"docs/work-items/{{item}}/04-review.md\", content = \"---\\nreview_verdict: REQUEST_CHANGES\\n---\\n\" }}]\n{scenario}"
        ),
    );
    let item = run_item(&orch);
    assert_eq!(
        run_of(&item, "development", 2)["state"],
        "passed",
        "{item:#}"
    );
    assert_eq!(run_of(&item, "review", 2)["state"], "passed", "{item:#}");
}

#[test]
fn another_items_artifact_is_borrowed_and_refused() {
    let analyst = r##"mkdir -p docs/work-items/QUICK-9
printf -- '---\nanalysis_status: READY\n---\n' > docs/work-items/QUICK-9/01-analysis.md
printf -- '---\nanalysis_status: READY\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##;
    let orch = Orch::new(Some(&agents_with("analyst", analyst)));
    let item = run_item(&orch);
    let first = run_of(&item, "analysis", 1);
    assert_eq!(first["state"], "failed", "{item:#}");
    assert!(
        reasons(first).contains("wrote another item's folder")
            && reasons(first).contains("docs/work-items/QUICK-9/01-analysis.md"),
        "{}",
        reasons(first)
    );
}

#[test]
fn a_symlink_to_the_environment_reaches_no_prompt_and_fails_the_stage() {
    const SECRET: &str = "orch-secret-that-must-not-leak-5150";
    // A link committed before the item exists: the analyst's prompt reads the folder.
    let orch = Orch::new(None);
    std::fs::create_dir_all(orch.repo().join("docs/work-items/QUICK-1")).expect("mkdir");
    std::os::unix::fs::symlink(
        "/proc/self/environ",
        orch.repo().join("docs/work-items/QUICK-1/zz-notes.md"),
    )
    .expect("symlink");
    git(&orch.repo(), &["add", "-A"]);
    git(&orch.repo(), &["commit", "-qm", "a trap"]);
    orch.ok(&["item", "add", "--title", "attack"]);
    let out = orch
        .command(&["run"])
        .env("ORCH_API_TOKEN", SECRET)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let prompt =
        std::fs::read_to_string(orch.path().join("logs/quick/QUICK-1/analysis-1.prompt.md"))
            .expect("prompt");
    assert!(!prompt.contains(SECRET), "{prompt}");
    assert!(
        prompt.contains("zz-notes.md is a symbolic link"),
        "{prompt}"
    );

    // An agent that writes such a link fails its stage with the path named.
    let orch = Orch::new(Some(&agents_with(
        "analyst",
        r##"ln -s /proc/self/environ "$ORCH_ARTIFACT_DIR/zz-notes.md"
printf -- '---\nanalysis_status: READY\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##,
    )));
    let item = run_item(&orch);
    let first = run_of(&item, "analysis", 1);
    assert_eq!(first["state"], "failed", "{item:#}");
    assert!(
        reasons(first).contains("docs/work-items/QUICK-1/zz-notes.md is a symbolic link"),
        "{}",
        reasons(first)
    );
    assert!(!git(&orch.repo(), &["log", "--all", "--name-only"]).contains("zz-notes.md"));
}

#[test]
fn a_fifo_or_a_dev_zero_link_as_the_artifact_fails_at_once() {
    for (script, says) in [
        (r##"mkfifo "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##, "FIFO"),
        (
            r##"ln -s /dev/zero "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##,
            "symbolic link",
        ),
    ] {
        let orch = Orch::new(Some(&agents_with(
            "analyst",
            &format!("mkdir -p \"$ORCH_ARTIFACT_DIR\"\n{script}"),
        )));
        let started = std::time::Instant::now();
        let item = run_item(&orch);
        let first = run_of(&item, "analysis", 1);
        assert_eq!(first["state"], "failed", "{item:#}");
        assert!(reasons(first).contains(says), "{}", reasons(first));
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
    }
}

#[test]
fn an_ignored_file_the_agent_leaves_reaches_no_gate() {
    // The test command fails when it sees `.env`: a build that would use it.
    let dev = r##"echo "SECRET=1" > .env
echo change > code.txt
mkdir -p docs && echo "# doc" > docs/x.md
printf -- '---\ndev_status: DONE\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##;
    let orch = Orch::new(Some(&agents_with("developer", dev)));
    commit(&orch, ".gitignore", ".env\n");
    commit(
        &orch,
        ".orch/pipeline.toml",
        &quick_pipeline().replace("run = \"true\"", "run = \"test ! -e .env\""),
    );
    let item = run_item(&orch);
    let dev_run = run_of(&item, "development", 1);
    assert_eq!(dev_run["state"], "passed", "{item:#}");
    let removed = event_of(&item, "git.ignored-removed", dev_run);
    assert_eq!(removed["data"]["paths"], serde_json::json!([".env"]));
    assert!(!orch.path().join("worktrees/quick/QUICK-1/.env").exists());
}

#[test]
fn the_developers_double_star_does_not_cover_the_pipeline() {
    let dev = r##"echo "# owned" >> .orch/pipeline.toml
echo change > code.txt
mkdir -p docs && echo "# doc" > docs/x.md
printf -- '---\ndev_status: DONE\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##;
    let orch = Orch::new(Some(&agents_with("developer", dev)));
    let item = run_item(&orch);
    let first = run_of(&item, "development", 1);
    assert_eq!(first["state"], "failed", "{item:#}");
    assert!(
        reasons(first).contains("wrote protected paths that modify the pipeline")
            && reasons(first).contains(".orch/pipeline.toml"),
        "{}",
        reasons(first)
    );
    let history = git(
        &orch.repo(),
        &["log", "--all", "-p", "--", ".orch/pipeline.toml"],
    );
    assert!(!history.contains("# owned"), "{history}");
}

#[test]
fn a_role_that_names_the_pipeline_may_change_it_and_the_approver_is_told() {
    let dev = r##"echo "# a harmless comment" >> .orch/pipeline.toml
echo change > code.txt
mkdir -p docs && echo "# doc" > docs/x.md
printf -- '---\ndev_status: DONE\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##;
    let orch = Orch::new(Some(&agents_with("developer", dev)));
    let role = std::fs::read_to_string(orch.repo().join(".orch/agents/developer.md")).expect("r");
    let named = role.replace(
        "writes: [\"**\"]",
        "writes: [\"**\", \".orch/pipeline.toml\"]",
    );
    assert_ne!(named, role, "the developer's allowlist is `**`");
    commit(&orch, ".orch/agents/developer.md", &named);
    let item = run_item(&orch);
    let dev_run = run_of(&item, "development", 1);
    assert_eq!(dev_run["state"], "passed", "{item:#}");
    let modified = item["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["kind"] == "git.pipeline-modified")
        .unwrap_or_else(|| panic!("no git.pipeline-modified event: {item:#}"));
    assert_eq!(
        modified["data"]["paths"],
        serde_json::json!([".orch/pipeline.toml"])
    );
    let shown = orch.ok(&["item", "show", "QUICK-1"]);
    assert!(
        shown.contains("this change modifies the pipeline: .orch/pipeline.toml"),
        "{shown}"
    );
}

#[test]
fn a_lone_cr_hides_no_verdict() {
    let orch = Orch::new(Some(&agents_with(
        "analyst",
        r##"printf -- '---\nnote: x\ranalysis_status: READY\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT""##,
    )));
    let item = run_item(&orch);
    let first = run_of(&item, "analysis", 1);
    assert_eq!(first["state"], "failed", "{item:#}");
    assert!(reasons(first).contains("lone CR"), "{}", reasons(first));
}

/// The review's doc gate reads the whole branch, not the review's own attempt: code the
/// developer changed without docs sends the item back from review, though the reviewer only
/// wrote its report (the engine measures the branch's changes only for such a gate).
#[test]
fn the_doc_gate_judges_the_whole_branch_at_review() {
    let orch = Orch::new(Some(&agents_with(
        "developer",
        "printf 'code\\n' > changes.txt\nprintf -- '---\\ndev_status: DONE\\n---\\n' > \"$ORCH_ARTIFACT_DIR/03-dev-notes.md\"",
    )));
    let item = run_item(&orch);
    let review = run_of(&item, "review", 1);
    assert_eq!(review["state"], "failed", "{item:#}");
    let why = reasons(review);
    assert!(
        why.contains("without a change to the docs") && why.contains("changes.txt"),
        "{why}"
    );
}

/// What a stage's agent leaves that no diff shows (here an empty directory) never reaches the
/// next stage: its tree is exactly the commit it starts from, as after a reset and a clean.
#[test]
fn an_empty_directory_an_agent_leaves_does_not_reach_the_next_stage() {
    let agents = format!(
        "{}\n[roles.architect]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", '''\nmkdir -p \"$ORCH_ARTIFACT_DIR\"\nif [ -e leftover ]; then s=SAW_LEFTOVER; else s=READY; fi\nprintf -- \"---\\ndesign_status: $s\\n---\\n\" > \"$ORCH_ARTIFACT_DIR/02-design.md\"\n''']\n",
        agents_with(
            "analyst",
            "mkdir -p leftover/deeper\nprintf -- '---\\nanalysis_status: READY\\n---\\n' > \"$ORCH_ARTIFACT_DIR/01-analysis.md\""
        )
    );
    let orch = Orch::new(Some(&agents));
    let item = run_item(&orch);
    let design = run_of(&item, "architecture", 1);
    assert_eq!(design["state"], "passed", "{}", reasons(design));
}

/// An agent that tells git to look away from a file (`git update-index --skip-worktree` or
/// `--assume-unchanged`) and then changes it: `git status` and `git add` no longer see the
/// change, but the gates and every later stage would run on it. orch measures what is on disk:
/// the change is the analyst's, outside what it may write, and the attempt fails and is
/// discarded; the next attempt starts from the base commit's files. The sandbox keeps an agent
/// from writing the index at all: this one runs without it, as a project may choose.
#[test]
fn a_file_the_agent_hides_from_git_is_measured_and_discarded() {
    let analyst = r##"if [ "$ORCH_ATTEMPT" = 1 ]; then
  git update-index --skip-worktree app.py || exit 3
  git update-index --assume-unchanged CHANGELOG.md || exit 3
  echo HIDDEN >> app.py
  echo HIDDEN >> CHANGELOG.md
  s=READY
elif grep -q HIDDEN app.py CHANGELOG.md; then s=SAW_HIDDEN; else s=READY; fi
printf -- "---\nanalysis_status: $s\n---\n" > "$ORCH_ARTIFACT_DIR/01-analysis.md""##;
    let orch = Orch::new(Some(&agents_with("analyst", analyst)));
    unsandboxed(&orch);
    let item = run_item(&orch);
    let first = run_of(&item, "analysis", 1);
    assert_eq!(first["state"], "failed", "{item:#}");
    let why = reasons(first);
    assert!(
        why.contains("app.py") && why.contains("CHANGELOG.md"),
        "{why}"
    );
    let unhidden = event_of(&item, "git.unhidden", first);
    assert_eq!(
        unhidden["data"]["paths"],
        serde_json::json!(["CHANGELOG.md", "app.py"])
    );
    let second = run_of(&item, "analysis", 2);
    assert_eq!(second["state"], "passed", "{}", reasons(second));
}

/// An agent that commits its own work (as CLIs do when told to; the sandbox keeps it from
/// writing the repository, this one runs without): the stage still measures the tree against
/// its base and records it in a commit of orch's on the base; the agent's commit is no history.
#[test]
fn an_agent_that_commits_its_work_itself_still_passes_through_orch() {
    let dev = r##"echo change > code.txt
mkdir -p docs && echo "# doc" > docs/x.md
printf -- '---\ndev_status: DONE\n---\n' > "$ORCH_ARTIFACT_DIR/$ORCH_ARTIFACT"
git add -A && git -c user.name=agent -c user.email=agent@x commit -qm "agent's own" 2>&1 || { git status; exit 3; }"##;
    let orch = Orch::new(Some(&agents_with("developer", dev)));
    unsandboxed(&orch);
    let item = run_item(&orch);
    let dev_run = run_of(&item, "development", 1);
    assert_eq!(dev_run["state"], "passed", "{item:#}");
    let log = git(&orch.repo(), &["log", "--format=%an %s", "orch/QUICK-1"]);
    assert!(!log.contains("agent's own"), "{log}");
    assert!(log.contains("orch QUICK-1: development"), "{log}");
    let restored = event_of(&item, "git.head-restored", dev_run);
    assert_eq!(restored["data"]["base"].as_str().map(str::len), Some(40));
}

/// What a command gate changes (a formatter, a generated file) is staged again and committed
/// with the stage's work; a gate that changes nothing leaves the staged work to be committed
/// as it is.
#[test]
fn what_a_command_gate_writes_is_committed_with_the_stage() {
    let orch = Orch::new(None);
    commit(
        &orch,
        ".orch/pipeline.toml",
        &quick_pipeline().replace("run = \"true\"", "run = \"echo generated > gen.txt\""),
    );
    let item = run_item(&orch);
    let dev_run = run_of(&item, "development", 1);
    assert_eq!(dev_run["state"], "passed", "{item:#}");
    let sha = event_of(&item, "git.committed", dev_run)["data"]["sha"]
        .as_str()
        .expect("sha")
        .to_owned();
    let files = git(&orch.repo(), &["show", "--name-only", "--format=", &sha]);
    assert!(files.lines().any(|l| l == "gen.txt"), "{files}");
}
