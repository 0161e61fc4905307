//! Every environment variable orch reads, declared in one place.

/// The configuration file (default `./orch.toml`); same as `--config`.
pub const CONFIG: &str = "ORCH_CONFIG";
/// Overrides `[store] url` of the configuration file.
pub const STORE_URL: &str = "ORCH_STORE_URL";
/// `false`, `0` or `no` turns off staging INFRA tolerance globally (contract 4). Default true.
pub const STAGING_INFRA_TOLERANCE_ENABLED: &str = "ORCH_STAGING_INFRA_TOLERANCE_ENABLED";
/// Overrides `[engine] max_parallel`.
pub const MAX_PARALLEL: &str = "ORCH_MAX_PARALLEL";
/// Test hook: a named point at which orch kills itself with SIGKILL (crash-safety tests).
pub const CRASHPOINT: &str = "ORCH_CRASHPOINT";
/// Log filter for orch's own diagnostics (tracing `EnvFilter` syntax), default `warn`.
pub const LOG: &str = "ORCH_LOG";

/// Reads a boolean switch: unset means `default`; `false`, `0`, `no`, `off` mean false.
pub fn flag(name: &str, default: bool) -> bool {
    match std::env::var(name) {
        Ok(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        ),
        Err(_) => default,
    }
}
