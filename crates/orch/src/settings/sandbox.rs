//! `[projects.sandbox]` of orch.toml: where the code a project's agents write runs.
//!
//! It is read from orch.toml only (the operator's file), never from the repository, which agents
//! write. This module must never turn a setting it does not understand into a weaker sandbox.

use std::path::{Path, PathBuf};

use super::ProjectEntry;

/// The agent sandbox `entry` asks for. Folders it adds must be absolute and outside orch's data
/// directory (worktrees, logs, the database live there).
pub fn parse_sandbox(
    entry: &ProjectEntry,
    data_dir: &Path,
) -> Result<orch_process::Sandbox, String> {
    let name = &entry.name;
    let Some(table) = &entry.sandbox else {
        return Ok(orch_process::Sandbox::for_agents());
    };
    let docker = match table.runtime.as_deref() {
        None | Some("bubblewrap") => false,
        Some("docker") => true,
        Some(other) => {
            return Err(format!(
                "project `{name}`, field `sandbox.runtime`: `{other}` is not a sandbox runtime; use \"bubblewrap\" (the default) or \"docker\""
            ));
        }
    };
    match table.mode.as_deref() {
        Some("bubblewrap") if docker => {
            return Err(format!(
                "project `{name}`: `sandbox.mode = \"bubblewrap\"` and `sandbox.runtime = \"docker\"` contradict each other; drop `mode` to run agents in docker"
            ));
        }
        Some("none") if table.runtime.is_some() => {
            return Err(format!(
                "project `{name}`: `sandbox.mode = \"none\"` runs agents unconfined, so `sandbox.runtime` means nothing; drop one of them"
            ));
        }
        None | Some("bubblewrap") => {}
        Some("none") => return Ok(orch_process::Sandbox::OptedOut),
        Some(other) => {
            return Err(format!(
                "project `{name}`, field `sandbox.mode`: `{other}` is not a sandbox; use \"bubblewrap\" (the default) or \"none\""
            ));
        }
    }
    let mut read_only = Vec::new();
    for (index, dir) in table.read_only.iter().enumerate() {
        let path = PathBuf::from(dir);
        if !path.is_absolute() || data_dir.starts_with(&path) || path.starts_with(data_dir) {
            return Err(format!(
                "project `{name}`, field `sandbox.read_only[{index}]`: `{dir}` must be an absolute folder that neither holds nor is inside orch's data directory {}",
                data_dir.display()
            ));
        }
        read_only.push(path);
    }
    for (index, host) in table.allow_hosts.iter().enumerate() {
        let name = host.strip_prefix("*.").unwrap_or(host);
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !valid {
            return Err(format!(
                "project `{}`, field `sandbox.allow_hosts[{index}]`: `{host}` is not a host name; write `example.com` or `*.example.com`, without a scheme, port or path",
                entry.name
            ));
        }
    }
    let mut limits = orch_process::Limits::AGENT;
    for (field, value, slot) in [
        ("memory_mib", table.memory_mib, &mut limits.memory_mib),
        ("processes", table.processes, &mut limits.processes),
        ("file_mib", table.file_mib, &mut limits.file_mib),
    ] {
        if value == Some(0) {
            return Err(format!(
                "project `{name}`, field `sandbox.{field}`: must be at least 1"
            ));
        }
        if value.is_some() {
            *slot = value;
        }
    }
    let policy = orch_process::Policy {
        read_only,
        limits,
        allow_hosts: Some(table.allow_hosts.clone()),
        ..orch_process::Policy::default()
    };
    Ok(if docker {
        orch_process::Sandbox::Docker(policy)
    } else {
        orch_process::Sandbox::Bubblewrap(policy)
    })
}

#[cfg(test)]
mod tests {
    use orch_process::{Limits, Sandbox};

    use super::*;
    use crate::settings::SandboxEntry;

    fn entry(sandbox: Option<SandboxEntry>) -> ProjectEntry {
        let text = "name = \"web\"\nrepo = \"repo\"\nstaging_port = 1\nprod_port = 2\n";
        ProjectEntry {
            sandbox,
            ..toml::from_str(text).expect("entry")
        }
    }

    fn parse(sandbox: Option<SandboxEntry>) -> Result<Sandbox, String> {
        parse_sandbox(&entry(sandbox), Path::new("/data"))
    }

    #[test]
    fn bubblewrap_with_the_default_limits_unless_told_otherwise() {
        assert_eq!(parse(None), Ok(Sandbox::for_agents()));
        let table = |mode: &str| SandboxEntry {
            mode: Some(mode.to_owned()),
            ..SandboxEntry::default()
        };
        assert_eq!(parse(Some(table("bubblewrap"))), Ok(Sandbox::for_agents()));
        assert_eq!(parse(Some(table("none"))), Ok(Sandbox::OptedOut));
        let err = parse(Some(table("off"))).expect_err("refused");
        assert!(
            err.contains("`sandbox.mode`: `off` is not a sandbox"),
            "{err}"
        );
    }

