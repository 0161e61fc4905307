//! The adapters drive the real Claude Code, Codex, aider, Gemini and OpenCode CLIs against the
//! scripted model server.

use std::time::Instant;

use orch_agent::CliSettings;
use orch_agent::aider::AiderAgent;
use orch_agent::claude::ClaudeAgent;
use orch_agent::codex::CodexAgent;
use orch_agent::gemini::GeminiAgent;
use orch_agent::opencode::OpenCodeAgent;
use orch_agent::{Agent, Usage};
use orch_core::gate::ExitOutcome;
use tokio_util::sync::CancellationToken;

use crate::model_server::{ModelServer, Script};
use crate::support::{ARTIFACT, ARTIFACT_CONTENT, ARTIFACT_DIR, Workspace, real_cli};

fn script(ws: &Workspace) -> Script {
    let relative = format!("{ARTIFACT_DIR}{ARTIFACT}");
    Script {
        file_path: ws.artifact_path().display().to_string(),
        command: format!("printf '%s' '{ARTIFACT_CONTENT}' > {relative}"),
        relative_path: relative.clone(),
        content: ARTIFACT_CONTENT.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn claude_code_writes_the_artifact_and_reports_the_servers_tokens() {
    let Some(program) = real_cli("ORCH_TEST_CLAUDE_BIN", "claude") else {
        return;
    };
    let ws = Workspace::new();
    let server = ModelServer::start(script(&ws)).await;
    let agent = ClaudeAgent {
        cli: CliSettings {
            base_url: Some(server.url.clone()),
            // Any variable of the test's environment does: the server accepts every key.
            api_key_env: Some("PATH".to_owned()),
            ..CliSettings::new(program.display().to_string())
        },
        private_home: true,
        max_turns: 5,
    };
    let started = Instant::now();
    let req = ws.sandboxed_request(&["Read", "Write"]);
    let run = agent.run(&req, &CancellationToken::new(), &mut ()).await;
    eprintln!("claude run took {:?}: {run:?}", started.elapsed());
    let requests = server.requests();
    let log = ws.run_log();
    assert_eq!(
        run.outcome,
        ExitOutcome::Exited(0),
        "requests: {requests:#?}\nrun log:\n{log}\nstream:\n{}",
        ws.stream_log()
    );
    assert!(server.saw(&req.prompt), "the prompt reached the model");
    let artifact = std::fs::read_to_string(ws.artifact_path()).expect("artifact written");
    assert_eq!(artifact, ARTIFACT_CONTENT);
    let reported = server.reported();
    assert_eq!(
        (
            run.usage.input_tokens,
            run.usage.output_tokens,
            run.usage.cache_read_tokens,
            run.usage.cache_write_tokens,
        ),
        (
            Some(reported.input),
            Some(reported.output),
            Some(reported.cache_read),
            Some(reported.cache_write),
        ),
        "requests: {requests:#?}\nrun log:\n{log}"
    );
    assert_eq!(run.usage.turns, Some(2), "{log}");
    assert!(run.usage.cost_usd.is_some(), "{log}");
    assert!(log.contains("tool Write: "), "{log}");
    assert!(log.contains("claude: finished (success)"), "{log}");
    eprintln!("claude run log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn codex_writes_the_artifact_and_reports_the_servers_tokens() {
    let Some(program) = real_cli("ORCH_TEST_CODEX_BIN", "codex") else {
        return;
    };
    let ws = Workspace::new();
    let server = ModelServer::start(script(&ws)).await;
    let agent = CodexAgent {
        cli: CliSettings {
            base_url: Some(format!("{}/v1", server.url)),
            api_key_env: Some("PATH".to_owned()),
            ..CliSettings::new(program.display().to_string())
        },
        ..CodexAgent::default()
    };
    let started = Instant::now();
    let req = ws.sandboxed_request(&[]);
    let run = agent.run(&req, &CancellationToken::new(), &mut ()).await;
    eprintln!("codex run took {:?}: {run:?}", started.elapsed());
    let requests = server.requests();
    let log = ws.run_log();
    assert_eq!(
        run.outcome,
        ExitOutcome::Exited(0),
        "requests: {requests:#?}\nrun log:\n{log}\nstream:\n{}",
        ws.stream_log()
    );
    assert!(server.saw(&req.prompt), "the prompt reached the model");
    let artifact = std::fs::read_to_string(ws.artifact_path()).expect("artifact written");
    assert_eq!(artifact, ARTIFACT_CONTENT);
    let reported = server.reported();
    assert_eq!(
        Usage {
            duration_ms: 0,
            ..run.usage.clone()
        },
        Usage {
            input_tokens: Some(reported.input),
            output_tokens: Some(reported.output),
            cache_read_tokens: Some(reported.cache_read),
            cache_write_tokens: None,
            reasoning_tokens: Some(reported.reasoning),
            cost_usd: None,
            cost_estimated: false,
            turns: Some(1),
            duration_ms: 0,
            input_includes_cache: true,
            session_id: run.usage.session_id.clone(),
            reporting: orch_core::spend::Reporting::Reports,
        },
        "requests: {requests:#?}\nrun log:\n{log}"
    );
    assert!(log.contains("command (exit 0): "), "{log}");
    let thread = run.usage.session_id.as_deref().unwrap_or_default();
    assert!(
        log.contains(&format!("codex: thread {thread} started")),
        "{log}"
    );
    eprintln!("codex run log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn aider_writes_the_artifact_and_reports_the_servers_tokens() {
    let Some(program) = real_cli("ORCH_TEST_AIDER_BIN", "aider") else {
        return;
    };
    let ws = Workspace::new();
    let server = ModelServer::start(script(&ws)).await;
    let agent = AiderAgent {
        cli: CliSettings {
            model: Some("openai/scripted-model".to_owned()),
            base_url: Some(format!("{}/v1", server.url)),
            // Any variable of the test's environment does: the server accepts every key. With an
            // endpoint, aider gets it as OPENAI_API_KEY.
            api_key_env: Some("PATH".to_owned()),
            ..CliSettings::new(program.display().to_string())
        },
        ..AiderAgent::default()
    };
    let started = Instant::now();
    let req = ws.sandboxed_request(&[]);
    let run = agent.run(&req, &CancellationToken::new(), &mut ()).await;
    eprintln!("aider run took {:?}: {run:?}", started.elapsed());
    let requests = server.requests();
    let log = ws.run_log();
    assert_eq!(
        run.outcome,
        ExitOutcome::Exited(0),
        "requests: {requests:#?}\nrun log:\n{log}"
    );
    assert!(server.saw(&req.prompt), "the prompt reached the model");
    let artifact = std::fs::read_to_string(ws.artifact_path()).expect("artifact written");
    assert_eq!(artifact, ARTIFACT_CONTENT);
    // The gates read the frontmatter: the artifact is what a passing stage needs.
    assert!(artifact.starts_with("---\nanalysis_status: READY\n---\n"));
    let reported = server.reported();
    assert_eq!(
        Usage {
            duration_ms: 0,
            ..run.usage.clone()
        },
        Usage {
            input_tokens: Some(reported.input),
            output_tokens: Some(reported.output),
            turns: Some(1),
            // OpenAI-style counts: cached input is a part of the prompt tokens.
            input_includes_cache: true,
            ..Usage::default()
        },
        "requests: {requests:#?}\nrun log:\n{log}"
    );
    assert!(
        log.contains("aider: Applied edit to docs/work-items/DEMO-1/01-analysis.md"),
        "{log}"
    );
    // Nothing but the artifact was written into the worktree, and nothing was committed.
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(&ws.worktree)
        .output()
        .expect("git status");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "?? docs/work-items/DEMO-1/01-analysis.md\n"
    );
    eprintln!("aider run log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gemini_cli_writes_the_artifact_and_reports_the_servers_tokens() {
    let Some(program) = real_cli("ORCH_TEST_GEMINI_BIN", "gemini") else {
        return;
    };
    let ws = Workspace::new();
    let server = ModelServer::start(script(&ws)).await;
    let agent = GeminiAgent {
        cli: CliSettings {
            base_url: Some(server.url.clone()),
            api_key_env: Some("PATH".to_owned()),
            ..CliSettings::new(program.display().to_string())
        },
        ..GeminiAgent::default()
    };
    let started = Instant::now();
    let req = ws.sandboxed_request(&["Read", "Write"]);
    let run = agent.run(&req, &CancellationToken::new(), &mut ()).await;
    eprintln!("gemini run took {:?}: {run:?}", started.elapsed());
    let requests = server.requests();
    let log = ws.run_log();
    assert_eq!(
        run.outcome,
        ExitOutcome::Exited(0),
        "requests: {requests:#?}\nrun log:\n{log}\nstream:\n{}",
        ws.stream_log()
    );
    assert!(server.saw(&req.prompt), "the prompt reached the model");
    let artifact = std::fs::read_to_string(ws.artifact_path()).expect("artifact written");
    assert_eq!(artifact, ARTIFACT_CONTENT);
    let reported = server.reported();
    let session = run.usage.session_id.clone();
    assert!(session.is_some(), "{log}");
    assert_eq!(
        Usage {
            duration_ms: 0,
            ..run.usage.clone()
        },
        Usage {
            input_tokens: Some(reported.input),
            output_tokens: Some(reported.output),
            cache_read_tokens: Some(reported.cache_read),
            session_id: session,
            // Gemini's prompt token count includes the cached part.
            input_includes_cache: true,
            ..Usage::default()
        },
        "requests: {requests:#?}\nrun log:\n{log}"
    );
    assert!(log.contains("tool write_file: "), "{log}");
    assert!(log.contains("gemini: finished (success)"), "{log}");
    eprintln!("gemini run log:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn opencode_writes_the_artifact_and_reports_the_servers_tokens() {
    let Some(program) = real_cli("ORCH_TEST_OPENCODE_BIN", "opencode") else {
        return;
    };
    let ws = Workspace::new();
    let server = ModelServer::start(script(&ws)).await;
    let agent = OpenCodeAgent {
        cli: CliSettings {
            base_url: Some(format!("{}/v1", server.url)),
            api_key_env: Some("PATH".to_owned()),
            ..CliSettings::new(program.display().to_string())
        },
        ..OpenCodeAgent::default()
    };
    let started = Instant::now();
    let req = ws.sandboxed_request(&[]);
    let run = agent.run(&req, &CancellationToken::new(), &mut ()).await;
    eprintln!("opencode run took {:?}: {run:?}", started.elapsed());
    let requests = server.requests();
    let log = ws.run_log();
    assert_eq!(
        run.outcome,
        ExitOutcome::Exited(0),
        "requests: {requests:#?}\nrun log:\n{log}\nstream:\n{}",
        ws.stream_log()
    );
    assert!(server.saw(&req.prompt), "the prompt reached the model");
    let artifact = std::fs::read_to_string(ws.artifact_path()).expect("artifact written");
    assert_eq!(artifact, ARTIFACT_CONTENT);
    let reported = server.reported();
    let session = run.usage.session_id.clone();
    assert!(
        session.as_deref().is_some_and(|s| s.starts_with("ses_")),
        "{log}"
    );
    assert_eq!(
        Usage {
            duration_ms: 0,
            ..run.usage.clone()
        },
        Usage {
            // OpenCode counts input without the cached part; the server's prompt tokens hold it.
            input_tokens: Some(reported.input - reported.cache_read),
            output_tokens: Some(reported.output),
            cache_read_tokens: Some(reported.cache_read),
            cache_write_tokens: Some(0),
            reasoning_tokens: Some(0),
            turns: Some(2),
            session_id: session,
            ..Usage::default()
        },
        "requests: {requests:#?}\nrun log:\n{log}"
    );
    assert!(log.contains("tool write: "), "{log}");
    // Nothing but the artifact was written into the worktree.
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(&ws.worktree)
        .output()
        .expect("git status");
    assert_eq!(
        String::from_utf8_lossy(&status.stdout),
        "?? docs/work-items/DEMO-1/01-analysis.md\n"
    );
    eprintln!("opencode run log:\n{log}");
}

/// A model API error with the real CLIs: 400 is not retried by them, so the run ends at once,
/// failed, with the error in the run log classified as not retryable.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_request_fails_the_run_as_not_retryable() {
    let clis = [
        ("ORCH_TEST_AIDER_BIN", "aider"),
        ("ORCH_TEST_GEMINI_BIN", "gemini"),
        ("ORCH_TEST_OPENCODE_BIN", "opencode"),
    ];
    for (variable, name) in clis {
        let Some(program) = real_cli(variable, name) else {
            continue;
        };
        let ws = Workspace::new();
        let server = ModelServer::failing(script(&ws), 400).await;
        let program = program.display().to_string();
        let base_url = Some(format!("{}/v1", server.url));
        let api_key_env = Some("PATH".to_owned());
        let agent: Box<dyn Agent> = if name == "aider" {
            Box::new(AiderAgent {
                cli: CliSettings {
                    model: Some("openai/scripted-model".to_owned()),
                    base_url,
                    api_key_env,
                    ..CliSettings::new(program)
                },
                ..AiderAgent::default()
            })
        } else if name == "gemini" {
            Box::new(GeminiAgent {
                cli: CliSettings {
                    base_url: Some(server.url.clone()),
                    api_key_env,
                    ..CliSettings::new(program)
                },
                ..GeminiAgent::default()
            })
        } else {
            Box::new(OpenCodeAgent {
                cli: CliSettings {
                    base_url,
                    api_key_env,
                    ..CliSettings::new(program)
                },
                ..OpenCodeAgent::default()
            })
        };
        let run = agent
            .run(
                &ws.sandboxed_request(&[]),
                &CancellationToken::new(),
                &mut (),
            )
            .await;
        let log = ws.run_log();
        // aider exits 0 and orch counts that as 1; the others exit non-zero themselves.
        assert!(
            matches!(run.outcome, ExitOutcome::Exited(code) if code != 0),
            "{name}: {:?}\n{log}",
            run.outcome
        );
        let error = run.model_error.clone();
        assert_eq!(
            error.map(|e| (e.status, e.retryable)),
            Some((Some(400), false)),
            "{name}: {log}"
        );
        assert!(
            log.contains("orch: the model API failed with HTTP 400 (not retryable)"),
            "{name}: {log}"
        );
        assert!(!server.requests().is_empty(), "{name} asked the model");
        if name == "gemini" {
            // Its error report stayed with the run.
            let reports = std::fs::read_dir(ws.logs.join("analysis-1.gemini-home/tmp"))
                .map(|dir| dir.count())
                .unwrap_or_default();
            assert!(reports > 0, "no error report in the run's TMPDIR");
        }
        // No tokens were spent: unknown (aider, OpenCode) or the 0 the CLI reported (Gemini).
        assert_eq!(run.usage.input_tokens.unwrap_or(0), 0, "{name}: {log}");
    }
}
