//! A hook written the way the seeds describe theirs runs unchanged: `SOURCE_IMAGE` unset (not
//! empty) on staging, its own service and image names, per-environment arguments, the 0/1/2
//! contract. The last test runs such a hook against a real dockerd: rebuild on staging, retag
//! the validated image for prod, never a second build.

use std::path::{Path, PathBuf};
use std::process::Command;

use orch_deploy::{DeployConfig, Deployer, HookDeployer, Ports};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::docker::{DOCKERFILE, docker_usable, inspect, server_binary};
use crate::support::{free_ports, get, git};

const SHA: &str = "cccccccccccccccccccccccccccccccccccccccc";

const PASSING_CHECK: &str =
    "[[staging.checks]]\nid = \"smoke\"\nkind = \"command\"\nrun = \"true\"\ntries = 1\n";

struct Fixture {
    dir: TempDir,
    ports: Ports,
    deployer: HookDeployer,
}

impl Fixture {
    /// `hook.sh` in a worktree, `hook_toml` after `[hook] command`, then `checks`.
    fn new(script: &str, project: &str, hook_toml: &str, checks: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let worktree = dir.path().join("worktree");
        std::fs::create_dir_all(&worktree).expect("mkdir");
        let hook = worktree.join("hook.sh");
        std::fs::write(&hook, script).expect("write hook");
        set_executable(&hook);
        let toml = format!(
            "kind = \"hook\"\n[hook]\ncommand = [\"./hook.sh\", \"{}\"]\n{hook_toml}\n{checks}",
            dir.path().join("calls").display()
        );
        let DeployConfig::Hook(spec) = DeployConfig::from_toml(&toml).expect("valid config") else {
            panic!("a hook config");
        };
        let ports = free_ports();
        let deployer =
            HookDeployer::new(dir.path().join("deploy"), project, spec, ports).expect("deployer");
        Fixture {
            dir,
            ports,
            deployer,
        }
    }

    fn worktree(&self) -> PathBuf {
        self.dir.path().join("worktree")
    }