    #[test]
    fn docker_is_chosen_by_runtime_and_contradictions_are_refused() {
        let runtime = |runtime: &str, mode: Option<&str>| SandboxEntry {
            runtime: Some(runtime.to_owned()),
            mode: mode.map(str::to_owned),
            ..SandboxEntry::default()
        };
        assert_eq!(
            parse(Some(runtime("docker", None))),
            Ok(Sandbox::docker_for_agents())
        );
        assert_eq!(
            parse(Some(runtime("bubblewrap", None))),
            Ok(Sandbox::for_agents())
        );
        // The policy's settings apply to docker too.
        let limited = parse(Some(SandboxEntry {
            memory_mib: Some(512),
            allow_hosts: vec!["crates.io".to_owned()],
            ..runtime("docker", None)
        }));
        let Ok(Sandbox::Docker(policy)) = limited else {
            panic!("{limited:?}")
        };
        assert_eq!(policy.limits.memory_mib, Some(512));
        assert_eq!(policy.allow_hosts, Some(vec!["crates.io".to_owned()]));
        let err = parse(Some(runtime("podman", None))).expect_err("refused");
        assert!(
            err.contains("`sandbox.runtime`: `podman` is not a sandbox runtime"),
            "{err}"
        );
        let err = parse(Some(runtime("docker", Some("bubblewrap")))).expect_err("refused");
        assert!(err.contains("contradict"), "{err}");
        let err = parse(Some(runtime("docker", Some("none")))).expect_err("refused");
        assert!(err.contains("unconfined"), "{err}");
        let text = "name = \"web\"\nrepo = \"repo\"\nstaging_port = 1\nprod_port = 2\n\
                    [sandbox]\nruntime = \"docker\"\n";
        let entry: ProjectEntry = toml::from_str(text).expect("table");
        assert_eq!(
            parse_sandbox(&entry, Path::new("/data")),
            Ok(Sandbox::docker_for_agents())
        );
    }

    #[test]
    fn limits_and_folders_are_taken_and_checked() {
        let sandbox = parse(Some(SandboxEntry {
            read_only: vec!["/opt/sdk".to_owned()],
            memory_mib: Some(512),
            ..SandboxEntry::default()
        }))
        .expect("valid");
        let Sandbox::Bubblewrap(policy) = sandbox else {
            panic!("{sandbox:?}")
        };
        assert_eq!(policy.read_only, [PathBuf::from("/opt/sdk")]);
        assert_eq!(
            policy.limits,
            Limits {
                memory_mib: Some(512),
                ..Limits::AGENT
            }
        );
        let hosts = parse(Some(SandboxEntry {
            allow_hosts: vec!["crates.io".to_owned(), "*.pypi.org".to_owned()],
            ..SandboxEntry::default()
        }));
        let Ok(Sandbox::Bubblewrap(policy)) = hosts else {
            panic!("{hosts:?}")
        };
        assert_eq!(
            policy.allow_hosts,
            Some(vec!["crates.io".to_owned(), "*.pypi.org".to_owned()])
        );
        for bad in ["https://crates.io", "crates.io:443", "", "*."] {
            let err = parse(Some(SandboxEntry {
                allow_hosts: vec![bad.to_owned()],
                ..SandboxEntry::default()
            }))
            .expect_err(bad);
            assert!(err.contains("sandbox.allow_hosts[0]"), "{err}");
        }
        for bad in ["relative/dir", "/data/worktrees", "/", "/data"] {
            let err = parse(Some(SandboxEntry {
                read_only: vec![bad.to_owned()],
                ..SandboxEntry::default()
            }))
            .expect_err(bad);
            assert!(err.contains("sandbox.read_only[0]"), "{err}");
        }
        let err = parse(Some(SandboxEntry {
            processes: Some(0),
            ..SandboxEntry::default()
        }))
        .expect_err("zero");
        assert!(
            err.contains("`sandbox.processes`: must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn orch_toml_spells_it_inline_or_as_a_table() {
        let text = "name = \"web\"\nrepo = \"repo\"\nstaging_port = 1\nprod_port = 2\n\
                    sandbox = { mode = \"none\" }\n";
        let entry: ProjectEntry = toml::from_str(text).expect("inline");
        assert_eq!(
            parse_sandbox(&entry, Path::new("/data")),
            Ok(Sandbox::OptedOut)
        );
        let typo = text.replace("mode", "mood");
        assert!(
            toml::from_str::<ProjectEntry>(&typo).is_err(),
            "unknown keys are refused"
        );
    }
}
