//! Configuration forgives omissions and refuses mistakes, the same way for every file kind
//! (orch.toml, the project registry, `.orch/pipeline.toml`, `.orch/deploy.toml`,
//! `.orch/agents.toml`) and every `ORCH_*` variable that takes a fixed set of words: an unknown
//! key, a wrong type or a misspelled word is exit 2 naming the key (with the key it likely
//! meant) or the variable and the accepted values; an optional value left out takes its default.

use std::path::Path;

use crate::harness::Orch;

/// Runs `orch status` with `env`; returns the exit code and standard error.
fn status(orch: &Orch, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = orch
        .command(&["status"])
        .envs(env.iter().copied())
        .output()
        .expect("runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `orch status` is refused (exit 2) with every one of `said` in its message.
fn refused(orch: &Orch, env: &[(&str, &str)], said: &[&str]) {
    let (code, err) = status(orch, env);
    assert_eq!(code, Some(2), "{err}");
    for part in said {
        assert!(err.contains(part), "no {part:?} in:\n{err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
}

fn edit(path: &Path, from: &str, to: &str) -> String {
    let good = std::fs::read_to_string(path).expect("read");
    assert!(good.contains(from), "{from:?} not in {}", path.display());
    std::fs::write(path, good.replacen(from, to, 1)).expect("write");
    good
}

#[test]
fn orch_toml_refuses_mistakes_and_forgives_omissions() {
    let orch = Orch::new(None);
    let config = orch.path().join("orch.toml");
    let good = edit(&config, "max_parallel = 2", "max_paralel = 2");
    refused(
        &orch,
        &[],
        &[
            "orch.toml: line 2 (`max_paralel = 2`): unknown field `max_paralel`",
            "(did you mean `max_parallel`?)",
        ],
    );
    std::fs::write(&config, &good).expect("restore");
    edit(&config, "max_parallel = 2", "max_parallel = \"two\"");
    refused(
        &orch,
        &[],
        &["line 2 (`max_parallel = \"two\"`): invalid type"],
    );
    std::fs::write(
        &config,
        good.replacen("staging_port = ", "stagin_port = ", 1),
    )
    .expect("write");
    refused(
        &orch,
        &[],
        &[
            "unknown field `stagin_port`",
            "(did you mean `staging_port`?)",
        ],
    );

    // Every optional table and value left out: an empty [store], [server] and [engine].
    let registry = good
        .split("[[projects]]")
        .nth(1)
        .expect("the registry entry");
    std::fs::write(
        &config,
        format!("[store]\n\n[engine]\n\n[server]\n\n[[projects]]{registry}"),
    )
    .expect("write");
    let (code, err) = status(&orch, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        orch.path().join("orch.db").exists(),
        "[store] url defaults to orch.db"
    );
}

#[test]
fn the_registry_from_the_environment_names_a_typo() {
    let orch = Orch::new(None);
    let json = r#"[{"name": "quick", "repo": "repo", "staging_port": 20001, "prod_port": 20002, "aprovers": []}]"#;
    refused(
        &orch,
        &[("ORCH_PROJECTS_JSON", json)],
        &[
            "ORCH_PROJECTS_JSON: entry 0: unknown field `aprovers`",
            "(did you mean `approvers`?)",
        ],
    );
}

#[test]
fn enumerated_variables_refuse_a_word_they_do_not_know() {
    let orch = Orch::new(None);
    refused(
        &orch,
        &[("ORCH_STAGING_INFRA_TOLERANCE_ENABLED", "flase")],
        &[
            "ORCH_STAGING_INFRA_TOLERANCE_ENABLED=\"flase\"",
            "true or false",
        ],
    );
    refused(
        &orch,
        &[("ORCH_CRASHPOINT", "durring-agent")],
        &[
            "ORCH_CRASHPOINT=\"durring-agent\" is not a crash point",
            "during-agent",
        ],
    );
    refused(
        &orch,
        &[("ORCH_MAX_PARALLEL", "four")],
        &["ORCH_MAX_PARALLEL=\"four\"", "whole number"],
    );
}

#[test]
fn project_files_refuse_mistakes_with_the_key_and_forgive_omissions() {
    let orch = Orch::new(None);
    let orch_dir = orch.repo().join(".orch");

    let pipeline = orch_dir.join("pipeline.toml");
    let good = edit(&pipeline, "timeout_secs", "timeout_sec");
    refused(
        &orch,
        &[],
        &[
            ".orch/pipeline.toml: pipeline file: line ",
            "unknown field `timeout_sec`",
            "(did you mean `timeout_secs`?)",
        ],
    );
    std::fs::write(&pipeline, &good).expect("restore");

    let deploy = orch_dir.join("deploy.toml");
    let good = std::fs::read_to_string(&deploy).expect("deploy.toml");
    std::fs::write(&deploy, format!("{good}\n[soak]\nsecs = \"ten\"\n")).expect("write");
    refused(
        &orch,
        &[],
        &[".orch/deploy.toml", "(`secs = \"ten\"`): invalid type"],
    );
    std::fs::write(&deploy, good.replacen("[health]", "[healht]", 1)).expect("write");
    refused(
        &orch,
        &[],
        &["unknown field `healht`", "(did you mean `health`?)"],
    );
    // Only what has no default: the build and the run.
    let minimal = good.split("[health]").next().expect("build and run");
    std::fs::write(&deploy, minimal).expect("write");
    let (code, err) = status(&orch, &[]);
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(&deploy, &good).expect("restore");

    let agents = orch_dir.join("agents.toml");
    let good = std::fs::read_to_string(&agents).expect("agents.toml");
    std::fs::write(
        &agents,
        format!("{good}\n[roles.reviewer]\nkind = \"claude\"\nmodle = \"sonnet\"\n"),
    )
    .expect("write");
    refused(
        &orch,
        &[],
        &[
            ".orch/agents.toml",
            "unknown field `modle`",
            "(did you mean `model`?)",
        ],
    );
    std::fs::write(
        &agents,
        format!("{good}\n[roles.reviewer]\nkind = \"claude\"\nmax_turns = \"many\"\n"),
    )
    .expect("write");
    refused(&orch, &[], &["(`max_turns = \"many\"`): invalid type"]);
    // A CLI agent with every optional value left out takes the defaults.
    std::fs::write(
        &agents,
        format!("{good}\n[roles.reviewer]\nkind = \"claude\"\n"),
    )
    .expect("write");
    let (code, err) = status(&orch, &[]);
    assert_eq!(code, Some(0), "{err}");
}
