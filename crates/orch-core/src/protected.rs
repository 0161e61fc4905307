//! Protected paths: the files that steer orch and the forge rather than the product (the
//! pipeline and agent programs under `.orch/`, git's own files, CI definitions).
//!
//! They lie outside every role's write allowlist by default, even `**`: a role may write one only
//! through a pattern that **names** it, that is, one of whose segments is literally the
//! protected name (`.orch/**`, `.github/workflows/*.yml`, `**/.gitignore`). A change to one is
//! shown to the approver as "this change modifies the pipeline". This module must never let a
//! wildcard alone reach a protected path.

use crate::glob;

/// Top-level directories that hold orch's or a CI system's configuration.
const PROTECTED_DIRS: &[&str] = &[
    ".orch",
    ".ci",
    ".github",
    ".gitea",
    ".forgejo",
    ".gitlab",
    ".circleci",
    ".buildkite",
    ".woodpecker",
    ".husky",
];

/// Top-level files that define a CI pipeline.
const PROTECTED_FILES: &[&str] = &[
    ".gitlab-ci.yml",
    ".travis.yml",
    ".drone.yml",
    ".woodpecker.yml",
    "Jenkinsfile",
    "azure-pipelines.yml",
    "bitbucket-pipelines.yml",
];

/// The segment that makes `path` protected, or `None` for an ordinary path: a protected
/// top-level directory or file, or any segment starting with `.git` at any depth (`.gitignore`,
/// `.gitattributes` and `.gitmodules` change what git records, wherever they lie).
pub fn protected_segment(path: &str) -> Option<&str> {
    let mut segments = path.split('/');
    let first = segments.next()?;
    let is_dir = segments.clone().next().is_some();
    if (is_dir && PROTECTED_DIRS.contains(&first)) || (!is_dir && PROTECTED_FILES.contains(&first))
    {
        return Some(first);
    }
    path.split('/').find(|s| s.starts_with(".git"))
}

/// Whether `allow` lets a role write `path`: some pattern matches it and, when the path is
/// protected, that pattern names the protected segment literally.
pub fn allows<S: AsRef<str>>(allow: &[S], path: &str) -> bool {
    let named = protected_segment(path);
    allow.iter().map(AsRef::as_ref).any(|pattern| {
        glob::matches(pattern, path)
            && named.is_none_or(|segment| pattern.split('/').any(|p| p == segment))
    })
}

/// The protected paths among `paths`: a change to any of them modifies the pipeline.
pub fn pipeline_changes<S: AsRef<str>>(paths: &[S]) -> Vec<&str> {
    paths
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| protected_segment(p).is_some())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_paths_need_a_pattern_that_names_them() {
        let star = ["**"];
        let cases: &[(&[&str], &str, bool)] = &[
            (&star, "src/main.rs", true),
            (&star, ".orch/pipeline.toml", false),
            (&star, ".orch/agents/developer.md", false),
            (&star, ".gitignore", false),
            (&star, "sub/dir/.gitattributes", false),
            (&star, ".gitmodules", false),
            (&star, ".github/workflows/ci.yml", false),
            (&star, ".gitea/workflows/ci.yml", false),
            (&star, ".forgejo/workflows/ci.yml", false),
            (&star, ".ci/install.sh", false),
            (&star, ".gitlab-ci.yml", false),
            (&star, "Jenkinsfile", false),
            // Only the top level is CI's; a file named like one deeper is ordinary.
            (&star, "docs/Jenkinsfile", true),
            (&star, "docs/.orch/notes.md", true),
            (&["*"], ".gitignore", false),
            (&[".*"], ".gitignore", false),
            (&[".*/**"], ".orch/pipeline.toml", false),
            (&["**", ".orch/**"], ".orch/pipeline.toml", true),
            (&[".orch/agents/*.md"], ".orch/agents/developer.md", true),
            (&[".orch/agents/*.md"], ".orch/pipeline.toml", false),
            (&[".gitignore"], ".gitignore", true),
            (&["**/.gitignore"], "sub/.gitignore", true),
            (&[".github/**"], ".github/workflows/ci.yml", true),
            (&[".github/**"], ".gitea/workflows/ci.yml", false),
        ];
        for (allow, path, want) in cases {
            assert_eq!(allows(allow, path), *want, "{allow:?} vs {path}");
        }
    }

    #[test]
    fn pipeline_changes_lists_the_protected_paths() {
        let paths = ["app.py", ".orch/pipeline.toml", "x/.gitignore", "docs/a.md"];
        assert_eq!(
            pipeline_changes(&paths),
            [".orch/pipeline.toml", "x/.gitignore"]
        );
    }
}
