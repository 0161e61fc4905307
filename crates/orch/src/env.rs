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
/// An on/off switch from the environment: unset (or empty) is `default`; `true`/`false`,
/// `1`/`0`, `yes`/`no`, `on`/`off` (any case) are read; anything else is an error naming the
/// variable and the accepted values, never a silent default (a kill-switch that fails open on a
/// typo is no kill-switch).
pub fn flag(name: &str, default: bool) -> Result<bool, String> {
    match std::env::var(name) {
        Ok(v) => parse_flag(name, &v, default),
        Err(std::env::VarError::NotPresent) => Ok(default),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{name} is not valid UTF-8; set it to true or false"
        )),
    }
}

fn parse_flag(name: &str, value: &str, default: bool) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "" => Ok(default),
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!(
            "{name}={other:?} is not a switch; use true or false (also 1/0, yes/no, on/off)"
        )),
    }
}

#[cfg(test)]
mod flag_tests {
    use super::parse_flag;

    #[test]
    fn a_switch_reads_its_words_and_refuses_a_typo() {
        for on in ["true", "TRUE", " 1", "yes", "on"] {
            assert_eq!(parse_flag("X", on, false), Ok(true), "{on}");
        }
        for off in ["false", "False", "0", "no", "off "] {
            assert_eq!(parse_flag("X", off, true), Ok(false), "{off}");
        }
        assert_eq!(parse_flag("X", "", true), Ok(true));
        let typo = parse_flag("ORCH_STAGING_INFRA_TOLERANCE_ENABLED", "flase", true)
            .expect_err("a typo is refused");
        assert!(
            typo.contains("ORCH_STAGING_INFRA_TOLERANCE_ENABLED=\"flase\"")
                && typo.contains("true or false"),
            "{typo}"
        );
    }
}
