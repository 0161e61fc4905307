//! orch: the command-line binary. Parses the command line, resolves settings, wires the store,
//! the projects and the engine together, and prints results for people (or JSON for programs).
//!
//! It holds no pipeline logic of its own: decisions live in orch-core, their execution in
//! orch-engine.

mod cli;
mod cmd;
mod context;
mod env;
mod error;
mod kit;
mod output;
mod settings;

use clap::Parser;

fn main() {
    // First, before any secret is read: a process of the same user (an agent run without a
    // sandbox, a deploy hook) must not read orch's memory or /proc/<pid>/environ, which hold
    // the API and forge tokens. Children start dumpable again (execve resets the flag).
    let undumpable = nix::sys::prctl::set_dumpable(false);
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env(env::LOG).unwrap_or_else(|_| {
        // The bench's sandbox-off run is unconfined on purpose: its per-run opt-out warning,
        // loud for a project, would be hundreds of lines here (the bench says it once).
        tracing_subscriber::EnvFilter::new(match cli.command {
            cli::Command::Bench(_) => "warn,orch_process::sandbox=error",
            _ => "warn",
        })
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = undumpable {
        tracing::warn!("could not make orch's process non-dumpable (PR_SET_DUMPABLE): {e}");
    }
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(cmd::dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            error::exit_code(&e)
        }
    };
    drop(runtime);
    std::process::exit(code);
}

/// Raises the soft limit of open files to the hard one: every stage run in flight holds a few
/// descriptors (its output pipes, its log), so the common soft default of 1024 would make
/// `orch serve` fail new runs with "too many open files" at about 250 held at once, while the
/// hard limit (set by the administrator) allows far more. Never above the hard limit.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!("could not raise the open files limit from {soft} to {hard}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("could not read the open files limit: {e}"),
    }
}
