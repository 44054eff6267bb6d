//! The engine's commands: `run`, `resume` and `validate --deep` (`predict` is in predict.rs).

use std::{
    path::{Path, PathBuf},
    sync::{atomic::AtomicBool, Arc},
};

use anyhow::{Context, Result};
use gymnos_host::{
    cli_args::{ResumeArgs, RunArgs, ValidateArgs, RUN_DIR_FILE_ENV},
    experiment::{self, Experiment, ResolvedExperiment},
    outln,
    record::{self, RunStatus, RunSummary},
    PluginManager,
};

use crate::{
    logging::LogFile,
    session::{Session, Start},
};

/// Loads and validates an experiment: everything that can be refused is refused here, before
/// a run folder exists.
fn resolve(manager: &PluginManager, file: &Path, exp: &Experiment) -> Result<ResolvedExperiment> {
    Ok(experiment::validate(file, exp, &manager.registry, &manager.compat)?)
}

pub fn run(registry: &Path, args: RunArgs, log: &LogFile, bars: Option<indicatif::MultiProgress>) -> Result<()> {
    let mut exp = experiment::load(&args.file, &args.overrides)?;
    if let Some(root) = &args.output_root {
        exp.experiment.output_root = Some(std::path::absolute(root)?.to_string_lossy().into_owned());
    }
    let manager = PluginManager::open(registry)?;
    let resolved = resolve(&manager, &args.file, &exp)?;
    // A CUDA device this machine lacks is refused before anything loads.
    crate::device::select(&resolved.experiment.training.device).with_context(|| args.file.display().to_string())?;
    let root = experiment::output_root(&resolved.experiment.experiment, &experiment::experiment_dir(&args.file));
    let config = resolved.experiment.clone();
    // Called by the session once everything up to the first epoch has worked.
    let create_run_dir = || -> Result<PathBuf> {
        let run_dir = record::create_run_dir(&root, &config.experiment.name)?;
        announce_run_dir(&run_dir)?;
        log.attach(&run_dir.join(record::LOG))
            .with_context(|| format!("{}: cannot write the log", run_dir.display()))?;
        tracing::info!("run folder: {}", run_dir.display());
        record::write_json(&run_dir.join(record::TRAINING_CONFIG), &config)?;
        Ok(run_dir)
    };
    session(
        &manager,
        resolved,
        bars,
        args.stop_after_epoch,
        Start::Fresh { experiment_file: &args.file, create_run_dir: &create_run_dir, sweep: args.sweep_trial.clone() },
    )
}

/// Tells the supervising `gymnos-host` where the run is, so it can record the engine's death.
fn announce_run_dir(run_dir: &Path) -> Result<()> {
    if let Some(file) = std::env::var_os(RUN_DIR_FILE_ENV) {
        std::fs::write(&file, run_dir.as_os_str().as_encoded_bytes())
            .with_context(|| format!("{}: cannot write", Path::new(&file).display()))?;
    }
    Ok(())
}

pub fn resume(registry: &Path, args: ResumeArgs, log: &LogFile, bars: Option<indicatif::MultiProgress>) -> Result<()> {
    let run_dir = std::path::absolute(&args.run_dir)?;
    record::check_run_dir(&run_dir)?;
    if RunSummary::load(&run_dir)?.status == RunStatus::Completed {
        anyhow::bail!("{}: this run already completed; nothing to resume", run_dir.display());
    }
    let config = run_dir.join(record::TRAINING_CONFIG);
    let exp = experiment::load(&config, &[])?;
    let manager = PluginManager::open(registry)?;
    // The recorded library hashes must match what is installed: the run continues with the
    // exact plugins it started with.
    let resolved = resolve(&manager, &config, &exp)?;
    log.attach(&run_dir.join(record::LOG)).with_context(|| format!("{}: cannot write the log", run_dir.display()))?;
    tracing::info!("resuming {}", run_dir.display());
    session(&manager, resolved, bars, args.stop_after_epoch, Start::Resume { run_dir })
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the Ctrl-C handler")?;
    }
    Ok(stop)
}

fn session(
    manager: &PluginManager,
    resolved: ResolvedExperiment,
    bars: Option<indicatif::MultiProgress>,
    stop_after_epoch: Option<u32>,
    start: Start<'_>,
) -> Result<()> {
    let session = Session { manager, stop: stop_flag()?, resolved, bars, stop_after_epoch };
    let run_dir = session.execute(start)?;
    let summary = RunSummary::load(&run_dir)?;
    outln!("{}", run_dir.display());
    if let Some(test) = &summary.test {
        let line: Vec<String> = test.headline().iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        outln!("test: {}", line.join(", "));
    }
    Ok(())
}

/// `validate --deep`: the settings and plugins as `validate` checks them, then everything up
/// to the first epoch (what `run` does before it creates the run folder) and one training
/// step. Writes nothing.
pub fn validate_deep(registry: &Path, args: ValidateArgs) -> Result<()> {
    let exp = experiment::load(&args.file, &args.overrides)?;
    let manager = PluginManager::open(registry)?;
    let resolved = resolve(&manager, &args.file, &exp)?;
    let session = Session {
        manager: &manager,
        stop: Arc::new(AtomicBool::new(false)),
        resolved,
        bars: None,
        stop_after_epoch: None,
    };
    let mut summary = RunSummary::default();
    let in_file = || args.file.display().to_string();
    let mut trainer = session.prepare(&mut summary, None).with_context(in_file)?;
    let loss = trainer.try_one_step().with_context(in_file)?;
    let speed = args.measure_data.map(|batches| trainer.measure_data(batches)).transpose().with_context(in_file)?;
    let data = summary.data.as_ref().expect("prepare describes the data");
    if args.json {
        let report = serde_json::json!({
            "valid": true,
            "data": data,
            "first_loss": loss,
            "elapsed_seconds": summary.elapsed_seconds,
            "data_pipeline": speed,
        });
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        outln!("{}: valid, and the run starts", args.file.display());
        outln!(
            "  data: {} train, {} val, {} test samples; input {:?} -> {} outputs",
            data.train_samples,
            data.val_samples,
            data.test_samples,
            data.input_shape,
            data.num_outputs
        );
        outln!("  first training step: loss {loss:.4}");
        if let Some(speed) = speed {
            outln!(
                "  data pipeline: {} batches, {} samples in {:.2}s: {:.0} samples/s",
                speed.batches,
                speed.samples,
                speed.seconds,
                speed.samples_per_second
            );
        }
    }
    Ok(())
}
