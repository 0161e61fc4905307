//! The agent CLI versions orch is tested with, read from `tested-versions.txt` (embedded), the
//! file `.ci/install-agent-clis.sh` installs from: one list for the tests and `orch doctor`.
//!
//! This module only describes versions; it never runs or installs anything.

use crate::AgentKind;

const TABLE: &str = include_str!("../tested-versions.txt");

/// One CLI as orch is tested with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestedCli {
    pub kind: AgentKind,
    /// `npm` or `pip`.
    pub installer: &'static str,
    /// The package that provides the CLI.
    pub package: &'static str,
    pub version: &'static str,
}

impl TestedCli {
    /// The command that installs exactly the tested version.
    pub fn install_command(&self) -> String {
        match self.installer {
            "pip" => format!("pip install {}=={}", self.package, self.version),
            _ => format!("npm install -g {}@{}", self.package, self.version),
        }
    }
}

/// The tested CLI of `kind`, `None` for the agents that run no model CLI.
pub fn tested(kind: AgentKind) -> Option<TestedCli> {
    TABLE
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let (name, installer, package, version) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            (kind.name() == name).then_some(TestedCli {
                kind,
                installer,
                package,
                version,
            })
        })
}

/// The first `N.N.N` in a CLI's `--version` output (`2.1.197 (Claude Code)`, `codex-cli
/// 0.169.0`, `aider 0.86.2`), `None` when it prints none.
pub fn version_in(output: &str) -> Option<String> {
    output.split_whitespace().find_map(|word| {
        let digits: String = word
            .trim_start_matches(['v', '('])
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let parts: Vec<&str> = digits.split('.').take(3).collect();
        (parts.len() == 3 && parts.iter().all(|p| !p.is_empty())).then(|| parts.join("."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cli_has_a_tested_version_and_no_other_agent_does() {
        for kind in AgentKind::CLIS {
            let cli = tested(kind).unwrap_or_else(|| panic!("{kind:?} has no tested version"));
            assert!(version_in(cli.version).is_some(), "{cli:?}");
        }
        assert_eq!(tested(AgentKind::Scripted), None);
        assert_eq!(tested(AgentKind::Command), None);
        let claude = tested(AgentKind::Claude).expect("claude");
        assert_eq!(
            claude.install_command(),
            format!(
                "npm install -g @anthropic-ai/claude-code@{}",
                claude.version
            )
        );
        let aider = tested(AgentKind::Aider).expect("aider");
        assert!(
            aider
                .install_command()
                .starts_with("pip install aider-chat==")
        );
    }

    /// The install line of each CLI's page names the tested version: bumping the list without
    /// the page (or the reverse) fails here.
    #[test]
    fn each_agent_page_names_the_tested_version() {
        let pages = [
            (
                AgentKind::Claude,
                include_str!("../../../docs/agents/claude-code.md"),
            ),
            (
                AgentKind::Codex,
                include_str!("../../../docs/agents/codex.md"),
            ),
            (
                AgentKind::Gemini,
                include_str!("../../../docs/agents/gemini.md"),
            ),
            (
                AgentKind::OpenCode,
                include_str!("../../../docs/agents/opencode.md"),
            ),
            (
                AgentKind::Aider,
                include_str!("../../../docs/agents/aider.md"),
            ),
        ];
        for (kind, page) in pages {
            let cli = tested(kind).expect("tested");
            assert!(
                page.contains(cli.version) && page.contains(cli.package),
                "docs/agents page of {kind:?} does not name {} {}",
                cli.package,
                cli.version
            );
        }
    }

    #[test]
    fn versions_are_read_from_what_each_cli_prints() {
        assert_eq!(
            version_in("2.1.197 (Claude Code)").as_deref(),
            Some("2.1.197")
        );
        assert_eq!(
            version_in("codex-cli 0.169.0\n").as_deref(),
            Some("0.169.0")
        );
        assert_eq!(version_in("aider v0.86.2").as_deref(), Some("0.86.2"));
        assert_eq!(version_in("1.18.33").as_deref(), Some("1.18.33"));
        assert_eq!(version_in("0.61.0-nightly.1").as_deref(), Some("0.61.0"));
        assert_eq!(version_in("no version here 1.2"), None);
    }
}
