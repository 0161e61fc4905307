//! The generic command agent: any program that reads the prompt on standard input (and from
//! `$ORCH_PROMPT_FILE`), works in the worktree, and exits 0 when it is done. Its output goes to
//! the run log; it is killed with its process group on timeout, stall or cancel.

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::{Agent, AgentRequest, AgentRun, RunObserver, Usage};

#[derive(Debug, Clone)]
pub struct CommandAgent {
    pub program: String,
    pub args: Vec<String>,
}

struct Forward<'a>(&'a mut dyn RunObserver);

impl orch_process::Observer for Forward<'_> {
    fn started(&mut self, pid: u32) {
        self.0.started(pid);
    }

    fn egress_refused(&mut self, refused: &orch_process::EgressRefusals) {
        self.0.egress_refused(refused);
    }
}

#[async_trait]
impl Agent for CommandAgent {
    fn kind(&self) -> &'static str {
        "command"
    }

    async fn run(
        &self,
        req: &AgentRequest,
        cancel: &CancellationToken,
        observer: &mut dyn RunObserver,
    ) -> AgentRun {
        let mut env = orch_process::safe_env();
        env.extend(req.env_vars());
        let sandbox = crate::confine::sandbox_for(req, &self.program, &env);
        let spec = orch_process::Spec {
            sandbox,
            program: self.program.clone(),
            args: self.args.clone(),
            cwd: req.worktree.clone(),
            env,
            stdin: Some(req.prompt.clone().into_bytes()),
            timeout: req.timeout,
            stall: Some(req.stall),
            log: Some(req.log.clone()),
            ..orch_process::Spec::new(&self.program, &req.worktree)
        };
        let finished = orch_process::run(&spec, cancel, &mut Forward(observer)).await;
        let duration_ms = u64::try_from(finished.duration.as_millis()).unwrap_or(u64::MAX);
        AgentRun {
            // A command agent is any program: it has no way to report spend to orch.
            usage: Usage {
                duration_ms,
                reporting: orch_core::spend::Reporting::NoneByDesign,
                ..Usage::default()
            },
            ..AgentRun::ended(finished.outcome)
        }
    }
}
