//! One module per command; `dispatch` maps the parsed command line to them.

mod bench;
mod bench_held;
mod bench_launch;
mod bench_queue;
mod bench_scale;
mod bench_serve;
mod bench_sizes;
mod board;
mod demo;
pub mod doctor;
mod init;
mod item;
mod logs;
mod onboard;
mod resume_promotions;
mod run;
mod serve;
mod staging_check;
mod status;
mod user;
mod worker;

use std::sync::Arc;

use crate::cli::{Cli, Command, ItemCommand, UserCommand};
use crate::context::Context;
use crate::output::ProgressPrinter;

/// Runs the command; returns the process exit code.
pub async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Doctor(args) => doctor::run(&cli.config, args).await,
        Command::Init(args) => init::run(args),
        Command::Bench(args) if !args.workers.is_empty() => {
            let workers = args.workers.clone();
            bench_scale::run(&args, &workers).await
        }
        Command::Bench(args) if !args.queue.is_empty() => bench_queue::run(&args.queue).await,
        Command::Bench(args) if !args.repo_files.is_empty() => bench_sizes::run(&args).await,
        Command::Bench(args) if args.launch.is_some() => bench_launch::run(&args).await,
        Command::Bench(args) if args.held.is_some() => bench_held::run(&args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Onboard(args) => onboard::run(&cli.config, *args).await,
        Command::StagingCheck(a) => staging_check::run(&cli.config, a).await,
        command => {
            let ctx = Context::open(&cli.config, Arc::new(ProgressPrinter::new())).await?;
            let code = match command {
                Command::Run => run::run(&ctx).await,
                Command::Item(ItemCommand::Add(a)) => item::add(&ctx, a).await,
                Command::Item(ItemCommand::List(a)) => item::list(&ctx, a).await,
                Command::Item(ItemCommand::Show(a)) => item::show(&ctx, a).await,
                Command::Approve(a) => board::approve(&ctx, a).await,
                Command::Stop(a) => board::stop(&ctx, a).await,
                Command::Retry(a) => board::retry(&ctx, a).await,
                Command::User(UserCommand::Add(a)) => user::add(&ctx, a).await,
                Command::User(UserCommand::Revoke(a)) => user::revoke(&ctx, a).await,
                Command::User(UserCommand::List(a)) => user::list(&ctx, a).await,
                Command::Logs(a) => logs::run(&ctx, a).await,
                Command::Status(a) => status::run(&ctx, a).await,
                Command::ResumePromotions(a) => resume_promotions::run(&ctx, &a),
                Command::Serve(a) => serve::run(&ctx, a).await,
                Command::Worker(a) => worker::run(&ctx, a).await,
                Command::Demo(_)
                | Command::Doctor(_)
                | Command::Init(_)
                | Command::Bench(_)
                | Command::Onboard(_)
                | Command::StagingCheck(_) => Ok(2),
            };
            // Spans still queued are sent before the process ends (bounded wait).
            ctx.engine.telemetry().flush().await;
            code
        }
    }
}

/// The name a person acts under: `--by`, else `$USER`, else `cli`.
pub fn actor(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".to_owned())
}
