use std::os::unix::fs::symlink;

use super::*;

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("docs/work-items/A-1")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
    std::fs::write(dir.path().join("src/lib.rs"), "// code\n").expect("write");
    dir
}

fn reasons(failures: &[GateFailure]) -> Vec<&str> {
    failures.iter().map(|f| f.reason.as_str()).collect()
}

#[tokio::test]
async fn the_prompt_never_shows_what_a_link_points_to() {
    let dir = tree();
    let d = dir.path().join("docs/work-items/A-1");
    std::fs::write(
        d.join("01-analysis.md"),
        "---\nanalysis_status: READY\n---\n",
    )
    .expect("w");
    symlink("/proc/self/environ", d.join("zz-notes.md")).expect("symlink");
    let live = CancellationToken::new();
    let read = read_artifacts(
        dir.path(),
        "docs/work-items/A-1/",
        &live,
        Duration::from_secs(5),
    )
    .await
    .map_err(|_| "stage error")
    .expect("read");
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].1, "---\nanalysis_status: READY\n---\n");
    assert_eq!(
        read[1].1,
        "[not shown: docs/work-items/A-1/zz-notes.md: docs/work-items/A-1/zz-notes.md is a \
         symbolic link; orch opens nothing through a link]"
    );
    // A cancelled run reads nothing more.
    let cancelled = CancellationToken::new();
    cancelled.cancel();
    let read = read_artifacts(
        dir.path(),
        "docs/work-items/A-1/",
        &cancelled,
        Duration::from_secs(5),
    )
    .await;
    assert!(matches!(read, Err(StageError::Abandoned)));
}

#[test]
fn links_fifos_and_devices_in_a_change_are_named() {
    let dir = tree();
    symlink("/dev/zero", dir.path().join("zero")).expect("symlink");
    symlink("lib.rs", dir.path().join("src/alias.rs")).expect("symlink");
    symlink("../../etc/passwd", dir.path().join("src/out.rs")).expect("symlink");
    symlink("../.git/config", dir.path().join("src/git.rs")).expect("symlink");
    nix::unistd::mkfifo(
        &dir.path().join("docs/pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    let changes: Vec<String> = [
        "src/alias.rs",
        "src/git.rs",
        "src/lib.rs",
        "src/out.rs",
        "zero",
    ]
    .map(str::to_owned)
    .to_vec();
    let refused = file_failures(dir.path(), &changes, false, None);
    assert_eq!(
        reasons(&refused),
        [
            "only regular files may be written: docs/pipe is a FIFO (named pipe)",
            "only regular files may be written: src/alias.rs is a symbolic link (to lib.rs); \
             links are not allowed in this project",
            "only regular files may be written: src/git.rs is a symbolic link (to ../.git/config); \
             links are not allowed in this project",
            "only regular files may be written: src/out.rs is a symbolic link (to \
             ../../etc/passwd); links are not allowed in this project",
            "only regular files may be written: zero is a symbolic link (to /dev/zero); links \
             are not allowed in this project",
        ]
    );
    assert!(refused.iter().all(|f| f.gate == GateKind::WriteAllowlist));
    // What the snapshot's walk found is taken as it is, without a walk of its own.
    let fifo = std::fs::symlink_metadata(dir.path().join("docs/pipe"))
        .expect("stat")
        .file_type();
    let told = [("docs/pipe".to_owned(), fifo)];
    assert_eq!(
        reasons(&file_failures(dir.path(), &[], false, Some(&told))),
        ["only regular files may be written: docs/pipe is a FIFO (named pipe)"]
    );
    assert!(file_failures(dir.path(), &[], false, Some(&[])).is_empty());
    // Allowed inside the tree: only the link that stays inside, out of `.git`, passes.
    let inside = file_failures(dir.path(), &changes, true, None);
    assert_eq!(
        reasons(&inside),
        [
            "only regular files may be written: docs/pipe is a FIFO (named pipe)",
            "only regular files may be written: src/git.rs is a symbolic link (to \
             ../.git/config) into git's own files",
            "only regular files may be written: src/out.rs is a symbolic link (to \
             ../../etc/passwd) that leaves the work tree",
            "only regular files may be written: zero is a symbolic link (to /dev/zero) that \
             leaves the work tree",
        ]
    );
}

#[tokio::test]
async fn an_artifact_that_is_a_fifo_or_a_link_fails_without_hanging() {
    let dir = tree();
    let d = dir.path().join("docs/work-items/A-1");
    nix::unistd::mkfifo(
        &d.join("01-analysis.md"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .expect("mkfifo");
    symlink("/dev/zero", d.join("02-design.md")).expect("symlink");
    let cancel = CancellationToken::new();
    for (file, says) in [
        (
            "01-analysis.md",
            "is a FIFO (named pipe), not a regular file",
        ),
        ("02-design.md", "is a symbolic link"),
    ] {
        let rel = format!("docs/work-items/A-1/{file}");
        let (text, failures) = read_artifact(dir.path(), &rel, None, &cancel, Duration::ZERO)
            .await
            .map_err(|_| "stage error")
            .expect("measured");
        assert!(text.is_none());
        assert!(reasons(&failures)[0].contains(says), "{failures:?}");
    }
    // Missing after orch removed a stale one: the reason says so.
    let (text, failures) = read_artifact(
        dir.path(),
        "docs/work-items/A-1/03-dev-notes.md",
        Some(Removed::Stale),
        &cancel,
        Duration::ZERO,
    )
    .await
    .map_err(|_| "stage error")
    .expect("measured");
    assert!(text.is_none());
    assert_eq!(
        reasons(&failures),
        [
            "docs/work-items/A-1/03-dev-notes.md was not written by this attempt: the stale one \
          of an earlier attempt was removed before the agent started"
        ]
    );
}

#[test]
fn a_prompt_is_never_written_through_a_planted_link() {
    let data = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("authorized_keys");
    std::fs::write(&victim, "keep\n").expect("write");
    let logs = data.path().join("logs/quick/A-1");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let prompt = logs.join("development-2.prompt.md");
    symlink(&victim, &prompt).expect("symlink");
    write_prompt(data.path(), &prompt, "the prompt\n")
        .map_err(|_| "stage error")
        .expect("written");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep\n");
    assert_eq!(
        std::fs::read_to_string(&prompt).expect("read"),
        "the prompt\n"
    );
    assert!(
        !std::fs::symlink_metadata(&prompt)
            .expect("meta")
            .file_type()
            .is_symlink()
    );
}
