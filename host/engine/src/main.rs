//! `gymnos-engine`: carries out `gymnos-host run`, `resume`, `predict` and `validate --deep`
//! (`gymnos-host` starts it with the same arguments) over the `gymnos_engine` library. This is
//! the only binary that links libtorch.

mod commands;
mod ranks;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use gymnos_engine::{logging, observers::Progress};
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
    /// Checks of the engine's device paths, as JSON (scripts/gpu-check.sh).
    #[command(hide = true)]
    Selftest {
        #[arg(value_enum)]
        check: Selftest,
        /// cpu, or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: gymnos_host::experiment::DeviceSetting,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Selftest {
    Device,
    Fused,
    Nccl,
}

fn selftest(check: Selftest, setting: gymnos_host::experiment::DeviceSetting) -> anyhow::Result<ExitCode> {
    use gymnos_engine::selftest;
    let device = match setting {
        gymnos_host::experiment::DeviceSetting::Cuda(i) => tch::Device::Cuda(i.unwrap_or(0) as usize),
        _ => tch::Device::Cpu,
    };
    let report = match check {
        Selftest::Device => selftest::device(device),
        Selftest::Fused => serde_json::to_value(selftest::fused(device))?,
        Selftest::Nccl => selftest::nccl(match device {
            tch::Device::Cuda(i) => i,
            _ => 0,
        }),
    };
    gymnos_host::outln!("{report}");
    Ok(ExitCode::SUCCESS)
}

/// The user's one line about what went wrong: libtorch's C++ backtrace and line breaks removed.
pub fn print_error(text: &str) {
    let line = text.split("\nException raised from").next().unwrap_or_default();
    eprintln!("error: {}", line.lines().collect::<Vec<_>>().join(" "));
}

fn main() -> ExitCode {
    gymnos_engine::keep_freed_memory();
    let cli = Cli::parse();
    // The ranks of a data-parallel run other than 0 draw no bars and say only what goes wrong
    // on stderr (their log goes to the run folder).
    let other_rank = match &cli.command {
        Command::Run(a) if a.parallel.enabled() => ranks::world().is_ok_and(|w| w.rank > 0),
        Command::Resume(a) if a.parallel.enabled() => ranks::world().is_ok_and(|w| w.rank > 0),
        _ => false,
    };
    let no_progress = other_rank
        || match &cli.command {
            Command::Run(a) => a.no_progress,
            Command::Resume(a) => a.no_progress,
            Command::Predict(_) | Command::Validate(_) | Command::Selftest { .. } => true,
        };
    let bars = Progress::terminal(no_progress);
    let log = logging::init(
        if other_rank { logging::Verbosity::Quiet } else { logging::Verbosity::from(cli.verbose) },
        bars.clone(),
    );
    gymnos_host::terminal::one_line_panic_hook();
    let registry = cli.registry.unwrap_or_else(|| PathBuf::from("registry.json"));
    let outcome = std::panic::catch_unwind(move || match cli.command {
        Command::Run(args) => commands::run(&registry, args, &log, bars),
        Command::Resume(args) => commands::resume(&registry, args, &log, bars),
        Command::Predict(args) => gymnos_engine::predict::predict(&registry, args).map(|()| ExitCode::SUCCESS),
        Command::Validate(args) => commands::validate_deep(&registry, args),
        Command::Selftest { check, device } => selftest(check, device),
    });
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            print_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
        Err(_) => ExitCode::from(101),
    }
}
