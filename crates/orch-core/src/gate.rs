//! Gate evaluation over inputs the engine measured: artifact text, exit outcomes, changed paths.
//!
//! Nothing here reads a file or runs a process; every input is passed in, so each rule is a
//! plain function with a table test. Any doubt is FAILED with a reason that names it.

use crate::frontmatter::Frontmatter;
use crate::glob;
use crate::pipeline::{GateKind, GateSpec, Stage, StageKind};
use crate::protected;

/// How a process ended, as measured by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitOutcome {
    Exited(i32),
    Signaled(i32),
    TimedOut { secs: u64 },
    Stalled { secs: u64 },
    FailedToStart(String),
}

impl ExitOutcome {
    pub fn success(&self) -> bool {
        matches!(self, ExitOutcome::Exited(0))
    }

    pub fn describe(&self) -> String {
        match self {
            ExitOutcome::Exited(c) => format!("exited with code {c}"),
            ExitOutcome::Signaled(s) => format!("was killed by signal {s}"),
            ExitOutcome::TimedOut { secs } => format!("timed out after {secs}s and was killed"),
            ExitOutcome::Stalled { secs } => format!("printed nothing for {secs}s and was killed"),
            ExitOutcome::FailedToStart(e) => format!("could not be started: {e}"),
        }
    }
}

/// The result of one command gate, in the order the gates are listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub name: String,
    pub outcome: ExitOutcome,
    /// The last lines the command printed, for the feedback of the next attempt.
    pub output_tail: String,
}

/// How a verdict sends the item on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictClass {
    Pass,
    Fail,
    NeedsInfo,
    /// Stop the item without spending its fail budget: the fault is not the item's.
    Block(String),
    /// The approval the stage relied on no longer holds (it expired): go back to the approval
    /// stage that led here and wait for a person again. Spends no budget; the build and its
    /// staging validation stay as they were.
    Reapprove(String),
    /// What the stage was about to act on no longer contains the default branch's tip (another
    /// item or a person moved it since staging validated the candidate): go back to the
    /// deploy-staging stage that leads here, integrate again and validate again. Spends no
    /// budget and runs no agent; the change and its approval are the same.
    Revalidate(String),
}

/// One failed gate with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateFailure {
    pub gate: GateKind,
    pub reason: String,
}

/// The outcome of a stage's gates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    pub class: VerdictClass,
    /// The verdict field's value when it was read.
    pub value: Option<String>,
    pub failures: Vec<GateFailure>,
}

impl GateVerdict {
    pub fn failed(gate: GateKind, reason: impl Into<String>) -> Self {
        Self {
            class: VerdictClass::Fail,
            value: None,
            failures: vec![GateFailure {
                gate,
                reason: reason.into(),
            }],
        }
    }

    /// This verdict with `extra` failures the engine measured outside the gate inputs (a
    /// file that is not a regular file, an artifact this attempt did not write): any failure
    /// makes the verdict FAILED.
    pub fn with_failures(mut self, extra: Vec<GateFailure>) -> Self {
        if !extra.is_empty() {
            self.failures.extend(extra);
            self.class = VerdictClass::Fail;
        }
        self
    }

    pub fn is_pass(&self) -> bool {
        self.class == VerdictClass::Pass
    }

    /// The reasons, one per line, as shown to people and to the next attempt.
    pub fn reasons(&self) -> Vec<String> {
        self.failures
            .iter()
            .map(|f| format!("{}: {}", f.gate.name(), f.reason))
            .collect()
    }
}

/// What the engine measured after a stage ran.
#[derive(Debug, Clone, Default)]
pub struct GateInput<'a> {
    /// The stage artifact's text; `None` when the file does not exist.
    pub artifact: Option<&'a str>,
    /// How the agent process ended; `None` on action stages.
    pub agent_exit: Option<ExitOutcome>,
    /// Paths the attempt changed (relative to the worktree root).
    pub stage_changes: &'a [String],
    /// Paths the whole item branch changed against the default branch. Measured only for a
    /// stage whose gates read it ([`Stage::reads_branch_changes`]); empty otherwise.
    pub branch_changes: &'a [String],
    /// The role's write allowlist; `None` for action stages (orch writes them).
    pub write_allowlist: Option<&'a [String]>,
    /// Results of the stage's command gates, in order; a missing one is FAILED.
    pub commands: &'a [CommandResult],
    /// The directory of this item's artifacts, relative: `docs/work-items/<ID>/`.
    pub artifact_dir: &'a str,
}

impl Stage {
    /// Whether a gate of this stage reads [`GateInput::branch_changes`] (a diff the engine
    /// otherwise skips). Every gate reading it must be listed here.
    pub fn reads_branch_changes(&self) -> bool {
        self.gates
            .iter()
            .any(|g| matches!(g, GateSpec::DocGate { .. }))
    }
}

