//! The engine's commands over the library: `run`, `resume` and `validate --deep` (`predict` is
//! the library's `predict`). Each resolves the experiment, prepares a session (everything that
//! can refuse the run happens before its folder exists), attaches the run's observers and turns
//! the [`Outcome`] into the command's last line and exit code.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use gymnos_engine::{
    checkpoint::Checkpoint,
    logging::LogFile,
    observers::{
        Checkpointer, ExecutionLog, PauseAfter, PreemptOnSignal, ProgressDisplay, RecordWriter, ReportWriter,
        StopOnSignal, TrackerHost,
    },
    Event, Observer, Observers, Outcome, Session,
};
use gymnos_host::{
    cli_args::{ResumeArgs, RunArgs, ValidateArgs, RUN_DIR_FILE_ENV},
    experiment::{self, Experiment, ResolvedExperiment},
    outln,
    record::{self, RunStatus, RunSummary},
    PluginManager,
};
use gymnos_plugin_api::ComponentKind;

/// Loads and validates an experiment: everything that can be refused is refused here, before
/// a run folder exists.
pub fn resolve(manager: &PluginManager, file: &Path, exp: &Experiment) -> Result<ResolvedExperiment> {
    Ok(experiment::validate(file, exp, &manager.registry, &manager.compat)?)
}

/// The progress bars' owner, when bars are drawn.
pub type Bars = Option<indicatif::MultiProgress>;

/// The experiment of `run`, with its overrides, resolved against the registry.
pub fn load_and_resolve(manager: &PluginManager, args: &RunArgs) -> Result<ResolvedExperiment> {
    let mut exp = experiment::load(&args.file, &args.overrides)?;
    if let Some(root) = &args.output_root {
        exp.experiment.output_root = Some(std::path::absolute(root)?.to_string_lossy().into_owned());
    }
    resolve(manager, &args.file, &exp)
}

/// Where the experiment's runs go (`<output root>/<name>/executions/`), and a folder there
/// for what checks a run before its own folder exists (nothing is written to it).
pub fn planned_run_dir(session: &Session<'_>, file: &Path) -> PathBuf {
    let config = &session.resolved().experiment;
    let root = experiment::output_root(&config.experiment, &experiment::experiment_dir(file));
    root.join(&config.experiment.name).join(record::EXECUTIONS).join("planned")
}

/// The run's folder, made once everything that can refuse the run has passed: the log goes
/// there from now on, and `training_config.json` records the resolved experiment.
pub fn create_run_folder(session: &Session<'_>, file: &Path, log: &LogFile) -> Result<PathBuf> {
    let config = &session.resolved().experiment;
    let root = experiment::output_root(&config.experiment, &experiment::experiment_dir(file));
    let run_dir = record::create_run_dir(&root, &config.experiment.name)?;
    announce_run_dir(&run_dir)?;
    log.attach(&run_dir.join(record::LOG)).with_context(|| format!("{}: cannot write the log", run_dir.display()))?;
    tracing::info!("run folder: {}", run_dir.display());
    record::write_json(&run_dir.join(record::TRAINING_CONFIG), config)?;
    Ok(run_dir)
}

pub fn run(registry: &Path, args: RunArgs, log: &LogFile, bars: Bars) -> Result<ExitCode> {
    if args.parallel.enabled() {
        return crate::ranks::run(registry, args, log, bars);
    }
    let manager = PluginManager::open(registry)?;
    let resolved = load_and_resolve(&manager, &args)?;
    let in_file = || args.file.display().to_string();
    let session = Session::new(&manager, resolved).with_context(in_file)?;
    let mut prepared = session.prepare(None).with_context(in_file)?;
    session.check(&mut prepared, &planned_run_dir(&session, &args.file)).with_context(in_file)?;
    let run_dir = create_run_folder(&session, &args.file, log)?;
    let record = RecordWriter::fresh(run_dir.clone(), args.sweep_trial.clone());
    let observers = attach(&session, &run_dir, record, None, bars, args.stop_after_epoch);
    let outcome = match observers {
        Ok(mut observers) => session.train(prepared, &mut observers),
        Err(outcome) => outcome,
    };
    finish(&run_dir, outcome)
}

pub fn resume(registry: &Path, args: ResumeArgs, log: &LogFile, bars: Bars) -> Result<ExitCode> {
    if args.parallel.enabled() {
        return crate::ranks::resume(registry, args, log, bars);
    }
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
    let checkpoint = last_checkpoint(&run_dir)?;
    let record = RecordWriter::resumed(run_dir.clone())?;
    // Refused before anything of it ran (its data changed, a plugin cannot start): the run is
    // left as it was, and resumes once the cause is gone.
    let in_run = || format!("run {}", run_dir.display());
    let session = Session::new(&manager, resolved).with_context(in_run)?;
    let prepared = session.prepare(Some(checkpoint)).with_context(in_run)?;
    let resumed_at = prepared.start.resumed.as_ref().map(|r| r.epoch);
    let outcome = match attach(&session, &run_dir, record, resumed_at, bars, args.stop_after_epoch) {
        Ok(mut observers) => session.train(prepared, &mut observers),
        Err(outcome) => outcome,
    };
    finish(&run_dir, outcome)
}

