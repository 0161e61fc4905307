//! The canonical tracker states: the names orch creates in a tracker and the Plane-style group
//! of each. Pinned by a snapshot test, so changing the list is a visible decision.
//!
//! Terminal states are exactly Done, Cancelled and STOP; STOP belongs to the cancelled group.

/// A Plane-style state group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateGroup {
    Backlog,
    Unstarted,
    Started,
    Completed,
    Cancelled,
}

impl StateGroup {
    pub fn as_str(self) -> &'static str {
        match self {
            StateGroup::Backlog => "backlog",
            StateGroup::Unstarted => "unstarted",
            StateGroup::Started => "started",
            StateGroup::Completed => "completed",
            StateGroup::Cancelled => "cancelled",
        }
    }
}

/// A canonical tracker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerState {
    pub name: &'static str,
    pub group: StateGroup,
    pub terminal: bool,
}

const fn s(name: &'static str, group: StateGroup) -> TrackerState {
    TrackerState {
        name,
        group,
        terminal: false,
    }
}

const fn t(name: &'static str, group: StateGroup) -> TrackerState {
    TrackerState {
        name,
        group,
        terminal: true,
    }
}

/// Every canonical state, in board order.
pub const CANONICAL_STATES: &[TrackerState] = &[
    s("Backlog", StateGroup::Backlog),
    s("Todo", StateGroup::Unstarted),
    s("Ready", StateGroup::Unstarted),
    s("Analysis", StateGroup::Started),
    s("Architecture", StateGroup::Started),
    s("Development", StateGroup::Started),
    s("Review", StateGroup::Started),
    s("QA", StateGroup::Started),
    s("Deploy Staging", StateGroup::Started),
    s("Confirm Deploy", StateGroup::Started),
    s("Approved", StateGroup::Started),
    s("Deploy", StateGroup::Started),
    s("Needs Info", StateGroup::Started),
    s("Blocked", StateGroup::Started),
    t("Done", StateGroup::Completed),
    t("Cancelled", StateGroup::Cancelled),
    t("STOP", StateGroup::Cancelled),
];

/// The canonical state that shows a stage of the default pipeline, if any.
pub fn state_for_stage(stage: &str) -> Option<&'static TrackerState> {
    let name = match stage {
        "analysis" => "Analysis",
        "architecture" => "Architecture",
        "development" => "Development",
        "review" => "Review",
        "qa" => "QA",
        "deploy-staging" => "Deploy Staging",
        "confirm-deploy" => "Confirm Deploy",
        "deploy" => "Deploy",
        _ => return None,
    };
    CANONICAL_STATES.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_states_are_pinned() {
        let lines: Vec<String> = CANONICAL_STATES
            .iter()
            .map(|s| {
                format!(
                    "{} | {}{}",
                    s.name,
                    s.group.as_str(),
                    if s.terminal { " | terminal" } else { "" }
                )
            })
            .collect();
        insta::assert_snapshot!(lines.join("\n"));
    }

    #[test]
    fn terminal_states_are_exactly_done_cancelled_stop() {
        let terminal: Vec<&str> = CANONICAL_STATES
            .iter()
            .filter(|s| s.terminal)
            .map(|s| s.name)
            .collect();
        assert_eq!(terminal, ["Done", "Cancelled", "STOP"]);
        let stop = CANONICAL_STATES
            .iter()
            .find(|s| s.name == "STOP")
            .map(|s| s.group);
        assert_eq!(stop, Some(StateGroup::Cancelled));
    }

    #[test]
    fn every_default_stage_has_a_state() {
        let p = crate::pipeline::Pipeline::from_toml(crate::pipeline::DEFAULT_PIPELINE_TOML)
            .expect("valid");
        for stage in p.stages() {
            assert!(
                state_for_stage(stage.name.as_str()).is_some(),
                "{}",
                stage.name
            );
        }
    }
}
