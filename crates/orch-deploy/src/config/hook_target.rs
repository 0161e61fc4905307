//! `[hook.staging]` and `[hook.prod]`: what a hook is told per environment, so an existing hook
//! (the seeds' `orchestrator-deploy-hook.sh`) runs unchanged: its own container names
//! (`TARGET_SERVICE`), image names (`TARGET_IMAGE`) and arguments (`--build-staging`).
//!
//! It must never let a value reach the hook that a shell or docker would split or misread: names
//! are checked here, once, with the field named.

use std::collections::BTreeMap;

use super::raw::RawHookTarget;
use super::{check_env_name, check_placeholders, config_err};
use crate::error::DeployError;

/// Placeholders an image name may use.
const IMAGE_PLACEHOLDERS: [&str; 2] = ["project", "sha"];

/// The variables orch itself gives every hook: `env` may not set them (a stale `SOURCE_IMAGE`
/// on staging would make a hook retag instead of build).
pub const HOOK_VARIABLES: [&str; 6] = [
    "TARGET_SERVICE",
    "TARGET_PORT",
    "BUILD_CONTEXT",
    "GIT_SHA",
    "SOURCE_IMAGE",
    "TARGET_IMAGE",
];

/// What the hook of one environment is told; `None` keeps orch's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HookTarget {
    /// Appended to `hook.command` for this environment.
    pub args: Vec<String>,
    /// `TARGET_SERVICE` (default: `staging` or `prod`).
    pub service: Option<String>,
    /// `TARGET_IMAGE`, a template with `{project}` and `{sha}` (default: `orch-{project}:{sha}`
    /// on staging, `orch-{project}:prod` on prod).
    pub image: Option<String>,
    /// More variables for this environment's hook (`COMPOSE_PROFILE = "staging"`); never one of
    /// [`HOOK_VARIABLES`].
    pub env: BTreeMap<String, String>,
}

pub(super) fn target_from_raw(
    table: &str,
    raw: Option<RawHookTarget>,
) -> Result<HookTarget, DeployError> {
    let Some(raw) = raw else {
        return Ok(HookTarget::default());
    };
    for (index, arg) in raw.args.iter().enumerate() {
        if arg.contains('\0') {
            return Err(config_err(
                format!("{table}.args[{index}]"),
                "holds a NUL byte, which no argument can carry",
            ));
        }
    }
    if let Some(service) = &raw.service {
        let valid = !service.is_empty()
            && service.len() <= 128
            && service
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            return Err(config_err(
                format!("{table}.service"),
                "must be 1 to 128 letters, digits, `-`, `_` and `.` (a container or service name)",
            ));
        }
    }
    if let Some(image) = &raw.image {
        let field = format!("{table}.image");
        let valid = !image.is_empty()
            && image.len() <= 256
            && !image.chars().any(|c| c.is_whitespace() || c.is_control());
        if !valid {
            return Err(config_err(
                field,
                "must be a non-empty image reference without spaces, e.g. \"registry.local/app:{sha}\"",
            ));
        }
        let dummy = [("project", ""), ("sha", "")];
        check_placeholders(&field, image, &dummy, &IMAGE_PLACEHOLDERS)?;
    }
    for (name, value) in &raw.env {
        let field = format!("{table}.env.{name}");
        check_env_name(&field, name)?;
        if HOOK_VARIABLES.contains(&name.as_str()) {
            return Err(config_err(
                field,
                "is set by orch for every hook; use `service` or `image` to change it",
            ));
        }
        if value.contains('\0') {
            return Err(config_err(field, "holds a NUL byte"));
        }
    }
    Ok(HookTarget {
        args: raw.args,
        service: raw.service,
        image: raw.image,
        env: raw.env,
    })
}
