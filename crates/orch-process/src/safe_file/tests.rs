use std::os::unix::fs::symlink;

use super::*;

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("docs/work-items/A-1")).expect("mkdir");
    std::fs::write(
        dir.path().join("docs/work-items/A-1/01-analysis.md"),
        "---\nanalysis_status: READY\n---\n",
    )
    .expect("write");
    dir
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o644)).expect("mkfifo");
}

#[test]
fn reads_a_regular_file_bounded() {
    let dir = tree();
    let rel = Path::new("docs/work-items/A-1/01-analysis.md");
    let all = read_regular_bounded(dir.path(), rel, 1000).expect("read");
    assert_eq!(all.text(), "---\nanalysis_status: READY\n---\n");
    assert!(!all.truncated);
    let cut = read_regular_bounded(dir.path(), rel, 3).expect("read");
    assert_eq!((cut.text().as_str(), cut.truncated), ("---", true));
}

#[test]
fn a_log_is_followed_from_an_offset() {
    let dir = tree();
    std::fs::write(dir.path().join("run.log"), "one\ntwo\n").expect("write");
    let (read, size) = read_regular_from(dir.path(), Path::new("run.log"), 4, 100).expect("read");
    assert_eq!((read.text().as_str(), size), ("two\n", 8));
    let (read, _) = read_regular_from(dir.path(), Path::new("run.log"), 99, 100).expect("read");
    assert!(read.bytes.is_empty());
    symlink("/proc/self/environ", dir.path().join("evil.log")).expect("symlink");
    let err = read_regular_from(dir.path(), Path::new("evil.log"), 0, 100).expect_err("refused");
    assert!(matches!(err, SafeFileError::Symlink { .. }), "{err}");
}

#[test]
fn a_symlink_to_the_environment_is_refused_at_the_file_and_on_the_way() {
    let dir = tree();
    let d = dir.path().join("docs/work-items/A-1");
    symlink("/proc/self/environ", d.join("zz-notes.md")).expect("symlink");
    let err = read_regular_bounded(
        dir.path(),
        Path::new("docs/work-items/A-1/zz-notes.md"),
        1 << 20,
    )
    .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "docs/work-items/A-1/zz-notes.md: docs/work-items/A-1/zz-notes.md is a symbolic link; orch opens nothing through a link"
    );
    // A linked directory on the way: `docs/work-items/B-1 -> /proc/self`.
    symlink("/proc/self", dir.path().join("docs/work-items/B-1")).expect("symlink");
    let err = read_regular_bounded(
        dir.path(),
        Path::new("docs/work-items/B-1/environ"),
        1 << 20,
    )
    .expect_err("refused");
    assert!(
        matches!(&err, SafeFileError::Symlink { at, .. } if at == "docs/work-items/B-1"),
        "{err}"
    );
    // Listing the folder shows the link's error, never its content.
    let listed = read_dir_regular(dir.path(), Path::new("docs/work-items/A-1"), ".md", 1 << 20)
        .expect("listed");
    assert_eq!(listed.len(), 2);
    assert!(listed[0].1.is_ok());
    assert!(matches!(listed[1].1, Err(SafeFileError::Symlink { .. })));
}

