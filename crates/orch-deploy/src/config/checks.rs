//! Validation of `[staging]`: the checks, their categories and the INFRA allowlist.

use std::collections::BTreeSet;
use std::time::Duration;

use orch_core::staging::CheckCategory;

use super::raw::{RawCheck, RawStaging};
use super::{
    CHECK_PLACEHOLDERS, CheckSpec, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT,
    DEFAULT_CHECK_TRIES, JsonExpectation, Mode, Probe, ReportedCheck, StagingSpec,
    check_placeholders, check_url_path, config_err, positive_count, positive_ms,
};
use crate::error::DeployError;

pub(super) fn staging_from_raw(raw: RawStaging) -> Result<StagingSpec, DeployError> {
    let mut checks = Vec::with_capacity(raw.checks.len());
    let mut ids = BTreeSet::new();
    for (index, raw_check) in raw.checks.into_iter().enumerate() {
        let field = format!("staging.checks[{index}] (id `{}`)", raw_check.id);
        let check = check_from_raw(&field, raw_check, &raw.infra_allowlist)?;
        if !ids.insert(check.id.clone()) {
            return Err(config_err(
                field,
                "another check has the same id; ids must be unique",
            ));
        }
        for reported in &check.reports {
            if !ids.insert(reported.id.clone()) {
                return Err(config_err(
                    format!("{field}.reports"),
                    format!(
                        "the id `{}` is used twice (by a check or a suite's `reports`); ids must be unique",
                        reported.id
                    ),
                ));
            }
        }
        if check.category == CheckCategory::Infra && !raw.infra_allowlist.contains(&check.id) {
            return Err(config_err(
                field,
                "is category INFRA but its id is not on staging.infra_allowlist; add it there or make it REAL",
            ));
        }
        checks.push(check);
    }
    for (index, id) in raw.infra_allowlist.iter().enumerate() {
        if !ids.contains(id) {
            return Err(config_err(
                format!("staging.infra_allowlist[{index}]"),
                format!("`{id}` names no check; remove it or add the check"),
            ));
        }
    }
    Ok(StagingSpec {
        infra_allowlist: raw.infra_allowlist,
        checks,
    })
}

/// Refuses `kind = "exec"` checks: only the docker deployer has a container to run them in.
pub(super) fn refuse_exec_checks(staging: &StagingSpec, deployer: &str) -> Result<(), DeployError> {
    let exec = staging
        .checks
        .iter()
        .enumerate()
        .find(|(_, check)| matches!(check.probe, Probe::Exec { .. }));
    match exec {
        Some((index, check)) => Err(config_err(
            format!("staging.checks[{index}] (id `{}`)", check.id),
            format!(
                "kind \"exec\" runs in the docker deployer's staging container, but kind = \"{deployer}\"; use kind = \"command\""
            ),
        )),
        None => Ok(()),
    }
}

/// A check id: what a suite's `CHECK` line must spell exactly.
pub(crate) fn is_valid_check_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn check_from_raw(
    field: &str,
    raw: RawCheck,
    infra_allowlist: &[String],
) -> Result<CheckSpec, DeployError> {
    if !is_valid_check_id(&raw.id) {
        return Err(config_err(
            field,
            "id must be non-empty, at most 64 characters, and use only letters, digits, `-`, `_` and `.`",
        ));
    }
    let category = match raw.category.as_deref().unwrap_or("REAL") {
        "REAL" => CheckCategory::Real,
        "INFRA" => CheckCategory::Infra,
        other => {
            return Err(config_err(
                field,
                format!("unknown category `{other}`; known: REAL, INFRA"),
            ));
        }
    };
    let probe = probe_from_raw(field, &raw)?;
    let reports = reports_from_raw(field, &raw, &probe, category, infra_allowlist)?;
    let tries = positive_count(&format!("{field}.tries"), raw.tries, DEFAULT_CHECK_TRIES)?;
    let successes = positive_count(&format!("{field}.successes"), raw.successes, 1)?;
    if successes > tries {
        return Err(config_err(
            format!("{field}.successes"),
            format!(
                "needs {successes} consecutive successes but only {tries} tries are allowed; raise tries"
            ),
        ));
    }
    Ok(CheckSpec {
        id: raw.id,
        category,
        probe,
        tries,
        interval: raw
            .interval_ms
            .map_or(DEFAULT_CHECK_INTERVAL, Duration::from_millis),
        initial_delay: raw
            .initial_delay_ms
            .map_or(Duration::ZERO, Duration::from_millis),
        timeout: positive_ms(
            &format!("{field}.timeout_ms"),
            raw.timeout_ms,
            DEFAULT_CHECK_TIMEOUT,
        )?,
        successes,
        shadow: raw.shadow,
        modes: modes_from_raw(field, raw.modes)?,
        reports,
    })
}

