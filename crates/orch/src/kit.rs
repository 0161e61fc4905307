//! Files orch writes into repositories, embedded in the binary: the `.orch/` defaults that
//! `orch init` writes, the demo project that `orch demo` creates, and the skeleton that
//! `orch onboard` renders into a new project's repository.

use std::path::Path;

use anyhow::Context as _;

/// The six default role prompts, by role name.
pub const ROLES: [(&str, &str); 6] = [
    ("analyst", include_str!("../kit/roles/analyst.md")),
    ("architect", include_str!("../kit/roles/architect.md")),
    ("developer", include_str!("../kit/roles/developer.md")),
    ("reviewer", include_str!("../kit/roles/reviewer.md")),
    ("tester", include_str!("../kit/roles/tester.md")),
    ("deployer", include_str!("../kit/roles/deployer.md")),
];

/// The `.orch/` files of a project: pipeline, roles, and the given agents/deploy files.
pub fn orch_files(agents_toml: &str, deploy_toml: &str) -> Vec<(String, String)> {
    let mut files = vec![(
        ".orch/pipeline.toml".to_owned(),
        orch_core::pipeline::DEFAULT_PIPELINE_TOML.to_owned(),
    )];
    for (name, text) in ROLES {
        files.push((format!(".orch/agents/{name}.md"), text.to_owned()));
    }
    files.push((".orch/agents.toml".to_owned(), agents_toml.to_owned()));
    files.push((".orch/deploy.toml".to_owned(), deploy_toml.to_owned()));
    files
}

/// The scenario of `orch demo --items N`: each item adds its own route.
pub const DEMO_MANY_SCENARIO: &str = include_str!("../kit/demo/scenario-many.toml");

/// The demo repository: a tiny std-only Rust HTTP service and its `.orch/`.
pub fn demo_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = [
        ("Cargo.toml", include_str!("../kit/demo/Cargo.toml")),
        ("Cargo.lock", include_str!("../kit/demo/Cargo.lock")),
        (".gitignore", include_str!("../kit/demo/gitignore")),
        ("src/main.rs", include_str!("../kit/demo/src/main.rs")),
        ("README.md", include_str!("../kit/demo/README.md")),
        ("CHANGELOG.md", include_str!("../kit/demo/CHANGELOG.md")),
        (
            "docs/operations/INFRA.md",
            include_str!("../kit/demo/docs/operations/INFRA.md"),
        ),
        (
            ".orch/scenario.toml",
            include_str!("../kit/demo/scenario.toml"),
        ),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_owned(), t.to_owned()))
    .collect();
    files.extend(orch_files(
        include_str!("../kit/demo/agents.toml"),
        include_str!("../kit/demo/deploy.toml"),
    ));
    files
}

/// The skeleton of a repository that `orch onboard` renders, by path, with `{{PLACEHOLDER}}`s
/// (the dictionary is `cmd::onboard::template::PLACEHOLDERS`). Like every kit file, each is
/// written only where the repository has none.
pub const SKELETON: [(&str, &str); 7] = [
    ("AGENTS.md", include_str!("../kit/skeleton/AGENTS.md")),
    ("CLAUDE.md", include_str!("../kit/skeleton/CLAUDE.md")),
    (
        "CONTRIBUTING.md",
        include_str!("../kit/skeleton/CONTRIBUTING.md"),
    ),
    ("README.md", include_str!("../kit/skeleton/README.md")),
    (
        "docs/README.md",
        include_str!("../kit/skeleton/docs/README.md"),
    ),
    (
        "docs/operations/INFRA.md",
        include_str!("../kit/skeleton/docs/operations/INFRA.md"),
    ),
    (".env.example", include_str!("../kit/skeleton/env.example")),
];

/// An `agents.toml` for `orch init`: a command agent placeholder the user points at their agent.
pub const INIT_AGENTS_TOML: &str = "# Which agent does each role; see orch's docs for the kinds.\n\
# `command` runs any program with the prompt on stdin and ORCH_* variables naming the work.\n\n\
[default]\nkind = \"command\"\ncommand = [\"my-agent\"]\nstall_secs = 600\n";

/// A `deploy.toml` for `orch init`: edit the build and run commands for the project.
pub const INIT_DEPLOY_TOML: &str = include_str!("../kit/demo/deploy.toml");

/// Writes files under `root`; refuses to overwrite an existing file unless `force`.
/// Returns the paths written and the paths skipped.
pub fn write_files(
    root: &Path,
    files: &[(String, String)],
    force: bool,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    for (rel, text) in files {
        let path = root.join(rel);
        if path.exists() && !force {
            skipped.push(rel.clone());
            continue;
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(rel.clone());
    }
    Ok((written, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins what orch derives from each default role (the parsed model, tools and write
    /// allowlist), not a copy of the text: a change to the frontmatter that parses differently
    /// shows here, a reworded prompt does not.
    #[test]
    fn default_roles_parse_and_their_permissions_are_pinned() {
        for (name, text) in ROLES {
            let role = orch_core::role::Role::parse(
                &orch_core::RoleName::parse(name).expect("valid"),
                text,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            let writes: String = role.writes.iter().map(|w| format!("  {w}\n")).collect();
            let derived = format!(
                "model: {:?}\ntools: {:?}\nwrites:\n{writes}prompt: {} lines",
                role.model,
                role.tools,
                role.prompt.lines().count()
            );
            insta::assert_snapshot!(format!("role_{name}"), derived);
        }
    }

    #[test]
    fn deployer_may_write_only_its_two_logs() {
        let (_, text) = ROLES[5];
        let role = orch_core::role::Role::parse(
            &orch_core::RoleName::parse("deployer").expect("valid"),
            text,
        )
        .expect("valid");
        assert_eq!(
            role.writes,
            [
                "docs/work-items/*/14-deploy-log.md",
                "docs/work-items/*/15-staging-log.md"
            ]
        );
    }

    #[test]
    fn demo_kit_parses() {
        let files = demo_files();
        let get = |p: &str| {
            files
                .iter()
                .find(|(n, _)| n == p)
                .map(|(_, t)| t.clone())
                .expect(p)
        };
        orch_agent::scripted::Scenario::from_toml(&get(".orch/scenario.toml")).expect("scenario");
        orch_agent::AgentsConfig::from_toml(&get(".orch/agents.toml")).expect("agents");
        orch_deploy::DeploySpec::from_toml(&get(".orch/deploy.toml")).expect("deploy");
        orch_agent::AgentsConfig::from_toml(INIT_AGENTS_TOML).expect("init agents");
    }
}
