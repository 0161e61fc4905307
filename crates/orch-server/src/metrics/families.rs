//! Every metric family `/metrics` shows, with its name, type and help: the one place a metric is
//! added. A registry is made per scrape: the process's own counters (shared with the handlers
//! that count them) and the families just gathered from the store.
//!
//! Help texts are given without their final period (the encoder adds one). Names are given
//! without the `orch_` prefix (the registry adds it) and, for counters, without
//! `_total` (the OpenMetrics encoder adds it to the samples): `webhook_deliveries` is scraped as
//! `orch_webhook_deliveries_total`, the name dashboards use. Never rename a family here without
//! a line in CHANGELOG.md: dashboards and alerts depend on the names.

use prometheus_client::registry::Registry;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::WebhookMetrics;
use super::notifications::StateLabels;
use super::pipeline::Families;

/// The registry of one scrape.
pub(crate) fn registry(
    webhooks: &WebhookMetrics,
    pipeline: Families,
    notifications: Family<StateLabels, Gauge>,
) -> Registry {
    let mut r = Registry::with_prefix("orch");
    r.register(
        "items",
        "Work items by project, current stage and status",
        pipeline.items,
    );
    r.register(
        "stage_run_duration_seconds",
        "Duration of finished stage runs, from start to verdict",
        pipeline.durations,
    );
    r.register(
        "gate_failures",
        "Gates that failed in stage verdicts, by project, stage and gate",
        pipeline.gate_failures,
    );
    r.register(
        "agent_tokens",
        "Tokens agents reported, by project and stage (runs that reported none add nothing)",
        pipeline.tokens,
    );
    r.register(
        "agent_cost_usd",
        "Cost in USD agents reported, by project and stage",
        pipeline.cost_usd,
    );
    r.register(
        "agent_runs",
        "Agent runs with a usage record, by project and stage; `cost_known` says whether their \
         cost was reported",
        pipeline.agent_runs,
    );
    r.register(
        "lease_reaps",
        "Runs taken over after their owner's lease expired (it died or stalled), by project",
        pipeline.lease_reaps,
    );
    r.register(
        "webhook_deliveries",
        "Webhook deliveries received, by source and result",
        webhooks.deliveries.clone(),
    );
    r.register(
        "webhook_actions",
        "What accepted deliveries led to, by source and action",
        webhooks.actions.clone(),
    );
    r.register(
        "returns",
        "Items sent back to development by a cause outside the agent's own gates: a failed \
         required CI check, a person's review, a conflict with the default branch",
        pipeline.returns,
    );
    r.register(
        "notifications",
        "Outgoing notifications by delivery state (pending, sent, given-up)",
        notifications,
    );
    // A process-wide count kept by the egress proxies themselves.
    let egress = prometheus_client::metrics::counter::Counter::<u64>::default();
    egress.inc_by(orch_process::egress_refusals());
    r.register(
        "sandbox_egress_refused",
        "Connections the sandboxes' egress proxies refused since orch started",
        egress,
    );
    r
}

#[cfg(test)]
mod tests {
    use super::super::pipeline::{
        AgentRunLabels, GateLabels, ItemLabels, ProjectLabels, StageLabels,
    };
    use super::*;
    use crate::metrics::DeliveryResult;
    use crate::webhook::WebhookSource;

    fn stage(stage: &str) -> StageLabels {
        StageLabels {
            project: "quick".to_owned(),
            stage: stage.to_owned(),
        }
    }

