//! The index reader against indexes real git wrote.

use super::*;
use crate::testing::git;

/// A repository holding a few files in nested directories, a symlink and an executable,
/// committed, with nothing changed since.
fn repo() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    git(root, &["init", "-q", "-b", "main"]);
    for (rel, text) in [
        ("a.txt", "a\n"),
        ("d/b.txt", "b\n"),
        ("d/e/long-name-of-a-file.txt", "c\n"),
        ("run.sh", "#!/bin/sh\n"),
    ] {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    std::os::unix::fs::symlink("a.txt", root.join("link")).expect("symlink");
    git(root, &["add", "-A"]);
    git(
        root,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "init",
        ],
    );
    // Let the files' times fall before the index's, as they do between two stages.
    std::thread::sleep(std::time::Duration::from_millis(20));
    git(root, &["update-index", "--really-refresh"]);
    dir
}

fn read(root: &Path) -> Index {
    Index::read(&root.join(".git/index")).expect("an index orch reads")
}

/// Entries as `git ls-files -s` prints them: mode, object id, stage, path.
fn listed(index: &Index) -> String {
    index
        .entries
        .iter()
        .map(|e| {
            let oid = crate::hex(&e.oid);
            format!(
                "{:o} {oid} 0\t{}\n",
                e.mode,
                String::from_utf8_lossy(&e.path)
            )
        })
        .collect()
}

#[test]
fn every_version_reads_as_git_lists_it() {
    let dir = repo();
    let root = dir.path();
    for version in ["2", "3", "4"] {
        git(root, &["update-index", "--index-version", version]);
        let index = read(root);
        assert_eq!(listed(&index), git(root, &["ls-files", "-s"]), "v{version}");
        assert!(index.tree_is_exactly(root).expect("walk"), "v{version}");
    }
}

#[test]
fn hidden_entries_are_named() {
    let dir = repo();
    let root = dir.path();
    git(root, &["update-index", "--assume-unchanged", "a.txt"]);
    git(root, &["update-index", "--skip-worktree", "d/b.txt"]);
    let index = read(root);
    let (assumed, skipped) = index.hidden();
    assert_eq!(assumed, [b"a.txt".as_slice()]);
    assert_eq!(skipped, [b"d/b.txt".as_slice()]);
    assert!(!index.tree_is_exactly(root).expect("walk"));
}

