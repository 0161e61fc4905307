//! The adapters with stand-in programs: what the child gets (arguments, standard input,
//! environment), and how failures to start and error results are reported.

use std::path::Path;

use orch_agent::CliSettings;
use orch_agent::aider::AiderAgent;
use orch_agent::claude::ClaudeAgent;
use orch_agent::codex::CodexAgent;
use orch_agent::gemini::GeminiAgent;
use orch_agent::opencode::OpenCodeAgent;
use orch_agent::{Agent, AgentRun};
use orch_core::gate::ExitOutcome;
use tokio_util::sync::CancellationToken;

use crate::support::{Workspace, script};

/// Set in the environment of the re-run test binary: the secrets below are then in "orch's"
/// environment, which a test cannot change for itself without `unsafe`.
const CHILD_MARKER: &str = "ORCH_AGENT_TEST_CHILD";
const TRACKER_TOKEN: (&str, &str) = ("ORCH_TEST_TRACKER_TOKEN", "tracker-secret-value");
const AGENT_KEY: (&str, &str) = ("ORCH_TEST_AGENT_KEY", "agent-key-value");

/// Records its arguments, standard input and environment in the worktree, then prints `result`.
fn recording_cli(dir: &Path, result: &str) -> String {
    let body = format!(
        "printf '%s\\n' \"$@\" > \"$ORCH_WORKTREE/args.txt\"\n\
         cat > \"$ORCH_WORKTREE/stdin.txt\"\n\
         env > \"$ORCH_WORKTREE/env.txt\"\n\
         echo 'not json: a warning the CLI printed'\n\
         echo '{result}'\n"
    );
    script(dir, "fake-cli", &body).display().to_string()
}

async fn run(agent: &dyn Agent, ws: &Workspace, tools: &[&str]) -> AgentRun {
    agent
        .run(&ws.request(tools), &CancellationToken::new(), &mut ())
        .await
}

fn read(ws: &Workspace, name: &str) -> String {
    std::fs::read_to_string(ws.worktree.join(name)).unwrap_or_default()
}

#[test]
fn the_child_gets_the_agent_key_and_no_other_secret() {
    if let Some(done) = std::env::var_os(CHILD_MARKER) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(check_child_environments());
        std::fs::write(done, "checked").expect("write the marker");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let done = dir.path().join("done");
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "fake_cli::the_child_gets_the_agent_key_and_no_other_secret",
            "--nocapture",
        ])
        .env(CHILD_MARKER, &done)
        .env(TRACKER_TOKEN.0, TRACKER_TOKEN.1)
        .env(AGENT_KEY.0, AGENT_KEY.1)
        .status()
        .expect("the test binary runs again");
    assert!(
        status.success(),
        "the re-run test failed: see its output above"
    );
    // Guards against a filter that matched no test: the checks did run.
    assert!(
        done.is_file(),
        "the re-run test binary did not run the checks"
    );
}

