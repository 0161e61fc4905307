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

/// Every kit file of a project, rendered: the skeleton, then the `.orch/` files of `orch init`.
pub fn kit_files(params: &Params) -> Result<Vec<(String, String)>, String> {
    let mut files = Vec::new();
    for (rel, template) in kit::SKELETON {
        files.push((rel.to_owned(), render(rel, template, params)?));
    }
    files.extend(kit::orch_files(
        kit::INIT_AGENTS_TOML,
        kit::INIT_DEPLOY_TOML,
    ));
    Ok(files)
}

/// The paths of every kit file, without rendering.
pub fn kit_paths() -> Vec<String> {
    let mut paths: Vec<String> = kit::SKELETON.iter().map(|(p, _)| (*p).to_owned()).collect();
    paths.extend(
        kit::orch_files(kit::INIT_AGENTS_TOML, kit::INIT_DEPLOY_TOML)
            .into_iter()
            .map(|(p, _)| p),
    );
    paths
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
