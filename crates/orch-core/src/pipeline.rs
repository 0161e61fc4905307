//! The pipeline model: stages, their gates and their pass/fail edges, read from
//! `.orch/pipeline.toml` and validated once so the engine can trust it.
//!
//! Validation errors name the stage and the field, so a person can fix the file.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use thiserror::Error;

use crate::id::{RoleName, StageName};
use crate::spend::{SpendLimit, usd_to_micro};

/// Where an item goes after a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stage(StageName),
    /// Merge the item's branch into the default branch, then the item is done.
    Done,
}

/// A rollback (or retry) edge with its budget: how often it may be taken for one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailEdge {
    pub to: StageName,
    pub budget: u32,
}

/// What orch does itself on an action stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Build once from the item's worktree, run it on staging, probe it, run the staging checks.
    DeployStaging,
    /// Promote the artifact that passed staging to prod, probe it, restore on failure.
    Deploy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageKind {
    Agent { role: RoleName },
    Action { action: Action },
    Approval,
}

/// How the values of a verdict field are read. Any value not listed is FAILED.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictSpec {
    pub field: String,
    pub pass: Vec<String>,
    pub fail: Vec<String>,
    pub needs_info: Vec<String>,
}

impl VerdictSpec {
    pub fn allowed(&self) -> Vec<String> {
        self.pass
            .iter()
            .chain(&self.fail)
            .chain(&self.needs_info)
            .cloned()
            .collect()
    }
}

/// A gate other than the verdict: a deterministic check run after the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateSpec {
    /// The attempt must change at least one file besides its own artifacts.
    DiffNonEmpty,
    /// A command run in the worktree must exit 0 within the timeout.
    Command {
        name: String,
        run: String,
        timeout_secs: u64,
    },
    /// Code changed on the branch without a change under one of the `docs` patterns: FAILED.
    DocGate { docs: Vec<String> },
}

impl GateSpec {
    pub fn kind(&self) -> GateKind {
        match self {
            GateSpec::DiffNonEmpty => GateKind::DiffNonEmpty,
            GateSpec::Command { .. } => GateKind::Command,
            GateSpec::DocGate { .. } => GateKind::DocGate,
        }
    }
}

/// Every gate orch knows. The list is pinned by a snapshot test: adding one is a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GateKind {
    /// The agent process exited 0 (agent stages).
    AgentExit,
    /// The diff stays inside the role's write allowlist (agent stages).
    WriteAllowlist,
    /// The stage's artifact has frontmatter with a known verdict value.
    Verdict,
    DiffNonEmpty,
    Command,
    DocGate,
    /// The outcome of an action (deploy-staging, deploy) as orch measured it.
    Action,
}

impl GateKind {
    pub const ALL: [GateKind; 7] = [
        GateKind::AgentExit,
        GateKind::WriteAllowlist,
        GateKind::Verdict,
        GateKind::DiffNonEmpty,
        GateKind::Command,
        GateKind::DocGate,
        GateKind::Action,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GateKind::AgentExit => "agent-exit",
            GateKind::WriteAllowlist => "write-allowlist",
            GateKind::Verdict => "verdict",
            GateKind::DiffNonEmpty => "diff-nonempty",
            GateKind::Command => "command",
            GateKind::DocGate => "doc-gate",
            GateKind::Action => "action",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: StageName,
    pub kind: StageKind,
    /// File name under `docs/work-items/<ID>/`.
    pub artifact: Option<String>,
    pub verdict: Option<VerdictSpec>,
    pub gates: Vec<GateSpec>,
    pub on_pass: Target,
    pub on_fail: Option<FailEdge>,
    /// Seconds an agent may run before its process group is killed.
    pub timeout_secs: u64,
    /// The cap on what this stage's runs of one item may spend, all attempts together.
    pub spend: SpendLimit,
}

/// A validated pipeline: at least one stage, every edge to a known stage, every fail edge budgeted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pipeline {
    stages: Vec<Stage>,
    /// The cap on what one item may spend over all its stages.
    spend: SpendLimit,
    /// `symlinks = "inside-tree"`: an agent may write symbolic links that stay inside the work
    /// tree. By default every link in an agent's change fails the stage; one that leaves the
    /// tree always does.
    links_inside: bool,
}

/// Why a pipeline file was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PipelineError {
    #[error("pipeline file: {0}")]
    Toml(String),
    #[error("pipeline has no stages; add at least one [[stages]] table")]
    Empty,
    #[error("stage #{index}: {message}")]
    Stage { index: usize, message: String },
    #[error("field `{field}`: {message}")]
    Top {
        field: &'static str,
        message: String,
    },
    #[error("stage `{stage}`, field `{field}`: {message}")]
    Field {
        stage: String,
        field: &'static str,
        message: String,
    },
}