/// The observers of a training command, in the order they see each event: the record first
/// (a tracker that uploads it at the end sees it final), the checkpoints, the trackers, the
/// report, the log, the progress bars and the controls. Trackers that cannot be created end the
/// run, recorded as failed.
pub fn attach(
    session: &Session<'_>,
    run_dir: &Path,
    record: RecordWriter,
    resumed_at: Option<u32>,
    bars: Bars,
    stop_after_epoch: Option<u32>,
) -> Result<Observers, Outcome> {
    let exp = &session.resolved().experiment;
    let plugins: Vec<_> = session.resolved().of_kind(ComponentKind::Tracker).collect();
    let created = session.factory(Some(run_dir)).trackers(&plugins).and_then(|trackers| {
        let params =
            (exp.tracking.log_params && resumed_at.is_none()).then(|| serde_json::to_value(exp)).transpose()?;
        Ok(TrackerHost::new(
            trackers,
            &exp.experiment.name,
            run_dir,
            resumed_at,
            params,
            exp.tracking.log_every_n_steps,
        ))
    });
    let trackers = match created {
        Ok(trackers) => trackers,
        Err(e) => return Err(end_without_training(record, Outcome::Failed(e))),
    };
    let controls = StopOnSignal::install().and_then(|stop| Ok((stop, PreemptOnSignal::install()?)));
    let (stop, preempt) = match controls {
        Ok(controls) => controls,
        Err(e) => return Err(end_without_training(record, Outcome::Failed(e))),
    };
    let mut observers = Observers::new()
        .with(record)
        .with(Checkpointer::new(run_dir.to_path_buf()))
        .with(trackers)
        .with(ReportWriter::new(run_dir.to_path_buf()))
        .with(ExecutionLog)
        .with(ProgressDisplay::new(bars))
        .with(stop)
        .with(preempt);
    if let Some(epoch) = stop_after_epoch {
        observers.push(PauseAfter(epoch));
    }
    Ok(observers)
}

/// Records an outcome reached before training started (the run folder exists).
pub fn end_without_training(mut record: RecordWriter, outcome: Outcome) -> Outcome {
    match record.on_event(&Event::RunEnded(&outcome)) {
        Err(e) if !matches!(outcome, Outcome::Failed(_)) => Outcome::Failed(e),
        _ => outcome,
    }
}

/// Tells the supervising `gymnos-host` where the run is, so it can record the engine's death.
fn announce_run_dir(run_dir: &Path) -> Result<()> {
    if let Some(file) = std::env::var_os(RUN_DIR_FILE_ENV) {
        std::fs::write(&file, run_dir.as_os_str().as_encoded_bytes())
            .with_context(|| format!("{}: cannot write", Path::new(&file).display()))?;
    }
    Ok(())
}

pub fn last_checkpoint(run_dir: &Path) -> Result<Checkpoint> {
    let path = run_dir.join(record::CHECKPOINTS).join(record::LAST);
    if !path.is_file() {
        anyhow::bail!(
            "{}: no checkpoint to resume from (the run stopped before its first checkpoint); start it again with `gymnos-host run`",
            path.display()
        );
    }
    Checkpoint::load(&path)
}

/// The command's last lines and exit code: the run folder and the test's figures on stdout; a
/// run that stopped before its end says how to continue it; 130 (the shells' code for Ctrl-C)
/// for an interrupted run.
pub fn finish(run_dir: &Path, outcome: Outcome) -> Result<ExitCode> {
    let message = outcome.message(run_dir);
    match outcome {
        Outcome::Failed(e) => Err(e.context(format!("run {}", run_dir.display()))),
        Outcome::Interrupted { .. } => {
            crate::print_error(&format!("run {}: {}", run_dir.display(), message.unwrap_or_default()));
            Ok(ExitCode::from(outcome.exit_code()))
        }
        Outcome::Preempted { .. } => {
            tracing::info!("{}", message.unwrap_or_default());
            outln!("{}", run_dir.display());
            Ok(ExitCode::from(outcome.exit_code()))
        }
        Outcome::Paused { .. } | Outcome::Completed | Outcome::Stopped { .. } => {
            if let Some(message) = message {
                tracing::info!("{message}");
            }
            outln!("{}", run_dir.display());
            if let Some(test) = &RunSummary::load(run_dir)?.test {
                let line: Vec<String> = test.headline().iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                outln!("test: {}", line.join(", "));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The most batches `validate --deep --measure-data` makes.
const MAX_MEASURED_BATCHES: u32 = 100_000;

/// `validate --deep`: the settings and plugins as `validate` checks them, then everything `run`
/// does before it creates the run folder: everything up to the first epoch, the trackers, and
/// the first batch through the whole run. Writes nothing.
pub fn validate_deep(registry: &Path, args: ValidateArgs) -> Result<ExitCode> {
    let exp = experiment::load(&args.file, &args.overrides)?;
    let manager = PluginManager::open(registry)?;
    let resolved = resolve(&manager, &args.file, &exp)?;
    let in_file = || args.file.display().to_string();
    let session = Session::new(&manager, resolved).with_context(in_file)?;
    let mut prepared = session.prepare(None).with_context(in_file)?;
    let loss = session.check(&mut prepared, &planned_run_dir(&session, &args.file)).with_context(in_file)?.loss;
    if let Some(batches) = args.measure_data.filter(|b| *b > MAX_MEASURED_BATCHES) {
        anyhow::bail!(
            "--measure-data: {batches} batches is more than {MAX_MEASURED_BATCHES}; a few hundred tell the speed"
        );
    }
    let speed =
        args.measure_data.map(|batches| prepared.trainer.measure_data(batches)).transpose().with_context(in_file)?;
    let data = &prepared.start.data;
    if args.json {
        let elapsed: std::collections::BTreeMap<&str, f64> =
            prepared.start.stage_seconds.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let report = serde_json::json!({
            "valid": true,
            "data": data,
            "first_loss": loss,
            "elapsed_seconds": elapsed,
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
    Ok(ExitCode::SUCCESS)
}
