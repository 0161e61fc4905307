//! What a deploy step reports, and the stage logs orch writes from it: `15-staging-log.md`
//! (`staging_status:`) and `14-deploy-log.md` (`deploy_status:`).
//!
//! Gates read only the frontmatter, so the verdict field is written from the report's own verdict
//! and nothing else; every other value is a JSON-quoted string (valid YAML whatever it contains).

use orch_core::staging::StagingVerdict;

use crate::build::Build;
use crate::checks::CheckRun;

/// The outcome of `deploy_staging`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagingReport {
    pub sha: String,
    /// The build that ran on staging; `None` when the build itself failed.
    pub build: Option<Build>,
    pub base_url: String,
    pub checks: Vec<CheckRun>,
    pub verdict: StagingVerdict,
    /// The check lines, the `INFRA-WAIVED:` line if any, the `VERDICT:` line.
    pub lines: Vec<String>,
    /// Why the deploy failed before or around the checks (build, port, health, cancel).
    pub error: Option<String>,
    /// The failure before the checks was not caused by the change (see
    /// [`crate::DeployError::caused_by_change`]): a taken port, the disk, the configuration.
    pub infra_error: bool,
    /// What the sandbox's egress proxy refused the build command (the item's code), whether
    /// the build passed or failed; empty when nothing was refused or nothing was built here.
    pub build_egress_refused: orch_process::EgressRefusals,
}

impl StagingReport {
    /// A staging run that failed before its checks could run: FAILED with its reason, never a
    /// false green, and `infra_error` when the change did not cause it.
    pub(crate) fn failed_before_checks(
        sha: &str,
        build: Option<Build>,
        base_url: String,
        tolerance: bool,
        mut lines: Vec<String>,
        error: &crate::DeployError,
    ) -> StagingReport {
        let reason = error.to_string();
        let verdict = orch_core::staging::fold(&[], tolerance, Some(&reason));
        lines.extend(crate::checks::report_lines(&[], &verdict));
        StagingReport {
            sha: sha.to_owned(),
            build,
            base_url,
            checks: Vec::new(),
            verdict,
            lines,
            error: Some(reason),
            infra_error: !error.caused_by_change(),
            build_egress_refused: orch_process::EgressRefusals::default(),
        }
    }

    pub fn waived(&self) -> &[String] {
        match &self.verdict {
            StagingVerdict::Success { waived } => waived,
            StagingVerdict::Failed { .. } => &[],
        }
    }

    /// The text of `15-staging-log.md`.
    pub fn log_markdown(&self, timestamp_rfc3339: &str) -> String {
        let status = if self.verdict.is_success() {
            "SUCCESS"
        } else {
            "FAILED"
        };
        let mut front = vec![
            format!("staging_status: {status}"),
            format!("timestamp: {}", quoted(timestamp_rfc3339)),
            format!("base_url: {}", quoted(&self.base_url)),
            format!("sha: {}", quoted(&self.sha)),
        ];
        if let Some(build) = &self.build {
            front.push(format!("digest: {}", quoted(&build.digest)));
        }
        front.push(format!(
            "waived: [{}]",
            self.waived()
                .iter()
                .map(|id| quoted(id))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let summary = match (&self.verdict, &self.error) {
            (_, Some(error)) => format!("Staging FAILED before its checks could decide: {error}"),
            (StagingVerdict::Success { waived }, None) if waived.is_empty() => {
                "Staging checks passed.".to_owned()
            }
            (StagingVerdict::Success { .. }, None) => {
                "Staging checks passed; INFRA-only failures were waived (see INFRA-WAIVED)."
                    .to_owned()
            }
            (StagingVerdict::Failed { .. }, None) => {
                "Staging checks FAILED. See the lines below.".to_owned()
            }
        };
        render("Staging Gate Log", &front, &summary, &self.lines)
    }
}

/// How a promotion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployStatus {
    Success,
    Failed { reason: String },
}

/// The outcome of `promote`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployReport {
    pub status: DeployStatus,
    /// The SHA that was to be promoted.
    pub sha: String,
    /// The digest of the promoted build, when one was found.
    pub digest: Option<String>,
    /// The SHA prod was restored to after a failed promotion.
    pub restored: Option<String>,
    /// A restore failed too: prod is frozen until a person clears it.
    pub frozen: bool,
    /// What happened, step by step, for the log.
    pub lines: Vec<String>,
    /// The deploy failed for a reason that is not the change's (a self-deploy hook's exit 2, a
    /// detached deploy that vanished or is busy): the engine blocks the item for a person instead
    /// of sending it back to development. Set only by the self-deploy path so far.
    pub infra_error: bool,
}

impl DeployReport {
    /// A promotion that failed before touching prod, or whose outcome cannot be known;
    /// `caused_by_change` says whether the change is to blame (see [`DeployReport::infra_error`]).
    pub fn failed(
        sha: &str,
        reason: &dyn std::fmt::Display,
        caused_by_change: bool,
    ) -> DeployReport {
        let reason = reason.to_string();
        DeployReport {
            infra_error: !caused_by_change,
            status: DeployStatus::Failed {
                reason: reason.clone(),
            },
            sha: sha.to_owned(),
            digest: None,
            restored: None,
            frozen: false,
            lines: vec![format!("FAILED: {reason}")],
        }
    }

