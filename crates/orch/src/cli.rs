//! The command line, declared in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::env;

#[derive(Debug, Parser)]
#[command(
    name = "orch",
    version,
    about = "Drive work items through a gated delivery pipeline with AI coding agents.",
    long_about = "orch takes work items and drives each through analysis, architecture, development, \
review, QA, staging, human approval and deploy, running agents in isolated git worktrees. No stage \
advances on an agent's word: deterministic gates read artifacts, exit codes and diffs, and every \
doubt is FAILED.",
    after_help = "Start here:\n  orch doctor              check what orch needs on this machine, with the fix for each miss\n  orch demo --yes          run the whole pipeline once on a demo project\n  orch --config orch-demo/orch.toml status"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, env = env::CONFIG, default_value = "orch.toml", value_name = "FILE")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a demo project and drive one work item (or several at once) through the whole pipeline.
    #[command(
        after_help = "Examples:\n  orch demo --yes\n  orch demo --yes --items 3   # three items at once through the promotion queue\n  orch demo --dir /tmp/d --staging-port 9511 --prod-port 9510\n  orch demo            # then, in another terminal: orch --config orch-demo/orch.toml approve DEMO-1"
    )]
    Demo(DemoArgs),
    /// Check what the configuration needs on this machine, and say how to fix each miss.
    #[command(
        long_about = "Checks git, the agent sandbox (bwrap, socat, prlimit, unprivileged user namespaces), \
each agent CLI the projects' .orch/agents.toml name and its version against the versions orch is \
tested with, the store (reachable, migrated), each project's .orch/ files, the docker daemon where \
a project deploys with docker, staging and prod ports (free or held by the project's own \
instance), each tracker and forge (reachable, the token accepted; GET requests only) and the \
webhook secrets `orch serve` needs. It changes nothing.\n\n\
Each check is ok, WARN or FAIL, with its cause and a fix. Exit code: 0 when nothing failed \
(warnings allowed), 1 when something failed, 2 on bad usage.",
        after_help = "Examples:\n  orch doctor\n  orch --config /etc/orch/orch.toml doctor\n  orch doctor --json | jq '.checks[] | select(.status != \"ok\")'"
    )]
    Doctor(DoctorArgs),
    /// Write orch's default pipeline and role prompts into a repository's `.orch/`.
    #[command(after_help = "Examples:\n  orch init\n  orch init ../my-service --force")]
    Init(InitArgs),
    /// Bring a new project online: plan (default, read-only), apply (create what is missing), verify.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  orch onboard --name billing --repo ../billing             # plan: lists what apply would do\n  \
