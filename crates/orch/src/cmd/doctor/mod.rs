//! `orch doctor`: checks what the configuration needs on this machine and says how to fix each
//! miss: git, the agent sandbox, each configured agent CLI and its version, the store, each
//! project's `.orch/`, deployer (the docker daemon), ports, tracker, forge and webhook secrets.
//!
//! It must never change anything: no store is created or migrated, no port kept, no request
//! sent to a tracker or forge but GETs, and no secret printed. `orch demo` runs the part it
//! needs ([`demo_preflight`]) before it creates anything.

mod agents;
mod findings;
mod host;
mod services;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use orch_engine::Project;
use tokio_util::sync::CancellationToken;

pub use findings::{Finding, Report, Status, render};

use crate::cli::DoctorArgs;
use crate::settings::{self, ConfigFile, ProjectEntry, Settings};

pub async fn run(config: &Path, args: DoctorArgs) -> anyhow::Result<i32> {
    let report = Report::new(config.display().to_string(), examine(config).await);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("orch doctor: {}\n", report.config);
        print!("{}", render(&report.checks));
        let c = report.counts;
        println!(
            "\n{} ok, {} warning(s), {} failed{}",
            c.ok,
            c.warn,
            c.fail,
            if report.ok {
                ""
            } else {
                ": fix what failed, then run `orch doctor` again"
            }
        );
    }
    Ok(report.exit_code())
}

/// What `orch demo` needs before it creates anything: git, the sandbox its command gates run
/// in, and its loopback ports free. `ports` holds (what, port, the flag that changes it).
pub async fn demo_preflight(ports: &[(&str, u16, &str)]) -> Vec<Finding> {
    let mut out = vec![host::git().await];
    out.extend(host::sandbox("the demo's command gates"));
    for (what, port, flag) in ports {
        out.push(host::free_port(what, *port, flag));
    }
    out
}

/// Every check, in a stable order.
async fn examine(config: &Path) -> Vec<Finding> {
    let mut out = vec![host::git().await];
    let file = match ConfigFile::read(config) {
        Ok(file) => file,
        Err(e) => {
            out.push(if config.exists() {
                Finding::fail(
                    "config",
                    config.display().to_string(),
                    e.0,
                    "correct the file: the message names the key and what it accepts",
                )
            } else {
                Finding::warn(
                    "config",
                    config.display().to_string(),
                    "no configuration file here, so only the machine was checked",
                    "run `orch demo` to create one, or pass --config FILE (env ORCH_CONFIG)",
                )
            });
            out.extend(host::sandbox("every project by default"));
            return out;
        }
    };
    let loaded = match load_projects(config, &file, &mut out) {
        Ok(loaded) => loaded,
        Err(finding) => {
            out.push(finding);
            return out;
        }
    };
    if let Ok(data_dir) = settings::data_dir(config) {
        out.push(services::store(&file.store_url(&data_dir)).await);
    }
    out.extend(sandbox(&loaded));
    out.extend(agent_clis(&loaded).await);
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();
    for (project, entry) in loaded {
        let cancel = cancel.clone();
        tasks.push(tokio::spawn(async move {
            let mut found: Vec<Finding> = services::deployer(&project, &cancel)
                .await
                .into_iter()
                .collect();
            found.extend(services::ports(&project, &cancel).await);
            found.extend(services::remotes(&project, &entry).await);
            found
        }));
    }
    for task in tasks {
        match task.await {
            Ok(found) => out.extend(found),
            Err(e) => out.push(Finding::fail(
                "doctor",
                "",
                format!("a check stopped unexpectedly: {e}"),
                "report this as a bug in orch",
            )),
        }
    }
    out
}

