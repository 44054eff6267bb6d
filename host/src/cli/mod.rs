//! Argument parsing and dispatch.

mod engine;
mod experiment;
mod output;
mod plugins;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    Run(gymnos_host::cli_args::RunArgs),
    /// Continue an interrupted run from its last checkpoint.
    Resume(gymnos_host::cli_args::ResumeArgs),
    /// Apply a run's preprocessors and model to new samples.
    Predict(gymnos_host::cli_args::PredictArgs),
    /// Check an experiment file (plugins, configuration keys, settings) without running it.
    Validate {
        file: PathBuf,
        /// Override a field, e.g. --set training.epochs=3 (repeatable).
        #[arg(long = "set", value_name = "PATH=VALUE")]
        overrides: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the experiment file format as JSON Schema.
    Schema,
    /// List, inspect, install and remove plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
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

/// Finds the registry file (see `Cli::registry`).
pub fn registry_path(flag: Option<PathBuf>) -> PathBuf {
    if let Some(path) = flag.or_else(|| std::env::var_os("GYMNOS_REGISTRY").map(PathBuf::from)) {
        return path;
    }
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(found) = cwd.ancestors().map(|d| d.join("registry.json")).find(|p| p.is_file()) {
            return found;
        }
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    data.join("gymnos/registry.json")
}

pub fn run(cli: Cli) -> Result<()> {
    let registry = registry_path(cli.registry);
    match cli.command {
        Command::Plugins(command) => plugins::run(&registry, command),
        Command::Validate { file, overrides, json } => experiment::validate(&registry, &file, &overrides, json),
        Command::Schema => {
            experiment::schema();
            Ok(())
        }
        Command::Run(_) | Command::Resume(_) | Command::Predict(_) => engine::exec(&registry),
    }
}