    pub fn is_success(&self) -> bool {
        self.status == DeployStatus::Success
    }

    /// The text of `14-deploy-log.md`.
    pub fn log_markdown(&self, timestamp_rfc3339: &str) -> String {
        let status = if self.is_success() {
            "SUCCESS"
        } else {
            "FAILED"
        };
        let mut front = vec![
            format!("deploy_status: {status}"),
            format!("timestamp: {}", quoted(timestamp_rfc3339)),
            format!("sha: {}", quoted(&self.sha)),
        ];
        if let Some(digest) = &self.digest {
            front.push(format!("digest: {}", quoted(digest)));
        }
        if let Some(restored) = &self.restored {
            front.push(format!("restored_to: {}", quoted(restored)));
        }
        if self.frozen {
            front.push("frozen: true".to_owned());
        }
        let summary = match &self.status {
            DeployStatus::Success => {
                "Prod runs the build that passed staging and answers its health check.".to_owned()
            }
            DeployStatus::Failed { reason } => format!("Deploy FAILED: {reason}"),
        };
        render("Deploy Log", &front, &summary, &self.lines)
    }
}

fn render(title: &str, front: &[String], summary: &str, lines: &[String]) -> String {
    let mut text = format!("---\n{}\n---\n\n# {title}\n\n{summary}\n", front.join("\n"));
    if !lines.is_empty() {
        text.push_str(&format!("\n```text\n{}\n```\n", lines.join("\n")));
    }
    text
}

/// A JSON string is a valid double-quoted YAML scalar, whatever characters it holds.
fn quoted(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use orch_core::frontmatter::{Frontmatter, body};

    use super::*;

    fn staging(verdict: StagingVerdict, lines: &[&str], error: Option<&str>) -> StagingReport {
        StagingReport {
            sha: "a".repeat(40),
            build: None,
            base_url: "http://127.0.0.1:8511".into(),
            checks: Vec::new(),
            verdict,
            lines: lines.iter().map(|l| (*l).to_owned()).collect(),
            error: error.map(str::to_owned),
            infra_error: false,
            build_egress_refused: orch_process::EgressRefusals::default(),
        }
    }

    fn front_of(text: &str) -> Frontmatter {
        Frontmatter::parse(Some(text)).expect("frontmatter parses")
    }

    #[test]
    fn staging_log_carries_the_verdict_and_copies_the_waived_line() {
        let report = staging(
            StagingVerdict::Success {
                waived: vec!["C9a".into()],
            },
            &[
                "PASS greeting (REAL): GET / 200",
                "FAIL C9a (INFRA): could not be measured: x",
                "INFRA-WAIVED: C9a (sandbox infrastructure, not the change)",
                "VERDICT: SUCCESS (waived INFRA: C9a)",
            ],
            None,
        );
        let text = report.log_markdown("2026-06-07T12:39:00Z");
        let front = front_of(&text);
        assert_eq!(front.string("staging_status").ok(), Some("SUCCESS"));
        assert_eq!(front.string("base_url").ok(), Some("http://127.0.0.1:8511"));
        assert_eq!(front.string("timestamp").ok(), Some("2026-06-07T12:39:00Z"));
        assert!(text.contains("waived: [\"C9a\"]"), "{text}");
        assert!(body(&text).contains("\nINFRA-WAIVED: C9a"), "{text}");
        assert!(
            body(&text).contains("\nVERDICT: SUCCESS (waived INFRA: C9a)"),
            "{text}"
        );
    }

    #[test]
    fn a_failure_before_the_checks_is_failed_with_its_reason() {
        let verdict = orch_core::staging::fold(&[], true, Some("port 8511 is in use"));
        let line = verdict.verdict_line();
        let text =
            staging(verdict, &[line.as_str()], Some("port 8511 is in use")).log_markdown("t");
        assert_eq!(
            front_of(&text).string("staging_status").ok(),
            Some("FAILED")
        );
        assert!(text.contains("waived: []"));
        assert!(
            text.contains("before its checks could decide: port 8511 is in use"),
            "{text}"
        );
    }

    #[test]
    fn deploy_log_names_the_restore() {
        let report = DeployReport {
            infra_error: false,
            status: DeployStatus::Failed {
                reason: "prod never became healthy".into(),
            },
            sha: "b".repeat(40),
            digest: Some("sha256:00".into()),
            restored: Some("c".repeat(40)),
            frozen: false,
            lines: vec!["restored".into()],
        };
        let text = report.log_markdown("2026-06-07T12:39:00Z");
        let front = front_of(&text);
        assert_eq!(front.string("deploy_status").ok(), Some("FAILED"));
        assert_eq!(
            front.string("restored_to").ok(),
            Some("c".repeat(40).as_str())
        );
        assert_eq!(front.string("digest").ok(), Some("sha256:00"));
        assert!(text.contains("Deploy FAILED: prod never became healthy"));
    }
}