    /// The lines the hook appended to its calls file.
    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Records, per call, the arguments and whether each variable is unset, empty or set.
const RECORDER: &str = r#"#!/bin/sh
calls="$1"; shift
{
  echo "args=$*"
  for name in TARGET_SERVICE TARGET_IMAGE SOURCE_IMAGE COMPOSE_PROFILE; do
    if eval "[ -z \"\${$name+x}\" ]"; then echo "$name unset"; else eval "echo \"$name=\${$name}\""; fi
  done
} >> "$calls"
"#;

#[tokio::test]
async fn source_image_is_unset_on_staging_and_the_defaults_stay() {
    let f = Fixture::new(RECORDER, "shop", "", PASSING_CHECK);
    let cancel = CancellationToken::new();
    let staged = f
        .deployer
        .deploy_staging(&f.worktree(), SHA, true, &cancel)
        .await;
    assert!(staged.verdict.is_success(), "{staged:#?}");
    let promoted = f.deployer.promote(SHA, &cancel).await;
    assert!(promoted.is_success(), "{promoted:#?}");
    assert_eq!(
        f.calls(),
        [
            "args=",
            "TARGET_SERVICE=staging",
            &format!("TARGET_IMAGE=orch-shop:{SHA}"),
            "SOURCE_IMAGE unset",
            "COMPOSE_PROFILE unset",
            "args=",
            "TARGET_SERVICE=prod",
            "TARGET_IMAGE=orch-shop:prod",
            &format!("SOURCE_IMAGE=orch-shop:{SHA}"),
            "COMPOSE_PROFILE unset",
        ]
    );
}

#[tokio::test]
async fn service_image_and_arguments_are_configured_per_environment() {
    let per_env = r#"
[hook.staging]
args = ["--build-staging"]
service = "orchestrator-staging"
image = "registry.local/{project}:{sha}"
env = { COMPOSE_PROFILE = "staging" }

[hook.prod]
args = ["--promote", "--no-build"]
service = "orchestrator"
image = "registry.local/{project}:latest"
"#;
    let f = Fixture::new(RECORDER, "orchestrator", per_env, PASSING_CHECK);
    let cancel = CancellationToken::new();
    let staged = f
        .deployer
        .deploy_staging(&f.worktree(), SHA, true, &cancel)
        .await;
    assert!(staged.verdict.is_success(), "{staged:#?}");
    assert!(f.deployer.promote(SHA, &cancel).await.is_success());
    assert_eq!(
        f.calls(),
        [
            "args=--build-staging",
            "TARGET_SERVICE=orchestrator-staging",
            &format!("TARGET_IMAGE=registry.local/orchestrator:{SHA}"),
            "SOURCE_IMAGE unset",
            "COMPOSE_PROFILE=staging",
            "args=--promote --no-build",
            "TARGET_SERVICE=orchestrator",
            "TARGET_IMAGE=registry.local/orchestrator:latest",
            // What staging built is what prod retags.
            &format!("SOURCE_IMAGE=registry.local/orchestrator:{SHA}"),
            "COMPOSE_PROFILE unset",
        ]
    );
}

#[test]
fn names_a_hook_could_misread_are_refused_with_their_field() {
    let cases = [
        (
            "[hook.staging]\nservice = \"a b\"\n",
            "hook.staging.service",
        ),
        ("[hook.prod]\nservice = \"\"\n", "hook.prod.service"),
        ("[hook.prod]\nimage = \"app:{tag}\"\n", "hook.prod.image"),
        (
            "[hook.staging]\nimage = \"app :{sha}\"\n",
            "hook.staging.image",
        ),
        (
            "[hook.staging]\nargs = [\"a\\u0000b\"]\n",
            "hook.staging.args[0]",
        ),
        ("[hook.staging]\nports = 1\n", "unknown field"),
        (
            "[hook.staging]\nenv = { SOURCE_IMAGE = \"stale\" }\n",
            "hook.staging.env.SOURCE_IMAGE",
        ),
        (
            "[hook.prod]\nenv = { \"A-B\" = \"x\" }\n",
            "hook.prod.env.A-B",
        ),
    ];
    for (table, expected) in cases {
        let toml = format!("kind = \"hook\"\n[hook]\ncommand = [\"./hook.sh\"]\n{table}");
        let error = DeployConfig::from_toml(&toml).expect_err(table).to_string();
        assert!(error.contains(expected), "{table}: {error}");
    }
}

/// The seeds' `orchestrator-deploy-hook.sh`, as their commit messages describe it: no SOURCE_IMAGE
/// means build from BUILD_CONTEXT labelled with GIT_SHA (never `git rev-parse HEAD`); a
/// SOURCE_IMAGE means retag it onto TARGET_IMAGE, no build; then recreate TARGET_SERVICE on
/// TARGET_PORT and health-check it. 0 healthy, 1 failed, 2 misuse.
const SEED_HOOK: &str = r#"#!/bin/sh
calls="$1"; shift
[ -n "${TARGET_SERVICE:-}" ] && [ -n "${TARGET_PORT:-}" ] && [ -n "${TARGET_IMAGE:-}" ] \
  && [ -n "${GIT_SHA:-}" ] && [ -n "${BUILD_CONTEXT:-}" ] || exit 2
if [ -z "${SOURCE_IMAGE+set}" ]; then
  [ "${1:-}" = "--build-staging" ] || exit 2
  echo "build $TARGET_IMAGE" >> "$calls"
  docker build -q -t "$TARGET_IMAGE" --label "org.opencontainers.image.revision=$GIT_SHA" \
    "$BUILD_CONTEXT" >/dev/null || exit 1
else
  echo "tag $SOURCE_IMAGE $TARGET_IMAGE" >> "$calls"
  docker tag "$SOURCE_IMAGE" "$TARGET_IMAGE" || exit 1
fi
docker rm -f "$TARGET_SERVICE" >/dev/null 2>&1
docker run -d --name "$TARGET_SERVICE" --network host -e "PORT=$TARGET_PORT" \
  "$TARGET_IMAGE" >/dev/null || exit 1
i=0
while [ $i -lt 50 ]; do
  curl -fsS "http://127.0.0.1:$TARGET_PORT/healthz" >/dev/null 2>&1 && exit 0
  i=$((i + 1)); sleep 0.1
done
exit 1
"#;

#[tokio::test]
async fn a_seed_style_hook_rebuilds_on_staging_and_retags_for_prod_on_real_docker() {
    if !docker_usable() {
        return;
    }
    let name = format!("orchtest-seedhook-{}", std::process::id());
    let per_env = format!(
        "[hook.staging]\nargs = [\"--build-staging\"]\nservice = \"{name}-staging\"\nimage = \"{name}:{{sha}}\"\n\
         [hook.prod]\nservice = \"{name}\"\nimage = \"{name}:latest\"\n"
    );
    let checks = "[[staging.checks]]\nid = \"greeting\"\nkind = \"http\"\npath = \"/\"\nbody_contains = \"Hello\"\ntries = 3\ninterval_ms = 100\n";
    let f = Fixture::new(SEED_HOOK, &name, &per_env, checks);
    let repo = f.worktree();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("Dockerfile"), DOCKERFILE).expect("Dockerfile");
    std::fs::copy(server_binary(), repo.join("server")).expect("server");
    std::fs::write(repo.join("greeting.txt"), "Hello from the seed hook\n").expect("greeting");
    std::fs::write(repo.join("health.txt"), "ok").expect("health");
    std::fs::write(repo.join(".dockerignore"), "hook.sh\n").expect("dockerignore");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "seed"]);
    let sha = git(&repo, &["rev-parse", "HEAD"]);
    let cancel = CancellationToken::new();

    let staged = f.deployer.deploy_staging(&repo, &sha, true, &cancel).await;
    let promoted = f.deployer.promote(&sha, &cancel).await;
    let prod_answer = get(f.ports.prod, "/").await;
    let staging_image = inspect(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{name}:{sha}"),
    ]);
    let prod_image = inspect(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{name}:latest"),
    ]);
    let label = inspect(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"org.opencontainers.image.revision\"}}",
        &format!("{name}:latest"),
    ]);
    let calls = f.calls();
    // Clean up before asserting, so a failure leaves nothing behind.
    let _ = Command::new("docker")
        .args(["rm", "-f", &format!("{name}-staging"), &name])
        .output();
    let _ = Command::new("docker")
        .args([
            "rmi",
            "-f",
            &format!("{name}:{sha}"),
            &format!("{name}:latest"),
        ])
        .output();

    assert!(staged.verdict.is_success(), "{staged:#?}");
    assert!(promoted.is_success(), "{promoted:#?}");
    assert_eq!(
        calls,
        [
            format!("build {name}:{sha}"),
            format!("tag {name}:{sha} {name}:latest")
        ],
        "one build on staging, a retag for prod"
    );
    assert!(
        prod_answer
            .as_ref()
            .is_ok_and(|body| body.contains("Hello from the seed hook")),
        "{prod_answer:?}"
    );
    assert!(staging_image.is_some());
    assert_eq!(
        staging_image, prod_image,
        "prod runs the very image staging validated"
    );
    assert_eq!(label.as_deref(), Some(sha.as_str()));
}
