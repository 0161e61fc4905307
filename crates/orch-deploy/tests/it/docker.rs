//! The docker deployer against a real dockerd: images `FROM scratch` holding a statically linked
//! test server (`docker_app/server.c`, built with `gcc -static`, since nothing can be pulled),
//! containers on the host network at loopback ports from `free_ports`.
//!
//! The deployer runs the CLI through a wrapper script that logs each subcommand, so a test can
//! count `docker build` calls. Every test uses its own project name, and removes the containers
//! and images it created. Without a usable dockerd the tests are skipped and counted
//! (`test-support/skip.rs`), except under `.ci/run` or `CI=true`: then they fail
//! (`.ci/install-docker.sh` provides dockerd there).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use orch_deploy::{
    DeployConfig, DeployReport, DeployStatus, Deployer, DockerDeployer, Env, Ports, StagingReport,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::support::{free_ports, get, git};

const SERVER_C: &str = include_str!("docker_app/server.c");

pub(crate) const DOCKERFILE: &str = "FROM scratch
COPY server /server
COPY greeting.txt /greeting.txt
COPY health.txt /health.txt
ENTRYPOINT [\"/server\"]
";

/// Whether dockerd answers; when it does not, the test is skipped, or fails where every
/// dependency is required (`.ci/run`, `CI=true`: they install it).
pub(crate) fn docker_usable() -> bool {
    let answer = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    let problem = match answer {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("the docker CLI would not start: {e}"),
    };
    crate::skip::skip(&format!(
        "docker is not usable here ({problem}); run .ci/install-docker.sh"
    ));
    false
}

/// The static test server, compiled once per version of its source and shared by every test
/// process (nextest runs each test in its own): compiled to a private file, then renamed into
/// place, so a concurrent test never sees half a binary.
pub(crate) fn server_binary() -> PathBuf {
    use std::hash::{DefaultHasher, Hash, Hasher};
    static BUILT: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = built.as_ref() {
        return path.clone();
    }
    let mut hasher = DefaultHasher::new();
    SERVER_C.hash(&mut hasher);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("orch-docker-app-{:016x}", hasher.finish()));
    let binary = dir.join("server");
    if !binary.is_file() {
        std::fs::create_dir_all(&dir).expect("mkdir for the test app");
        let source = dir.join(format!("server.{}.c", std::process::id()));
        std::fs::write(&source, SERVER_C).expect("write server.c");
        let partial = dir.join(format!("server.{}.partial", std::process::id()));
        let out = Command::new("gcc")
            .args(["-static", "-O2", "-o"])
            .arg(&partial)
            .arg(&source)
            .output()
            .expect("gcc runs (install gcc and the static libc: .ci/install-docker.sh)");
        assert!(
            out.status.success(),
            "gcc -static failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::rename(&partial, &binary).expect("move the test app into place");
        let _ = std::fs::remove_file(&source);
    }
    *built = Some(binary.clone());
    binary
}

struct Fixture {
    dir: TempDir,
    project: String,
    ports: Ports,
    deployer: DockerDeployer,
}

impl Fixture {
    /// A repo with the Dockerfile and the test server, its first commit serving `greeting`.
    fn new(name: &str, docker_table: &str, checks: &str) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).expect("mkdir repo");
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("Dockerfile"), DOCKERFILE).expect("write Dockerfile");
        std::fs::copy(server_binary(), repo.join("server")).expect("copy the test server");
        let calls = dir.path().join("docker-calls");
        let wrapper = dir.path().join("docker-wrapper.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\necho \"$1\" >> '{}'\nexec docker \"$@\"\n",
                calls.display()
            ),
        )
        .expect("write the docker wrapper");
        set_executable(&wrapper);
        let ports = free_ports();
        let toml = format!(
            r#"
kind = "docker"

[docker]
binary = "{wrapper}"
env = {{ STAGING_PORT = "{staging}" }}
{docker_table}

[health]
path = "/healthz"
tries = 40
interval_ms = 100
timeout_ms = 1000

{checks}
"#,
            wrapper = wrapper.display(),
            staging = ports.staging,
        );
        let DeployConfig::Docker(spec) = DeployConfig::from_toml(&toml).expect("valid config")
        else {
            panic!("kind = docker must read as a docker config");
        };
        let project = format!("orchtest-{name}-{}", std::process::id());
        let deployer = DockerDeployer::new(dir.path().join("deploy"), &project, spec, ports)
            .expect("deployer");
        Fixture {
            dir,
            project,
            ports,
            deployer,
        }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// Commits a version serving `greeting`; `staging_only` makes its health fail off staging.
    fn commit(&self, greeting: &str, staging_only: bool) -> String {
        let repo = self.repo();
        std::fs::write(repo.join("greeting.txt"), format!("{greeting}\n")).expect("greeting");
        let health = if staging_only { "staging-only" } else { "ok" };
        std::fs::write(repo.join("health.txt"), health).expect("health");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", greeting]);
        git(&repo, &["rev-parse", "HEAD"])
    }

    async fn stage(&self, sha: &str) -> StagingReport {
        self.deployer
            .deploy_staging(&self.repo(), sha, true, &CancellationToken::new())
            .await
    }

    async fn promote(&self, sha: &str) -> DeployReport {
        self.deployer.promote(sha, &CancellationToken::new()).await
    }

    /// How often the deployer ran `docker build`.
    fn builds(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("docker-calls"))
            .unwrap_or_default()
            .lines()
            .filter(|l| *l == "build")
            .count()
    }

    fn image_id(&self, tag: &str) -> Option<String> {
        inspect(&["image", "inspect", "--format", "{{.Id}}", tag])
    }

    fn label(&self, tag: &str) -> Option<String> {
        let format = "{{index .Config.Labels \"org.opencontainers.image.revision\"}}";
        inspect(&["image", "inspect", "--format", format, tag])
    }

    /// The image id the env's container runs, if it exists.
    fn running_image(&self, env: Env) -> Option<String> {
        inspect(&[
            "container",
            "inspect",
            "--format",
            "{{.Image}}",
            &self.deployer.container(env),
        ])
    }
}

