//! `reports = [...]`: how a suite is declared, and every mistake refused with its field.

use orch_core::staging::CheckCategory;

use crate::config::{DeployConfig, ReportedCheck};
use crate::error::DeployError;

const HOOK: &str = "kind = \"hook\"\n[hook]\ncommand = [\"./deploy.sh\"]\n";

fn parse(staging: &str) -> Result<DeployConfig, DeployError> {
    DeployConfig::from_toml(&format!("{HOOK}{staging}"))
}

fn field_of(staging: &str) -> String {
    match parse(staging) {
        Err(DeployError::Config { field, problem }) => format!("{field}: {problem}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

const SUITE: &str = "[[staging.checks]]\nid = \"suite\"\nkind = \"command\"\nrun = \"./staging_check.sh {base_url}\"\n";

#[test]
fn a_suite_lists_its_ids_classified_by_the_allowlist() {
    let text = format!(
        "[staging]\ninfra_allowlist = [\"C9a\", \"C9b\"]\n{SUITE}reports = [\"A1\", \"B6\", \"C9a\", \"C9b\"]\ntries = 1\n"
    );
    let config = parse(&text).expect("a valid suite");
    let check = &config.staging().checks[0];
    assert_eq!(check.category, CheckCategory::Real);
    let reports: Vec<(&str, CheckCategory)> = check
        .reports
        .iter()
        .map(|ReportedCheck { id, category }| (id.as_str(), *category))
        .collect();
    use CheckCategory::{Infra, Real};
    assert_eq!(
        reports,
        [("A1", Real), ("B6", Real), ("C9a", Infra), ("C9b", Infra)]
    );
}

#[test]
fn mistakes_in_a_suite_name_their_field() {
    let cases = [
        (
            format!("{SUITE}reports = []\n"),
            "staging.checks[0] (id `suite`).reports: is empty",
        ),
        (
            format!("{SUITE}reports = [\"A 1\"]\n"),
            "staging.checks[0] (id `suite`).reports[0]: an id must be",
        ),
        (
            format!("{SUITE}reports = [\"A1\", \"A1\"]\n"),
            "the id `A1` is used twice",
        ),
        (
            format!("{SUITE}reports = [\"suite\"]\n"),
            "reports: the id `suite` is used twice",
        ),
        (
            format!(
                "{SUITE}reports = [\"A1\"]\n[[staging.checks]]\nid = \"A1\"\nkind = \"command\"\nrun = \"true\"\n"
            ),
            "staging.checks[1] (id `A1`): another check has the same id",
        ),
        (
            format!("{SUITE}reports = [\"A1\"]\nexpect_exit = 0\n"),
            "expect_exit: does not apply to a suite",
        ),
        (
            format!("{SUITE}reports = [\"A1\"]\nsuccesses = 2\ntries = 3\n"),
            "successes: does not apply to a suite",
        ),
        (
            format!(
                "[staging]\ninfra_allowlist = [\"suite\"]\n{SUITE}category = \"INFRA\"\nreports = [\"A1\"]\n"
            ),
            "a suite's own result",
        ),
        (
            "[[staging.checks]]\nid = \"web\"\nkind = \"http\"\npath = \"/\"\nreports = [\"A1\"]\n"
                .to_owned(),
            "reports: applies to command and exec checks only",
        ),
        (
            format!("[staging]\ninfra_allowlist = [\"C9z\"]\n{SUITE}reports = [\"A1\"]\n"),
            "`C9z` names no check",
        ),
    ];
    for (text, expected) in cases {
        let error = field_of(&text);
        assert!(error.contains(expected), "{text}\n=> {error}");
    }
}
