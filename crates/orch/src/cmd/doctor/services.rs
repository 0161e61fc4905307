//! The services of `orch doctor`: the store, each project's deployer (the docker daemon) and
//! ports, its tracker and forge (through the same ports and adapters `orch serve` uses, GET
//! requests only), and the webhook secrets `orch serve` verifies deliveries with.
//!
//! Nothing here writes: the store is probed without migrating, a survey only reads, a port is
//! bound and released. No token or secret value ever reaches a finding.

use orch_deploy::{Env, PortHolder};
use orch_engine::Project;
use orch_integrations::{IntegrationError, SetupSpec, SetupStatus, SetupStep};
use tokio_util::sync::CancellationToken;

use super::findings::Finding;
use crate::env;
use crate::settings::ProjectEntry;

/// The store answers and holds the schema this orch migrates to.
pub async fn store(url: &str) -> Finding {
    let shown = orch_store::masked_url(url);
    match orch_store::probe_store(url).await {
        Err(e) => Finding::fail(
            "store",
            shown,
            format!("unreachable: {e}"),
            "start the database or fix `[store] url` in orch.toml (or ORCH_STORE_URL)",
        ),
        Ok(state) if !state.created => Finding::ok(
            "store",
            shown,
            "not created yet: orch creates and migrates it when it first starts",
        ),
        Ok(state) if state.version == state.latest => Finding::ok(
            "store",
            shown,
            format!("reachable, schema version {} (current)", state.version),
        ),
        Ok(state) if state.version < state.latest => Finding::warn(
            "store",
            shown,
            format!(
                "reachable, schema version {} of {}: not migrated yet",
                state.version, state.latest
            ),
            "any orch command that opens the store migrates it (`orch status`); back it up first",
        ),
        Ok(state) => Finding::fail(
            "store",
            shown,
            format!(
                "its schema version {} is newer than {}, the newest this orch knows",
                state.version, state.latest
            ),
            "upgrade orch to the release that wrote this database",
        ),
    }
}

/// The project's deployer can work here (docker: the daemon answers).
pub async fn deployer(project: &Project, cancel: &CancellationToken) -> Option<Finding> {
    let deployer = project.deployer.as_ref()?;
    let subject = format!("project {}", project.id());
    match deployer.preflight(cancel).await {
        Ok(None) => None,
        Ok(Some(found)) => Some(Finding::ok("docker", subject, found)),
        Err(e) => Some(Finding::fail(
            "docker",
            subject,
            e.to_string(),
            "start the docker daemon (`bash .ci/install-docker.sh` on a test machine), or fix \
             `[docker] host`/`binary` in .orch/deploy.toml",
        )),
    }
}

/// The project's staging and prod ports are free or held by its own instances.
pub async fn ports(project: &Project, cancel: &CancellationToken) -> Vec<Finding> {
    let settings = &project.settings;
    let mut out = Vec::new();
    for (env, port) in [
        (Env::Staging, settings.staging_port),
        (Env::Prod, settings.prod_port),
    ] {
        let subject = format!("project {}: {} port {port}", project.id(), env.as_str());
        let field = format!("{}_port", env.as_str());
        let holder = if orch_deploy::port_is_free(port) {
            PortHolder::Free
        } else {
            match &project.deployer {
                Some(deployer) => deployer.port_holder(env, cancel).await,
                None => PortHolder::Unknown,
            }
        };
        out.push(match holder {
            PortHolder::Free => Finding::ok("port", subject, "free"),
            PortHolder::Orch(what) => Finding::ok(
                "port",
                subject,
                format!("held by this project's {} instance ({what})", env.as_str()),
            ),
            PortHolder::Other => Finding::fail(
                "port",
                subject,
                "in use by another program: the next deploy there fails",
                format!(
                    "stop what listens there (`ss -ltnp 'sport = :{port}'`) or change `{field}` in orch.toml"
                ),
            ),
            PortHolder::Unknown => Finding::warn(
                "port",
                subject,
                "in use, and orch cannot tell whether by this project's own instance",
                format!(
                    "if it is not this project's service, stop it (`ss -ltnp 'sport = :{port}'`) or change `{field}`"
                ),
            ),
        });
    }
    out
}