async fn check_child_environments() {
    let ws = Workspace::new();
    let claude = ClaudeAgent {
        cli: CliSettings {
            base_url: Some("http://127.0.0.1:9/".to_owned()),
            api_key_env: Some(AGENT_KEY.0.to_owned()),
            model: Some("opus".to_owned()),
            extra_args: vec!["--debug".to_owned()],
            ..CliSettings::new(recording_cli(
                &ws.logs_parent(),
                r#"{"type":"result","subtype":"success","is_error":false,"num_turns":1,"usage":{"input_tokens":5,"output_tokens":6}}"#,
            ))
        },
        private_home: true,
        ..ClaudeAgent::default()
    };
    let run_ = run(&claude, &ws, &["Read", "Write", "Bash"]).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(0), "{}", ws.run_log());
    assert_eq!(
        (run_.usage.input_tokens, run_.usage.output_tokens),
        (Some(5), Some(6))
    );
    assert_eq!(
        read(&ws, "args.txt").lines().collect::<Vec<_>>(),
        [
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "acceptEdits",
            "--allowedTools",
            "Read,Write,Bash",
            "--max-turns",
            "100",
            "--model",
            "opus",
            "--debug",
        ]
    );
    assert_eq!(read(&ws, "stdin.txt"), ws.request(&[]).prompt);
    let env = read(&ws, "env.txt");
    let home = ws.logs.join("analysis-1.home");
    for expected in [
        format!("ANTHROPIC_API_KEY={}", AGENT_KEY.1),
        "ANTHROPIC_BASE_URL=http://127.0.0.1:9/".to_owned(),
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1".to_owned(),
        "DISABLE_AUTOUPDATER=1".to_owned(),
        format!("HOME={}", home.display()),
        "ORCH_ITEM_ID=DEMO-1".to_owned(),
        "ORCH_ARTIFACT=01-analysis.md".to_owned(),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing from\n{env}"
        );
    }
    assert!(home.is_dir());
    assert_no_secret_leaked(&env, &ws);
    // The key went under the CLI's own name, not under orch's.
    assert!(!env.contains(AGENT_KEY.0), "{env}");

    let ws = Workspace::new();
    let codex = CodexAgent {
        cli: CliSettings {
            base_url: Some("http://127.0.0.1:9/v1".to_owned()),
            api_key_env: Some(AGENT_KEY.0.to_owned()),
            ..CliSettings::new(recording_cli(
                &ws.logs_parent(),
                r#"{"type":"turn.completed","usage":{"input_tokens":7,"cached_input_tokens":0,"output_tokens":8,"reasoning_output_tokens":0}}"#,
            ))
        },
        ..CodexAgent::default()
    };
    let run_ = run(&codex, &ws, &[]).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(0), "{}", ws.run_log());
    assert_eq!(
        (run_.usage.input_tokens, run_.usage.output_tokens),
        (Some(7), Some(8))
    );
    assert_eq!(
        read(&ws, "args.txt").lines().collect::<Vec<_>>(),
        [
            "exec",
            "--json",
            "--sandbox",
            "workspace-write",
            "--skip-git-repo-check",
            "-"
        ]
    );
    assert_eq!(read(&ws, "stdin.txt"), ws.request(&[]).prompt);
    let env = read(&ws, "env.txt");
    let codex_home = ws.logs.join("analysis-1.codex-home");
    for expected in [
        format!("{}={}", AGENT_KEY.0, AGENT_KEY.1),
        format!("CODEX_HOME={}", codex_home.display()),
        "ORCH_STAGE=analysis".to_owned(),
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing from\n{env}"
        );
    }
    assert_no_secret_leaked(&env, &ws);
    let config = std::fs::read_to_string(codex_home.join("config.toml")).expect("config.toml");
    let config: toml::Table = toml::from_str(&config).expect("valid TOML");
    assert_eq!(config["model"].as_str(), Some("scripted-model"));
    assert_eq!(config["model_provider"].as_str(), Some("orch"));
    let provider = &config["model_providers"]["orch"];
    assert_eq!(provider["base_url"].as_str(), Some("http://127.0.0.1:9/v1"));
    assert_eq!(provider["wire_api"].as_str(), Some("responses"));
    assert_eq!(provider["env_key"].as_str(), Some(AGENT_KEY.0));
    assert!(!config.to_string().contains(AGENT_KEY.1));

    check_aider_environment().await;
    check_gemini_environment().await;
    check_opencode_environment().await;
}

/// Lines `env.txt` must hold.
fn assert_env_has(env: &str, expected: &[String]) {
    for line in expected {
        assert!(env.lines().any(|l| l == line), "{line} missing from\n{env}");
    }
}

