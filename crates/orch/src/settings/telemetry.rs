//! `[telemetry]` of orch.toml and OpenTelemetry's standard variables: where traces go.
//!
//! Off unless an endpoint is named. The environment wins over the file, as OpenTelemetry's SDKs
//! do: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL), else `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (a base, `/v1/traces` appended), else `[telemetry] otlp_endpoint` (a base too);
//! `OTEL_SDK_DISABLED=true` turns it off; `OTEL_SERVICE_NAME` names the service. This module
//! must never accept an endpoint orch cannot send to (not http(s), or a gRPC protocol) silently:
//! it is an error naming the variable or key.

use serde::{Deserialize, Serialize};

/// `[telemetry]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySection {
    /// The OTLP/HTTP collector's base URL (`http://127.0.0.1:4318`); traces go to
    /// `<it>/v1/traces`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the spans (default `orch`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// Where traces go: the traces URL and the service name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traces {
    pub url: String,
    pub service_name: String,
}

pub const TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
pub const ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
pub const PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
pub const TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
pub const SDK_DISABLED: &str = "OTEL_SDK_DISABLED";

/// Resolves `[telemetry]` and the environment (read through `env`, so tests need not change the
/// process's). `None`: no traces.
pub fn resolve(
    file: &TelemetrySection,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Traces>, String> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    match set(SDK_DISABLED).map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "true" => return Ok(None),
        Some(v) if v == "false" => {}
        Some(v) => return Err(format!("{SDK_DISABLED}={v:?}: use true or false")),
        None => {}
    }
    for name in [TRACES_PROTOCOL, PROTOCOL] {
        if let Some(protocol) = set(name) {
            // OTLP/HTTP collectors take JSON and protobuf on the same path; orch sends JSON.
            if !matches!(protocol.trim(), "http/json" | "http/protobuf") {
                return Err(format!(
                    "{name}={protocol:?}: orch sends traces over OTLP/HTTP (http/json); point it \
                     at the collector's HTTP port (4318), not gRPC"
                ));
            }
            break;
        }
    }
    let (url, source) = if let Some(url) = set(TRACES_ENDPOINT) {
        (url.trim().to_owned(), TRACES_ENDPOINT.to_owned())
    } else if let Some(base) = set(ENDPOINT) {
        (with_traces_path(&base), ENDPOINT.to_owned())
    } else if let Some(base) = file
        .otlp_endpoint
        .as_deref()
        .filter(|b| !b.trim().is_empty())
    {
        (
            with_traces_path(base),
            "[telemetry] otlp_endpoint".to_owned(),
        )
    } else {
        return Ok(None);
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "{source}: the OTLP endpoint must be an http:// or https:// URL, such as \
             http://127.0.0.1:4318"
        ));
    }
    let service_name = set(SERVICE_NAME)
        .or_else(|| file.service_name.clone())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "orch".to_owned());
    Ok(Some(Traces { url, service_name }))
}

fn with_traces_path(base: &str) -> String {
    format!(
        "{}{}",
        base.trim().trim_end_matches('/'),
        orch_engine::telemetry::DEFAULT_PATH
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn file(endpoint: Option<&str>) -> TelemetrySection {
        TelemetrySection {
            otlp_endpoint: endpoint.map(str::to_owned),
            service_name: None,
        }
    }

    #[test]
    fn off_by_default_and_the_file_names_a_base() {
        assert_eq!(resolve(&file(None), env_of(&[])), Ok(None));
        let traces = resolve(&file(Some("http://127.0.0.1:4318/")), env_of(&[]))
            .expect("valid")
            .expect("on");
        assert_eq!(traces.url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(traces.service_name, "orch");
    }

    #[test]
    fn the_environment_wins_and_the_traces_endpoint_is_taken_as_it_is() {
        let base = env_of(&[
            (ENDPOINT, "http://collector:4318"),
            (SERVICE_NAME, "orch-ci"),
        ]);
        let traces = resolve(&file(Some("http://other:4318")), base)
            .expect("valid")
            .expect("on");
        assert_eq!(traces.url, "http://collector:4318/v1/traces");
        assert_eq!(traces.service_name, "orch-ci");
        let full = env_of(&[
            (TRACES_ENDPOINT, "https://collector/otlp/traces"),
            (ENDPOINT, "http://ignored:4318"),
        ]);
        let traces = resolve(&file(None), full).expect("valid").expect("on");
        assert_eq!(traces.url, "https://collector/otlp/traces");
        let disabled = env_of(&[(SDK_DISABLED, "true"), (ENDPOINT, "http://c:4318")]);
        assert_eq!(resolve(&file(None), disabled), Ok(None));
    }

    #[test]
    fn what_orch_cannot_send_to_is_refused_naming_where_it_came_from() {
        let err = resolve(&file(Some("collector:4318")), env_of(&[])).expect_err("no scheme");
        assert!(err.starts_with("[telemetry] otlp_endpoint:"), "{err}");
        let err = resolve(&file(None), env_of(&[(ENDPOINT, "grpc://c:4317")])).expect_err("grpc");
        assert!(err.starts_with(ENDPOINT), "{err}");
        let grpc = env_of(&[(PROTOCOL, "grpc"), (ENDPOINT, "http://c:4317")]);
        let err = resolve(&file(None), grpc).expect_err("grpc protocol");
        assert!(err.contains("not gRPC"), "{err}");
        let typo = env_of(&[(SDK_DISABLED, "ture")]);
        assert!(resolve(&file(None), typo).is_err());
    }
}
