//! `orch bench --repo-files N,N,... [--history N]`: the overhead bench on generated repositories
//! of N files (and a history of that many commits), orch next to the baseline doing the same git
//! work on a copy of the same repository, in the same run, one row per size.
//!
//! The repository is generated once per size with `git fast-import` (one commit adding the
//! files, then one commit per history step changing one of them), checked out, and copied for
//! each side, so both start from identical trees. This module must never compare sides that
//! started from different repositories, nor hide an item that did not finish.

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use tokio::io::AsyncWriteExt as _;

use super::bench::{BaselineSide, OrchSide, TRANSITIONS_PER_ITEM, write_bench_repo};
use crate::cli::BenchArgs;
use crate::error::UsageError;

/// The largest repository and history the bench generates (a million files is a few GiB of
/// work trees per side; beyond that the bench measures the disk).
pub const MAX_FILES: u32 = 1_000_000;
pub const MAX_HISTORY: u32 = 1_000_000;
/// Files per generated directory, so no directory is unrealistically large.
const FILES_PER_DIR: u32 = 100;

/// Items run at a size: `--items`, but fewer on big repositories so that a row takes minutes
/// (200 000 files' worth of item-sized work: 1k files 200 items, 20k 10, 100k 2).
pub fn items_at(items: u32, files: u32) -> u32 {
    items.min((200_000 / files.max(1)).max(2))
}

pub async fn run(a: &BenchArgs) -> anyhow::Result<i32> {
    if let Some(bad) = a.repo_files.iter().find(|f| **f == 0 || **f > MAX_FILES) {
        return Err(UsageError(format!(
            "--repo-files: {bad} is not a size the bench generates; give 1 to {MAX_FILES} files"
        ))
        .into());
    }
    if a.history > MAX_HISTORY {
        return Err(UsageError(format!(
            "--history: {} commits is more than the bench generates (at most {MAX_HISTORY})",
            a.history
        ))
        .into());
    }
    let dir = tempfile::Builder::new()
        .prefix("orch-bench-sizes-")
        .tempdir()
        .context("cannot create a temp dir")?;
    println!(
        "bench on generated repositories (sandbox off), history {} commits, directory {}",
        a.history,
        dir.path().display()
    );
    println!(
        "{:>8} {:>6} {:>10} {:>14} {:>14} {:>7} {:>14}",
        "files", "items", "generate s", "orch ms/tr", "baseline ms/tr", "ratio", "overhead ms/tr"
    );
    let mut all_done = true;
    for &files in &a.repo_files {
        let items = items_at(a.items, files);
        let root = dir.path().join(format!("files-{files}"));
        let template = root.join("template");
        let started = Instant::now();
        generate(&template, files, a.history).await?;
        let generated = started.elapsed().as_secs_f64();
        let mut orch = OrchSide::open(&root.join("orch"), 1, false, Some(&template)).await?;
        let mut base = BaselineSide::open(&root.join("baseline"), Some(&template)).await?;
        // One item at a time each, in turn: at these sizes an item takes seconds, and the
        // disk's speed moves as much from one minute to the next.
        for _ in 0..items {
            orch.run(1).await?;
            base.run(1).await?;
        }
        let (orch, base) = (orch.finish().await?, base.finish().await?);
        let transitions = f64::from(items * TRANSITIONS_PER_ITEM);
        let per = |secs: f64| secs * 1000.0 / transitions;
        println!(
            "{:>8} {:>6} {:>10.1} {:>14.1} {:>14.1} {:>7.2} {:>14.1}",
            files,
            items,
            generated,
            per(orch.secs),
            per(base.secs),
            orch.secs / base.secs,
            per(orch.secs - base.secs)
        );
        if orch.done != items as usize {
            println!("         orch finished {}/{items} items", orch.done);
            all_done = false;
        }
        // Each size's trees are large: gone before the next is generated.
        std::fs::remove_dir_all(&root).ok();
    }
    if a.keep {
        println!("kept {}", dir.keep().display());
    }
    Ok(if all_done { 0 } else { 1 })
}