orch onboard apply --name billing --repo ../billing --staging-port 8611 --prod-port 8610\n  \
orch onboard verify --name billing --repo ../billing\n\n\
apply never deletes or overwrites: a repository with commits gets the kit on branch orch/onboarding, \
to merge yourself; an existing .env is never touched; orch.toml only gets a [[projects]] table appended."
    )]
    Onboard(Box<OnboardArgs>),
    /// Process ready work items until none is left (items then wait for people or are done).
    #[command(after_help = "Example:\n  orch run")]
    Run,
    /// File, list and show work items on the built-in board.
    #[command(subcommand)]
    Item(ItemCommand),
    /// Approve an item waiting at an approval stage (shows the evidence first).
    #[command(after_help = "Example:\n  orch approve DEMO-1 --by alice")]
    Approve(ApproveArgs),
    /// Stop an item (STOP): kill its agent and cancel it.
    #[command(after_help = "Example:\n  orch stop DEMO-3")]
    Stop(IdArgs),
    /// Resume a blocked or needs-info item at its stage.
    #[command(
        after_help = "Examples:\n  orch retry DEMO-2\n  orch retry DEMO-2 --answer \"use port 8080\""
    )]
    Retry(RetryArgs),
    /// Manage the people who act on items under their own name (tokens, tracker accounts).
    #[command(subcommand)]
    User(UserCommand),
    /// Show an item's run logs (the agents' output and the gates' commands).
    #[command(
        after_help = "Examples:\n  orch logs DEMO-1\n  orch logs DEMO-1 --stage review\n  orch logs -f DEMO-1\n  orch logs DEMO-1 --json"
    )]
    Logs(LogsArgs),
    /// Where every item stands, per project.
    #[command(after_help = "Examples:\n  orch status\n  orch status --json")]
    Status(JsonArgs),
    /// Run a project's staging checks against a URL and print the verdict (exit 0 or 1).
    #[command(
        after_help = "Examples:\n  orch staging-check --base-url http://127.0.0.1:8511\n  orch staging-check --base-url http://127.0.0.1:8511 --strict\n\n\
Reads only the project's .orch/deploy.toml (its entry in orch.toml gives the repository and the\n\
ports; without orch.toml: --repo DIR --prod-port PORT). Exit 0: SUCCESS (INFRA-only failures waived unless --strict or\n\
ORCH_STAGING_INFRA_TOLERANCE_ENABLED=false); 1: FAILED; 2: a usage or configuration error,\n\
including a URL on the project's prod port without --allow-prod."
    )]
    StagingCheck(StagingCheckArgs),
    /// Let a project's promotions run again after a prod restore paused them.
    #[command(
        after_help = "After prod was restored, orch refuses further promotions of the project until a person\n\
has looked at why the deploy failed. This clears that pause (not FROZEN, which needs a fix by hand).\n\n\
Example:\n  orch resume-promotions --project billing"
    )]
    ResumePromotions(ResumePromotionsArgs),
    /// Serve the JSON API and webhooks, and process work items as they become ready.
    #[command(
        after_help = "Secrets come from the environment, never from flags (they would show in `ps`):\n  \
ORCH_API_TOKEN               bearer token of the JSON API (unset: the API is read-only)\n  \
ORCH_PLANE_WEBHOOK_SECRET    HMAC secret of /hooks/plane (unset: deliveries refused)\n  \
ORCH_GITEA_WEBHOOK_SECRET    HMAC secret of /hooks/gitea (Gitea and Forgejo)\n  \
ORCH_GITHUB_WEBHOOK_SECRET   HMAC secret of /hooks/github\n\n\
Example:\n  ORCH_API_TOKEN=$(openssl rand -hex 32) orch serve --listen 127.0.0.1:8500\n  \
curl -H \"Authorization: Bearer $ORCH_API_TOKEN\" http://127.0.0.1:8500/api/v1/items"
    )]
    Serve(ServeArgs),
    /// Claim and run stage runs from the shared store until SIGTERM or Ctrl-C (no HTTP server).
    #[command(
        after_help = "Run several workers against one PostgreSQL store, with the same orch.toml and one \
data directory (shared storage when they are on several machines); each claims runs exclusively \
under a lease, and a run whose worker dies is re-claimed when its lease expires.\n\nExample:\n  ORCH_STORE_URL=postgres://orch@db.internal/orch orch worker --poll-secs 5"
    )]
    Worker(WorkerArgs),
    /// Measure orch: overhead against a shell baseline, or scaling with worker processes.
    #[command(
        after_help = "Examples:\n  orch bench --items 50                   overhead per stage transition vs a shell baseline\n  \
orch bench --items 200 --workers 1,2,4 --postgres postgres://orch@127.0.0.1/orch\n                                          \
items/s, claim latency and memory per worker,\n                                          \
vs one SQLite worker\n  \
orch bench --queue 1,5,20               N items filed together through the promotion queue,\n                                          \
vs the same items one after another\n  \
orch bench --repo-files 1000,20000,100000 --history 10000\n                                          \
the overhead bench on generated repositories\n                                          \
of that many files\n  \
orch bench --launch 200                 ready -> agent started through the API and a signed\n                                          \
webhook, vs the floor\n  \
orch bench --held 500                   500 sleeping agents at once: orch's RSS, open files\n                                          \
and launch latency"
    )]
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo keeps its configuration, store and repository.
    #[arg(long, default_value = "orch-demo", value_name = "DIR")]
    pub dir: PathBuf,
    /// Approve the deploy automatically instead of waiting for `orch approve`.
    #[arg(long)]
    pub yes: bool,
    /// After the demo, leave staging and prod running and keep serving the dashboard until
    /// Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
    /// Where the demo serves the dashboard while it runs (with `ORCH_API_TOKEN` set, you can
    /// log in there and approve; without it the dashboard is read-only).
    #[arg(long, default_value = "127.0.0.1:8500", value_name = "ADDR")]
    pub dashboard: std::net::SocketAddr,
    #[arg(long, default_value_t = 8511, value_name = "PORT")]
    pub staging_port: u16,
    #[arg(long, default_value_t = 8510, value_name = "PORT")]
    pub prod_port: u16,
    /// File this many items at once (1 to 4). With more than one, each adds its own route; they
    /// pass through the promotion queue one after another, the later ones re-integrated (and
    /// their conflicts resolved by their developers), until prod serves every route.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=4))]
    pub items: u8,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the findings as JSON: `{config, ok, counts: {ok, warn, fail}, checks: [{check,
    /// subject, status, cause, fix}]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The repository to initialise.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Overwrite files that already exist.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct OnboardArgs {
    #[command(subcommand)]
    pub action: Option<OnboardAction>,
    /// Without a subcommand: the target of `plan`.
    #[command(flatten)]
    pub target: Option<OnboardTarget>,
}

#[derive(Debug, Subcommand)]
pub enum OnboardAction {
    /// List every action apply would take and what already exists; writes nothing.
    #[command(after_help = "Example:\n  orch onboard plan --name billing --repo ../billing")]
    Plan(OnboardTarget),
    /// Create what is missing (repository, kit, commit, registry entry); never deletes.
    #[command(
        after_help = "Examples:\n  orch onboard apply --name billing --repo ../billing\n  GITEA_TOKEN=... ORCH_GITEA_WEBHOOK_SECRET=... orch onboard apply --name billing --repo ../billing \\\n    --forge gitea --forge-url https://gitea.example.com --forge-token-env GITEA_TOKEN --owner acme \\\n    --tracker gitea --webhook-url https://orch.example.com\n\nRunning it again changes nothing."
    )]
    Apply(OnboardTarget),
    /// Check the project with the server's parsers and list every gap (exit 1 if any).
    #[command(after_help = "Example:\n  orch onboard verify --name billing --repo ../billing")]
    Verify(OnboardTarget),
}

#[derive(Debug, Clone, Args)]
pub struct OnboardTarget {
    /// The project's name in orch.toml: lowercase letters, digits and `-`.
    #[arg(long)]
    pub name: String,
    /// The project's git repository (created when missing).
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// Defaults to the first free pair from 8600 (prod 8600, staging 8601).
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub staging_port: Option<u16>,
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub prod_port: Option<u16>,

    /// The tracker: `plane`, `gitea`, `forgejo` or `github`.
    #[arg(long, value_name = "KIND", help_heading = "Tracker and forge")]
    pub tracker: Option<String>,
    /// The tracker's URL (a Gitea or GitHub tracker defaults to --forge-url).
    #[arg(long, value_name = "URL", help_heading = "Tracker and forge")]
    pub tracker_url: Option<String>,
    /// The environment variable holding the tracker's token (default: --forge-token-env).
    #[arg(long, value_name = "VAR", help_heading = "Tracker and forge")]
    pub tracker_token_env: Option<String>,
    /// Plane: the workspace slug (as in Plane's URLs).
    #[arg(long, value_name = "SLUG", help_heading = "Tracker and forge")]
    pub plane_workspace: Option<String>,
    /// Plane: the project's id.
    #[arg(long, value_name = "ID", help_heading = "Tracker and forge")]
    pub plane_project: Option<String>,
    /// The forge: `gitea`, `forgejo` or `github`.
    #[arg(long, value_name = "KIND", help_heading = "Tracker and forge")]
    pub forge: Option<String>,
    /// The forge's API URL (`https://gitea.example.com`, `https://api.github.com`).
    #[arg(long, value_name = "URL", help_heading = "Tracker and forge")]
    pub forge_url: Option<String>,
    /// The environment variable holding the forge's token.
    #[arg(long, value_name = "VAR", help_heading = "Tracker and forge")]
    pub forge_token_env: Option<String>,
    /// The repository's owner (a user or an organisation) on the forge.
    #[arg(long, value_name = "OWNER", help_heading = "Tracker and forge")]
    pub owner: Option<String>,
    /// The repository's name on the forge (default: --name).
    #[arg(long, value_name = "NAME", help_heading = "Tracker and forge")]
    pub remote_repo: Option<String>,
    /// orch's public URL: the tracker's webhook delivers to <URL>/hooks/<kind>, signed with the
    /// secret `orch serve` already uses (ORCH_GITEA_WEBHOOK_SECRET, ...).
    #[arg(long, value_name = "URL", help_heading = "Tracker and forge")]
    pub webhook_url: Option<String>,
    /// Plane: a work item label the project must have (repeat for several); apply creates the
    /// missing ones, verify reports each missing one as a gap.
    #[arg(
        long = "label",
        value_name = "NAME",
        help_heading = "Tracker and forge"
    )]
    pub labels: Vec<String>,
}