async fn check_aider_environment() {
    let ws = Workspace::new();
    let aider = AiderAgent {
        cli: CliSettings {
            base_url: Some("http://127.0.0.1:9/v1".to_owned()),
            api_key_env: Some(AGENT_KEY.0.to_owned()),
            extra_args: vec!["--verbose".to_owned()],
            ..CliSettings::new(recording_cli(
                &ws.logs_parent(),
                "Tokens: 5 sent, 6 received.",
            ))
        },
        ..AiderAgent::default()
    };
    let run_ = run(&aider, &ws, &[]).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(0), "{}", ws.run_log());
    let private = ws.logs.join("analysis-1.aider");
    let at = |name: &str| private.join(name).display().to_string();
    let mut expected: Vec<String> = [
        "--yes-always",
        "--no-auto-commits",
        "--no-dirty-commits",
        "--no-check-update",
        "--no-show-model-warnings",
        "--no-analytics",
        "--no-pretty",
        "--no-stream",
        "--no-fancy-input",
        "--no-gitignore",
        "--no-restore-chat-history",
        "--no-suggest-shell-commands",
        "--no-detect-urls",
        "--map-tokens",
        "0",
        "--message-file",
    ]
    .map(str::to_owned)
    .into();
    expected.extend([
        at("message.md"),
        "--analytics-log".to_owned(),
        at("analytics.jsonl"),
        "--chat-history-file".to_owned(),
        at("chat-history.md"),
        "--input-history-file".to_owned(),
        at("input-history"),
        "--model".to_owned(),
        "scripted-model".to_owned(),
        "--openai-api-base".to_owned(),
        "http://127.0.0.1:9/v1".to_owned(),
        "--verbose".to_owned(),
        "docs/work-items/DEMO-1/01-analysis.md".to_owned(),
    ]);
    assert_eq!(read(&ws, "args.txt").lines().collect::<Vec<_>>(), expected);
    let prompt = std::fs::read_to_string(private.join("message.md")).expect("the prompt file");
    assert_eq!(prompt, ws.request(&[]).prompt);
    let env = read(&ws, "env.txt");
    assert_env_has(
        &env,
        &[
            format!("OPENAI_API_KEY={}", AGENT_KEY.1),
            format!("HOME={}", private.join("home").display()),
            "LITELLM_LOCAL_MODEL_COST_MAP=True".to_owned(),
            "ORCH_ARTIFACT=01-analysis.md".to_owned(),
        ],
    );
    assert!(!env.contains(AGENT_KEY.0), "{env}");
    assert_no_secret_leaked(&env, &ws);
}

async fn check_gemini_environment() {
    let ws = Workspace::new();
    let gemini = GeminiAgent {
        cli: CliSettings {
            base_url: Some("http://127.0.0.1:9".to_owned()),
            api_key_env: Some(AGENT_KEY.0.to_owned()),
            ..CliSettings::new(recording_cli(
                &ws.logs_parent(),
                r#"{"type":"result","status":"success","stats":{"input_tokens":5,"output_tokens":6,"cached":0}}"#,
            ))
        },
        ..GeminiAgent::default()
    };
    let run_ = run(&gemini, &ws, &["Read", "Write"]).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(0), "{}", ws.run_log());
    assert_eq!(
        (run_.usage.input_tokens, run_.usage.output_tokens),
        (Some(5), Some(6))
    );
    assert_eq!(
        read(&ws, "args.txt").lines().collect::<Vec<_>>(),
        [
            "--output-format",
            "stream-json",
            "--approval-mode",
            "auto_edit",
            "--model",
            "scripted-model"
        ]
    );
    assert_eq!(read(&ws, "stdin.txt"), ws.request(&[]).prompt);
    let env = read(&ws, "env.txt");
    assert_env_has(
        &env,
        &[
            format!("GEMINI_API_KEY={}", AGENT_KEY.1),
            "GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:9".to_owned(),
            format!("HOME={}", ws.logs.join("analysis-1.gemini-home").display()),
            "GEMINI_CLI_TRUST_WORKSPACE=true".to_owned(),
            format!(
                "TMPDIR={}",
                ws.logs.join("analysis-1.gemini-home/tmp").display()
            ),
        ],
    );
    let settings = ws.logs.join("analysis-1.gemini-home/.gemini/settings.json");
    let settings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(settings).expect("settings")).expect("JSON");
    assert_eq!(
        settings["security"]["auth"]["selectedType"],
        "gemini-api-key"
    );
    assert!(!env.contains(AGENT_KEY.0), "{env}");
    assert_no_secret_leaked(&env, &ws);
    // A role that may run commands gets every tool.
    let ws = Workspace::new();
    let gemini = GeminiAgent {
        cli: CliSettings::new(recording_cli(&ws.logs_parent(), "{}")),
        ..GeminiAgent::default()
    };
    run(&gemini, &ws, &["Read", "Bash"]).await;
    assert!(read(&ws, "args.txt").contains("\nyolo\n"));
}

