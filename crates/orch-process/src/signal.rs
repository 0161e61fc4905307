//! Liveness checks and signals for processes and process groups.
//!
//! A zombie (exited, not yet reaped by its parent) counts as dead: it runs no code and holds no
//! file, and orch is often not its parent, so it could wait forever for it to disappear.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, getpgrp, getpid};
use tokio::time::Instant;

use crate::ProcessError;

/// How often, at most, a waiting kill checks whether its target is gone. The first checks come
/// sooner ([`Backoff`]): most targets are gone within a few milliseconds of SIGTERM.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait for the kernel to finish off a SIGKILLed target before moving on.
const AFTER_SIGKILL: Duration = Duration::from_secs(1);

/// Whether `pid` is a running (not zombie) process.
pub fn is_alive(pid: u32) -> bool {
    let Some(target) = positive_pid(pid) else {
        return false;
    };
    match signal::kill(target, None) {
        // EPERM: it exists but belongs to someone else.
        Ok(()) | Err(Errno::EPERM) => !matches!(proc_stat(pid), Some(stat) if stat.is_dead()),
        Err(_) => false,
    }
}

/// Whether any running (not zombie) process is in the process group `pgid`.
pub fn group_is_alive(pgid: u32) -> bool {
    let Some(group) = positive_pid(pgid) else {
        return false;
    };
    if let Err(Errno::ESRCH) = signal::killpg(group, None) {
        return false;
    }
    // Its leader running answers at once (an instance is usually its group's only process).
    if proc_stat(pgid).is_some_and(|stat| stat.pgrp == i64::from(group.as_raw()) && !stat.is_dead())
    {
        return true;
    }
    // The group exists, but maybe only as zombies: look at its members one by one.
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(proc_stat)
        .any(|stat| stat.pgrp == i64::from(group.as_raw()) && !stat.is_dead())
}

/// Sends SIGTERM to the process group `pgid`, then SIGKILL to what is left of it after `grace`.
/// Returns once no member runs any more (or, should the kernel be slow, shortly after SIGKILL).
pub async fn kill_group(pgid: u32, grace: Duration) -> Result<(), ProcessError> {
    let group = checked_group(pgid)?;
    if !deliver_to_group(group, Signal::SIGTERM)? {
        return Ok(());
    }
    wait_until_group_gone(pgid, deadline_after(grace)).await;
    if group_is_alive(pgid) {
        deliver_to_group(group, Signal::SIGKILL)?;
        wait_until_group_gone(pgid, deadline_after(AFTER_SIGKILL)).await;
    }
    Ok(())
}

/// Sends SIGTERM to the process `pid`, then SIGKILL after `grace` if it still runs.
pub async fn kill_pid(pid: u32, grace: Duration) -> Result<(), ProcessError> {
    let target = positive_pid(pid).ok_or_else(|| refused(pid, "it is not a valid process id"))?;
    if target == getpid() {
        return Err(refused(pid, "it is orch itself"));
    }
    if !deliver(target, Signal::SIGTERM)? {
        return Ok(());
    }
    wait_until(|| !is_alive(pid), deadline_after(grace)).await;
    if is_alive(pid) {
        deliver(target, Signal::SIGKILL)?;
        wait_until(|| !is_alive(pid), deadline_after(AFTER_SIGKILL)).await;
    }
    Ok(())
}

/// The group id as a `Pid`, refusing the ids whose signalling would hit orch or the whole system.
pub(crate) fn checked_group(pgid: u32) -> Result<Pid, ProcessError> {
    let group =
        positive_pid(pgid).ok_or_else(|| refused(pgid, "it is not a valid process group id"))?;
    if group.as_raw() == 1 {
        return Err(refused(pgid, "it is the init process group"));
    }
    if group == getpgrp() {
        return Err(refused(pgid, "it is orch's own process group"));
    }
    Ok(group)
}

/// Sends `signal` to the group; `false` when the group no longer exists.
pub(crate) fn deliver_to_group(group: Pid, signal: Signal) -> Result<bool, ProcessError> {
    match signal::killpg(group, signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(source) => Err(ProcessError::Signal {
            target: format!("process group {group}"),
            source,
        }),
    }
}

pub(crate) async fn wait_until_group_gone(pgid: u32, deadline: Option<Instant>) {
    wait_until(|| !group_is_alive(pgid), deadline).await;
}

/// `now + duration`, or `None` when that is too far in the future to represent (no deadline).
pub(crate) fn deadline_after(duration: Duration) -> Option<Instant> {
    Instant::now().checked_add(duration)
}

fn deliver(target: Pid, signal: Signal) -> Result<bool, ProcessError> {
    match signal::kill(target, signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(source) => Err(ProcessError::Signal {
            target: format!("process {target}"),
            source,
        }),
    }
}

async fn wait_until(mut done: impl FnMut() -> bool, deadline: Option<Instant>) {
    let mut backoff = Backoff::up_to(POLL);
    while !done() {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return;
        }
        backoff.sleep().await;
    }
}

/// Sleeps for a wait that usually ends soon: 1 ms, then twice as long each time, up to `max`.
/// A fixed step of `max` would make every short wait cost a whole step.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn up_to(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(1).min(max),
            max,
        }
    }

    pub async fn sleep(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }
}

fn refused(target: u32, reason: &'static str) -> ProcessError {
    ProcessError::Refused {
        target: target.to_string(),
        reason,
    }
}

/// `pid` as a signal target; 0 and values past `i32::MAX` would address groups or everything.
fn positive_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .map(Pid::from_raw)
}

/// The fields of `/proc/<pid>/stat` that liveness needs.
#[derive(Debug, PartialEq, Eq)]
struct ProcStat {
    state: char,
    pgrp: i64,
}

impl ProcStat {
    fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `pid (comm) state ppid pgrp ...`; the command name may itself contain `)`.
fn parse_stat(text: &str) -> Option<ProcStat> {
    let after_comm = &text[text.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcStat { state, pgrp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_lines_whose_command_contains_parentheses() {
        let stat = parse_stat("4242 (we(i)rd) name) S 1 4242 4200 0 -1 4194560 0").expect("parses");
        assert_eq!(
            stat,
            ProcStat {
                state: 'S',
                pgrp: 4242
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) Z 1"), None);
    }

    #[test]
    fn zombies_count_as_dead() {
        assert!(parse_stat("7 (sh) Z 1 7 7 0").expect("parses").is_dead());
        assert!(!parse_stat("7 (sh) R 1 7 7 0").expect("parses").is_dead());
    }

    #[test]
    fn ids_that_would_address_many_processes_are_never_alive_or_signalled() {
        assert!(!is_alive(0));
        assert!(!is_alive(u32::MAX));
        assert!(!group_is_alive(0));
        assert!(checked_group(0).is_err());
        assert!(checked_group(1).is_err());
        assert!(checked_group(u32::MAX).is_err());
        let own = u32::try_from(getpgrp().as_raw()).expect("positive");
        assert!(matches!(
            checked_group(own),
            Err(ProcessError::Refused { .. })
        ));
    }

    #[test]
    fn this_process_is_alive() {
        assert!(is_alive(std::process::id()));
    }
}