/// `reports = ["C9a", ...]`: the check is a suite whose output carries one result per id. Its own
/// result (the output's integrity) is REAL, so it may not be INFRA, and `expect_exit` has no
/// meaning for it (its exit code is judged against what it reported; see `checks::suite`).
fn reports_from_raw(
    field: &str,
    raw: &RawCheck,
    probe: &Probe,
    category: CheckCategory,
    infra_allowlist: &[String],
) -> Result<Vec<ReportedCheck>, DeployError> {
    let Some(ids) = &raw.reports else {
        return Ok(Vec::new());
    };
    let reports_field = format!("{field}.reports");
    if matches!(probe, Probe::Http { .. }) {
        return Err(config_err(
            reports_field,
            "applies to command and exec checks only (a suite prints its results)",
        ));
    }
    if ids.is_empty() {
        return Err(config_err(
            reports_field,
            "is empty; list the ids the suite reports, or remove `reports`",
        ));
    }
    if category == CheckCategory::Infra {
        return Err(config_err(
            field,
            "a suite's own result (whether its output could be trusted) is REAL; remove `category` and put the ids to waive on staging.infra_allowlist",
        ));
    }
    if raw.successes.is_some_and(|n| n > 1) {
        return Err(config_err(
            format!("{field}.successes"),
            "does not apply to a suite (`reports`): it is tried again until one whole run passes",
        ));
    }
    if raw.expect_exit.is_some() {
        return Err(config_err(
            format!("{field}.expect_exit"),
            "does not apply to a suite (`reports`): it may exit 0, or 1 when it reported a FAIL",
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(index, id)| {
            if !is_valid_check_id(id) {
                return Err(config_err(
                    format!("{reports_field}[{index}]"),
                    "an id must be 1 to 64 letters, digits, `-`, `_` and `.`",
                ));
            }
            let category = if infra_allowlist.contains(id) {
                CheckCategory::Infra
            } else {
                CheckCategory::Real
            };
            Ok(ReportedCheck {
                id: id.clone(),
                category,
            })
        })
        .collect()
}

fn probe_from_raw(field: &str, raw: &RawCheck) -> Result<Probe, DeployError> {
    let http_fields = [
        ("path", raw.path.is_some()),
        ("expect_status", raw.expect_status.is_some()),
        ("body_contains", raw.body_contains.is_some()),
        ("json_field", raw.json_field.is_some()),
        ("json_equals", raw.json_equals.is_some()),
    ];
    let command_fields = [
        ("run", raw.run.is_some()),
        ("expect_exit", raw.expect_exit.is_some()),
    ];
    let exec_fields = [("exec", raw.exec.is_some())];
    let not_http: Vec<_> = command_fields.iter().chain(&exec_fields).copied().collect();
    let reject_foreign =
        |kind: &str, foreign: &[(&str, bool)]| match foreign.iter().find(|(_, set)| *set) {
            Some((name, _)) => Err(config_err(
                field,
                format!("`{name}` does not apply to a {kind} check"),
            )),
            None => Ok(()),
        };
    match raw.kind.as_str() {
        "http" => {
            reject_foreign("http", &not_http)?;
            let path = raw
                .path
                .clone()
                .ok_or_else(|| config_err(field, "an http check needs `path`, e.g. \"/\""))?;
            check_url_path(&format!("{field}.path"), &path)?;
            let json = match (&raw.json_field, &raw.json_equals) {
                (Some(field), Some(equals)) => Some(JsonExpectation {
                    field: field.clone(),
                    equals: equals.clone(),
                }),
                (None, None) => None,
                _ => {
                    return Err(config_err(
                        field,
                        "`json_field` and `json_equals` go together; give both or neither",
                    ));
                }
            };
            Ok(Probe::Http {
                path,
                expect_status: raw.expect_status.unwrap_or(200),
                body_contains: raw.body_contains.clone(),
                json,
            })
        }
        "command" => {
            reject_foreign("command", &http_fields)?;
            reject_foreign("command", &exec_fields)?;
            let run = raw
                .run
                .clone()
                .filter(|run| !run.trim().is_empty())
                .ok_or_else(|| {
                    config_err(
                        field,
                        "a command check needs `run`, the shell command to execute",
                    )
                })?;
            let dummy = [("base_url", "")];
            check_placeholders(&format!("{field}.run"), &run, &dummy, &CHECK_PLACEHOLDERS)?;
            Ok(Probe::Command {
                run,
                expect_exit: raw.expect_exit.unwrap_or(0),
            })
        }
        "exec" => {
            reject_foreign("exec", &http_fields)?;
            reject_foreign("exec", &[("run", raw.run.is_some())])?;
            let argv = raw.exec.clone().unwrap_or_default();
            if argv.first().is_none_or(|program| program.trim().is_empty()) {
                return Err(config_err(
                    field,
                    "an exec check needs `exec`, the argv to run in the staging container",
                ));
            }
            let dummy = [("base_url", "")];
            for (index, arg) in argv.iter().enumerate() {
                let arg_field = format!("{field}.exec[{index}]");
                check_placeholders(&arg_field, arg, &dummy, &CHECK_PLACEHOLDERS)?;
            }
            Ok(Probe::Exec {
                argv,
                expect_exit: raw.expect_exit.unwrap_or(0),
            })
        }
        other => Err(config_err(
            field,
            format!("unknown kind `{other}`; known: http, command, exec"),
        )),
    }
}

fn modes_from_raw(field: &str, raw: Option<Vec<String>>) -> Result<Vec<Mode>, DeployError> {
    let Some(names) = raw else {
        return Ok(Mode::ALL.to_vec());
    };
    if names.is_empty() {
        return Err(config_err(
            format!("{field}.modes"),
            "is empty, so the check would never run; remove it or list a mode",
        ));
    }
    names
        .iter()
        .map(|name| {
            Mode::parse(name).ok_or_else(|| {
                config_err(
                    format!("{field}.modes"),
                    format!("unknown mode `{name}`; known: stub, live"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod suite_tests;
