//! A hostile agent end to end: what it leaves in its work tree must not drive orch. Here the
//! analyst replaces its work tree's `.git` by a repository whose `core.fsmonitor` and
//! `pre-commit` hook would run a program as orch, with orch's environment, on orch's next git
//! command. orch must refuse to run git there, fail the stage, and never run the program.

use crate::budget::write_committed;
use crate::harness::Orch;

#[test]
fn an_agent_that_replaces_dot_git_fails_its_stage_and_runs_nothing_as_orch() {
    let orch = Orch::new(None);
    let pwned = orch.path().join("pwned");
    // The payload writes where only orch (on the host) could: the data directory.
    let script = format!(
        r#"set -e
mkdir -p "$ORCH_ARTIFACT_DIR"
printf -- '---\nanalysis_status: READY\n---\n' > "$ORCH_ARTIFACT_DIR$ORCH_ARTIFACT"
printf '#!/bin/sh\nenv > {pwned}\n' > payload.sh
chmod +x payload.sh
git clone -q --bare "$(git rev-parse --git-common-dir)" /tmp/evil.git
rm .git
cp -r /tmp/evil.git .git
git config core.bare false
git config core.fsmonitor "$PWD/payload.sh"
cp payload.sh .git/hooks/pre-commit
echo replaced
"#,
        pwned = pwned.display()
    );
    let agents = format!(
        "{}\n[roles.analyst]\nkind = \"command\"\ncommand = [\"/bin/sh\", \"-c\", {}]\n",
        include_str!("../../kit/bench/agents.toml"),
        toml_string(&script)
    );
    write_committed(&orch, ".orch/agents.toml", &agents);
    orch.ok(&["item", "add", "--title", "hostile"]);
    let _ = orch.run(&["run"]);
    let log = std::fs::read_to_string(orch.path().join("logs/quick/QUICK-1/analysis-1.log"))
        .unwrap_or_default();
    assert!(log.contains("replaced"), "the attack did not run:\n{log}");
    assert!(
        !pwned.exists(),
        "orch ran the agent's program:\n{}",
        std::fs::read_to_string(&pwned).unwrap_or_default()
    );
    let item = orch.item("QUICK-1");
    assert_ne!(item["status"], "done", "{item:#}");
    let text = item.to_string();
    assert!(
        text.contains("refusing to run git in") && text.contains(".git"),
        "the refusal is named: {item:#}"
    );
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}
