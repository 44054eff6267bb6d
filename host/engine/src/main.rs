//! `gymnos-engine`: carries out `gymnos-host run`, `resume`, `predict` and `validate --deep`
//! (`gymnos-host` starts it with the same arguments). This is the only binary that links libtorch.

mod allocator;
mod autocast;
mod callbacks;
mod checkpoint;
mod commands;
mod components;
mod data;
mod device;
mod evaluation;
mod fused;
mod loader;
mod logging;
mod optim;
mod predict;
mod progress;
mod session;
mod shim;
mod train;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gymnos_host::cli_args::{PredictArgs, ResumeArgs, RunArgs, ValidateArgs};

#[derive(Parser, Debug)]
#[command(name = "gymnos-engine", version, about = "The training engine of gymnos-host (run it through gymnos-host)")]
struct Cli {
    /// The plugin registry (gymnos-host passes the one it resolved).
    #[arg(long, global = true, value_name = "FILE", overrides_with = "registry")]
    registry: Option<PathBuf>,
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    Run(RunArgs),
    Resume(ResumeArgs),
    Predict(PredictArgs),
    Validate(ValidateArgs),
}

fn main() -> ExitCode {
    allocator::keep_freed_memory();
    let cli = Cli::parse();
    let no_progress = match &cli.command {
        Command::Run(a) => a.no_progress,
        Command::Resume(a) => a.no_progress,
        Command::Predict(_) | Command::Validate(_) => true,
    };
    let bars = progress::Progress::terminal(no_progress);
    let log = logging::init(cli.verbose, bars.clone());
    gymnos_host::terminal::one_line_panic_hook();
    let registry = cli.registry.unwrap_or_else(|| PathBuf::from("registry.json"));
    let outcome = std::panic::catch_unwind(move || match cli.command {
        Command::Run(args) => commands::run(&registry, args, &log, bars),
        Command::Resume(args) => commands::resume(&registry, args, &log, bars),
        Command::Predict(args) => predict::predict(&registry, args),
        Command::Validate(args) => commands::validate_deep(&registry, args),
    });
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            // One line, whatever a cause carried (libtorch appends its C++ backtrace).
            let text = format!("{e:#}");
            let line = text.split("\nException raised from").next().unwrap_or_default();
            eprintln!("error: {}", line.lines().collect::<Vec<_>>().join(" "));
            // 130: the shells' code for "ended by Ctrl-C".
            let interrupted = e.chain().any(|c| c.downcast_ref::<train::Interrupted>().is_some());
            ExitCode::from(if interrupted { 130 } else { 1 })
        }
        Err(_) => ExitCode::from(101),
    }
}