#[test]
fn a_fifo_is_refused_without_hanging() {
    let dir = tree();
    let fifo = dir.path().join("docs/work-items/A-1/02-design.md");
    mkfifo(&fifo);
    let err = read_regular_bounded(
        dir.path(),
        Path::new("docs/work-items/A-1/02-design.md"),
        10,
    )
    .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "docs/work-items/A-1/02-design.md is a FIFO (named pipe), not a regular file"
    );
    let err = write_regular(
        dir.path(),
        Path::new("docs/work-items/A-1/02-design.md"),
        b"x",
    )
    .expect_err("refused");
    assert!(
        matches!(
            err,
            SafeFileError::NotRegular {
                kind: FileKind::Fifo,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_symlink_to_dev_zero_costs_nothing() {
    let dir = tree();
    symlink("/dev/zero", dir.path().join("zero.md")).expect("symlink");
    let err = read_regular_bounded(dir.path(), Path::new("zero.md"), 1 << 30).expect_err("refused");
    assert!(matches!(err, SafeFileError::Symlink { .. }), "{err}");
}

#[test]
fn bad_paths_are_refused() {
    let dir = tree();
    for bad in ["", "/etc/passwd", "../x", "docs/../../x"] {
        let err = read_regular_bounded(dir.path(), Path::new(bad), 10).expect_err(bad);
        assert!(matches!(err, SafeFileError::BadPath(_)), "{bad}: {err}");
    }
}

#[test]
fn writes_create_directories_and_refuse_links() {
    let dir = tree();
    write_regular(
        dir.path(),
        Path::new("docs/work-items/C-1/15-staging-log.md"),
        b"log\n",
    )
    .expect("written");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("docs/work-items/C-1/15-staging-log.md"))
            .expect("read"),
        "log\n"
    );
    // An agent plants a link where orch will write: nothing outside the tree changes.
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "keep\n").expect("write");
    symlink(
        &victim,
        dir.path().join("docs/work-items/C-1/14-deploy-log.md"),
    )
    .expect("symlink");
    let err = write_regular(
        dir.path(),
        Path::new("docs/work-items/C-1/14-deploy-log.md"),
        b"x",
    )
    .expect_err("refused");
    assert!(matches!(err, SafeFileError::Symlink { .. }), "{err}");
    symlink(outside.path(), dir.path().join("docs/work-items/D-1")).expect("symlink");
    let err = write_regular(dir.path(), Path::new("docs/work-items/D-1/victim"), b"x")
        .expect_err("refused");
    assert!(matches!(err, SafeFileError::Symlink { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "keep\n");
}

#[test]
fn removal_removes_the_link_not_its_target() {
    let dir = tree();
    let outside = tempfile::tempdir().expect("tempdir");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "keep\n").expect("write");
    symlink(&victim, dir.path().join("link.md")).expect("symlink");
    assert!(remove_file(dir.path(), Path::new("link.md")).expect("removed"));
    assert!(!remove_file(dir.path(), Path::new("link.md")).expect("gone"));
    assert!(!remove_file(dir.path(), Path::new("no/such/dir/x.md")).expect("gone"));
    assert!(victim.exists());
}

#[test]
fn special_files_are_found_and_removed() {
    let dir = tree();
    mkfifo(&dir.path().join("docs/pipe"));
    let sock = dir.path().join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    symlink("/dev/zero", dir.path().join("zero")).expect("symlink");
    std::fs::create_dir_all(dir.path().join(".git")).expect("mkdir");
    mkfifo(&dir.path().join(".git/ignored-pipe"));
    let found = special_files(dir.path(), false).expect("walk");
    assert_eq!(
        found,
        [
            ("docs/pipe".to_owned(), FileKind::Fifo),
            ("sock".to_owned(), FileKind::Socket)
        ]
    );
    assert_eq!(special_files(dir.path(), true).expect("walk").len(), 2);
    assert!(special_files(dir.path(), false).expect("walk").is_empty());
    assert_eq!(
        kind_of(dir.path(), Path::new("zero")).expect("kind"),
        Some(FileKind::Symlink)
    );
    assert_eq!(
        link_target(dir.path(), Path::new("zero")).expect("target"),
        PathBuf::from("/dev/zero")
    );
}

#[tokio::test]
async fn a_read_is_raced_against_cancellation() {
    let dir = tree();
    let cancel = CancellationToken::new();
    cancel.cancel();
    // A cancelled run reads nothing more, whatever the file.
    let got = read_regular_within(
        dir.path(),
        Path::new("docs/work-items/A-1/01-analysis.md"),
        10,
        &cancel,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(
            &got,
            Err(SafeFileError::Stopped {
                why: "the run was cancelled",
                ..
            })
        ),
        "{got:?}"
    );
    let live = CancellationToken::new();
    let got = read_regular_within(
        dir.path(),
        Path::new("docs/work-items/A-1/01-analysis.md"),
        3,
        &live,
        Duration::from_secs(5),
    )
    .await
    .expect("read");
    assert_eq!(got.text(), "---");
}