    fn encoded(webhooks: &WebhookMetrics, pipeline: Families) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(
            &mut out,
            &registry(webhooks, pipeline, Family::default()),
        )
        .expect("encodes");
        out
    }

    /// Every family keeps the series name dashboards use, with its labels, and the text is
    /// OpenMetrics: HELP and TYPE before the samples, samples named after their family with the
    /// suffixes their type allows, one `# EOF` at the end.
    #[test]
    fn every_family_keeps_its_scraped_name_and_labels() {
        let webhooks = WebhookMetrics::default();
        webhooks.record(WebhookSource::Gitea, DeliveryResult::Replayed);
        let p = Families::default();
        p.items
            .get_or_create(&ItemLabels {
                project: "quick".to_owned(),
                stage: "qa".to_owned(),
                status: "running".to_owned(),
            })
            .set(2);
        for secs in [0.5, 4.0, 4.0, 10_000.0] {
            p.durations
                .get_or_create(&stage("development"))
                .observe(secs);
        }
        p.gate_failures
            .get_or_create(&GateLabels {
                project: "quick".to_owned(),
                stage: "review".to_owned(),
                gate: "a\"b".to_owned(),
            })
            .inc();
        p.tokens.get_or_create(&stage("analysis")).inc_by(1200);
        p.cost_usd.get_or_create(&stage("analysis")).inc_by(0.25);
        p.agent_runs
            .get_or_create(&AgentRunLabels {
                project: "quick".to_owned(),
                stage: "analysis".to_owned(),
                cost_known: "false",
            })
            .inc();
        p.lease_reaps
            .get_or_create(&ProjectLabels {
                project: "quick".to_owned(),
            })
            .inc();
        let text = encoded(&webhooks, p);
        let lines: Vec<&str> = text.lines().collect();
        for line in [
            r#"orch_items{project="quick",stage="qa",status="running"} 2"#,
            r#"orch_stage_run_duration_seconds_bucket{le="1.0",project="quick",stage="development"} 1"#,
            r#"orch_stage_run_duration_seconds_bucket{le="5.0",project="quick",stage="development"} 3"#,
            r#"orch_stage_run_duration_seconds_bucket{le="7200.0",project="quick",stage="development"} 3"#,
            r#"orch_stage_run_duration_seconds_bucket{le="+Inf",project="quick",stage="development"} 4"#,
            r#"orch_stage_run_duration_seconds_count{project="quick",stage="development"} 4"#,
            r#"orch_stage_run_duration_seconds_sum{project="quick",stage="development"} 10008.5"#,
            r#"orch_gate_failures_total{project="quick",stage="review",gate="a\"b"} 1"#,
            r#"orch_agent_tokens_total{project="quick",stage="analysis"} 1200"#,
            r#"orch_agent_cost_usd_total{project="quick",stage="analysis"} 0.25"#,
            r#"orch_agent_runs_total{project="quick",stage="analysis",cost_known="false"} 1"#,
            r#"orch_lease_reaps_total{project="quick"} 1"#,
            r#"orch_webhook_deliveries_total{source="gitea",result="replayed"} 1"#,
            r#"orch_webhook_deliveries_total{source="github",result="accepted"} 0"#,
            r#"orch_webhook_actions_total{source="plane",action="stale"} 0"#,
        ] {
            assert!(lines.contains(&line), "missing {line}\nin:\n{text}");
        }
        for (family, kind) in [
            ("orch_items", "gauge"),
            ("orch_stage_run_duration_seconds", "histogram"),
            ("orch_gate_failures", "counter"),
            ("orch_agent_tokens", "counter"),
            ("orch_agent_cost_usd", "counter"),
            ("orch_agent_runs", "counter"),
            ("orch_lease_reaps", "counter"),
            ("orch_webhook_deliveries", "counter"),
            ("orch_webhook_actions", "counter"),
        ] {
            let at = |l: &str| lines.iter().position(|x| *x == l);
            let typed = at(&format!("# TYPE {family} {kind}")).expect(family);
            assert!(
                lines[typed - 1].starts_with(&format!("# HELP {family} ")),
                "{family}: no HELP right before its TYPE"
            );
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_count", "_sum"],
                _ => &[""],
            };
            // The family's samples follow its TYPE line, until the next comment line.
            let samples: Vec<&str> = lines[typed + 1..]
                .iter()
                .take_while(|l| !l.starts_with('#'))
                .copied()
                .collect();
            assert!(!samples.is_empty(), "{family} has no samples");
            for sample in samples {
                let name = sample.split(['{', ' ']).next().unwrap_or_default();
                assert!(
                    suffixes.iter().any(|s| name == format!("{family}{s}")),
                    "{sample} is not a {kind} sample of {family}"
                );
            }
        }
        // The encoder ends each help with a period: a help given with one would show two.
        assert!(
            lines
                .iter()
                .filter(|l| l.starts_with("# HELP "))
                .all(|l| l.ends_with('.') && !l.ends_with("..")),
            "{text}"
        );
        assert_eq!(lines.last(), Some(&"# EOF"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
