//! Naming the sandbox limit a run hit, so that a failed stage says which one and how to raise
//! it. The kernel reports a file past `RLIMIT_FSIZE` exactly (SIGXFSZ); memory and process
//! limits surface as the program's own allocation or fork errors, recognised in its last lines.
//!
//! This module must never turn a failed run into a success: it only adds an explanation.

use std::io::Write;
use std::path::Path;

use orch_core::gate::ExitOutcome;

use crate::sandbox::Limits;
use crate::spec::Finished;

/// SIGXFSZ on Linux: a write past `RLIMIT_FSIZE`.
const SIGXFSZ: i32 = 25;

/// What programs print when an allocation fails under `RLIMIT_DATA`.
const MEMORY_SIGNS: &[&str] = &[
    "MemoryError",
    "Cannot allocate memory",
    "out of memory",
    "Out of memory",
    "memory allocation of",
    "std::bad_alloc",
    "heap out of memory",
];
/// What programs print when a fork fails under `RLIMIT_NPROC`.
const PROCESS_SIGNS: &[&str] = &[
    "Resource temporarily unavailable",
    "Cannot fork",
    "fork: retry",
    "can't fork",
];

/// The sentence naming the limit `finished` most likely hit, if any.
pub(crate) fn limit_hit(finished: &Finished, limits: Limits) -> Option<String> {
    if finished.outcome.success() {
        return None;
    }
    // bwrap exits with 128 + the signal that killed its child.
    let killed_by_it = matches!(finished.outcome, ExitOutcome::Signaled(SIGXFSZ))
        || finished.outcome == ExitOutcome::Exited(128 + SIGXFSZ)
        || finished.tail.contains("File size limit exceeded");
    if let (true, Some(mib)) = (killed_by_it, limits.file_mib) {
        return Some(format!(
            "orch: the run hit the sandbox's file size limit: a file past {mib} MiB (raise `file_mib` in the project's `sandbox` settings)"
        ));
    }
    let printed = |signs: &[&str]| signs.iter().any(|s| finished.tail.contains(s));
    if let (true, Some(mib)) = (printed(MEMORY_SIGNS), limits.memory_mib) {
        return Some(format!(
            "orch: the run likely hit the sandbox's memory limit of {mib} MiB per process (raise `memory_mib` in the project's `sandbox` settings)"
        ));
    }
    if let (true, Some(n)) = (printed(PROCESS_SIGNS), limits.processes) {
        return Some(format!(
            "orch: the run likely hit the sandbox's limit of {n} processes (raise `processes` in the project's `sandbox` settings)"
        ));
    }
    None
}

/// The sentence for a docker run whose program was killed with SIGKILL inside its container
/// (exit 128 + 9): the kernel's OOM killer at the container's `--memory` limit, which counts
/// every process of the run (and its tmpfs) together, is what does that.
pub(crate) fn container_oom(finished: &Finished, limits: Limits) -> Option<String> {
    let mib = limits.memory_mib?;
    (finished.outcome == ExitOutcome::Exited(128 + 9)).then(|| {
        format!(
            "orch: the run was killed inside its container, likely by the container's memory limit of {mib} MiB for all its processes together (raise `memory_mib` in the project's `sandbox` settings)"
        )
    })
}

/// Adds `note` to the run's tail (what a failed gate reports) and to its log.
pub(crate) fn record(finished: &mut Finished, note: &str, log: Option<&Path>) {
    if !finished.tail.is_empty() && !finished.tail.ends_with('\n') {
        finished.tail.push('\n');
    }
    finished.tail.push_str(note);
    if let Some(path) = log
        && let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(path)
    {
        let _ = writeln!(file, "{note}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ended(outcome: ExitOutcome, tail: &str) -> Finished {
        Finished {
            outcome,
            tail: tail.to_owned(),
            pid: Some(1),
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn a_kill_inside_a_container_names_its_memory_limit() {
        let killed = ended(ExitOutcome::Exited(137), "");
        let note = container_oom(&killed, Limits::AGENT);
        assert!(note.is_some_and(|n| n.contains("16384 MiB") && n.contains("memory_mib")));
        assert_eq!(container_oom(&killed, Limits::default()), None);
        assert_eq!(
            container_oom(&ended(ExitOutcome::Exited(1), ""), Limits::AGENT),
            None
        );
    }

    #[test]
    fn each_limit_is_named_from_what_the_run_left() {
        let limits = Limits::AGENT;
        let file = limit_hit(&ended(ExitOutcome::Signaled(SIGXFSZ), ""), limits);
        assert!(file.is_some_and(|n| n.contains("file_mib")));
        let memory = limit_hit(
            &ended(ExitOutcome::Exited(1), "[stderr] MemoryError"),
            limits,
        );
        assert!(memory.is_some_and(|n| n.contains("16384 MiB") && n.contains("memory_mib")));
        let fork = limit_hit(&ended(ExitOutcome::Exited(2), "sh: 1: Cannot fork"), limits);
        assert!(fork.is_some_and(|n| n.contains("1024 processes")));
        assert_eq!(
            limit_hit(&ended(ExitOutcome::Exited(1), "assertion failed"), limits),
            None
        );
        // A success names nothing, whatever it printed.
        assert_eq!(
            limit_hit(&ended(ExitOutcome::Exited(0), "MemoryError"), limits),
            None
        );
        // An unset limit is not named.
        assert_eq!(
            limit_hit(
                &ended(ExitOutcome::Signaled(SIGXFSZ), ""),
                Limits::default()
            ),
            None
        );
    }
}
