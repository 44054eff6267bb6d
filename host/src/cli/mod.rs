//! Argument parsing and dispatch.

mod engine;
mod experiment;
mod output;
mod packages;
mod plugins;
mod ranks;
mod runs;
mod sweep;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Result;
use clap::{Parser, Subcommand};
use gymnos_host::cli_args::{PredictArgs, ResumeArgs, RunArgs, ValidateArgs};

/// Train models from plugins: datasets, preprocessors, augmentors, models and trackers.
#[derive(Parser, Debug)]
#[command(name = "gymnos-host", version, about, propagate_version = true)]
pub struct Cli {
    /// The plugin registry. Default: $GYMNOS_REGISTRY, else the nearest registry.json in the
    /// current folder or its parents, else ~/.local/share/gymnos/registry.json.
    #[arg(long, global = true, value_name = "FILE")]
    pub registry: Option<PathBuf>,

    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the experiment described by a JSON file; the run is recorded under
    /// <output_root>/<name>/executions/<timestamp>/.
    Run(RunArgs),
    /// Continue an interrupted or failed run from its last checkpoint.
    Resume(ResumeArgs),
    /// Apply a run's preprocessors and model to new samples.
    Predict(PredictArgs),
    /// Check an experiment file (settings, plugins, configuration keys and their rules) without
    /// running it; with --deep, also build every component and run the model once.
    Validate(ValidateArgs),
    /// Print the experiment file format as JSON Schema.
    Schema,
    /// List, inspect, install, verify and remove plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// List, show and compare recorded runs, and write a run's report (pictures and HTML page).
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Run many trials of an experiment with fields varied (a grid or random draws), here or on
    /// a Slurm cluster; `sweep status DIR` shows where they stand.
    Sweep(sweep::SweepArgs),
}

pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GYMNOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// The registry named by the flag or `$GYMNOS_REGISTRY`, else the default location.
fn named_registry(flag: Option<PathBuf>) -> PathBuf {
    if let Some(path) = flag.or_else(|| std::env::var_os("GYMNOS_REGISTRY").map(PathBuf::from)) {
        return path;
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("gymnos/registry.json")
}

/// Finds the registry file (see `Cli::registry`).
pub fn registry_path(flag: Option<PathBuf>) -> PathBuf {
    if flag.is_some() || std::env::var_os("GYMNOS_REGISTRY").is_some() {
        return named_registry(flag);
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(found) = cwd.ancestors().map(|d| d.join("registry.json")).find(|p| p.is_file()) {
            return found;
        }
    }
    named_registry(None)
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let ok = |()| ExitCode::SUCCESS;
    match cli.command {
        Command::Plugins(plugins::PluginsCommand::Init { dir, no_builtins, json }) => {
            let path = dir.map_or_else(|| named_registry(cli.registry), |d| d.join("registry.json"));
            plugins::init(&path, no_builtins, json).map(ok)
        }
        Command::Plugins(command) => plugins::run(&registry_path(cli.registry), command).map(ok),
        Command::Runs(command) => runs::run(command).map(ok),
        Command::Validate(args) if args.deep => engine::exec(&registry_path(cli.registry)).map(ok),
        Command::Validate(args) => experiment::validate(&registry_path(cli.registry), &args).map(ok),
        Command::Schema => experiment::schema(&registry_path(cli.registry)).map(ok),
        Command::Run(args) => match args.parallel.nproc_per_node {
            Some(n) if n > 1 => ranks::supervise_ranks(&registry_path(cli.registry), n, None),
            _ => engine::supervise(&registry_path(cli.registry), None),
        },
        Command::Resume(args) => {
            let dir = std::path::absolute(&args.run_dir)?;
            match args.parallel.nproc_per_node {
                Some(n) if n > 1 => ranks::supervise_ranks(&registry_path(cli.registry), n, Some(dir)),
                _ => engine::supervise(&registry_path(cli.registry), Some(dir)),
            }
        }
        Command::Predict(_) => engine::exec(&registry_path(cli.registry)).map(ok),
        Command::Sweep(args) => sweep::run(&registry_path(cli.registry), args),
    }
}
