//! Exit codes: 0 success, 1 the work failed (an item did not reach done, a check FAILED),
//! 2 a usage or configuration error (the message says what to fix).

use std::fmt;

/// An error the user must fix in the command line or the configuration: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for an error that ended a command.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<UsageError>().is_some() {
        return 2;
    }
    if let Some(engine) = e.downcast_ref::<orch_engine::EngineError>() {
        return match engine {
            orch_engine::EngineError::Config { .. }
            | orch_engine::EngineError::UnknownProject(_)
            | orch_engine::EngineError::UnknownItem(_)
            | orch_engine::EngineError::Refused { .. } => 2,
            _ => 1,
        };
    }
    1
}
