use super::*;

const BASE: &str = r#"
[build]
command = "cargo build --release --quiet"
artifact = "target/release/demo-app"

[run]
command = ["{artifact}", "--port", "{port}"]
env = { PORT = "{port}" }

[staging]
infra_allowlist = ["C9a"]

[[staging.checks]]
id = "greeting"
category = "REAL"
kind = "http"
path = "/"
body_contains = "Hello"
tries = 3

[[staging.checks]]
id = "C9a"
category = "INFRA"
kind = "command"
run = "curl -fsS {base_url}/ >/dev/null"
"#;

/// Parses `BASE` with `extra` appended (another check or table), expecting an error containing `expected`.
fn check_err(extra: &str, expected: &str) {
    let text = format!("{BASE}\n{extra}");
    match DeploySpec::from_toml(&text) {
        Ok(spec) => panic!("expected an error containing {expected:?}, got {spec:#?}"),
        Err(e) => assert!(
            e.to_string().contains(expected),
            "error {:?} lacks {expected:?}",
            e.to_string()
        ),
    }
}

#[test]
fn reads_the_documented_shape_with_defaults() {
    let spec = DeploySpec::from_toml(BASE).expect("valid");
    assert_eq!(
        spec.build.artifact,
        PathBuf::from("target/release/demo-app")
    );
    assert_eq!(spec.build.timeout, DEFAULT_BUILD_TIMEOUT);
    assert_eq!(spec.run.env.get("PORT").map(String::as_str), Some("{port}"));
    assert_eq!(
        spec.health,
        HealthSpec {
            path: "/healthz".into(),
            tries: 10,
            interval: Duration::from_secs(6),
            timeout: Duration::from_secs(2)
        }
    );
    let [greeting, infra] = spec.staging.checks.as_slice() else {
        panic!("two checks")
    };
    assert_eq!(greeting.category, CheckCategory::Real);
    assert_eq!(
        greeting.probe,
        Probe::Http {
            path: "/".into(),
            expect_status: 200,
            body_contains: Some("Hello".into()),
            json: None
        }
    );
    assert_eq!(
        (greeting.tries, greeting.successes, greeting.shadow),
        (3, 1, false)
    );
    assert_eq!(greeting.modes, vec![Mode::Stub, Mode::Live]);
    assert_eq!(infra.category, CheckCategory::Infra);
    assert_eq!(
        infra.probe,
        Probe::Command {
            run: "curl -fsS {base_url}/ >/dev/null".into(),
            expect_exit: 0
        }
    );
}

#[test]
fn category_defaults_to_real_so_a_forgotten_category_is_never_waived() {
    let spec = DeploySpec::from_toml(&format!(
        "{BASE}\n[[staging.checks]]\nid = \"x\"\nkind = \"command\"\nrun = \"true\"\n"
    ))
    .expect("valid");
    assert_eq!(spec.staging.checks[2].category, CheckCategory::Real);
}

#[test]
fn rejects_each_kind_of_mistake_naming_the_field() {
    let cases = [
        (
            "[[staging.checks]]\nid = \"x\"\ncategory = \"SOMETIMES\"\nkind = \"http\"\npath = \"/\"",
            "staging.checks[2] (id `x`): unknown category `SOMETIMES`; known: REAL, INFRA",
        ),
        (
            "[[staging.checks]]\nid = \"greeting\"\nkind = \"http\"\npath = \"/\"",
            "(id `greeting`): another check has the same id",
        ),
        (
            "[[staging.checks]]\nid = \"C9b\"\ncategory = \"INFRA\"\nkind = \"http\"\npath = \"/\"",
            "(id `C9b`): is category INFRA but its id is not on staging.infra_allowlist",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"http\"\npath = \"/\"\ntries = 0",
            "staging.checks[2] (id `x`).tries: must be at least 1",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"command\"",
            "(id `x`): a command check needs `run`",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"tcp\"",
            "(id `x`): unknown kind `tcp`; known: http, command",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"http\"",
            "(id `x`): an http check needs `path`",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"command\"\nrun = \"true\"\npath = \"/\"",
            "`path` does not apply to a command check",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"http\"\npath = \"/\"\nrun = \"true\"",
            "`run` does not apply to a http check",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"http\"\npath = \"/\"\njson_field = \"a\"",
            "`json_field` and `json_equals` go together",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"http\"\npath = \"/\"\ntries = 2\nsuccesses = 3",
            "needs 3 consecutive successes but only 2 tries",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"http\"\npath = \"/\"\nmodes = [\"prod\"]",
            "unknown mode `prod`; known: stub, live",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"http\"\npath = \"/\"\nmodes = []",
            "modes: is empty",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"command\"\nrun = \"curl {base}\"",
            "unknown placeholder `{base}`; known: {base_url}",
        ),
        (
            "[[staging.checks]]\nid = \"a/b\"\nkind = \"command\"\nrun = \"true\"",
            "id must be non-empty",
        ),
        (
            "[[staging.checks]]\nid = \"x\"\nkind = \"http\"\npath = \"/\"\nretries = 2",
            "unknown field `retries`",
        ),
        ("[health]\ntries = 0", "health.tries: must be at least 1"),
        (
            "[health]\npath = \"healthz\"",
            "health.path: `healthz` must start with `/`",
        ),
    ];
    for (extra, expected) in cases {
        check_err(extra, expected);
    }
}

#[test]
fn rejects_an_allowlisted_id_without_a_check() {
    let text = BASE.replace(
        "infra_allowlist = [\"C9a\"]",
        "infra_allowlist = [\"C9a\", \"C9b\"]",
    );
    let err = DeploySpec::from_toml(&text).expect_err("C9b names no check");
    assert_eq!(
        err.to_string(),
        ".orch/deploy.toml: staging.infra_allowlist[1]: `C9b` names no check; remove it or add the check"
    );
}

#[test]
fn rejects_bad_build_and_run_settings() {
    let cases = [
        (
            (
                "artifact = \"target/release/demo-app\"",
                "artifact = \"../outside\"",
            ),
            "build.artifact: `../outside` must be a relative path",
        ),
        (
            (
                "artifact = \"target/release/demo-app\"",
                "artifact = \"/etc/passwd\"",
            ),
            "build.artifact: `/etc/passwd`",
        ),
        (
            (
                "command = [\"{artifact}\", \"--port\", \"{port}\"]",
                "command = []",
            ),
            "run.command: is empty",
        ),
        (
            (
                "command = [\"{artifact}\", \"--port\", \"{port}\"]",
                "command = [\"{artefact}\"]",
            ),
            "run.command[0]: unknown placeholder `{artefact}`",
        ),
        (
            (
                "env = { PORT = \"{port}\" }",
                "env = { \"BAD NAME\" = \"1\" }",
            ),
            "run.env.BAD NAME: is not a valid environment variable name",
        ),
    ];
    for ((from, to), expected) in cases {
        let text = BASE.replacen(from, to, 1);
        let err = DeploySpec::from_toml(&text).expect_err(expected);
        assert!(err.to_string().contains(expected), "{err} lacks {expected}");
    }
}

#[test]
fn a_toml_syntax_error_is_reported_as_such() {
    let err = DeploySpec::from_toml("[build\n").expect_err("broken");
    assert!(matches!(err, DeployError::ConfigSyntax { .. }), "{err:?}");
}
