//! The adapters drive the real Claude Code and Codex CLIs against the scripted model server.

use std::time::Instant;

use orch_agent::claude::ClaudeAgent;
use orch_agent::codex::CodexAgent;
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
        program: program.display().to_string(),
        base_url: Some(server.url.clone()),
        // Any variable of the test's environment does: the server accepts every key.
        api_key_env: Some("PATH".to_owned()),
        private_home: true,
        max_turns: 5,
        ..ClaudeAgent::default()
    };
    let started = Instant::now();
    let req = ws.request(&["Read", "Write"]);
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
        program: program.display().to_string(),
        base_url: Some(format!("{}/v1", server.url)),
        api_key_env: Some("PATH".to_owned()),
        ..CodexAgent::default()
    };
    let started = Instant::now();
    let req = ws.request(&[]);
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
            turns: Some(1),
            duration_ms: 0,
            input_includes_cache: true,
        },
        "requests: {requests:#?}\nrun log:\n{log}"
    );
    assert!(log.contains("command (exit 0): "), "{log}");
    eprintln!("codex run log:\n{log}");
}
