//! What `orch doctor` reports: one finding per check, ok / warn / fail, with a one-line cause
//! and a one-line fix, printed for people or as JSON.
//!
//! A finding never holds a secret: checks name the variables that hold tokens, never a value.

use serde::Serialize;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Works, but not as orch is tested (another CLI version), or needs a step later.
    Warn,
    /// Something orch needs is missing or refused: the exit code is 1.
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// What was checked: `config`, `git`, `sandbox`, `docker`, `agent`, `store`, `port`,
    /// `tracker`, `forge`, `webhook`.
    pub check: &'static str,
    /// What it was checked for (`bwrap`, `project demo: staging port 8511`); empty when the
    /// check is about the machine as a whole.
    pub subject: String,
    pub status: Status,
    /// What was found, on one line.
    pub cause: String,
    /// What to do about it, on one line; `None` when nothing is to be done.
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, subject: impl Into<String>, cause: impl Into<String>) -> Self {
        Self::new(check, subject, Status::Ok, cause, None)
    }

    pub fn warn(
        check: &'static str,
        subject: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(check, subject, Status::Warn, cause, Some(fix.into()))
    }

    pub fn fail(
        check: &'static str,
        subject: impl Into<String>,
        cause: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(check, subject, Status::Fail, cause, Some(fix.into()))
    }

    fn new(
        check: &'static str,
        subject: impl Into<String>,
        status: Status,
        cause: impl Into<String>,
        fix: Option<String>,
    ) -> Self {
        Self {
            check,
            subject: subject.into(),
            status,
            cause: one_line(&cause.into()),
            fix: fix.map(|f| one_line(&f)),
        }
    }
}

/// The first line of `text`, for messages that quote a program's output.
fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or("").trim().to_owned()
}

/// Every finding of one run, in the order the checks were made.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The configuration file examined.
    pub config: String,
    /// True when no check failed (warnings allowed): the exit code is then 0.
    pub ok: bool,
    pub counts: Counts,
    pub checks: Vec<Finding>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
}

impl Report {
    pub fn new(config: String, checks: Vec<Finding>) -> Self {
        let mut counts = Counts::default();
        for finding in &checks {
            match finding.status {
                Status::Ok => counts.ok += 1,
                Status::Warn => counts.warn += 1,
                Status::Fail => counts.fail += 1,
            }
        }
        Self {
            config,
            ok: counts.fail == 0,
            counts,
            checks,
        }
    }

    /// 0 when nothing failed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.ok { 0 } else { 1 }
    }
}

/// The findings as lines for people: status, check, subject and cause, and the fix below.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let status = match f.status {
            Status::Ok => "ok  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let what = if f.subject.is_empty() {
            f.check.to_owned()
        } else {
            format!("{} {}", f.check, f.subject)
        };
        out.push_str(&format!("{status}  {what}: {}\n", f.cause));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("      fix: {fix}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_shape_is_pinned() {
        let report = Report::new(
            "/srv/orch/orch.toml".to_owned(),
            vec![
                Finding::ok("git", "", "git 2.47.3 (orch needs 2.38 or later)"),
                Finding::warn(
                    "agent",
                    "claude",
                    "claude 2.0.1, orch is tested with 2.1.197",
                    "npm install -g @anthropic-ai/claude-code@2.1.197",
                ),
                Finding::fail(
                    "port",
                    "project demo: staging port 8511",
                    "in use by another program\nsecond line dropped",
                    "stop it or change staging_port",
                ),
            ],
        );
        assert_eq!(report.exit_code(), 1);
        insta::assert_snapshot!(
            serde_json::to_string_pretty(&report).expect("json"),
            @r#"
        {
          "config": "/srv/orch/orch.toml",
          "ok": false,
          "counts": {
            "ok": 1,
            "warn": 1,
            "fail": 1
          },
          "checks": [
            {
              "check": "git",
              "subject": "",
              "status": "ok",
              "cause": "git 2.47.3 (orch needs 2.38 or later)",
              "fix": null
            },
            {
              "check": "agent",
              "subject": "claude",
              "status": "warn",
              "cause": "claude 2.0.1, orch is tested with 2.1.197",
              "fix": "npm install -g @anthropic-ai/claude-code@2.1.197"
            },
            {
              "check": "port",
              "subject": "project demo: staging port 8511",
              "status": "fail",
              "cause": "in use by another program",
              "fix": "stop it or change staging_port"
            }
          ]
        }
        "#
        );
        assert_eq!(
            render(&report.checks[1..]),
            "WARN  agent claude: claude 2.0.1, orch is tested with 2.1.197\n      fix: npm install -g @anthropic-ai/claude-code@2.1.197\n\
             FAIL  port project demo: staging port 8511: in use by another program\n      fix: stop it or change staging_port\n"
        );
    }
}
