//! Every environment variable orch reads, declared in one place.

/// The configuration file (default `./orch.toml`); same as `--config`.
pub const CONFIG: &str = "ORCH_CONFIG";
/// Overrides `[store] url` of the configuration file.
pub const STORE_URL: &str = "ORCH_STORE_URL";
/// `false`, `0` or `no` turns off staging INFRA tolerance globally (contract 4). Default true.
pub const STAGING_INFRA_TOLERANCE_ENABLED: &str = "ORCH_STAGING_INFRA_TOLERANCE_ENABLED";
/// The project registry as a JSON array of `[[projects]]` entries (same fields), replacing the
/// file's `[[projects]]`: for containers and service managers that configure by environment.
pub const PROJECTS_JSON: &str = "ORCH_PROJECTS_JSON";
/// Overrides `[engine] max_parallel`.
pub const MAX_PARALLEL: &str = "ORCH_MAX_PARALLEL";
/// Test hook: a named point at which orch kills itself with SIGKILL (crash-safety tests).
pub const CRASHPOINT: &str = "ORCH_CRASHPOINT";
/// `orch serve`: the bearer token the JSON API requires. Unset: the API is read-only.
pub const API_TOKEN: &str = "ORCH_API_TOKEN";
/// `orch serve`: the HMAC-SHA256 secret of Plane webhooks. Unset: Plane deliveries are refused.
pub const PLANE_WEBHOOK_SECRET: &str = "ORCH_PLANE_WEBHOOK_SECRET";
/// `orch serve`: the HMAC-SHA256 secret of Gitea/Forgejo webhooks. Unset: they are refused.
pub const GITEA_WEBHOOK_SECRET: &str = "ORCH_GITEA_WEBHOOK_SECRET";
/// `orch serve`: the HMAC-SHA256 secret of GitHub webhooks. Unset: they are refused.
pub const GITHUB_WEBHOOK_SECRET: &str = "ORCH_GITHUB_WEBHOOK_SECRET";
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
