//! An agent CLI in orch's sandbox reaches its model only through orch's bridge, with a
//! placeholder key: the real key never enters the sandbox, and the endpoint gets it anyway.
//! Each check is also run unconfined, where the attack works, so that it is seen able to fail.

use std::sync::{Arc, Mutex};

use orch_agent::claude::ClaudeAgent;
use orch_agent::{Agent, CliSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::support::{Workspace, script};

/// The variable that stands for the model key: cargo sets it for this test, with a value that
/// appears nowhere else.
const KEY_VAR: &str = "CARGO_PKG_DESCRIPTION";

/// A model endpoint on loopback that records each request's head and answers `bridge-ok`.
async fn endpoint() -> (String, u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0; 65536];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            seen.lock()
                .expect("lock")
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let body = "bridge-ok";
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    (format!("http://127.0.0.1:{port}"), port, heads)
}

/// A stand-in for Claude Code that looks for the key everywhere it can, calls its model
/// through the base URL it was given, and tries the endpoint directly.
fn attacker(ws: &Workspace, key: &str, port: u16) -> String {
    // The longest part without a quote, to search for from a shell script.
    let key = key.split('\'').max_by_key(|part| part.len()).unwrap_or(key);
    let tools = ws.logs_parent().join("tools/bin");
    std::fs::create_dir_all(&tools).expect("mkdir");
    let body = format!(
        r#"
KEY='{key}'
env | grep -qF "$KEY" && echo "ESCAPED key in the environment"
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
  grep -qaF "$KEY" "$f" 2>/dev/null && echo "ESCAPED key in $f"
done
echo "reply: $(curl -s -m 5 -H "x-api-key: $ANTHROPIC_API_KEY" "$ANTHROPIC_BASE_URL/v1/messages" -d '{{}}')"
curl -s -m 3 http://127.0.0.1:{port}/direct >/dev/null 2>&1 && echo "ESCAPED direct connection"
exit 0
"#
    );
    script(&tools, "claude", &body).display().to_string()
}

#[tokio::test]
async fn the_model_key_stays_outside_and_the_endpoint_gets_it_through_the_bridge() {
    key_stays_outside(orch_process::Sandbox::for_agents()).await;
}

/// The same in the docker runtime (where a daemon answers; under CI one must).
#[tokio::test]
async fn in_docker_the_model_key_stays_outside_and_the_endpoint_gets_it_through_the_bridge() {
    let answers = std::process::Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !answers {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no docker daemon answers under CI: run `bash .ci/install-docker.sh`"
        );
        return;
    }
    key_stays_outside(orch_process::Sandbox::docker_for_agents()).await;
}

async fn key_stays_outside(sandbox: orch_process::Sandbox) {
    let key = std::env::var(KEY_VAR).expect("cargo sets it");
    assert!(key.len() > 20, "precondition: a distinctive value");
    let (url, port, heads) = endpoint().await;
    let ws = Workspace::new();
    let agent = ClaudeAgent {
        cli: CliSettings {
            base_url: Some(url),
            api_key_env: Some(KEY_VAR.to_owned()),
            ..CliSettings::new(attacker(&ws, &key, port))
        },
        ..ClaudeAgent::default()
    };
    let request = orch_agent::AgentRequest {
        sandbox,
        ..ws.request(&[])
    };
    agent
        .run(&request, &CancellationToken::new(), &mut ())
        .await;
    let log = ws.run_log() + &ws.stream_log();
    assert!(
        log.contains("reply: bridge-ok"),
        "the model was not reached:\n{log}"
    );
    assert!(!log.contains("ESCAPED"), "{log}");
    {
        let heads = heads.lock().expect("lock");
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(heads[0].starts_with("POST /v1/messages "), "{}", heads[0]);
        assert!(
            heads[0].contains(&format!("x-api-key: {key}")),
            "{}",
            heads[0]
        );
        assert!(!heads[0].contains(orch_agent::bridge::PLACEHOLDER_KEY));
    }

    // Unconfined, the same program holds the key and reaches the endpoint directly.
    let ws = Workspace::new();
    let agent = ClaudeAgent {
        cli: CliSettings {
            api_key_env: Some(KEY_VAR.to_owned()),
            ..CliSettings::new(attacker(&ws, &key, port))
        },
        ..ClaudeAgent::default()
    };
    agent
        .run(&ws.request(&[]), &CancellationToken::new(), &mut ())
        .await;
    let log = ws.run_log() + &ws.stream_log();
    assert!(log.contains("ESCAPED key in the environment"), "{log}");
    assert!(log.contains("ESCAPED direct connection"), "{log}");
}

#[tokio::test]
async fn a_run_whose_key_variable_is_unset_fails_before_starting() {
    let ws = Workspace::new();
    let agent = ClaudeAgent {
        cli: CliSettings {
            base_url: Some("http://127.0.0.1:9".to_owned()),
            api_key_env: Some("ORCH_TEST_SURELY_UNSET_KEY_VARIABLE".to_owned()),
            ..CliSettings::new("/bin/true")
        },
        ..ClaudeAgent::default()
    };
    let run = agent
        .run(
            &ws.sandboxed_request(&[]),
            &CancellationToken::new(),
            &mut (),
        )
        .await;
    assert!(
        matches!(&run.outcome, orch_core::gate::ExitOutcome::FailedToStart(m) if m.contains("ORCH_TEST_SURELY_UNSET_KEY_VARIABLE")),
        "{:?}",
        run.outcome
    );
}
