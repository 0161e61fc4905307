//! `orch onboard`: plan writes nothing, apply creates only what is missing and is idempotent,
//! verify finds gaps with the server's parsers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::harness::{BIN, Orch, free_port, git};

/// Every file under `root` with its bytes (`.git` included): equal snapshots mean nothing changed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                files.insert(path, bytes);
            }
        }
    }
    files
}

fn onboard(config: &Path, args: &[&str]) -> Output {
    std::process::Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("onboard")
        .args(args)
        .env_remove("ORCH_CONFIG")
        .env_remove("ORCH_STORE_URL")
        .output()
        .expect("orch runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs and requires `code`; returns stdout.
fn expect(out: Output, code: i32) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

fn target(name: &str, repo: &Path) -> Vec<String> {
    vec![
        "--name".into(),
        name.into(),
        "--repo".into(),
        repo.display().to_string(),
        "--staging-port".into(),
        free_port().to_string(),
        "--prod-port".into(),
        free_port().to_string(),
    ]
}

fn with(action: &str, target: &[String]) -> Vec<String> {
    let mut args = vec![action.to_owned()];
    args.extend(target.iter().cloned());
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn plan_lists_every_action_and_writes_nothing() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let t = target("billing", &orch.path().join("billing"));
    let before = snapshot(orch.path());
    // Without a subcommand, onboard plans.
    let out = expect(onboard(&config, &strs(&t)), 0);
    assert_eq!(snapshot(orch.path()), before, "plan must not write");
    for line in [
        "init    ",
        "create  ",
        "/AGENTS.md",
        "/docs/operations/INFRA.md",
        "/.orch/pipeline.toml",
        "commit  ",
        "add     ",
        "[[projects]] name = \"billing\"",
    ] {
        assert!(out.contains(line), "plan lacks `{line}`:\n{out}");
    }
    // Planning against a repository with history reads git but writes nothing either.
    let t = target("quick", &orch.repo());
    let mut t2 = t.clone();
    t2.truncate(4);
    let out = expect(onboard(&config, &strs(&with("plan", &t2))), 0);
    assert_eq!(snapshot(orch.path()), before, "plan must not write");
    assert!(
        out.contains("exists  ") && out.contains("orch/onboarding"),
        "{out}"
    );
}

#[test]
fn apply_in_an_empty_dir_verifies_and_a_second_apply_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("billing");
    let t = target("billing", &repo);
    let out = expect(onboard(&config, &strs(&with("apply", &t))), 0);
    assert!(out.contains("create  ") && out.contains("Next:"), "{out}");
    assert_eq!(git(&repo, &["rev-list", "--count", "HEAD"]).trim(), "1");
    assert_eq!(git(&repo, &["status", "--porcelain"]).trim(), "");
    let verified = expect(onboard(&config, &strs(&with("verify", &t))), 0);
    assert!(
        verified.contains("state   STOP (cancelled, terminal)"),
        "{verified}"
    );

    let before = snapshot(dir.path());
    let again = expect(onboard(&config, &strs(&with("apply", &t))), 0);
    assert!(again.contains("Nothing to do"), "{again}");
    assert!(!again.contains("create  "), "{again}");
    assert_eq!(
        snapshot(dir.path()),
        before,
        "a second apply must change nothing"
    );
}

#[test]
fn apply_next_to_a_project_keeps_it_intact_and_both_are_listed() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let old_config = std::fs::read_to_string(&config).expect("orch.toml");
    let old_head = git(&orch.repo(), &["rev-parse", "HEAD"]);
    let t = target("billing", &orch.path().join("billing"));
    expect(onboard(&config, &strs(&with("apply", &t))), 0);

    let new_config = std::fs::read_to_string(&config).expect("orch.toml");
    assert!(
        new_config.starts_with(&old_config),
        "the existing entries must stay byte-for-byte:\n{new_config}"
    );
    assert_eq!(new_config.matches("[[projects]]").count(), 2);
    assert_eq!(git(&orch.repo(), &["rev-parse", "HEAD"]), old_head);
    expect(onboard(&config, &strs(&with("verify", &t))), 0);
    let status = orch.ok(&["status"]);
    assert!(
        status.contains("quick") && status.contains("billing"),
        "{status}"
    );
}

