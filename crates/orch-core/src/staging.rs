//! The staging verdict fold (contract 4): per-check results in, one verdict out.
//!
//! Any REAL failure is FAILED under every setting. Only INFRA failures (ids on an explicit
//! allowlist) are waived when tolerance is on, and FAILED when strict. No checks, or an internal
//! error, is FAILED: never a false green.

/// A check's category: REAL checks guard the change; INFRA checks guard the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckCategory {
    Real,
    Infra,
}

impl CheckCategory {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckCategory::Real => "REAL",
            CheckCategory::Infra => "INFRA",
        }
    }
}

/// One check's measured result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub id: String,
    pub category: CheckCategory,
    pub passed: bool,
    /// Shadow checks are run and shown but never decide.
    pub shadow: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StagingVerdict {
    /// Every deciding check passed, or only INFRA checks failed under tolerance (listed here).
    Success { waived: Vec<String> },
    /// Whether the only failures were INFRA checks under strictness (the sandbox, not the code).
    Failed {
        reasons: Vec<String>,
        infra_only: bool,
    },
}

impl StagingVerdict {
    pub fn is_success(&self) -> bool {
        matches!(self, StagingVerdict::Success { .. })
    }

    pub fn exit_code(&self) -> i32 {
        if self.is_success() { 0 } else { 1 }
    }

    /// The `VERDICT: ...` line, always printed.
    pub fn verdict_line(&self) -> String {
        match self {
            StagingVerdict::Success { waived } if waived.is_empty() => {
                "VERDICT: SUCCESS".to_owned()
            }
            StagingVerdict::Success { waived } => {
                format!("VERDICT: SUCCESS (waived INFRA: {})", waived.join(", "))
            }
            StagingVerdict::Failed { reasons, .. } => {
                format!("VERDICT: FAILED ({})", reasons.join("; "))
            }
        }
    }

    /// The `INFRA-WAIVED: ...` line, printed only when something was waived.
    pub fn waived_line(&self) -> Option<String> {
        match self {
            StagingVerdict::Success { waived } if !waived.is_empty() => Some(format!(
                "INFRA-WAIVED: {} (sandbox infrastructure, not the change)",
                waived.join(", ")
            )),
            _ => None,
        }
    }
}

/// Folds results into the verdict. `internal_error` is any error met while running the checks.
pub fn fold(
    results: &[CheckResult],
    tolerance: bool,
    internal_error: Option<&str>,
) -> StagingVerdict {
    if let Some(e) = internal_error {
        return StagingVerdict::Failed {
            reasons: vec![format!("internal error: {e}")],
            infra_only: false,
        };
    }
    let deciding: Vec<&CheckResult> = results.iter().filter(|r| !r.shadow).collect();
    if deciding.is_empty() {
        return StagingVerdict::Failed {
            reasons: vec!["no staging checks are configured".to_owned()],
            infra_only: false,
        };
    }
    let real: Vec<String> = deciding
        .iter()
        .filter(|r| !r.passed && r.category == CheckCategory::Real)
        .map(|r| format!("{}: {}", r.id, r.detail))
        .collect();
    let infra: Vec<&CheckResult> = deciding
        .iter()
        .copied()
        .filter(|r| !r.passed && r.category == CheckCategory::Infra)
        .collect();
    if !real.is_empty() {
        let mut reasons = real;
        reasons.extend(infra.iter().map(|r| format!("{}: {}", r.id, r.detail)));
        return StagingVerdict::Failed {
            reasons,
            infra_only: false,
        };
    }
    if infra.is_empty() {
        return StagingVerdict::Success { waived: Vec::new() };
    }
    if tolerance {
        StagingVerdict::Success {
            waived: infra.iter().map(|r| r.id.clone()).collect(),
        }
    } else {
        StagingVerdict::Failed {
            reasons: infra
                .iter()
                .map(|r| format!("{} (INFRA, strict): {}", r.id, r.detail))
                .collect(),
            infra_only: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, category: CheckCategory, passed: bool) -> CheckResult {
        CheckResult {
            id: id.into(),
            category,
            passed,
            shadow: false,
            detail: if passed { "ok" } else { "bad" }.into(),
        }
    }
    use CheckCategory::{Infra, Real};

    /// Every case of contract 4: (results, tolerance, internal error) -> (VERDICT line, exit code).
    #[test]
    fn fold_table() {
        let shadow_fail = CheckResult {
            shadow: true,
            ..r("S1", Real, false)
        };
        type Case = (
            Vec<CheckResult>,
            bool,
            Option<&'static str>,
            &'static str,
            i32,
        );
        let cases: Vec<Case> = vec![
            (
                vec![r("A", Real, true), r("C9a", Infra, true)],
                true,
                None,
                "VERDICT: SUCCESS",
                0,
            ),
            (
                vec![r("A", Real, false), r("C9a", Infra, true)],
                true,
                None,
                "VERDICT: FAILED (A: bad)",
                1,
            ),
            (
                vec![r("A", Real, false)],
                false,
                None,
                "VERDICT: FAILED (A: bad)",
                1,
            ),
            (
                vec![r("A", Real, false), r("C9a", Infra, false)],
                true,
                None,
                "VERDICT: FAILED (A: bad; C9a: bad)",
                1,
            ),
            (
                vec![
                    r("A", Real, true),
                    r("C9a", Infra, false),
                    r("C9b", Infra, false),
                ],
                true,
                None,
                "VERDICT: SUCCESS (waived INFRA: C9a, C9b)",
                0,
            ),
            (
                vec![r("A", Real, true), r("C9a", Infra, false)],
                false,
                None,
                "VERDICT: FAILED (C9a (INFRA, strict): bad)",
                1,
            ),
            (
                vec![r("A", Real, true)],
                true,
                Some("boom"),
                "VERDICT: FAILED (internal error: boom)",
                1,
            ),
            (
                vec![],
                true,
                None,
                "VERDICT: FAILED (no staging checks are configured)",
                1,
            ),
            (
                vec![shadow_fail.clone()],
                true,
                None,
                "VERDICT: FAILED (no staging checks are configured)",
                1,
            ),
            (
                vec![shadow_fail, r("A", Real, true)],
                false,
                None,
                "VERDICT: SUCCESS",
                0,
            ),
        ];
        for (results, tolerance, internal, line, code) in cases {
            let v = fold(&results, tolerance, internal);
            assert_eq!(
                (v.verdict_line().as_str(), v.exit_code()),
                (line, code),
                "{results:?} tolerance={tolerance}"
            );
        }
    }

    #[test]
    fn waived_line_only_when_waiving() {
        let v = fold(&[r("A", Real, true), r("C9a", Infra, false)], true, None);
        assert_eq!(
            v.waived_line().as_deref(),
            Some("INFRA-WAIVED: C9a (sandbox infrastructure, not the change)")
        );
        assert_eq!(fold(&[r("A", Real, true)], true, None).waived_line(), None);
        let strict = fold(&[r("C9a", Infra, false)], false, None);
        assert_eq!(
            strict,
            StagingVerdict::Failed {
                reasons: vec!["C9a (INFRA, strict): bad".into()],
                infra_only: true
            }
        );
    }
}
