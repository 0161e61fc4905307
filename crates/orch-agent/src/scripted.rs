//! The built-in scripted agent: does what a scenario file says, per stage and attempt. It makes
//! the demo and the tests run with no model: it writes files (whole or by find-and-replace),
//! prints lines to the run log, may sleep or wait for a file (`wait_for`, so a test can end a
//! step on an event), and exits with a chosen code.
//!
//! A scenario step is picked by exact (stage, attempt) first, then by stage alone. No step for a
//! stage is exit code 2 with a line saying so: a scenario never passes by accident.

use std::path::{Component, Path};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orch_core::gate::ExitOutcome;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::{Agent, AgentRequest, AgentRun, RunObserver, Usage};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub stage: String,
    pub attempt: Option<u32>,
    #[serde(default)]
    pub sleep_ms: u64,
    #[serde(default)]
    pub exit_code: i32,
    /// Lines printed to the run log, as an agent's narration.
    #[serde(default)]
    pub say: Vec<String>,
    #[serde(default)]
    pub files: Vec<FileEdit>,
    /// Tokens to report as spent (input, output), so usage accounting can be exercised without
    /// a model. They are reported to the run's observer before the step sleeps or writes.
    #[serde(default)]
    pub tokens: Option<(u64, u64)>,
    /// USD to report as spent; `0.0` when only `tokens` are given.
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// Report the usage only with the run's end, as an agent that streams none does: no live
    /// spend check sees it, only the check after the run.
    #[serde(default)]
    pub usage_at_end: bool,
    /// A file the step waits for, after its sleep and before it writes (relative to the worktree,
    /// or absolute; `{item}` expanded): lets a test end a step on an event it signals instead of
    /// a duration. Bounded by the run's timeout and cancellable like the sleep.
    #[serde(default)]
    pub wait_for: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEdit {
    /// Relative to the worktree; `{item}` is replaced by the item id.
    pub path: String,
    pub content: Option<String>,
    pub replace: Option<Replace>,
    /// Resolves the conflict markers in the file: `"union"` keeps both sides of each conflict,
    /// the default branch's (`theirs`) first, as git's union merge driver does.
    pub resolve: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    pub find: String,
    pub with: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("scenario file is not valid: {0}")]
    Parse(String),
    #[error("scenario step {index} (stage `{stage}`): {message}")]
    Step {
        index: usize,
        stage: String,
        message: String,
    },
}

impl Scenario {
    pub fn from_toml(text: &str) -> Result<Self, ScenarioError> {
        let s: Scenario = orch_core::toml_error::parse(text).map_err(ScenarioError::Parse)?;
        for (i, step) in s.steps.iter().enumerate() {
            let err = |message: String| ScenarioError::Step {
                index: i + 1,
                stage: step.stage.clone(),
                message,
            };
            orch_core::StageName::parse(&step.stage).map_err(|e| err(e.to_string()))?;
            for f in &step.files {
                if !is_safe_relative(&f.path) {
                    return Err(err(format!(
                        "path `{}` must be relative and stay inside the worktree",
                        f.path
                    )));
                }
                let edits = [
                    f.content.is_some(),
                    f.replace.is_some(),
                    f.resolve.is_some(),
                ];
                if edits.iter().filter(|set| **set).count() != 1 {
                    return Err(err(format!(
                        "file `{}` needs exactly one of `content`, `replace` or `resolve`",
                        f.path
                    )));
                }
                if f.resolve.as_deref().is_some_and(|r| r != "union") {
                    return Err(err(format!(
                        "file `{}`: `resolve` knows only \"union\"",
                        f.path
                    )));
                }
            }
        }
        Ok(s)
    }

    fn step(&self, stage: &str, attempt: u32) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.stage == stage && s.attempt == Some(attempt))
            .or_else(|| {
                self.steps
                    .iter()
                    .find(|s| s.stage == stage && s.attempt.is_none())
            })
    }
}

fn is_safe_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[derive(Debug, Clone)]
pub struct ScriptedAgent {
    scenario: Scenario,
}

impl ScriptedAgent {
    pub fn new(scenario: Scenario) -> Self {
        Self { scenario }
    }
}

fn expand(s: &str, req: &AgentRequest) -> String {
    s.replace("{item}", req.item.as_str())
        .replace("{stage}", req.stage.as_str())
        .replace("{attempt}", &req.attempt.to_string())
        .replace("{title}", &req.title)
}