async fn check_opencode_environment() {
    let ws = Workspace::new();
    let opencode = OpenCodeAgent {
        cli: CliSettings {
            base_url: Some("http://127.0.0.1:9/v1".to_owned()),
            api_key_env: Some(AGENT_KEY.0.to_owned()),
            ..CliSettings::new(recording_cli(
                &ws.logs_parent(),
                r#"{"type":"step_finish","sessionID":"ses_9","part":{"type":"step-finish","cost":0,"tokens":{"input":5,"output":6,"reasoning":0,"cache":{"read":0,"write":0}}}}"#,
            ))
        },
        ..OpenCodeAgent::default()
    };
    let run_ = run(&opencode, &ws, &[]).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(0), "{}", ws.run_log());
    assert_eq!(
        (
            run_.usage.input_tokens,
            run_.usage.output_tokens,
            run_.usage.session_id.as_deref()
        ),
        (Some(5), Some(6), Some("ses_9"))
    );
    assert_eq!(
        read(&ws, "args.txt").lines().collect::<Vec<_>>(),
        ["run", "--format", "json", "--model", "orch/scripted-model"]
    );
    assert_eq!(read(&ws, "stdin.txt"), ws.request(&[]).prompt);
    let home = ws.logs.join("analysis-1.opencode-home");
    let env = read(&ws, "env.txt");
    assert_env_has(
        &env,
        &[
            format!("{}={}", AGENT_KEY.0, AGENT_KEY.1),
            format!("HOME={}", home.display()),
            format!("OPENCODE_CONFIG={}", home.join("opencode.json").display()),
        ],
    );
    assert_no_secret_leaked(&env, &ws);
    let config = std::fs::read_to_string(home.join("opencode.json")).expect("the config");
    assert!(!config.contains(AGENT_KEY.1), "{config}");
    let config: serde_json::Value = serde_json::from_str(&config).expect("JSON");
    let provider = &config["provider"]["orch"];
    assert_eq!(provider["npm"], "@ai-sdk/openai-compatible");
    assert_eq!(provider["options"]["baseURL"], "http://127.0.0.1:9/v1");
    assert_eq!(
        provider["options"]["apiKey"],
        format!("{{env:{}}}", AGENT_KEY.0)
    );
    assert!(provider["models"]["scripted-model"].is_object(), "{config}");
}

/// Also checks that the line the stand-in printed before its result reached the run log: noted
/// as unreadable by the JSON parsers, quoted by aider's plain-text one.
fn assert_no_secret_leaked(env: &str, ws: &Workspace) {
    assert!(
        !env.contains(TRACKER_TOKEN.0) && !env.contains(TRACKER_TOKEN.1),
        "{env}"
    );
    assert!(!env.contains(CHILD_MARKER), "{env}");
    let (log, stream) = (ws.run_log(), ws.stream_log());
    assert!(
        log.contains("unreadable output line skipped: not json")
            || log.contains("aider: not json: a warning the CLI printed"),
        "{log}"
    );
    assert!(
        !log.contains(AGENT_KEY.1) && !stream.contains(AGENT_KEY.1),
        "{log}\n{stream}"
    );
}

#[tokio::test]
async fn a_cli_that_is_not_installed_fails_to_start_naming_its_package() {
    let ws = Workspace::new();
    let claude = ClaudeAgent {
        cli: CliSettings::new("orch-test-no-such-claude"),
        ..ClaudeAgent::default()
    };
    let codex = CodexAgent {
        cli: CliSettings::new("/nonexistent/codex"),
        ..CodexAgent::default()
    };
    let aider = AiderAgent {
        cli: CliSettings::new("orch-test-no-such-aider"),
        ..AiderAgent::default()
    };
    let gemini = GeminiAgent {
        cli: CliSettings::new("orch-test-no-such-gemini"),
        ..GeminiAgent::default()
    };
    let opencode = OpenCodeAgent {
        cli: CliSettings::new("orch-test-no-such-opencode"),
        ..OpenCodeAgent::default()
    };
    for (agent, expected) in [
        (
            &aider as &dyn Agent,
            "`orch-test-no-such-aider` was not found on PATH; install it with `pip install aider-chat` or set `program` in .orch/agents.toml",
        ),
        (
            &gemini,
            "`orch-test-no-such-gemini` was not found on PATH; install it with `npm install -g @google/gemini-cli` or set `program` in .orch/agents.toml",
        ),
        (
            &opencode,
            "`orch-test-no-such-opencode` was not found on PATH; install it with `npm install -g opencode-ai` or set `program` in .orch/agents.toml",
        ),
        (
            &claude,
            "`orch-test-no-such-claude` was not found on PATH; install it with `npm install -g @anthropic-ai/claude-code` or set `program` in .orch/agents.toml",
        ),
        (
            &codex,
            "`/nonexistent/codex` is not an executable file; install it with `npm install -g @openai/codex` or set `program` in .orch/agents.toml",
        ),
    ] {
        let run_ = run(agent, &ws, &[]).await;
        assert_eq!(
            run_.outcome,
            ExitOutcome::FailedToStart(expected.to_owned())
        );
        assert_eq!(run_.usage.input_tokens, None);
        assert!(ws.run_log().contains(expected), "{}", ws.run_log());
    }
}

