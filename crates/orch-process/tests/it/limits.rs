use orch_process::{ExitOutcome, Spec, Stream, run};
use tokio_util::sync::CancellationToken;

use crate::{Recorder, sh};

#[tokio::test]
async fn a_huge_line_is_cut_and_the_next_line_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = sh(
        "head -c 300000 /dev/zero | tr '\\0' a; echo; echo after",
        dir.path(),
    );
    let mut recorder = Recorder::default();
    let finished = run(&spec, &CancellationToken::new(), &mut recorder).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    let lines = recorder.stdout();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].len() <= 64 * 1024 + "…[line cut]".len(),
        "{}",
        lines[0].len()
    );
    assert!(lines[0].starts_with("aaaa") && lines[0].ends_with("…[line cut]"));
    assert_eq!(lines[1], "after");
    assert!(finished.tail.len() <= 8 * 1024);
}

#[tokio::test]
async fn non_utf8_output_is_replaced_not_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut recorder = Recorder::default();
    let finished = run(
        &sh("printf '\\377ok\\n'", dir.path()),
        &CancellationToken::new(),
        &mut recorder,
    )
    .await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    assert_eq!(recorder.stdout(), ["\u{fffd}ok"]);
}

#[tokio::test]
async fn the_log_marks_stderr_and_appends_across_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("logs/run.log");
    let first = sh("echo out", dir.path()).log(&log);
    run(&first, &CancellationToken::new(), &mut ()).await;
    let second = sh("echo err >&2", dir.path()).log(&log);
    run(&second, &CancellationToken::new(), &mut ()).await;
    let text = std::fs::read_to_string(&log).expect("log written");
    assert_eq!(text, "out\n[stderr] err\n");
}

#[tokio::test]
async fn the_log_stops_at_its_cap_while_the_child_runs_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("run.log");
    let script =
        "i=0; while [ $i -lt 200 ]; do echo \"flood line $i\"; i=$((i+1)); done; echo finished >&2";
    let spec = Spec {
        log_cap_bytes: 1000,
        ..sh(script, dir.path()).log(&log)
    };
    let mut recorder = Recorder::default();
    let finished = run(&spec, &CancellationToken::new(), &mut recorder).await;
    assert_eq!(finished.outcome, ExitOutcome::Exited(0));
    assert_eq!(
        recorder.lines.len(),
        201,
        "every line still reaches the observer"
    );
    assert!(
        recorder
            .lines
            .contains(&(Stream::Stderr, "finished".to_owned()))
    );

    let text = std::fs::read_to_string(&log).expect("log written");
    let mark = "[log truncated at 1000 bytes]\n";
    assert!(text.ends_with(mark), "{text}");
    assert_eq!(text.matches("[log truncated").count(), 1);
    assert!(text.len() - mark.len() <= 1000, "{}", text.len());
    // Both pipes may be full when first read, so stderr's line can come first.
    assert!(text.contains("flood line 0\n"));
    assert_eq!(
        finished.tail.lines().count(),
        40,
        "only the last lines are kept"
    );
}

#[tokio::test]
async fn a_log_that_cannot_be_opened_prevents_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("ran");
    // The log path is a directory.
    let spec = sh(&format!("touch '{}'", marker.display()), dir.path()).log(dir.path());
    let finished = run(&spec, &CancellationToken::new(), &mut ()).await;
    assert!(
        matches!(&finished.outcome, ExitOutcome::FailedToStart(m) if m.contains("log file")),
        "{:?}",
        finished.outcome
    );
    assert!(!marker.exists());
}