/// The bench's repository at `repo` with `files` more files under `src/` in one commit, then
/// `history` commits each changing one of them, checked out.
pub async fn generate(repo: &Path, files: u32, history: u32) -> anyhow::Result<()> {
    write_bench_repo(repo).await?;
    let mut child = tokio::process::Command::new("git")
        .args(["fast-import", "--quiet", "--done"])
        .current_dir(repo)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot start git fast-import")?;
    let mut stdin = child.stdin.take().context("fast-import has no stdin")?;
    let mut stream = Vec::with_capacity(1 << 20);
    let mut when = 1_700_000_000u64;
    let mut commit = |stream: &mut Vec<u8>, message: &str, first: bool| {
        when += 1;
        stream.extend_from_slice(b"commit refs/heads/main\n");
        stream.extend_from_slice(
            format!("committer bench <bench@localhost> {when} +0000\n").as_bytes(),
        );
        data(stream, message.as_bytes());
        if first {
            stream.extend_from_slice(b"from refs/heads/main^0\n");
        }
    };
    commit(&mut stream, &format!("bench: {files} files"), true);
    for i in 0..files {
        file(&mut stream, i, &format!("file {i}\n"));
        if stream.len() > 1 << 20 {
            stdin.write_all(&stream).await?;
            stream.clear();
        }
    }
    for step in 0..history {
        commit(&mut stream, &format!("bench: history {step}"), false);
        let i = step % files;
        file(&mut stream, i, &format!("file {i}, step {step}\n"));
        if stream.len() > 1 << 20 {
            stdin.write_all(&stream).await?;
            stream.clear();
        }
    }
    stream.extend_from_slice(b"done\n");
    stdin.write_all(&stream).await?;
    drop(stdin);
    let status = child.wait().await?;
    anyhow::ensure!(status.success(), "git fast-import failed ({status})");
    let status = tokio::process::Command::new("git")
        .args(["reset", "-q", "--hard", "main"])
        .current_dir(repo)
        .status()
        .await?;
    anyhow::ensure!(
        status.success(),
        "checking the generated files out failed ({status})"
    );
    Ok(())
}

/// A `data` command of fast-import: the exact byte count, then the bytes.
fn data(stream: &mut Vec<u8>, bytes: &[u8]) {
    stream.extend_from_slice(format!("data {}\n", bytes.len()).as_bytes());
    stream.extend_from_slice(bytes);
    stream.push(b'\n');
}

/// File `i` of the generated tree, `src/dNNNN/fNNNNNNN.txt`, with `text`.
fn file(stream: &mut Vec<u8>, i: u32, text: &str) {
    let path = format!("src/d{:04}/f{i:07}.txt", i / FILES_PER_DIR);
    stream.extend_from_slice(format!("M 100644 inline {path}\n").as_bytes());
    data(stream, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_repositories_run_fewer_items_never_fewer_than_two() {
        assert_eq!(items_at(20, 1000), 20);
        assert_eq!(items_at(500, 1000), 200);
        assert_eq!(items_at(20, 20_000), 10);
        assert_eq!(items_at(20, 100_000), 2);
        assert_eq!(items_at(20, 1_000_000), 2);
        assert_eq!(items_at(1, 1_000_000), 1);
    }

    #[tokio::test]
    async fn the_generated_repository_has_the_files_and_commits_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        generate(&repo, 250, 30).await.expect("generated");
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(&repo)
                .output()
                .expect("git runs");
            assert!(out.status.success(), "{args:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let files = git(&["ls-files", "src"]);
        assert_eq!(files.lines().count(), 250);
        assert!(files.contains("src/d0002/f0000249.txt"), "{files}");
        // The bench's initial commit, the one adding the files, then the history.
        assert_eq!(git(&["rev-list", "--count", "main"]).trim(), "32");
        // Checked out, clean, and the history's last change is on disk.
        assert_eq!(git(&["status", "--porcelain"]), "");
        let last = std::fs::read_to_string(repo.join("src/d0000/f0000029.txt")).expect("file");
        assert_eq!(last, "file 29, step 29\n");
    }
}
