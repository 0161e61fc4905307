//! The adapters facing bad output from a CLI (stand-in programs printing what the real ones print
//! when things go wrong): a flood, model API errors, malformed usage, and a cost only a price
//! table can give.

use std::path::Path;

use orch_agent::CliSettings;
use orch_agent::aider::AiderAgent;
use orch_agent::claude::ClaudeAgent;
use orch_agent::codex::CodexAgent;
use orch_agent::{Agent, AgentRun, AgentsConfig};
use orch_core::gate::ExitOutcome;
use tokio_util::sync::CancellationToken;

use crate::support::{Workspace, script};

async fn run(agent: &dyn Agent, ws: &Workspace) -> AgentRun {
    agent
        .run(&ws.request(&[]), &CancellationToken::new(), &mut ())
        .await
}

/// A stand-in aider: writes `analytics` (if any) to the file after `--analytics-log`, then prints
/// `printed` and exits 0, as aider does even after giving up on the model.
fn fake_aider(dir: &Path, analytics: &str, printed: &str) -> String {
    let body = format!(
        "while [ $# -gt 0 ]; do [ \"$1\" = --analytics-log ] && log=\"$2\"; shift; done\n\
         [ -n '{analytics}' ] && printf '%s\\n' '{analytics}' > \"$log\"\n\
         cat <<'EOF'\n{printed}\nEOF\n"
    );
    script(dir, "aider", &body).display().to_string()
}

/// The peak resident memory of this process so far, in KiB (Linux: `VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_50_mb_single_line_flood_keeps_memory_bounded_and_the_run_ends() {
    const FLOOD_BYTES: u64 = 50 * 1024 * 1024;
    let ws = Workspace::new();
    let agent = ClaudeAgent {
cli: CliSettings::new(script(
            &ws.logs_parent(),
            "flood",
            &format!(
                "cat >/dev/null\n\
                 head -c {FLOOD_BYTES} /dev/zero | tr '\\0' x\n\
                 echo\n\
                 echo '{{\"type\":\"result\",\"subtype\":\"success\",\"is_error\":false,\"usage\":{{\"input_tokens\":5,\"output_tokens\":6}}}}'\n"
            ),
        )
        .display()
        .to_string()),
..ClaudeAgent::default()
};
    let before = peak_rss_kib();
    let started = std::time::Instant::now();
    let run_ = run(&agent, &ws).await;
    let grown_mib = peak_rss_kib().saturating_sub(before) / 1024;
    eprintln!(
        "flood of {} MiB: took {:?}, peak memory grew by {grown_mib} MiB",
        FLOOD_BYTES / 1024 / 1024,
        started.elapsed()
    );
    assert_eq!(run_.outcome, ExitOutcome::Exited(0));
    // The line after the flood is still read.
    assert_eq!(
        (run_.usage.input_tokens, run_.usage.output_tokens),
        (Some(5), Some(6))
    );
    assert!(
        grown_mib < 16,
        "memory grew by {grown_mib} MiB for a {} MiB line",
        FLOOD_BYTES / 1024 / 1024
    );
    let log_size = |name: &str| {
        std::fs::metadata(ws.logs.join(name))
            .map(|m| m.len())
            .unwrap_or_default()
    };
    // The flood did pass: its line reached the raw stream, cut.
    assert!(ws.stream_log().contains("xxxx…[line cut]"));
    assert!(log_size("analysis-1.log") < 1024 * 1024);
    assert!(log_size("analysis-1.stream.jsonl") < FLOOD_BYTES / 2);
}

#[tokio::test]
async fn aider_giving_up_on_a_rate_limit_fails_the_run_as_retryable() {
    let ws = Workspace::new();
    let agent = AiderAgent {
        cli: CliSettings::new(fake_aider(
            &ws.logs_parent(),
            "",
            "litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - {'error': {'message': 'slow down'}}\n\
             Retrying in 0.2 seconds...\n\
             litellm.RateLimitError: RateLimitError: OpenAIException - Error code: 429 - {'error': {'message': 'slow down'}}",
        )),
        ..AiderAgent::default()
    };
    let run_ = run(&agent, &ws).await;
    // Aider exited 0, but no answer came: a failed run.
    assert_eq!(run_.outcome, ExitOutcome::Exited(1), "{}", ws.run_log());
    let error = run_
        .model_error
        .clone()
        .expect("the rate limit is reported");
    assert_eq!((error.status, error.retryable), (Some(429), true));
    assert!(
        run_.describe().starts_with(
            "exited with code 1; the model API failed with HTTP 429 (retryable): litellm.RateLimitError"
        ),
        "{}",
        run_.describe()
    );
    let log = ws.run_log();
    assert!(log.contains("aider: litellm.RateLimitError"), "{log}");
    assert!(
        log.contains(
            "orch: the model API failed with HTTP 429 (retryable): litellm.RateLimitError"
        ),
        "{log}"
    );
    assert!(
        log.contains("orch: the CLI exited 0 but the model API failed and no answer came"),
        "{log}"
    );
    assert_eq!(run_.usage.input_tokens, None);
}