#[test]
fn a_repository_with_history_gets_the_kit_on_a_branch_and_its_env_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("shop");
    std::fs::create_dir_all(&repo).expect("mkdir");
    std::fs::write(repo.join("README.md"), "# Shop, by hand\n").expect("write");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "initial"]);
    std::fs::write(repo.join(".env"), "SECRET=keep-me\n").expect("write");
    let main_before = git(&repo, &["rev-parse", "main"]);
    let work_tree_before = snapshot(&repo);

    let t = target("shop", &repo);
    let out = expect(onboard(&config, &strs(&with("apply", &t))), 0);
    assert!(out.contains("merge orch/onboarding"), "{out}");
    assert!(
        !out.contains("keep-me"),
        "environment values are never printed"
    );

    assert_eq!(
        git(&repo, &["rev-parse", "main"]),
        main_before,
        "main untouched"
    );
    assert_eq!(git(&repo, &["branch", "--show-current"]).trim(), "main");
    let on_branch = git(&repo, &["ls-tree", "-r", "--name-only", "orch/onboarding"]);
    assert!(on_branch.contains("AGENTS.md") && on_branch.contains(".orch/pipeline.toml"));
    assert!(!on_branch.contains(".env\n"), "{on_branch}");
    assert_eq!(
        git(&repo, &["show", "orch/onboarding:README.md"]),
        "# Shop, by hand\n",
        "an existing file is never overwritten"
    );
    assert_eq!(
        git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1,
        "the temporary work tree is gone"
    );
    let mut work_tree_after = snapshot(&repo);
    let mut before = work_tree_before;
    let outside_git = |m: &mut BTreeMap<PathBuf, Vec<u8>>| {
        m.retain(|p, _| !p.starts_with(repo.join(".git")));
    };
    outside_git(&mut before);
    outside_git(&mut work_tree_after);
    assert_eq!(
        work_tree_after, before,
        "the work tree (and .env) is untouched"
    );

    let again = expect(onboard(&config, &strs(&with("apply", &t))), 0);
    assert!(again.contains("Nothing to do"), "{again}");
}

#[test]
fn a_half_finished_apply_is_completed_without_overwriting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("half");
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("AGENTS.md"), "written earlier\n").expect("write");
    std::fs::write(repo.join(".env"), "TOKEN=do-not-commit\n").expect("write");

    let t = target("half", &repo);
    let out = expect(onboard(&config, &strs(&with("apply", &t))), 0);
    assert!(
        out.contains("exists  ") && out.contains("/AGENTS.md"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("AGENTS.md")).expect("read"),
        "written earlier\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join(".env")).expect("read"),
        "TOKEN=do-not-commit\n"
    );
    let tracked = git(&repo, &["ls-files"]);
    assert!(tracked.contains("AGENTS.md") && tracked.contains("docs/operations/INFRA.md"));
    assert!(!tracked.lines().any(|l| l == ".env"), "{tracked}");
    expect(onboard(&config, &strs(&with("verify", &t))), 0);
}

#[test]
fn bad_or_taken_names_are_refused_with_exit_2() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let before = snapshot(orch.path());

    let bad = onboard(
        &config,
        &strs(&with("apply", &target("Bad_Name", &orch.path().join("x")))),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--name"));

    let taken = onboard(
        &config,
        &strs(&with("apply", &target("quick", &orch.path().join("other")))),
    );
    assert_eq!(taken.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&taken.stderr).contains("taken"));
    assert_eq!(
        snapshot(orch.path()),
        before,
        "a refused apply writes nothing"
    );
}

#[test]
fn verify_names_a_file_with_an_unresolved_placeholder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orch.toml");
    let repo = dir.path().join("docs-site");
    let t = target("docs-site", &repo);
    expect(onboard(&config, &strs(&with("apply", &t))), 0);
    std::fs::write(
        repo.join("docs/README.md"),
        "# {{PROJECT_NAME}} documentation\n",
    )
    .expect("write");
    std::fs::remove_file(repo.join("CLAUDE.md")).expect("remove");

    let out = expect(onboard(&config, &strs(&with("verify", &t))), 1);
    assert!(
        out.contains("docs/README.md: unresolved placeholder {{PROJECT_NAME}}"),
        "{out}"
    );
    assert!(out.contains("CLAUDE.md: missing"), "{out}");
}
