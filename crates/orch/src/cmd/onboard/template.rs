//! Rendering the skeleton kit: `{{KEY}}` placeholders replaced from one dictionary.
//!
//! The dictionary and the templates must match one to one (a unit test holds it), and a render
//! never leaves a `{{...}}` behind: an unknown placeholder is an error naming file and key.

use crate::kit;

/// Every placeholder the skeleton may use, with what it stands for. The only dictionary.
pub const PLACEHOLDERS: [(&str, &str); 5] = [
    (
        "PROJECT_NAME",
        "the project's name in orch.toml, such as `billing`",
    ),
    (
        "ITEM_PREFIX",
        "the prefix of the project's item ids, such as `BILLING`",
    ),
    ("STAGING_PORT", "the port of the staging instance"),
    ("PROD_PORT", "the port of the production instance"),
    (
        "DEFAULT_BRANCH",
        "the branch orch merges finished items into",
    ),
];

/// The values of the dictionary for one project.
#[derive(Debug, Clone)]
pub struct Params {
    pub project_name: String,
    pub item_prefix: String,
    pub staging_port: u16,
    pub prod_port: u16,
    pub default_branch: String,
}

impl Params {
    /// The value of a dictionary key; `None` for a key the dictionary does not hold.
    fn value(&self, key: &str) -> Option<String> {
        if !PLACEHOLDERS.iter().any(|(k, _)| *k == key) {
            return None;
        }
        match key {
            "PROJECT_NAME" => Some(self.project_name.clone()),
            "ITEM_PREFIX" => Some(self.item_prefix.clone()),
            "STAGING_PORT" => Some(self.staging_port.to_string()),
            "PROD_PORT" => Some(self.prod_port.to_string()),
            "DEFAULT_BRANCH" => Some(self.default_branch.clone()),
            _ => None,
        }
    }
}

/// The `{{KEY}}` placeholders in `text`, in order of appearance (repeats included). A key is
/// uppercase letters, digits and `_`; other `{{...}}` text (such as a template language's) is
/// not a placeholder of ours.
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = &after[..end];
                let is_key = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if is_key {
                    found.push(key);
                    rest = &after[end + 2..];
                } else {
                    rest = after;
                }
            }
            None => break,
        }
    }
    found
}

/// Renders one template; `file` names it in the error.
pub fn render(file: &str, template: &str, params: &Params) -> Result<String, String> {
    let mut out = template.to_owned();
    for key in placeholders(template) {
        let value = params.value(key).ok_or_else(|| {
            format!("{file}: placeholder {{{{{key}}}}} is not in the dictionary of `orch onboard`")
        })?;
        out = out.replace(&format!("{{{{{key}}}}}"), &value);
    }
    if let Some(left) = placeholders(&out).first() {
        return Err(format!(
            "{file}: placeholder {{{{{left}}}}} is still unresolved after rendering"
        ));
    }
    Ok(out)
}

/// The standards document of the kit: written at render time from orch's own definitions
/// (the default pipeline, the role prompts' write allowlists, the canonical tracker states), so
/// it is never a second copy that could drift from what orch enforces.
pub const STANDARDS: &str = "docs/_standards/pipeline.md";

/// Every kit file of a project, rendered: the skeleton, the standards, then the `.orch/` files
/// of `orch init`.
pub fn kit_files(params: &Params) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for (rel, template) in kit::SKELETON {
        files.push((rel.to_owned(), render(rel, template, params)?));
    }
    files.push((STANDARDS.to_owned(), standards(params)?));
    files.extend(kit::orch_files(
        kit::INIT_AGENTS_TOML,
        kit::INIT_DEPLOY_TOML,
    ));
    Ok(files)
}

/// The paths of every kit file, without rendering.
pub fn kit_paths() -> Vec<String> {
    let mut paths: Vec<String> = kit::SKELETON.iter().map(|(p, _)| (*p).to_owned()).collect();
    paths.push(STANDARDS.to_owned());
    paths.extend(
        kit::orch_files(kit::INIT_AGENTS_TOML, kit::INIT_DEPLOY_TOML)
            .into_iter()
            .map(|(p, _)| p),
    );
    paths
}