impl OnboardTarget {
    /// The tracker and forge flags, as one value.
    pub fn remotes(&self) -> OnboardRemotes {
        OnboardRemotes {
            tracker: self.tracker.clone(),
            tracker_url: self.tracker_url.clone(),
            tracker_token_env: self.tracker_token_env.clone(),
            plane_workspace: self.plane_workspace.clone(),
            plane_project: self.plane_project.clone(),
            forge: self.forge.clone(),
            forge_url: self.forge_url.clone(),
            forge_token_env: self.forge_token_env.clone(),
            owner: self.owner.clone(),
            remote_repo: self.remote_repo.clone(),
            webhook_url: self.webhook_url.clone(),
        }
    }
}

/// The tracker and forge to set up; without them the project uses the built-in board and the
/// local forge. Tokens come from environment variables, never flags.
#[derive(Debug, Clone, Default)]
pub struct OnboardRemotes {
    pub tracker: Option<String>,
    pub tracker_url: Option<String>,
    pub tracker_token_env: Option<String>,
    pub plane_workspace: Option<String>,
    pub plane_project: Option<String>,
    pub forge: Option<String>,
    pub forge_url: Option<String>,
    pub forge_token_env: Option<String>,
    pub owner: Option<String>,
    pub remote_repo: Option<String>,
    pub webhook_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ItemCommand {
    /// File a new work item.
    #[command(
        after_help = "Example:\n  orch item add --title \"Change the greeting\" --body \"Say hello from orch\""
    )]
    Add(ItemAddArgs),
    /// List work items.
    #[command(after_help = "Examples:\n  orch item list\n  orch item list --json")]
    List(ItemListArgs),
    /// Show one item: its stage runs, verdicts and history.
    #[command(after_help = "Example:\n  orch item show DEMO-1")]
    Show(ItemShowArgs),
}

