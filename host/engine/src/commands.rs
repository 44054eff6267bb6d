//! `run` and `resume`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use gymnos_host::{
    cli_args::{ResumeArgs, RunArgs},
    experiment::{self, ResolvedExperiment},
    PluginManager,
};

use crate::{
    logging::LogFile,
    record,
    train::{Session, Start},
};

fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) })
}

pub fn run(registry: &Path, args: RunArgs, log: &LogFile, bars: Option<indicatif::MultiProgress>) -> Result<()> {
    let (mut exp, _) = experiment::load(&args.file, &args.overrides)?;
    if let Some(root) = &args.output_root {
        exp.experiment.output_root = root.to_string_lossy().into_owned();
    }
    let manager = PluginManager::open(registry)?;
    let resolved = experiment::validate(&args.file, &exp, &manager.registry, &manager.compat)?;
    let root = absolute(Path::new(&exp.experiment.output_root))?;
    let run_dir = record::create_run_dir(&root, &exp.experiment.name)?;
    log.attach(&run_dir.join(record::LOG)).with_context(|| format!("{}: cannot write the log", run_dir.display()))?;
    tracing::info!("run folder: {}", run_dir.display());
    record::write_json(&run_dir.join(record::TRAINING_CONFIG), &resolved.experiment)?;
    session(&manager, resolved, run_dir, experiment::experiment_dir(&args.file), bars, Start::Fresh)
}

pub fn resume(registry: &Path, args: ResumeArgs, log: &LogFile, bars: Option<indicatif::MultiProgress>) -> Result<()> {
    let run_dir = absolute(&args.run_dir)?;
    let config = run_dir.join(record::TRAINING_CONFIG);
    if !config.is_file() {
        bail!("{}: not a run folder (no {})", run_dir.display(), record::TRAINING_CONFIG);
    }
    let metrics = record::Metrics::load(&run_dir)?;
    if metrics.status == "completed" {
        bail!("{}: this run already completed; nothing to resume", run_dir.display());
    }
    let (exp, _) = experiment::load(&config, &[])?;
    let manager = PluginManager::open(registry)?;
    // The recorded library hashes must match what is installed: the run continues with the
    // exact plugins it started with.
    let resolved = experiment::validate(&config, &exp, &manager.registry, &manager.compat)?;
    log.attach(&run_dir.join(record::LOG)).with_context(|| format!("{}: cannot write the log", run_dir.display()))?;
    tracing::info!("resuming {}", run_dir.display());
    session(&manager, resolved, run_dir.clone(), run_dir, bars, Start::Resume)
}

fn session(
    manager: &PluginManager,
    resolved: ResolvedExperiment,
    run_dir: PathBuf,
    base_dir: PathBuf,
    bars: Option<indicatif::MultiProgress>,
    start: Start,
) -> Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    let session = Session { manager, stop, resolved, run_dir: run_dir.clone(), base_dir, bars };
    session.execute(start).with_context(|| format!("run {}", run_dir.display()))?;
    let metrics = record::Metrics::load(&run_dir)?;
    println!("{}", run_dir.display());
    if let Some(test) = &metrics.test {
        let pick = |k: &str| test.get(k).and_then(|v| v.as_f64()).map(|v| format!("{k} {v:.4}"));
        let line: Vec<String> = ["accuracy", "f1_macro", "mse", "mae", "r2", "loss"].iter().filter_map(|k| pick(k)).collect();
        println!("test: {}", line.join(", "));
    }
    Ok(())
}