#[async_trait]
impl Agent for ScriptedAgent {
    fn kind(&self) -> &'static str {
        "scripted"
    }

    async fn run(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun {
        // Runs in-process: there is no process group to report.
        let started = Instant::now();
        let mut log = Log::open(&req.log).await;
        let step = self.scenario.step(req.stage.as_str(), req.attempt);
        let mut usage = Usage {
            turns: Some(1),
            ..Usage::default()
        };
        if let Some(step) = step {
            usage.input_tokens = step.tokens.map(|t| t.0);
            usage.output_tokens = step.tokens.map(|t| t.1);
            usage.cost_usd = step.cost_usd.or(step.tokens.map(|_| 0.0));
        }
        // It spends nothing: a step without figures reports none by design, not an unknown.
        if usage.input_tokens.is_none() && usage.cost_usd.is_none() {
            usage.reporting = orch_core::spend::Reporting::NoneByDesign;
        }
        let outcome = match step {
            None => {
                log.line(&format!(
                    "scripted agent: the scenario has no step for stage `{}` (attempt {})",
                    req.stage, req.attempt
                ))
                .await;
                ExitOutcome::Exited(2)
            }
            Some(step) => perform(step, req, cancel, &mut log, observer, &usage).await,
        };
        usage.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        AgentRun {
            usage,
            ..AgentRun::ended(outcome)
        }
    }
}

async fn perform(
    step: &Step,
    req: &AgentRequest,
    cancel: &CancellationToken,
    log: &mut Log,
    observer: &mut dyn RunObserver,
    usage: &Usage,
) -> ExitOutcome {
    for line in &step.say {
        log.line(&expand(line, req)).await;
    }
    let reports = (step.tokens.is_some() || step.cost_usd.is_some()) && !step.usage_at_end;
    if reports && !observer.usage_so_far(usage) {
        log.line("scripted agent: stopped by orch after reporting its usage")
            .await;
        // What a killed process would report; nothing of the step is written.
        return ExitOutcome::Signaled(15);
    }
    if step.sleep_ms > 0 {
        let sleep = Duration::from_millis(step.sleep_ms);
        tokio::select! {
            _ = tokio::time::sleep(sleep.min(req.timeout)) => {
                if sleep > req.timeout {
                    return ExitOutcome::TimedOut { secs: req.timeout.as_secs() };
                }
            }
            _ = cancel.cancelled() => return ExitOutcome::Signaled(15),
        }
    }
    if let Some(marker) = &step.wait_for {
        let path = req.worktree.join(expand(marker, req));
        let deadline = tokio::time::Instant::now() + req.timeout;
        while !path.exists() {
            if tokio::time::Instant::now() >= deadline {
                return ExitOutcome::TimedOut {
                    secs: req.timeout.as_secs(),
                };
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                _ = cancel.cancelled() => return ExitOutcome::Signaled(15),
            }
        }
    }
    for f in &step.files {
        let rel = expand(&f.path, req);
        let path = req.worktree.join(&rel);
        let result = match (&f.content, &f.replace, &f.resolve) {
            (Some(content), _, _) => write_file(&path, &expand(content, req)).await,
            (None, Some(r), _) => {
                replace_in(&path, &expand(&r.find, req), &expand(&r.with, req)).await
            }
            (None, None, Some(_)) => resolve_union(&path).await,
            (None, None, None) => Err("nothing to write".to_owned()),
        };
        match result {
            Ok(()) => log.line(&format!("wrote {rel}")).await,
            Err(e) => {
                log.line(&format!("scripted agent: cannot edit {rel}: {e}"))
                    .await;
                return ExitOutcome::Exited(1);
            }
        }
    }
    ExitOutcome::Exited(step.exit_code)
}

async fn write_file(path: &Path, content: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| e.to_string())?;
    }
    tokio::fs::write(path, content)
        .await
        .map_err(|e| e.to_string())
}

/// Keeps both sides of every conflict in the file, the default branch's side first.
async fn resolve_union(path: &Path) -> Result<(), String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| e.to_string())?;
    let (mut out, mut ours, mut theirs) = (String::new(), String::new(), String::new());
    let mut side = None;
    for line in text.split_inclusive('\n') {
        match (side, line) {
            (None, l) if l.starts_with("<<<<<<< ") => side = Some(true),
            (Some(true), l) if l.starts_with("=======") => side = Some(false),
            (Some(false), l) if l.starts_with(">>>>>>> ") => {
                out.push_str(&theirs);
                out.push_str(&ours);
                ours.clear();
                theirs.clear();
                side = None;
            }
            (Some(true), l) => ours.push_str(l),
            (Some(false), l) => theirs.push_str(l),
            (None, l) => out.push_str(l),
        }
    }
    if side.is_some() {
        return Err("a conflict has no end marker".to_owned());
    }
    write_file(path, &out).await
}

async fn replace_in(path: &Path, find: &str, with: &str) -> Result<(), String> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| e.to_string())?;
    if !text.contains(find) {
        return Err(format!("text `{find}` not found"));
    }
    write_file(path, &text.replacen(find, with, 1)).await
}