impl Drop for Fixture {
    /// Removes the containers and images this test created, whatever happened.
    fn drop(&mut self) {
        for env in [Env::Staging, Env::Prod] {
            let _ = Command::new("docker")
                .args(["container", "rm", "--force", &self.deployer.container(env)])
                .output();
        }
        // Every image the deployer builds carries this label, also one a test left untagged.
        let label = format!("label=orch.project={}", self.project);
        let listed = Command::new("docker")
            .args(["image", "ls", "--all", "--quiet", "--filter", &label])
            .output();
        if let Ok(out) = listed {
            let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            ids.sort();
            ids.dedup();
            if !ids.is_empty() {
                let _ = Command::new("docker")
                    .args(["image", "rm", "--force"])
                    .args(&ids)
                    .output();
            }
        }
    }
}

pub(crate) fn inspect(args: &[&str]) -> Option<String> {
    let out = Command::new("docker").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn set_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

const CHECKS: &str = r#"
[[staging.checks]]
id = "greeting"
kind = "http"
path = "/"
body_contains = "Hello"
tries = 3
interval_ms = 100

[[staging.checks]]
id = "selfcheck"
kind = "exec"
exec = ["/server", "selfcheck"]
tries = 1
"#;

fn reason_of(report: &DeployReport) -> String {
    match &report.status {
        DeployStatus::Failed { reason } => reason.clone(),
        DeployStatus::Success => panic!("expected FAILED: {report:#?}"),
    }
}

#[tokio::test]
async fn staging_builds_one_labelled_image_and_prod_runs_that_same_image_without_building() {
    if !docker_usable() {
        return;
    }
    let f = Fixture::new("once", "", CHECKS);
    let sha = f.commit("Hello v1", false);

    let staged = f.stage(&sha).await;
    assert!(staged.verdict.is_success(), "{:#?}", staged.lines);
    assert_eq!(f.builds(), 1);
    let tag = f.deployer.image(&sha);
    assert_eq!(tag, format!("orch-{}:{sha}", f.project));
    let image = f.image_id(&tag).expect("the SHA-tagged image exists");
    assert_eq!(f.label(&tag).as_deref(), Some(sha.as_str()));
    let build = staged.build.as_ref().expect("the image is reported");
    assert_eq!(build.digest, image, "the staging log names the image id");
    assert!(
        staged
            .lines
            .iter()
            .any(|l| l == "PASS selfcheck (REAL): `/server selfcheck` exited 0"),
        "the exec check ran in the container: {:#?}",
        staged.lines
    );
    assert_eq!(
        f.running_image(Env::Staging).as_deref(),
        Some(image.as_str())
    );
    assert_eq!(get(f.ports.staging, "/").await.as_deref(), Ok("Hello v1\n"));

    let again = f.stage(&sha).await;
    assert!(again.verdict.is_success(), "{:#?}", again.lines);
    assert!(again.build.as_ref().is_some_and(|b| b.reused));
    assert_eq!(f.builds(), 1, "staging the same SHA again reuses its image");

    let promoted = f.promote(&sha).await;
    assert!(promoted.is_success(), "{:#?}", promoted.lines);
    assert_eq!(f.builds(), 1, "promotion never builds");
    assert_eq!(promoted.digest.as_deref(), Some(image.as_str()));
    assert_eq!(f.image_id(&f.deployer.image("prod")), Some(image.clone()));
    assert_eq!(f.running_image(Env::Prod), Some(image));
    assert_eq!(get(f.ports.prod, "/").await.as_deref(), Ok("Hello v1\n"));
    assert_eq!(
        get(f.ports.staging, "/").await.as_deref(),
        Ok("Hello v1\n"),
        "promotion leaves staging alone"
    );
}

#[tokio::test]
async fn promotion_refuses_an_image_that_is_not_the_validated_one() {
    if !docker_usable() {
        return;
    }
    let f = Fixture::new("refuse", "", CHECKS);
    let v1 = f.commit("Hello v1", false);
    assert!(f.stage(&v1).await.verdict.is_success());
    let v2 = f.commit("Hello v2", false);

    let unvalidated = f.promote(&v2).await;
    assert!(
        reason_of(&unvalidated).contains("never passed staging"),
        "{unvalidated:#?}"
    );

    // Someone points v1's tag at an image built from another SHA.
    assert!(f.stage(&v2).await.verdict.is_success());
    let v2_tag = f.deployer.image(&v2);
    let v1_tag = f.deployer.image(&v1);
    let retagged = Command::new("docker")
        .args(["tag", &v2_tag, &v1_tag])
        .status()
        .expect("docker tag");
    assert!(retagged.success());
    let refused = f.promote(&v1).await;
    let reason = reason_of(&refused);
    assert!(
        reason.contains("is not the one staging validated"),
        "{reason}"
    );
    assert!(reason.contains("the tag now names"), "{reason}");

    // An impostor carrying v1's tag and even its revision label: the label alone never convinces.
    let impostor = f.dir.path().join("impostor");
    std::fs::create_dir_all(&impostor).expect("mkdir impostor");
    std::fs::write(impostor.join("Dockerfile"), "FROM scratch\nCOPY x /x\n").expect("Dockerfile");
    std::fs::write(impostor.join("x"), "impostor").expect("x");
    let built = Command::new("docker")
        .args(["build", "--quiet", "--tag", &v1_tag])
        .args([
            "--label",
            &format!("org.opencontainers.image.revision={v1}"),
        ])
        .args(["--label", &format!("orch.project={}", f.project)])
        .arg(&impostor)
        .output()
        .expect("docker build");
    assert!(built.status.success(), "{built:?}");
    assert_eq!(f.label(&v1_tag).as_deref(), Some(v1.as_str()));
    let reason = reason_of(&f.promote(&v1).await);
    assert!(
        reason.contains("staging validated image sha256:"),
        "the image id gives it away: {reason}"
    );
    assert_eq!(f.running_image(Env::Prod), None, "nothing was deployed");
    assert_eq!(
        f.image_id(&f.deployer.image("prod")),
        None,
        "nothing was tagged prod"
    );
}

#[tokio::test]
async fn a_failed_prod_health_check_restores_the_previous_image_which_answers() {
    if !docker_usable() {
        return;
    }
    let f = Fixture::new("restore", "", CHECKS);
    let good = f.commit("Hello good", false);
    assert!(f.stage(&good).await.verdict.is_success());
    assert!(f.promote(&good).await.is_success());
    let good_image = f.image_id(&f.deployer.image(&good)).expect("good image");

    let bad = f.commit("Hello bad", true);
    let staged = f.stage(&bad).await;
    assert!(
        staged.verdict.is_success(),
        "healthy on staging: {:#?}",
        staged.lines
    );
    let report = f.promote(&bad).await;
    let reason = reason_of(&report);
    assert!(reason.contains("never became healthy"), "{reason}");
    assert!(reason.contains("prod was restored"), "{reason}");
    assert_eq!(report.restored.as_deref(), Some(good.as_str()));
    assert!(!report.frozen);
    assert_eq!(f.running_image(Env::Prod), Some(good_image.clone()));
    assert_eq!(
        f.image_id(&f.deployer.image("prod")),
        Some(good_image.clone())
    );
    assert_eq!(f.image_id(&f.deployer.image("previous")), Some(good_image));
    assert_eq!(get(f.ports.prod, "/").await.as_deref(), Ok("Hello good\n"));
    assert!(
        report
            .log_markdown("t")
            .contains(&format!("restored_to: \"{good}\"")),
        "the deploy log names the restore"
    );

    // Promotions now wait for a person, even of the image that runs fine.
    let paused = f.promote(&good).await;
    assert!(
        reason_of(&paused).starts_with("promotions are paused since prod was restored"),
        "{paused:#?}"
    );
    let root = f.dir.path().join("deploy");
    assert!(
        orch_deploy::resume_promotions(&root)
            .expect("resume")
            .is_some()
    );
    assert!(f.promote(&good).await.is_success());
}

#[tokio::test]
async fn a_build_that_fails_is_the_changes_fault() {
    if !docker_usable() {
        return;
    }
    let f = Fixture::new("broken", "dockerfile = \"Broken.Dockerfile\"", CHECKS);
    std::fs::write(
        f.repo().join("Broken.Dockerfile"),
        "FROM scratch\nCOPY missing-file /missing-file\n",
    )
    .expect("write the broken Dockerfile");
    let sha = f.commit("Hello", false);
    let report = f.stage(&sha).await;
    assert!(!report.verdict.is_success());
    let error = report.error.clone().unwrap_or_default();
    assert!(error.contains("the build command `docker build"), "{error}");
    assert!(
        !report.infra_error,
        "a broken Dockerfile goes back to development"
    );
    assert!(!f.promote(&sha).await.is_success());
}

/// Needs no daemon: the CLI is pointed at a socket that does not exist.
#[tokio::test]
async fn an_unreachable_docker_engine_is_a_clear_infrastructure_error() {
    let f = Fixture::new("unreachable", "host = \"unix:///nonexistent.sock\"", CHECKS);
    let sha = f.commit("Hello", false);
    let report = f.stage(&sha).await;
    assert!(!report.verdict.is_success());
    let error = report.error.clone().unwrap_or_default();
    assert!(
        error.contains("the docker engine cannot be reached")
            && error.contains("unix:///nonexistent.sock"),
        "{error}"
    );
    assert!(
        report.infra_error,
        "not the change's fault: the item is blocked"
    );
    assert_eq!(f.builds(), 0, "nothing was built");
    let promoted = f.promote(&sha).await;
    assert!(
        reason_of(&promoted).contains("the docker engine cannot be reached"),
        "{promoted:#?}"
    );
}