/// Gates that need no process: everything but command gates. The engine runs the commands only
/// when these pass, then calls [`evaluate`] with their results.
pub fn evaluate_static(stage: &Stage, input: &GateInput<'_>) -> Vec<GateFailure> {
    let mut failures = Vec::new();
    let mut fail = |gate, reason: String| failures.push(GateFailure { gate, reason });
    if let StageKind::Agent { .. } = stage.kind {
        match &input.agent_exit {
            Some(o) if o.success() => {}
            Some(o) => fail(GateKind::AgentExit, format!("the agent {}", o.describe())),
            None => fail(
                GateKind::AgentExit,
                "the agent's exit status is unknown".to_owned(),
            ),
        }
        match input.write_allowlist {
            Some(allow) => {
                for (reason, paths) in write_refusals(allow, input) {
                    if !paths.is_empty() {
                        fail(
                            GateKind::WriteAllowlist,
                            format!("{reason}: {}", list(&paths)),
                        );
                    }
                }
            }
            None => fail(
                GateKind::WriteAllowlist,
                "the role has no write allowlist".to_owned(),
            ),
        }
    }
    for gate in &stage.gates {
        match gate {
            GateSpec::DiffNonEmpty => {
                let code: Vec<&String> = input
                    .stage_changes
                    .iter()
                    .filter(|p| !p.starts_with(input.artifact_dir))
                    .collect();
                if code.is_empty() {
                    fail(
                        GateKind::DiffNonEmpty,
                        "the attempt changed no file besides its artifacts".to_owned(),
                    );
                }
            }
            GateSpec::DocGate { docs } => {
                // Work-item artifacts live under docs/ but are not documentation.
                let is_doc =
                    |p: &String| glob::matches_any(docs, p) && !p.starts_with("docs/work-items/");
                let code: Vec<&str> = input
                    .branch_changes
                    .iter()
                    .filter(|p| !is_doc(p) && !p.starts_with("docs/work-items/"))
                    .map(String::as_str)
                    .collect();
                if !code.is_empty() && !input.branch_changes.iter().any(is_doc) {
                    fail(
                        GateKind::DocGate,
                        format!(
                            "code changed ({}) without a change to the docs ({}): REQUEST_CHANGES",
                            list(&code),
                            docs.join(", ")
                        ),
                    );
                }
            }
            GateSpec::Command { .. } => {}
        }
    }
    failures
}

/// The writes an agent's change may not hold, each with its reason: another item's folder
/// (`borrowed`, whatever the allowlist says), paths outside the allowlist, and protected paths
/// (see [`protected`]) the allowlist does not name.
fn write_refusals<'a>(
    allow: &[String],
    input: &GateInput<'a>,
) -> [(&'static str, Vec<&'a str>); 3] {
    let mut borrowed = Vec::new();
    let mut outside = Vec::new();
    let mut unnamed = Vec::new();
    for path in input.stage_changes {
        let other_item = path
            .strip_prefix("docs/work-items/")
            .is_some_and(|rest| rest.contains('/') && !path.starts_with(input.artifact_dir));
        if other_item {
            borrowed.push(path.as_str());
        } else if !glob::matches_any(allow, path) {
            outside.push(path.as_str());
        } else if !protected::allows(allow, path) {
            unnamed.push(path.as_str());
        }
    }
    [
        (
            "wrote another item's folder (a borrowed artifact is never this item's)",
            borrowed,
        ),
        ("wrote outside the role's allowlist", outside),
        (
            "wrote protected paths that modify the pipeline, which the role's allowlist does \
             not name explicitly",
            unnamed,
        ),
    ]
}

/// The full verdict of a stage: static gates, command gates, then the artifact's verdict field.
pub fn evaluate(stage: &Stage, input: &GateInput<'_>) -> GateVerdict {
    let mut failures = evaluate_static(stage, input);
    let mut command_index = 0;
    for gate in &stage.gates {
        if let GateSpec::Command { name, run, .. } = gate {
            match input.commands.get(command_index) {
                Some(r) if r.name == *name && r.outcome.success() => {}
                Some(r) if r.name == *name => {
                    let tail = if r.output_tail.trim().is_empty() {
                        String::new()
                    } else {
                        format!("; last output:\n{}", r.output_tail.trim_end())
                    };
                    failures.push(GateFailure {
                        gate: GateKind::Command,
                        reason: format!("`{run}` {}{tail}", r.outcome.describe()),
                    });
                }
                _ => failures.push(GateFailure {
                    gate: GateKind::Command,
                    reason: format!("`{run}` was not run (an earlier gate failed)"),
                }),
            }
            command_index += 1;
        }
    }
    let (class, value) = match (&stage.verdict, &stage.artifact) {
        (Some(spec), Some(file)) => {
            let read = Frontmatter::parse(input.artifact)
                .map_err(|e| e.to_string())
                .and_then(|fm| {
                    fm.verdict(&spec.field, &spec.allowed())
                        .map(str::to_owned)
                        .map_err(|e| e.to_string())
                });
            match read {
                Ok(v) if spec.pass.contains(&v) => (VerdictClass::Pass, Some(v)),
                Ok(v) if spec.needs_info.contains(&v) => (VerdictClass::NeedsInfo, Some(v)),
                Ok(v) => {
                    failures.push(GateFailure {
                        gate: GateKind::Verdict,
                        reason: format!("{file}: {} is {v}", spec.field),
                    });
                    (VerdictClass::Fail, Some(v))
                }
                Err(e) => {
                    failures.push(GateFailure {
                        gate: GateKind::Verdict,
                        reason: format!("{file}: {e}"),
                    });
                    (VerdictClass::Fail, None)
                }
            }
        }
        // An approval stage is never evaluated by gates; reaching here is an internal error.
        _ => {
            failures.push(GateFailure {
                gate: GateKind::Verdict,
                reason: "the stage has no verdict to read".to_owned(),
            });
            (VerdictClass::Fail, None)
        }
    };
    // Any failed gate outweighs the verdict value, including NEEDS_INFO.
    let class = if failures.is_empty() {
        class
    } else {
        VerdictClass::Fail
    };
    GateVerdict {
        class,
        value,
        failures,
    }
}

fn list(paths: &[&str]) -> String {
    const SHOW: usize = 5;
    let mut s = paths
        .iter()
        .take(SHOW)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOW {
        s.push_str(&format!(" and {} more", paths.len() - SHOW));
    }
    s
}

#[cfg(test)]
mod tests;