#[derive(Debug, Args)]
pub struct ItemAddArgs {
    /// The project (needed when orch.toml lists more than one).
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub title: String,
    #[arg(long, default_value = "")]
    pub body: String,
}

#[derive(Debug, Args)]
pub struct ItemListArgs {
    #[arg(long)]
    pub project: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ItemShowArgs {
    pub id: String,
    #[arg(long)]
    pub json: bool,
    /// Also print every event.
    #[arg(long)]
    pub events: bool,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    pub id: String,
    /// Who approves (recorded in the event).
    #[arg(long)]
    pub by: Option<String>,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    pub id: String,
    /// An answer to the agent's question, passed to the next attempt.
    #[arg(long)]
    pub answer: Option<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    pub id: String,
    /// Only this stage's runs.
    #[arg(long)]
    pub stage: Option<String>,
    /// Keep printing new output until the item stops moving.
    #[arg(short, long)]
    pub follow: bool,
    /// Print the logs as JSON: each run (as in `item show --json`) with its log text.
    #[arg(long, conflicts_with = "follow")]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StagingCheckArgs {
    #[arg(long, value_name = "URL")]
    pub base_url: String,
    #[arg(long, default_value = "stub", value_parser = ["stub", "live"])]
    pub mode: String,
    /// Make INFRA failures FAILED for this run.
    #[arg(long)]
    pub strict: bool,
    /// Check a URL on the project's prod port anyway (staging checks never touch prod otherwise).
    #[arg(long)]
    pub allow_prod: bool,
    /// The project (optional when only one is configured).
    #[arg(long, conflicts_with = "repo")]
    pub project: Option<String>,
    /// Without orch.toml: the repository whose .orch/deploy.toml holds the checks (needs
    /// --prod-port, or --allow-prod).
    #[arg(long, value_name = "DIR")]
    pub repo: Option<std::path::PathBuf>,
    /// With --repo: the project's prod port, which the URL must not use.
    #[arg(long, value_name = "PORT", requires = "repo", value_parser = clap::value_parser!(u16).range(1..))]
    pub prod_port: Option<u16>,
}

#[derive(Debug, Args)]
pub struct ResumePromotionsArgs {
    /// The project (optional when only one is configured).
    #[arg(long)]
    pub project: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a person and print their API token, once (orch keeps only its SHA-256).
    #[command(
        after_help = "Examples:\n  orch user add ada\n  orch user add ada --tracker-id plane:0c7ef2c4-5e1b-4a8e-9a77-3c1f0b2d9e10 --tracker-id github:583231\n\n\
The token opens the API (Authorization: Bearer ...) and the dashboard's login as ada. A tracker\n\
account is the tracker's user id (Plane's actor id, Gitea's and GitHub's sender.id), never a\n\
login or a display name. Adding a revoked person again gives them a new token; adding an active\n\
one only links the --tracker-id accounts."
    )]
    Add(UserAddArgs),
    /// Revoke a person's token: it opens nothing any more, and their sessions end.
    #[command(after_help = "Example:\n  orch user revoke ada")]
    Revoke(UserNameArgs),
    /// List the people, whether each is active, and their tracker accounts.
    #[command(after_help = "Examples:\n  orch user list\n  orch user list --json")]
    List(JsonArgs),
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// The person's name: 1 to 64 of a-z, 0-9, `.`, `_`, `-` (what `approvers` lists).
    pub name: String,
    /// A tracker account that is this person: `plane:<user uuid>`, `gitea:<id>`, `github:<id>`.
    #[arg(long = "tracker-id", value_name = "KIND:ID")]
    pub tracker_ids: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UserNameArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8500", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Items per run (1 to 100000).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub items: u32,
    /// Stage runs orch executes at once. 1 compares like with like: the baseline is sequential.
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Keep the bench directory instead of deleting it.
    #[arg(long)]
    pub keep: bool,
    /// Which orch runs the overhead bench makes: `off` (the comparison with the baseline, agents
    /// and gates unconfined), `on` (in the default bubblewrap sandbox) or `both` (the sandbox's
    /// own cost then shows as a row of its own).
    #[arg(long, value_enum, default_value = "both")]
    pub sandbox: BenchSandbox,
    /// Scaling mode: run the items with this many `orch worker` processes on PostgreSQL, for
    /// each count given, next to one worker on SQLite (the baseline), and print a table.
    #[arg(long, value_delimiter = ',', value_name = "N,N,...")]
    pub workers: Vec<usize>,
    /// Queue mode: for each N given, file N items together and drive them through the whole
    /// pipeline and the promotion queue (checking that prod runs main's tip after every
    /// deploy), next to the same N items run one after another (the baseline).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,N,...",
        conflicts_with = "workers"
    )]
    pub queue: Vec<u32>,
    /// Size mode: for each N given, generate a repository of N files (1 to 1000000) and run the
    /// overhead bench on it (sandbox off) next to the baseline on a copy of the same repository,
    /// one row per size. Big sizes run fewer items than `--items` (200000 files' worth).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "N,N,...",
        conflicts_with_all = ["workers", "queue"]
    )]
    pub repo_files: Vec<u32>,
    /// Size mode: commits of history the generated repositories get on top (each changes one
    /// file), 0 to 1000000.
    #[arg(long, default_value_t = 0, value_name = "N", requires = "repo_files")]
    pub history: u32,
    /// Launch mode: N items made ready one after another through a real `orch serve`, by the
    /// JSON API and by a signed webhook; ready -> agent process started (p50, p99), next to the
    /// floor (`git worktree add` and spawning the same command) measured in the same run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000),
          conflicts_with_all = ["workers", "queue", "held", "repo_files"])]
    pub launch: Option<u32>,
    /// Held mode: N items in flight at once in one `orch serve` (agents that sleep): orch's
    /// resident memory, open file descriptors and ready -> agent started latency at that load,
    /// next to an idle orch and one item held.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=5_000),
          conflicts_with_all = ["workers", "queue", "repo_files"])]
    pub held: Option<u32>,
    /// The PostgreSQL server for the scaling mode (a database is created per row, then dropped).
    #[arg(
        long,
        env = "ORCH_BENCH_POSTGRES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub postgres: Option<String>,
}

/// Which sandbox the overhead bench runs orch with (`orch bench --sandbox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchSandbox {
    Off,
    On,
    Both,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Seconds to rest when nothing is runnable before looking again.
    #[arg(long, default_value_t = 2, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub poll_secs: u64,
    /// Exit (0) once this many stage runs have been claimed and have finished: a worker that
    /// does a fixed share of the work, such as a short-lived machine.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub exit_after_runs: Option<u32>,
}
