//! A retried attempt continues its stage's earlier CLI session: the engine passes the session id
//! the earlier attempt's usage record holds, and the Claude Code adapter gives it as `--resume`.

use crate::budget::write_committed;
use crate::harness::Orch;

/// A stand-in for Claude Code: records its arguments, writes the analysis (a question on the
/// first attempt, READY after), and prints the stream-json events orch reads, with a session
/// id per attempt.
fn fake_claude(dir: &std::path::Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-claude");
    let script = r#"#!/bin/sh
cat > /dev/null
printf 'ARG %s\n' "$@" >&2
if [ "$ORCH_ATTEMPT" = 1 ]; then status=NEEDS_INFO; else status=READY; fi
mkdir -p "$ORCH_ARTIFACT_DIR"
printf -- '---\nanalysis_status: %s\n---\n' "$status" > "$ORCH_ARTIFACT_DIR$ORCH_ARTIFACT"
echo '{"type":"system","subtype":"init","session_id":"session-'"$ORCH_ATTEMPT"'","model":"fake","cwd":"."}'
echo '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"session_id":"session-'"$ORCH_ATTEMPT"'","total_cost_usd":0.001,"usage":{"input_tokens":10,"output_tokens":5}}'
"#;
    std::fs::write(&path, script).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn a_retried_attempt_resumes_the_session_of_the_one_before() {
    let orch = Orch::new(None);
    let claude = fake_claude(orch.path());
    let agents = format!(
        "{}\n[roles.analyst]\nkind = \"claude\"\nprogram = \"{}\"\n",
        include_str!("../../kit/bench/agents.toml"),
        claude.display()
    );
    write_committed(&orch, ".orch/agents.toml", &agents);
    orch.ok(&["item", "add", "--title", "a question first"]);
    orch.ok(&["run"]);
    let item = orch.item("QUICK-1");
    assert_eq!(item["status"], "needs-info", "{item:#}");
    // The CLI runs sandboxed and can write nothing outside its work tree: its arguments are
    // read from its raw output beside the run log.
    let args = |attempt: u32| {
        let raw = orch.path().join(format!(
            "logs/quick/QUICK-1/analysis-{attempt}.stream.jsonl"
        ));
        std::fs::read_to_string(&raw)
            .unwrap_or_else(|e| panic!("attempt {attempt} did not run the CLI: {e}"))
    };
    // Its stderr lines in order (orch reads stdout and stderr at once, so a stdout line may
    // fall between two of them in the raw log).
    let argv = |attempt: u32| -> Vec<String> {
        args(attempt)
            .lines()
            .filter_map(|l| l.strip_prefix("[stderr] ARG "))
            .map(str::to_owned)
            .collect()
    };
    assert!(!argv(1).iter().any(|a| a == "--resume"), "{}", args(1));

    orch.ok(&["retry", "QUICK-1", "--answer", "port 8080"]);
    orch.ok(&["run"]);
    assert!(
        argv(2)
            .windows(2)
            .any(|w| w[0] == "--resume" && w[1] == "session-1"),
        "{}",
        args(2)
    );
    let item = orch.item("QUICK-1");
    let finished: Vec<_> = item["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "agent.finished" && e["data"]["agent"] == "claude")
        .map(|e| {
            (
                e["data"]["resumed"].clone(),
                e["data"]["usage"]["session_id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        finished,
        [
            (serde_json::Value::Null, "session-1".into()),
            ("session-1".into(), "session-2".into()),
        ],
        "{item:#}"
    );
}