/// The project's tracker and forge answer with the configured token (a survey: GET only).
pub async fn remotes(project: &Project, entry: &ProjectEntry) -> Vec<Finding> {
    let id = project.id();
    let mut out = Vec::new();
    let spec = SetupSpec::default();
    if let (Some(link), Some(table)) = (&project.settings.remotes.tracker, &entry.tracker) {
        let subject = format!("project {id}: {} {}", link.tracker.kind(), table.base_url);
        let survey = link.tracker.survey_setup(&spec).await;
        out.push(survey_finding(
            "tracker",
            subject,
            survey,
            &table.token_env,
            entry,
        ));
        out.push(webhook_secret(id.as_str(), link.tracker.kind()));
    }
    if let (Some(link), Some(table)) = (&project.settings.remotes.forge, &entry.forge) {
        let subject = format!("project {id}: {} {}", link.forge.kind(), table.base_url);
        let survey = link.forge.survey_repository(&spec).await;
        out.push(survey_finding(
            "forge",
            subject,
            survey,
            &table.token_env,
            entry,
        ));
    }
    out
}

fn survey_finding(
    check: &'static str,
    subject: String,
    survey: Result<Vec<SetupStep>, IntegrationError>,
    token_env: &str,
    entry: &ProjectEntry,
) -> Finding {
    let onboard = format!(
        "`orch onboard apply --name {} --repo {}` with the tracker and forge flags (docs/onboarding.md)",
        entry.name, entry.repo
    );
    match survey {
        Ok(steps) => {
            // What a person must resolve (a token that cannot push) fails; a manual step warns.
            for step in &steps {
                match &step.status {
                    SetupStatus::Refused(why) => {
                        return Finding::fail(
                            check,
                            subject,
                            why.clone(),
                            format!(
                                "give the token in {token_env} what it lacks, or set a token that has it"
                            ),
                        );
                    }
                    SetupStatus::Manual(what) => {
                        return Finding::warn(
                            check,
                            subject,
                            format!("{}: {what}", step.what),
                            "do it by hand (docs/onboarding.md)",
                        );
                    }
                    _ => {}
                }
            }
            let missing: Vec<&str> = steps
                .iter()
                .filter(|s| s.is_missing())
                .map(|s| s.what.as_str())
                .collect();
            match missing.as_slice() {
                [] => Finding::ok(
                    check,
                    subject,
                    "reachable; the token is accepted and everything orch needs is there",
                ),
                [first, ..] => Finding::warn(
                    check,
                    subject,
                    format!(
                        "reachable, but {} thing(s) orch needs are missing (first: {first})",
                        missing.len()
                    ),
                    format!("create them with {onboard}"),
                ),
            }
        }
        Err(IntegrationError::Unauthorized { scope, detail, .. }) => Finding::fail(
            check,
            subject,
            match &scope {
                Some(scope) => {
                    format!("the token in {token_env} lacks the scope `{scope}`: {detail}")
                }
                None => format!("the token in {token_env} is refused: {detail}"),
            },
            match scope {
                Some(scope) => format!(
                    "give the token in {token_env} the `{scope}` scope, or set a token that has it"
                ),
                None => format!(
                    "set {token_env} to a valid token with read and write access to the repository or project"
                ),
            },
        ),
        Err(e @ IntegrationError::Unreachable { .. }) => Finding::fail(
            check,
            subject,
            e.to_string(),
            "check `base_url` in orch.toml and that the service is up and reachable from here",
        ),
        Err(e @ IntegrationError::NotFound { .. }) => Finding::fail(
            check,
            subject,
            e.to_string(),
            format!("check the owner, repo or project in orch.toml, or create it with {onboard}"),
        ),
        Err(e) => Finding::fail(
            check,
            subject,
            e.to_string(),
            "check the table in orch.toml and the service's health",
        ),
    }
}

/// The secret `orch serve` verifies this tracker kind's webhook deliveries with is set.
pub fn webhook_secret(project: &str, kind: &str) -> Finding {
    let variable = match kind {
        "plane" => env::PLANE_WEBHOOK_SECRET,
        "github" => env::GITHUB_WEBHOOK_SECRET,
        _ => env::GITEA_WEBHOOK_SECRET,
    };
    let subject = format!("project {project}: /hooks/{kind}");
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => {
            Finding::ok("webhook", subject, format!("{variable} is set"))
        }
        _ => Finding::fail(
            "webhook",
            subject,
            format!("{variable} is not set: `orch serve` refuses every {kind} delivery"),
            format!(
                "set {variable} in orch's environment to the secret of the tracker's webhook (the one `orch onboard apply --webhook-url` configured)"
            ),
        ),
    }
}