#[tokio::test]
async fn a_server_error_from_codex_is_reported_as_retryable() {
    let ws = Workspace::new();
    let agent = CodexAgent {
cli: CliSettings::new(script(
            &ws.logs_parent(),
            "codex",
            "cat >/dev/null\n\
             echo '{\"type\":\"thread.started\",\"thread_id\":\"th-7\"}'\n\
             echo '{\"type\":\"error\",\"message\":\"unexpected status 500 Internal Server Error: boom\"}'\n\
             echo '{\"type\":\"turn.failed\",\"error\":{\"message\":\"unexpected status 500 Internal Server Error: boom\"}}'\n\
             exit 1\n",
        )
        .display()
        .to_string()),
..CodexAgent::default()
};
    let run_ = run(&agent, &ws).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(1));
    assert_eq!(
        run_.model_error.map(|e| (e.status, e.retryable)),
        Some((Some(500), true))
    );
    assert_eq!(run_.usage.session_id.as_deref(), Some("th-7"));
    let log = ws.run_log();
    assert!(
        log.contains("codex: turn failed: unexpected status 500"),
        "{log}"
    );
    assert!(
        log.contains("orch: the model API failed with HTTP 500 (retryable)"),
        "{log}"
    );
}

#[tokio::test]
async fn malformed_usage_records_end_the_run_with_usage_unknown() {
    let ws = Workspace::new();
    let codex = CodexAgent {
cli: CliSettings::new(script(
            &ws.logs_parent(),
            "codex",
            "cat >/dev/null\n\
             echo '{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":\"lots\",\"output_tokens\":-1}}'\n\
             echo '{\"type\":\"turn.completed\",\"usa'\n",
        )
        .display()
        .to_string()),
..CodexAgent::default()
};
    let run_ = run(&codex, &ws).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(0));
    assert_eq!(
        (
            run_.usage.input_tokens,
            run_.usage.output_tokens,
            run_.usage.cost_usd
        ),
        (None, None, None)
    );
    assert!(
        ws.run_log()
            .contains("codex: unreadable output line skipped: {\"type\":\"turn.completed\",\"usa"),
        "{}",
        ws.run_log()
    );

    let ws = Workspace::new();
    let aider = AiderAgent {
        cli: CliSettings::new(fake_aider(
            &ws.logs_parent(),
            r#"{"event": "message_send", "properties": {"prompt_tok"#,
            "Tokens: 1 sent, 2 received.",
        )),
        ..AiderAgent::default()
    };
    let run_ = run(&aider, &ws).await;
    assert_eq!(run_.outcome, ExitOutcome::Exited(0));
    assert_eq!((run_.usage.input_tokens, run_.usage.turns), (None, None));
    assert!(
        ws.run_log()
            .contains("orch: 1 unreadable line(s) of aider's analytics log skipped"),
        "{}",
        ws.run_log()
    );
}

#[tokio::test]
async fn aiders_own_cost_is_kept_only_when_it_printed_one() {
    let send = r#"{"event": "message_send", "properties": {"prompt_tokens": 1000, "completion_tokens": 10, "cost": 0.02}}"#;
    for (printed, cost) in [
        (
            "Tokens: 1.0k sent, 10 received. Cost: $0.02 message, $0.02 session.",
            Some(0.02),
        ),
        ("Tokens: 1.0k sent, 10 received.", None),
    ] {
        let ws = Workspace::new();
        let aider = AiderAgent {
            cli: CliSettings::new(fake_aider(&ws.logs_parent(), send, printed)),
            ..AiderAgent::default()
        };
        let usage = run(&aider, &ws).await.usage;
        assert_eq!(
            (
                usage.input_tokens,
                usage.output_tokens,
                usage.cost_usd,
                usage.cost_estimated
            ),
            (Some(1000), Some(10), cost, false),
            "{printed}"
        );
    }
}

#[tokio::test]
async fn the_price_table_gives_codex_an_estimated_cost() {
    let ws = Workspace::new();
    let program = script(
        &ws.logs_parent(),
        "codex",
        "cat >/dev/null\n\
         echo '{\"type\":\"turn.completed\",\"usage\":{\"input_tokens\":2000000,\"cached_input_tokens\":1000000,\"output_tokens\":100000,\"reasoning_output_tokens\":0}}'\n",
    );
    let config = format!(
        "[default]\nkind = \"codex\"\nprogram = \"{}\"\n\n\
         [roles.qa]\nkind = \"codex\"\nprogram = \"{0}\"\nmodel = \"unpriced-model\"\n\n\
         [prices.\"scripted-model\"]\ninput_per_mtok = 1.0\ncache_read_per_mtok = 0.1\noutput_per_mtok = 10.0\n",
        program.display()
    );
    let agents = AgentsConfig::from_toml(&config)
        .and_then(|c| c.build(Path::new(".")))
        .expect("a valid config");
    let priced = run(agents[""].agent.as_ref(), &ws).await.usage;
    // 1M uncached × $1 + 1M cached × $0.10 + 0.1M output × $10.
    assert_eq!(
        (priced.cost_usd, priced.cost_estimated),
        (Some(1.0 + 0.1 + 1.0), true)
    );
    let ws = Workspace::new();
    let unpriced = run(agents["qa"].agent.as_ref(), &ws).await.usage;
    assert_eq!((unpriced.cost_usd, unpriced.cost_estimated), (None, false));
    assert_eq!(unpriced.input_tokens, Some(2_000_000));
}