fn field_err(stage: &str, field: &'static str, message: impl Into<String>) -> PipelineError {
    PipelineError::Field {
        stage: stage.to_owned(),
        field,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    stages: Vec<RawStage>,
    spend: Option<RawSpend>,
    symlinks: Option<String>,
}

/// `max_tokens` and `max_usd`, at the top of the file (per item) or on a stage.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSpend {
    max_tokens: Option<u64>,
    max_usd: Option<f64>,
}

impl RawSpend {
    /// The validated limit, or the field (`spend.…`) that is wrong and why.
    fn limit(self) -> Result<SpendLimit, (&'static str, &'static str)> {
        if self.max_tokens == Some(0) {
            return Err(("spend.max_tokens", "must be at least 1"));
        }
        let max_cost = match self.max_usd {
            None => None,
            Some(usd) => match usd_to_micro(usd) {
                Some(micro) if micro > 0 => Some(micro),
                _ => return Err(("spend.max_usd", "must be a positive amount of USD")),
            },
        };
        Ok(SpendLimit {
            max_tokens: self.max_tokens,
            max_cost,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    budget: Option<u32>,
    timeout_secs: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    kind: String,
    role: Option<String>,
    action: Option<String>,
    artifact: Option<String>,
    verdict: Option<RawVerdict>,
    #[serde(default)]
    gates: Vec<RawGate>,
    on_pass: Option<String>,
    on_fail: Option<RawEdge>,
    timeout_secs: Option<u64>,
    spend: Option<RawSpend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVerdict {
    field: String,
    #[serde(default)]
    pass: Vec<String>,
    #[serde(default)]
    fail: Vec<String>,
    #[serde(default)]
    needs_info: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEdge {
    to: String,
    budget: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    kind: String,
    name: Option<String>,
    run: Option<String>,
    timeout_secs: Option<u64>,
    docs: Option<Vec<String>>,
}

pub const DEFAULT_AGENT_TIMEOUT_SECS: u64 = 30 * 60;
pub const DEFAULT_COMMAND_TIMEOUT_SECS: u64 = 10 * 60;
/// Target names with a meaning of their own; no stage may take them.
pub const RESERVED_TARGETS: [&str; 1] = ["done"];

impl Pipeline {
    /// Parses and validates a pipeline file's text.
    pub fn from_toml(text: &str) -> Result<Self, PipelineError> {
        let raw: RawPipeline = crate::toml_error::parse(text).map_err(PipelineError::Toml)?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawPipeline) -> Result<Self, PipelineError> {
        if raw.stages.is_empty() {
            return Err(PipelineError::Empty);
        }
        let default_budget = raw.defaults.budget;
        let default_timeout = raw
            .defaults
            .timeout_secs
            .unwrap_or(DEFAULT_AGENT_TIMEOUT_SECS);
        let mut names = BTreeSet::new();
        for (index, s) in raw.stages.iter().enumerate() {
            let name = StageName::parse(&s.name).map_err(|e| PipelineError::Stage {
                index: index + 1,
                message: e.to_string(),
            })?;
            if RESERVED_TARGETS.contains(&name.as_str()) {
                return Err(field_err(
                    &s.name,
                    "name",
                    "`done` is reserved for the end of the pipeline",
                ));
            }
            if !names.insert(name) {
                return Err(field_err(
                    &s.name,
                    "name",
                    "another stage has the same name",
                ));
            }
        }
        let mut stages = Vec::with_capacity(raw.stages.len());
        for s in raw.stages {
            stages.push(stage_from_raw(s, &names, default_budget, default_timeout)?);
        }
        let spend = raw
            .spend
            .unwrap_or_default()
            .limit()
            .map_err(|(field, message)| PipelineError::Top {
                field,
                message: message.to_owned(),
            })?;
        let links_inside = match raw.symlinks.as_deref() {
            None | Some("refuse") => false,
            Some("inside-tree") => true,
            Some(_) => {
                return Err(PipelineError::Top {
                    field: "symlinks",
                    message: "must be \"refuse\" (the default) or \"inside-tree\"".to_owned(),
                });
            }
        };
        Ok(Self {
            stages,
            spend,
            links_inside,
        })
    }

    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// The cap on what one item may spend over all its stages.
    pub fn spend_limit(&self) -> SpendLimit {
        self.spend
    }

    /// Whether agents may write symbolic links that stay inside the work tree.
    pub fn links_inside(&self) -> bool {
        self.links_inside
    }

    pub fn first(&self) -> &Stage {
        // Validation guarantees at least one stage.
        &self.stages[0]
    }

    pub fn stage(&self, name: &StageName) -> Option<&Stage> {
        self.stages.iter().find(|s| &s.name == name)
    }

    /// A stable, human-readable rendering of the stage graph, pinned by snapshot tests.
    pub fn graph(&self) -> String {
        let mut out = String::new();
        for s in &self.stages {
            let kind = match &s.kind {
                StageKind::Agent { role } => format!("agent({role})"),
                StageKind::Action { action } => format!("action({action:?})"),
                StageKind::Approval => "approval".to_owned(),
            };
            let pass = match &s.on_pass {
                Target::Stage(t) => t.to_string(),
                Target::Done => "done".to_owned(),
            };
            let fail = match &s.on_fail {
                Some(e) => format!("{} x{}", e.to, e.budget),
                None => "-".to_owned(),
            };
            let verdict = match &s.verdict {
                Some(v) => format!(
                    " {}@{} pass={} fail={} needs_info={}",
                    v.field,
                    s.artifact.as_deref().unwrap_or("?"),
                    v.pass.join("|"),
                    v.fail.join("|"),
                    v.needs_info.join("|"),
                ),
                None => String::new(),
            };
            let gates: Vec<&str> = s.gates.iter().map(|g| g.kind().name()).collect();
            out.push_str(&format!(
                "{} [{kind}]{verdict} gates=[{}] pass->{pass} fail->{fail}\n",
                s.name,
                gates.join(",")
            ));
        }
        out
    }
}

fn stage_from_raw(
    s: RawStage,
    names: &BTreeSet<StageName>,
    default_budget: Option<u32>,
    default_timeout: u64,
) -> Result<Stage, PipelineError> {
    let n = s.name.as_str();
    let name = StageName::parse(n).map_err(|e| field_err(n, "name", e.to_string()))?;
    let target = |field: &'static str, t: &str| -> Result<StageName, PipelineError> {
        let t = StageName::parse(t).map_err(|e| field_err(n, field, e.to_string()))?;
        if names.contains(&t) {
            Ok(t)
        } else {
            Err(field_err(n, field, format!("no stage is named `{t}`")))
        }
    };
    let kind = match s.kind.as_str() {
        "agent" => {
            let role = s
                .role
                .as_deref()
                .ok_or_else(|| field_err(n, "role", "an agent stage needs a role"))?;
            StageKind::Agent {
                role: RoleName::parse(role).map_err(|e| field_err(n, "role", e.to_string()))?,
            }
        }
        "action" => {
            let action = match s.action.as_deref() {
                Some("deploy-staging") => Action::DeployStaging,
                Some("deploy") => Action::Deploy,
                Some(other) => {
                    return Err(field_err(
                        n,
                        "action",
                        format!("unknown action `{other}`; known: deploy-staging, deploy"),
                    ));
                }
                None => return Err(field_err(n, "action", "an action stage needs an action")),
            };
            StageKind::Action { action }
        }
        "approval" => StageKind::Approval,
        other => {
            return Err(field_err(
                n,
                "kind",
                format!("unknown kind `{other}`; known: agent, action, approval"),
            ));
        }
    };
    if s.role.is_some() && !matches!(kind, StageKind::Agent { .. }) {
        return Err(field_err(n, "role", "only agent stages have a role"));
    }
    if s.action.is_some() && !matches!(kind, StageKind::Action { .. }) {
        return Err(field_err(n, "action", "only action stages have an action"));
    }
    let verdict = match s.verdict {
        None => None,
        Some(v) => {
            if v.field.trim().is_empty() {
                return Err(field_err(
                    n,
                    "verdict.field",
                    "must name a frontmatter field",
                ));
            }
            if v.pass.is_empty() {
                return Err(field_err(
                    n,
                    "verdict.pass",
                    "must list at least one passing value",
                ));
            }
            let mut seen = BTreeSet::new();
            for value in v.pass.iter().chain(&v.fail).chain(&v.needs_info) {
                if value.is_empty()
                    || value
                        .chars()
                        .any(|c| c.is_ascii_lowercase() || c.is_whitespace())
                {
                    return Err(field_err(
                        n,
                        "verdict",
                        format!("value `{value}` must be uppercase with no spaces"),
                    ));
                }
                if !seen.insert(value.clone()) {
                    return Err(field_err(
                        n,
                        "verdict",
                        format!("value `{value}` is listed twice"),
                    ));
                }
            }
            Some(VerdictSpec {
                field: v.field,
                pass: v.pass,
                fail: v.fail,
                needs_info: v.needs_info,
            })
        }
    };
    match (&kind, &verdict, &s.artifact) {
        (StageKind::Approval, Some(_), _) | (StageKind::Approval, _, Some(_)) => {
            return Err(field_err(
                n,
                "verdict",
                "an approval stage has no artifact or verdict",
            ));
        }
        (StageKind::Approval, None, None) => {}
        (_, None, _) => {
            return Err(field_err(
                n,
                "verdict",
                "agent and action stages need a verdict field",
            ));
        }
        (_, Some(_), None) => {
            return Err(field_err(
                n,
                "artifact",
                "a verdict needs the artifact it is read from",
            ));
        }
        (_, Some(_), Some(a)) => {
            if a.is_empty() || a.contains('/') || a.contains("..") || !a.ends_with(".md") {
                return Err(field_err(
                    n,
                    "artifact",
                    "must be a plain `.md` file name such as 01-analysis.md",
                ));
            }
        }
    }
    let mut gates = Vec::new();
    for (i, g) in s.gates.into_iter().enumerate() {
        let gate = match g.kind.as_str() {
            "diff-nonempty" => GateSpec::DiffNonEmpty,
            "command" => {
                let run = g.run.filter(|r| !r.trim().is_empty()).ok_or_else(|| {
                    field_err(
                        n,
                        "gates.run",
                        format!("command gate #{} needs `run`", i + 1),
                    )
                })?;
                let timeout_secs = g.timeout_secs.unwrap_or(DEFAULT_COMMAND_TIMEOUT_SECS);
                if timeout_secs == 0 {
                    return Err(field_err(n, "gates.timeout_secs", "must be at least 1"));
                }
                GateSpec::Command {
                    name: g.name.unwrap_or_else(|| format!("command-{}", i + 1)),
                    run,
                    timeout_secs,
                }
            }
            "doc-gate" => GateSpec::DocGate {
                docs: g
                    .docs
                    .unwrap_or_else(|| vec!["docs/**".to_owned(), "CHANGELOG.md".to_owned()]),
            },
            other => {
                return Err(field_err(
                    n,
                    "gates.kind",
                    format!("unknown gate `{other}`; known: diff-nonempty, command, doc-gate"),
                ));
            }
        };
        if matches!(kind, StageKind::Approval) {
            return Err(field_err(n, "gates", "an approval stage has no gates"));
        }
        gates.push(gate);
    }
    let on_pass = match s.on_pass.as_deref() {
        None => {
            return Err(field_err(
                n,
                "on_pass",
                "every stage needs on_pass (a stage name or `done`)",
            ));
        }
        Some("done") => Target::Done,
        Some(t) => Target::Stage(target("on_pass", t)?),
    };
    if on_pass == Target::Stage(name.clone()) {
        return Err(field_err(n, "on_pass", "a stage cannot pass to itself"));
    }
    let on_fail = match s.on_fail {
        None => None,
        Some(e) => {
            let budget = e.budget.or(default_budget).ok_or_else(|| {
                field_err(
                    n,
                    "on_fail.budget",
                    "a fail edge needs a budget: set on_fail.budget or [defaults] budget",
                )
            })?;
            if budget == 0 {
                return Err(field_err(
                    n,
                    "on_fail.budget",
                    "a fail edge needs a budget of at least 1",
                ));
            }
            Some(FailEdge {
                to: target("on_fail.to", &e.to)?,
                budget,
            })
        }
    };
    if matches!(kind, StageKind::Approval) && on_fail.is_some() {
        return Err(field_err(
            n,
            "on_fail",
            "an approval stage does not fail; STOP cancels it",
        ));
    }
    let spend = s
        .spend
        .unwrap_or_default()
        .limit()
        .map_err(|(field, message)| field_err(n, field, message))?;
    let timeout_secs = s.timeout_secs.unwrap_or(default_timeout);
    if timeout_secs == 0 {
        return Err(field_err(n, "timeout_secs", "must be at least 1"));
    }
    Ok(Stage {
        name,
        kind,
        artifact: s.artifact,
        verdict,
        gates,
        on_pass,
        on_fail,
        timeout_secs,
        spend,
    })
}

/// The default pipeline (the canon), as `orch init` writes it.
pub const DEFAULT_PIPELINE_TOML: &str = include_str!("default_pipeline.toml");

/// Every edge target name, for tests and listings.
pub fn edges(p: &Pipeline) -> BTreeMap<String, Vec<String>> {
    let mut m = BTreeMap::new();
    for s in p.stages() {
        let mut v = vec![match &s.on_pass {
            Target::Stage(t) => t.to_string(),
            Target::Done => "done".to_owned(),
        }];
        if let Some(e) = &s.on_fail {
            v.push(e.to.to_string());
        }
        m.insert(s.name.to_string(), v);
    }
    m
}

#[cfg(test)]
mod tests;