#[tokio::test]
async fn an_unset_key_variable_fails_to_start_naming_it() {
    let ws = Workspace::new();
    let agent = ClaudeAgent {
        cli: CliSettings {
            api_key_env: Some("ORCH_TEST_VARIABLE_NOBODY_SETS".to_owned()),
            ..CliSettings::new("true")
        },
        ..ClaudeAgent::default()
    };
    let run_ = run(&agent, &ws, &[]).await;
    assert!(
        matches!(&run_.outcome, ExitOutcome::FailedToStart(m) if m.contains("`ORCH_TEST_VARIABLE_NOBODY_SETS`")),
        "{:?}",
        run_.outcome
    );
}

#[tokio::test]
async fn an_error_result_fails_the_run_even_after_a_clean_exit() {
    let ws = Workspace::new();
    let agent = ClaudeAgent {
        cli: CliSettings::new(recording_cli(
            &ws.logs_parent(),
            r#"{"type":"result","subtype":"error_during_execution","is_error":true,"num_turns":3,"total_cost_usd":0.5,"usage":{"input_tokens":1,"output_tokens":2}}"#,
        )),
        ..ClaudeAgent::default()
    };
    let run_ = run(&agent, &ws, &[]).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(1));
    assert_eq!(
        (run_.usage.turns, run_.usage.cost_usd),
        (Some(3), Some(0.5))
    );
    assert!(
        ws.run_log().contains("reported an error result"),
        "{}",
        ws.run_log()
    );
}

#[tokio::test]
async fn a_run_without_a_result_reports_no_usage() {
    let ws = Workspace::new();
    let agent = ClaudeAgent {
        cli: CliSettings::new(
            script(
                &ws.logs_parent(),
                "cut-short",
                "cat >/dev/null\necho '{\"type\":\"result\",\"usa'\nexit 3\n",
            )
            .display()
            .to_string(),
        ),
        ..ClaudeAgent::default()
    };
    let run_ = run(&agent, &ws, &[]).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(3));
    assert_eq!(
        orch_agent::Usage {
            duration_ms: 0,
            ..run_.usage
        },
        orch_agent::Usage::default()
    );
}

#[tokio::test]
async fn claude_resumes_the_requested_session_unless_its_home_is_private() {
    let ws = Workspace::new();
    let result = r#"{"type":"result","subtype":"success","is_error":false,"session_id":"s-2","usage":{"input_tokens":1,"output_tokens":1}}"#;
    let claude = ClaudeAgent {
        cli: CliSettings::new(recording_cli(&ws.logs_parent(), result)),
        ..ClaudeAgent::default()
    };
    let req = orch_agent::AgentRequest {
        resume_session: Some("s-1".to_owned()),
        ..ws.request(&[])
    };
    let run_ = claude.run(&req, &CancellationToken::new(), &mut ()).await;
    let args = read(&ws, "args.txt");
    assert!(args.contains("\n--resume\ns-1\n"), "{args}");
    // The session the run ended in is recorded, for the attempt after it.
    assert_eq!(run_.usage.session_id.as_deref(), Some("s-2"));

    let ws = Workspace::new();
    let claude = ClaudeAgent {
        cli: CliSettings::new(recording_cli(&ws.logs_parent(), result)),
        private_home: true,
        ..ClaudeAgent::default()
    };
    let req = orch_agent::AgentRequest {
        resume_session: Some("s-1".to_owned()),
        ..ws.request(&[])
    };
    claude.run(&req, &CancellationToken::new(), &mut ()).await;
    assert!(!read(&ws, "args.txt").contains("--resume"));
    assert!(
        ws.run_log().contains(
            "orch: claude does not resume session s-1 (private_home gives every attempt a new home); starting a new one"
        ),
        "{}",
        ws.run_log()
    );
}