#[test]
fn anything_on_disk_the_index_does_not_record_is_seen() {
    use std::os::unix::fs::PermissionsExt as _;
    type Change = fn(&Path);
    let changes: [(&str, Change); 7] = [
        ("content", |r| {
            std::fs::write(r.join("a.txt"), "x\n").expect("w")
        }),
        ("same size", |r| {
            std::fs::write(r.join("a.txt"), "z\n").expect("w")
        }),
        ("deleted", |r| {
            std::fs::remove_file(r.join("d/b.txt")).expect("rm")
        }),
        ("untracked", |r| {
            std::fs::write(r.join("d/new"), "n").expect("w")
        }),
        ("mode", |r| {
            std::fs::set_permissions(r.join("a.txt"), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }),
        ("link to file", |r| {
            std::fs::remove_file(r.join("link")).expect("rm");
            std::fs::write(r.join("link"), "a.txt").expect("w");
        }),
        ("nested repository", |r| {
            std::fs::create_dir_all(r.join("d/.git")).expect("mkdir");
            std::fs::write(r.join("d/.git/HEAD"), "x").expect("w");
        }),
    ];
    for (what, change) in changes {
        let dir = repo();
        let root = dir.path();
        let index = read(root);
        change(root);
        assert!(!index.tree_is_exactly(root).expect("walk"), "{what}");
    }
}

#[test]
fn empty_directories_are_pruned_or_seen() {
    let dir = repo();
    let root = dir.path();
    std::fs::create_dir_all(root.join("d/empty/deeper")).expect("mkdir");
    let index = read(root);
    assert!(
        !index.survey(root).expect("walk").all_held,
        "counted as not held"
    );
    assert!(root.join("d/empty").exists());
    assert!(index.tree_is_exactly(root).expect("walk"), "pruned");
    assert!(!root.join("d/empty").exists());
    assert!(root.join("d/e").exists());
}

#[test]
fn one_survey_finds_what_the_index_does_not_hold_and_what_git_cannot_see() {
    let dir = repo();
    let root = dir.path();
    let index = read(root);
    let clean = index.survey(root).expect("walk");
    assert!(clean.all_held && clean.special.is_empty());

    nix::unistd::mkfifo(&root.join("d/pipe"), nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let with_fifo = index.survey(root).expect("walk");
    assert!(
        with_fifo.all_held,
        "a FIFO is reported, not staged or cleaned"
    );
    let names: Vec<&str> = with_fifo.special.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["d/pipe"]);
    assert!(
        std::os::unix::fs::FileTypeExt::is_fifo(&with_fifo.special[0].1),
        "its type comes with it"
    );

    // A file the index does not hold does not end the walk: the FIFO is still found.
    std::fs::write(root.join("untracked.txt"), "x").expect("write");
    let both = index.survey(root).expect("walk");
    assert!(!both.all_held);
    assert_eq!(both.special.len(), 1);
}

#[test]
fn a_file_changed_as_the_index_was_written_is_compared_by_content() {
    let dir = repo();
    let root = dir.path();
    std::fs::write(root.join("a.txt"), "x\n").expect("write");
    git(root, &["add", "a.txt"]);
    let mut index = read(root);
    // The index written in the same instant as the file: its stat data proves nothing.
    let meta = std::fs::symlink_metadata(root.join("a.txt")).expect("stat");
    index.written = (meta.mtime(), meta.mtime_nsec());
    assert!(index.tree_is_exactly(root).expect("walk"), "same content");
    // Content that changed in that instant, stat data equal: the entry's id no longer fits.
    let entry = index
        .entries
        .iter_mut()
        .find(|e| e.path == b"a.txt")
        .expect("a.txt");
    entry.oid[0] ^= 1;
    assert!(!index.tree_is_exactly(root).expect("walk"), "other content");
}

#[test]
fn changed_files_are_what_git_diff_names() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = repo();
    let root = dir.path();
    let before = read(root).files().expect("plain files");
    std::fs::write(root.join("a.txt"), "changed\n").expect("write");
    std::fs::remove_file(root.join("d/b.txt")).expect("rm");
    std::fs::write(root.join("d/new.txt"), "new\n").expect("write");
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    // A file that becomes a directory, and a link that becomes a file.
    std::fs::remove_file(root.join("link")).expect("rm");
    std::fs::create_dir(root.join("link")).expect("mkdir");
    std::fs::write(root.join("link/inside"), "x\n").expect("write");
    git(root, &["add", "-A"]);
    let tree = git(root, &["write-tree"]);
    let after = read(root).files().expect("plain files");
    let by_git: Vec<String> = git(
        root,
        &["diff", "--name-only", "--no-renames", "HEAD", tree.trim()],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    assert_eq!(changed(&before, &after), by_git);
    assert_eq!(by_git.len(), 6, "{by_git:?}");
    assert!(changed(&after, &after).is_empty());
}

#[test]
fn the_trailer_is_the_checksum_the_reader_verified() {
    let dir = repo();
    let path = dir.path().join(".git/index");
    assert_eq!(trailer(&path), read(dir.path()).checksum);
    assert!(trailer(&dir.path().join("missing")).is_none());
}

#[test]
fn what_the_reader_does_not_know_is_refused() {
    let dir = repo();
    let root = dir.path();
    let path = root.join(".git/index");
    let good = std::fs::read(&path).expect("index");
    assert!(parse(&good).is_some());
    let mut flipped = good.clone();
    flipped[20] ^= 1;
    assert!(parse(&flipped).is_none(), "checksum");
    for cut in [0, 11, 40, good.len() - 21] {
        assert!(parse(&good[..cut]).is_none(), "cut at {cut}");
    }
    git(root, &["update-index", "--split-index"]);
    assert!(Index::read(&path).is_none(), "split index");
}
