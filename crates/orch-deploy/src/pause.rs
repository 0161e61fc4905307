//! Paused promotions: after prod was restored, a project's further promotions wait for a person.
//!
//! A restore means a change that passed staging still broke prod: whatever caused it (the prod
//! data, its configuration, a gap in the staging checks) is likely to break the next promotion
//! too. So the deployer that restored writes `<root>/prod/PAUSED` with the reason, every
//! promotion is refused while it exists, and [`resume_promotions`] (or deleting the file) clears
//! it once someone has looked. Unlike FROZEN, prod itself runs fine: only promotions wait.

use std::path::{Path, PathBuf};

use crate::error::DeployError;
use crate::layout::{Layout, remove_file};

/// Records that promotions of the project under `layout` pause, and why.
fn pause(layout: &Layout, reason: &str) -> Result<PathBuf, DeployError> {
    let marker = layout.paused_marker();
    if let Some(dir) = marker.parent() {
        std::fs::create_dir_all(dir).map_err(DeployError::io("create", dir))?;
    }
    std::fs::write(&marker, format!("{reason}\n")).map_err(DeployError::io("write", &marker))?;
    Ok(marker)
}

/// Pauses further promotions after a restore and says so in the deploy log.
pub(crate) fn pause_after_restore(layout: &Layout, lines: &mut Vec<String>, reason: &str) {
    match pause(layout, reason) {
        Ok(marker) => lines.push(format!(
            "promotions are PAUSED until a person resumes them (delete {})",
            marker.display()
        )),
        Err(e) => lines.push(format!("could not pause promotions: {e}")),
    }
}

/// Refuses a promotion while prod is frozen or promotions are paused: both wait for a person.
pub(crate) fn refuse_if_held(layout: &Layout) -> Result<(), DeployError> {
    let frozen = layout.frozen_marker();
    if frozen.exists() {
        let reason = read_reason(&frozen);
        return Err(DeployError::Frozen {
            marker: frozen,
            reason,
        });
    }
    let paused = layout.paused_marker();
    if paused.exists() {
        let reason = read_reason(&paused);
        return Err(DeployError::Paused {
            marker: paused,
            reason,
        });
    }
    Ok(())
}

/// Lets promotions of the project whose deploy state is under `deploy_root` (`<orch
/// dir>/deploy/<project>`) run again after a restore paused them; returns the reason it cleared,
/// `None` when nothing was paused. Does not clear FROZEN: a frozen prod needs fixing by hand.
pub fn resume_promotions(deploy_root: &Path) -> Result<Option<String>, DeployError> {
    let marker = Layout::new(deploy_root).paused_marker();
    if !marker.exists() {
        return Ok(None);
    }
    let reason = read_reason(&marker);
    remove_file(&marker)?;
    Ok(Some(reason))
}

fn read_reason(marker: &Path) -> String {
    std::fs::read_to_string(marker)
        .unwrap_or_default()
        .trim()
        .to_owned()
}
