//! `sweep FILE` and `sweep status DIR`.

use std::{
    path::{Path, PathBuf},
    sync::{atomic::AtomicBool, Arc},
};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use gymnos_host::{
    outln,
    registry::Registry,
    sweep::{self, executor::HostCall, SweepDir, SweepResults, TrialResult, TrialStatus},
    HostCompat,
};

use super::output::{print_json, print_table};

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub command: Option<SweepCommand>,
    /// The sweep file: a base experiment, the parameters to vary, the metric, the executor.
    pub file: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
    /// Discard what an earlier run of this sweep left in its folder (results, trials' runs,
    /// logs) and start afresh: for a sweep whose base experiment or parameters changed.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Subcommand, Debug)]
pub enum SweepCommand {
    /// The trials of a sweep's folder, best first, as they stand now.
    Status {
        /// The sweep's folder (`<output_root>/<name>`).
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(registry_path: &Path, args: SweepArgs) -> Result<std::process::ExitCode> {
    match (args.command, args.file) {
        (Some(SweepCommand::Status { dir, json }), _) => status(&dir, json).map(|()| std::process::ExitCode::SUCCESS),
        (None, Some(file)) => run_sweep(registry_path, &file, args.json, args.restart),
        (None, None) => bail!("give a sweep file (`gymnos-host sweep sweep.json`) or `sweep status DIR`"),
    }
}

fn run_sweep(registry_path: &Path, file: &Path, json: bool, restart: bool) -> Result<std::process::ExitCode> {
    let registry = Registry::load(registry_path)?;
    let options = sweep::Options { restart };
    let mut prepared = sweep::prepare_with(file, &registry, &HostCompat::default(), options)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    let call = HostCall {
        host: std::env::current_exe().context("locating gymnos-host")?,
        registry: std::path::absolute(registry_path)?,
        sweep: prepared.file.name.clone(),
    };
    let total = prepared.results.trials.len();
    let metric = prepared.results.metric.name.clone();
    eprintln!("sweep {}: {total} trials in {}", prepared.file.name, prepared.dir.0.display());
    sweep::run(&mut prepared, &call, &stop, |t: &TrialResult| {
        let value = t.metric.map_or_else(String::new, |m| format!(" {metric} {m:.4}"));
        let error = t.error.as_deref().filter(|_| t.status != TrialStatus::Completed).map(|e| format!(": {e}"));
        eprintln!("trial {}: {}{value}{}", t.trial, t.status.name(), error.unwrap_or_default());
    })?;
    let results = &prepared.results;
    if json {
        print_json(results);
    } else {
        print_results(results);
    }
    let interrupted = stop.load(std::sync::atomic::Ordering::Relaxed);
    let failed =
        results.trials.iter().filter(|t| !matches!(t.status, TrialStatus::Completed | TrialStatus::Pruned)).count();
    if interrupted {
        eprintln!(
            "error: sweep {}: interrupted; run `gymnos-host sweep {}` again to continue it",
            prepared.dir.0.display(),
            file.display()
        );
        return Ok(std::process::ExitCode::from(130));
    }
    if failed > 0 {
        bail!(
            "sweep {}: {failed} of {total} trials did not complete; see their logs in {}",
            prepared.dir.0.display(),
            prepared.dir.0.join("logs").display()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn status(dir: &Path, json: bool) -> Result<()> {
    let sweep_dir = SweepDir(dir.to_path_buf());
    let mut results =
        SweepResults::load(&sweep_dir.results()).with_context(|| format!("{}: not a sweep folder", dir.display()))?;
    results.refresh(&sweep_dir);
    if json {
        print_json(&results);
    } else {
        print_results(&results);
    }
    Ok(())
}

fn print_results(results: &SweepResults) {
    let names: Vec<&String> = results.trials.first().map(|t| t.parameters.keys().collect()).unwrap_or_default();
    let mut header = vec!["TRIAL", "STATUS", results.metric.name.as_str()];
    header.extend(names.iter().map(|n| n.as_str()));
    let rows: Vec<Vec<String>> = results
        .ranked()
        .into_iter()
        .map(|t| {
            let mut row = vec![t.trial.to_string(), t.status.name().to_string()];
            row.push(t.metric.map_or_else(|| "-".into(), |m| format!("{m:.4}")));
            row.extend(names.iter().map(|n| t.parameters.get(*n).map_or_else(String::new, |v| v.to_string())));
            row
        })
        .collect();
    print_table(&header, &rows);
    let counts: Vec<String> = results.counts().iter().map(|(k, v)| format!("{v} {k}")).collect();
    outln!("{}", counts.join(", "));
    if let Some(best) = &results.best {
        outln!("best: trial {} ({} {:.4}): {}", best.trial, results.metric.name, best.metric, best.run_dir.display());
    }
}