/// The run log, appended line by line; a log that cannot be written is not a reason to fail
/// the run (the gates decide), so write errors are ignored.
struct Log(Option<tokio::fs::File>);

impl Log {
    async fn open(path: &Path) -> Self {
        if let Some(dir) = path.parent() {
            let _ = tokio::fs::create_dir_all(dir).await;
        }
        Self(
            tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .ok(),
        )
    }

    async fn line(&mut self, line: &str) {
        if let Some(f) = &mut self.0 {
            let _ = f.write_all(format!("{line}\n").as_bytes()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(dir: &Path, stage: &str, attempt: u32) -> AgentRequest {
        AgentRequest {
            item: orch_core::ItemId::parse("DEMO-1").expect("valid"),
            title: "Change the greeting".into(),
            stage: orch_core::StageName::parse(stage).expect("valid"),
            attempt,
            worktree: dir.to_path_buf(),
            artifact_dir: "docs/work-items/DEMO-1/".into(),
            artifact: None,
            prompt: String::new(),
            model: None,
            tools: Vec::new(),
            timeout: Duration::from_secs(5),
            stall: Duration::from_secs(5),
            log: dir.join("run.log"),
            prompt_file: dir.join("run.prompt.md"),
            resume_session: None,
            sandbox: orch_process::Sandbox::Trusted,
        }
    }

    const SCENARIO: &str = r#"
[[steps]]
stage = "development"
attempt = 1
say = ["changing the greeting for {item}"]
files = [
  { path = "docs/work-items/{item}/03-dev-notes.md", content = "---\ndev_status: DONE\n---\n" },
  { path = "src/main.rs", replace = { find = "Hello", with = "Hi" } },
]

[[steps]]
stage = "development"
exit_code = 3
"#;

    #[tokio::test]
    async fn a_union_resolution_keeps_both_sides_the_default_branchs_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("changes.md");
        std::fs::write(
            &path,
            "# Changes\n<<<<<<< HEAD\n- B\n=======\n- A\n>>>>>>> abc\nend\n",
        )
        .expect("write");
        resolve_union(&path).await.expect("resolved");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "# Changes\n- A\n- B\nend\n"
        );
        std::fs::write(&path, "<<<<<<< HEAD\n- B\n").expect("write");
        assert!(
            resolve_union(&path).await.is_err(),
            "an unterminated conflict"
        );
        let bad =
            "[[steps]]\nstage = \"development\"\nfiles = [{ path = \"x\", resolve = \"ours\" }]\n";
        assert!(Scenario::from_toml(bad).is_err());
    }

    #[tokio::test]
    async fn performs_the_step_of_the_attempt() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/main.rs"), "say(\"Hello\")").expect("write");
        let agent = ScriptedAgent::new(Scenario::from_toml(SCENARIO).expect("valid"));
        let run = agent
            .run(
                &req(dir.path(), "development", 1),
                &CancellationToken::new(),
                &mut (),
            )
            .await;
        assert_eq!(run.outcome, ExitOutcome::Exited(0));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("src/main.rs")).expect("read"),
            "say(\"Hi\")"
        );
        let notes =
            std::fs::read_to_string(dir.path().join("docs/work-items/DEMO-1/03-dev-notes.md"))
                .expect("read");
        assert!(notes.contains("dev_status: DONE"));
        let log = std::fs::read_to_string(dir.path().join("run.log")).expect("log");
        assert!(log.contains("changing the greeting for DEMO-1"), "{log}");
        // Attempt 2 falls back to the stage-wide step.
        let run = agent
            .run(
                &req(dir.path(), "development", 2),
                &CancellationToken::new(),
                &mut (),
            )
            .await;
        assert_eq!(run.outcome, ExitOutcome::Exited(3));
        // No step at all: exit 2, never a pass.
        let run = agent
            .run(
                &req(dir.path(), "review", 1),
                &CancellationToken::new(),
                &mut (),
            )
            .await;
        assert_eq!(run.outcome, ExitOutcome::Exited(2));
    }

    #[tokio::test]
    async fn a_missing_find_text_fails_the_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("src")).expect("mkdir");
        std::fs::write(dir.path().join("src/main.rs"), "nothing here").expect("write");
        let agent = ScriptedAgent::new(Scenario::from_toml(SCENARIO).expect("valid"));
        let run = agent
            .run(
                &req(dir.path(), "development", 1),
                &CancellationToken::new(),
                &mut (),
            )
            .await;
        assert_eq!(run.outcome, ExitOutcome::Exited(1));
    }

    #[tokio::test]
    async fn sleeping_step_is_cancellable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = ScriptedAgent::new(
            Scenario::from_toml("[[steps]]\nstage = \"qa\"\nsleep_ms = 60000\n").expect("valid"),
        );
        let cancel = CancellationToken::new();
        cancel.cancel();
        let run = agent.run(&req(dir.path(), "qa", 1), &cancel, &mut ()).await;
        assert_eq!(run.outcome, ExitOutcome::Signaled(15));
    }

    #[tokio::test]
    async fn a_step_waits_for_its_file_before_writing_and_ending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = ScriptedAgent::new(
            Scenario::from_toml(
                "[[steps]]\nstage = \"qa\"\nwait_for = \"go\"\n\
                 files = [{ path = \"x.txt\", content = \"x\" }]\n",
            )
            .expect("valid"),
        );
        let request = req(dir.path(), "qa", 1);
        let (cancel, mut observer) = (CancellationToken::new(), ());
        let run = agent.run(&request, &cancel, &mut observer);
        tokio::pin!(run);
        // Still waiting: the file is not there.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut run)
                .await
                .is_err()
        );
        assert!(!dir.path().join("x.txt").exists(), "nothing written yet");
        std::fs::write(dir.path().join("go"), "").expect("signal");
        let done = run.await;
        assert_eq!(done.outcome, ExitOutcome::Exited(0));
        assert!(dir.path().join("x.txt").exists());
    }

    /// Says stop once the reported tokens reach a limit, and remembers what it saw.
    struct Limit(u64, Vec<Option<u64>>);

    impl RunObserver for Limit {
        fn started(&mut self, _pgid: u32) {}

        fn usage_so_far(&mut self, usage: &Usage) -> bool {
            self.1.push(usage.input_tokens);
            usage.input_tokens.unwrap_or(0) < self.0
        }
    }

    #[tokio::test]
    async fn reports_its_usage_and_stops_when_the_observer_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = ScriptedAgent::new(
            Scenario::from_toml(
                "[[steps]]\nstage = \"qa\"\ntokens = [500, 20]\ncost_usd = 0.25\nsleep_ms = 60000\n\
                 files = [{ path = \"x.txt\", content = \"x\" }]\n",
            )
            .expect("valid"),
        );
        let mut observer = Limit(100, Vec::new());
        let started = Instant::now();
        let run = agent
            .run(
                &req(dir.path(), "qa", 1),
                &CancellationToken::new(),
                &mut observer,
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(10), "it slept");
        assert_eq!(run.outcome, ExitOutcome::Signaled(15));
        assert_eq!(observer.1, [Some(500)]);
        assert_eq!(
            (
                run.usage.input_tokens,
                run.usage.output_tokens,
                run.usage.cost_usd
            ),
            (Some(500), Some(20), Some(0.25))
        );
        assert!(
            !dir.path().join("x.txt").exists(),
            "a stopped step writes nothing"
        );

        let agent = ScriptedAgent::new(
            Scenario::from_toml(
                "[[steps]]\nstage = \"qa\"\ntokens = [500, 20]\nusage_at_end = true\n",
            )
            .expect("valid"),
        );
        let mut observer = Limit(100, Vec::new());
        let run = agent
            .run(
                &req(dir.path(), "qa", 1),
                &CancellationToken::new(),
                &mut observer,
            )
            .await;
        assert_eq!(run.outcome, ExitOutcome::Exited(0));
        assert!(observer.1.is_empty(), "reported live: {:?}", observer.1);
        assert_eq!(run.usage.input_tokens, Some(500));
    }

    #[test]
    fn refuses_bad_scenarios() {
        let cases = [
            (
                "[[steps]]\nstage = \"qa\"\nfiles = [{ path = \"../x\", content = \"\" }]\n",
                "scenario step 1 (stage `qa`): path `../x` must be relative and stay inside the worktree",
            ),
            (
                "[[steps]]\nstage = \"qa\"\nfiles = [{ path = \"/etc/x\", content = \"\" }]\n",
                "scenario step 1 (stage `qa`): path `/etc/x` must be relative and stay inside the worktree",
            ),
            (
                "[[steps]]\nstage = \"qa\"\nfiles = [{ path = \"x\" }]\n",
                "scenario step 1 (stage `qa`): file `x` needs exactly one of `content`, `replace` or `resolve`",
            ),
            (
                "[[steps]]\nstage = \"QA\"\n",
                "scenario step 1 (stage `QA`): invalid stage name `QA`: may hold only lowercase letters, digits and `-`",
            ),
        ];
        for (text, expect) in cases {
            assert_eq!(
                Scenario::from_toml(text)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Err(expect.to_owned())
            );
        }
        assert!(Scenario::from_toml("steps = 3").is_err());
    }
}