/// [`STANDARDS`], generated from the pipeline and roles the kit's `.orch/` holds.
fn standards(params: &Params) -> Result<String, String> {
    use orch_core::pipeline::{Pipeline, StageKind, Target};
    use std::fmt::Write as _;

    let pipeline = Pipeline::from_toml(orch_core::pipeline::DEFAULT_PIPELINE_TOML)
        .map_err(|e| format!("orch's default pipeline: {e}"))?;
    let mut out = format!(
        "# How {} moves through orch\n\n\
         Generated by `orch onboard` from orch's own pipeline and role definitions (the ones in\n\
         `.orch/`). orch enforces these rules; edit `.orch/` to change them, not this page.\n\n\
         Each work item `{}-<n>` has a directory `docs/work-items/{}-<n>/`. Every agent stage\n\
         writes one artifact there that starts with YAML frontmatter; orch reads only the\n\
         verdict field of that frontmatter, never the prose. A missing file, missing field or a\n\
         value outside the lists below is a failure.\n\n\
         | stage | done by | artifact | verdict field | passes | fails | needs info | gates | next | on failure |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
        params.project_name, params.item_prefix, params.item_prefix
    );
    let cell = |v: &[String]| {
        if v.is_empty() {
            "-".to_owned()
        } else {
            v.join(", ")
        }
    };
    for stage in pipeline.stages() {
        let by = match &stage.kind {
            StageKind::Agent { role } => format!("agent, role `{role}`"),
            StageKind::Action { .. } => "orch (deploy)".to_owned(),
            StageKind::Approval => "a person (approval)".to_owned(),
        };
        let (field, pass, fail, info) = match &stage.verdict {
            Some(v) => (
                format!("`{}`", v.field),
                cell(&v.pass),
                cell(&v.fail),
                cell(&v.needs_info),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let gates: Vec<&str> = stage.gates.iter().map(|g| g.kind().name()).collect();
        let next = match &stage.on_pass {
            Target::Stage(t) => t.to_string(),
            Target::Done => "done (merged)".to_owned(),
        };
        let on_fail = match &stage.on_fail {
            Some(e) => format!("back to {} (at most {} times)", e.to, e.budget),
            None => "-".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {by} | {} | {field} | {pass} | {fail} | {info} | {} | {next} | {on_fail} |",
            stage.name,
            stage.artifact.as_deref().unwrap_or("-"),
            if gates.is_empty() {
                "-".to_owned()
            } else {
                gates.join(", ")
            },
        );
    }
    out.push_str("\n## What each role may write\n\nA run that writes outside its role's list fails its stage and nothing of it is committed.\n\n");
    for (name, text) in kit::ROLES {
        let role_name =
            orch_core::RoleName::parse(name).map_err(|e| format!("role {name}: {e}"))?;
        let role = orch_core::role::Role::parse(&role_name, text)
            .map_err(|e| format!("role {name}: {e}"))?;
        let writes: Vec<String> = role.writes.iter().map(|w| format!("`{w}`")).collect();
        let _ = writeln!(out, "- `{name}`: {}", writes.join(", "));
    }
    out.push_str("\n## Tracker states\n\nThe states a tracker shows an item in (Done, Cancelled and STOP are terminal):\n\n| state | group |\n|---|---|\n");
    for state in orch_core::states::CANONICAL_STATES {
        let _ = writeln!(out, "| {} | {} |", state.name, state.group.as_str());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            project_name: "billing".into(),
            item_prefix: "BILLING".into(),
            staging_port: 8601,
            prod_port: 8600,
            default_branch: "main".into(),
        }
    }

    #[test]
    fn dictionary_and_templates_match_one_to_one() {
        let used: std::collections::BTreeSet<&str> = kit::SKELETON
            .iter()
            .flat_map(|(_, t)| placeholders(t))
            .collect();
        let defined: std::collections::BTreeSet<&str> =
            PLACEHOLDERS.iter().map(|(k, _)| *k).collect();
        let unused: Vec<_> = defined.difference(&used).collect();
        let undefined: Vec<_> = used.difference(&defined).collect();
        assert!(unused.is_empty(), "keys no template uses: {unused:?}");
        assert!(
            undefined.is_empty(),
            "placeholders without a key: {undefined:?}"
        );
        for (key, _) in PLACEHOLDERS {
            assert!(params().value(key).is_some(), "{key} has no value");
        }
    }

    #[test]
    fn the_whole_kit_renders_without_leftovers() {
        let files = kit_files(&params()).expect("renders");
        assert_eq!(files.len(), kit_paths().len());
        for (rel, text) in &files {
            assert!(placeholders(text).is_empty(), "{rel} keeps a placeholder");
        }
        let infra = files
            .iter()
            .find(|(p, _)| p == "docs/operations/INFRA.md")
            .expect("INFRA.md is part of the kit");
        assert!(infra.1.contains("8600") && infra.1.contains("8601"));
    }

    #[test]
    fn the_standards_follow_orchs_own_definitions() {
        let text = standards(&params()).expect("renders");
        let pipeline =
            orch_core::pipeline::Pipeline::from_toml(orch_core::pipeline::DEFAULT_PIPELINE_TOML)
                .expect("default pipeline");
        for stage in pipeline.stages() {
            assert!(
                text.contains(&format!("| {} |", stage.name)),
                "{}",
                stage.name
            );
            if let Some(v) = &stage.verdict {
                assert!(text.contains(&format!("`{}`", v.field)), "{}", v.field);
            }
        }
        assert!(
            text.contains("docs/work-items/*/14-deploy-log.md"),
            "{text}"
        );
        assert!(text.contains("| STOP | cancelled |"), "{text}");
        assert!(placeholders(&text).is_empty());
    }

    #[test]
    fn an_unknown_placeholder_is_an_error_naming_file_and_key() {
        let err = render("docs/x.md", "hi {{NOPE}}", &params()).expect_err("refused");
        assert!(
            err.contains("docs/x.md") && err.contains("{{NOPE}}"),
            "{err}"
        );
    }

    #[test]
    fn only_uppercase_keys_are_placeholders() {
        assert_eq!(
            placeholders("{{A_1}} {{ lower }} {{}} {x} {{B}}"),
            ["A_1", "B"]
        );
    }
}