/// Each registry entry parsed and its `.orch/` loaded as `orch serve` would, each failure a
/// finding; then the settings as a whole (limits, `ORCH_*` variables) when every entry loaded.
/// `Err` when the registry itself cannot be read.
fn load_projects(
    config: &Path,
    file: &ConfigFile,
    out: &mut Vec<Finding>,
) -> Result<Vec<(Arc<Project>, ProjectEntry)>, Finding> {
    let refused = |cause: String| {
        Finding::fail(
            "config",
            config.display().to_string(),
            cause,
            "correct the configuration: the message names the key and what it accepts",
        )
    };
    let data_dir = settings::data_dir(config).map_err(|e| refused(format!("{e:#}")))?;
    let (entries, source) = file.registry(config).map_err(|e| refused(e.0))?;
    let mut loaded = Vec::new();
    for entry in entries {
        let subject = format!("project {}", entry.name);
        let project = settings::parse_project(&entry, &data_dir)
            .and_then(|p| Ok((p, settings::parse_sandbox(&entry, &data_dir)?)))
            .map_err(|e| (e, format!("correct the entry in {source}")))
            .and_then(|(p, sandbox)| {
                Project::load(p)
                    .and_then(|project| project.with_sandbox(sandbox))
                    .map_err(|e| {
                        (
                            e.to_string(),
                            format!(
                                "`orch onboard verify --name {} --repo {}` lists every gap",
                                entry.name, entry.repo
                            ),
                        )
                    })
            });
        match project {
            Ok(project) => {
                out.push(Finding::ok(
                    "config",
                    subject,
                    "its orch.toml entry and .orch/ load",
                ));
                loaded.push((Arc::new(project), entry));
            }
            Err((cause, fix)) => out.push(Finding::fail("config", subject, cause, fix)),
        }
    }
    if out.iter().all(|f| f.status != Status::Fail)
        && let Err(e) = Settings::load(config)
    {
        out.push(refused(format!("{e:#}")));
    }
    Ok(loaded)
}

/// The sandbox's prerequisites, when any project (or, with none, the default) confines its
/// agents: bubblewrap's for the projects that run it, docker's for those that chose
/// `runtime = "docker"`.
fn sandbox(loaded: &[(Arc<Project>, ProjectEntry)]) -> Vec<Finding> {
    let on = |runtime: fn(&orch_process::Sandbox) -> bool| -> Vec<String> {
        loaded
            .iter()
            .filter(|(p, _)| runtime(&p.sandbox))
            .map(|(p, _)| p.id().to_string())
            .collect()
    };
    let bubblewrap = on(|s| matches!(s, orch_process::Sandbox::Bubblewrap(_)));
    let docker = on(|s| matches!(s, orch_process::Sandbox::Docker(_)));
    if loaded.is_empty() {
        return host::sandbox("every project by default");
    }
    if bubblewrap.is_empty() && docker.is_empty() {
        return vec![Finding::warn(
            "sandbox",
            "",
            "every project opted out (`sandbox = { mode = \"none\" }`): agents run unconfined, as orch's user",
            "install bubblewrap and remove the opt-out (docs/security.md)",
        )];
    }
    let mut out = Vec::new();
    if !bubblewrap.is_empty() {
        out.extend(host::sandbox(&format!(
            "project(s) {}",
            bubblewrap.join(", ")
        )));
    }
    if !docker.is_empty() {
        out.extend(host::docker_sandbox(&format!(
            "project(s) {}",
            docker.join(", ")
        )));
    }
    out
}

/// Each model CLI the projects' agents run, once, with the projects that run it.
async fn agent_clis(loaded: &[(Arc<Project>, ProjectEntry)]) -> Vec<Finding> {
    let mut clis: BTreeMap<(String, &'static str), (orch_agent::AgentKind, Vec<String>)> =
        BTreeMap::new();
    for (project, _) in loaded {
        for (kind, program) in &project.agent_clis {
            clis.entry((program.clone(), kind.name()))
                .or_insert_with(|| (*kind, Vec::new()))
                .1
                .push(project.id().to_string());
        }
    }
    let tasks: Vec<_> = clis
        .into_iter()
        .map(|((program, _), (kind, projects))| {
            tokio::spawn(async move {
                let who = format!("project(s) {}", projects.join(", "));
                agents::cli(kind, &program, &who).await
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap_or_else(|e| {
            Finding::fail(
                "agent",
                "",
                format!("the check stopped unexpectedly: {e}"),
                "report this as a bug in orch",
            )
        }));
    }
    out
}
