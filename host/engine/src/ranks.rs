//! `run` and `resume` as one rank of a data-parallel run (`--distributed`, or a child of
//! `gymnos-host run --nproc-per-node N`). The ranks meet at rank 0's c10d store, agree that they
//! resolved the same experiment, plugins and libtorch, prepare (rank 0 fits the preprocessors
//! and shares them), agree that every rank is ready — so that a run refused on any rank leaves no
//! folder —, start from rank 0's model, and train. Rank 0 alone writes: the run folder, the
//! record, checkpoints, trackers, the report and the progress bars; the others log into
//! `logs/rank-<r>.log` of the same folder.

use std::{path::Path, process::ExitCode, rc::Rc, time::Duration};

use anyhow::{Context, Result};
use gymnos_engine::{
    distributed::{Backend, Coordinator, DataParallel, Fingerprint, Settings},
    logging::LogFile,
    observers::{PauseAfter, PreemptOnSignal, RecordWriter, StopOnSignal},
    Observers, Outcome, Prepared, Session,
};
use gymnos_host::{
    cli_args::{DistBackend, ParallelArgs, ResumeArgs, RunArgs},
    distributed::{Launcher, World},
    experiment,
    record::{self, RunStatus, RunSummary},
    PluginManager,
};

use crate::commands::{self, Bars};

/// The store key of the run folder rank 0 created.
const RUN_DIR: &str = "run-dir";

fn settings(args: &ParallelArgs) -> Settings {
    Settings {
        timeout: Duration::from_secs(args.dist_timeout),
        backend: args.dist_backend.map(|b| match b {
            DistBackend::Gloo => Backend::Gloo,
            DistBackend::Nccl => Backend::Nccl,
        }),
    }
}

/// This process's place in the run, from its launcher's variables.
pub fn world() -> Result<World> {
    Ok(World::from_env(|name| std::env::var(name).ok())?)
}

/// `result`; a failure is left in the store first, so that the other ranks stop waiting and
/// name this rank.
fn announced<T>(coordinator: &Coordinator, result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        coordinator.announce_failure(&format!("{e:#}"));
    }
    result
}

/// Checks that every rank resolved what rank 0 did, then brings up the process group: the
/// session becomes this rank's part of the run.
fn connect(coordinator: Coordinator, session: &mut Session<'_>, args: &ParallelArgs) -> Result<Rc<DataParallel>> {
    // `batch_size` is the global batch; every rank computes this verdict alike.
    let (batch, world) = (session.resolved().experiment.training.batch_size, coordinator.world().world_size);
    if batch % world != 0 || batch < world {
        anyhow::bail!(
            "training.batch_size: {batch} is the global batch, which the {world} processes share equally: give a multiple of {world}"
        );
    }
    let mine = serde_json::to_string(&session.fingerprint())?;
    let answers = coordinator.ask("configured", Ok(mine))?;
    let prints: Vec<Fingerprint> = answers.iter().map(|a| serde_json::from_str(a)).collect::<Result<_, _>>()?;
    // Every rank reads every print, so every rank reaches this verdict.
    for (rank, print) in prints.iter().enumerate().skip(1) {
        let differences = print.differences(&prints[0]);
        if !differences.is_empty() {
            let hosts = coordinator.hosts();
            anyhow::bail!(
                "rank {rank} ({}) resolved another run than rank 0 ({}): {}; every process needs the same experiment, plugins and libtorch",
                hosts[rank],
                hosts[0],
                differences.join("; ")
            );
        }
    }
    let dp = DataParallel::start(coordinator, session.placement().device, &settings(args))?;
    session.join(dp.clone());
    Ok(dp)
}

/// Everything up to the first epoch on every rank, then rank 0's model everywhere. Every rank
/// learns whether every other is ready: one that is not fails them all, naming it.
fn prepare_everywhere<'s>(
    session: &'s Session<'_>,
    dp: &DataParallel,
    checkpoint: Option<gymnos_engine::checkpoint::Checkpoint>,
    context: &str,
) -> Result<Prepared<'s>> {
    let prepared = session.prepare(checkpoint).with_context(|| context.to_string());
    let ready = match &prepared {
        Ok(_) => Ok(String::new()),
        Err(e) => Err(format!("{e:#}")),
    };
    dp.coordinator.ask("prepared", ready)?;
    let mut prepared = prepared?;
    session.replicate(&mut prepared)?;
    Ok(prepared)
}

/// The controls every rank attaches (a signal reaches each; a pause is asked of each).
fn controls(observers: &mut Observers, stop_after_epoch: Option<u32>) -> Result<()> {
    observers.push(StopOnSignal::install()?);
    observers.push(PreemptOnSignal::install()?);
    if let Some(epoch) = stop_after_epoch {
        observers.push(PauseAfter(epoch));
    }
    Ok(())
}

/// How a rank other than 0 ends: quietly when the run ended well (rank 0 reports it).
fn finish_other(dp: &DataParallel, outcome: Outcome) -> Result<ExitCode> {
    match outcome {
        Outcome::Failed(e) => {
            dp.announce_failure(&format!("{e:#}"));
            Err(e.context(format!("rank {}", dp.rank())))
        }
        other => Ok(ExitCode::from(other.exit_code())),
    }
}

/// A rank other than 0 logs into `logs/rank-<r>.log` of the run folder.
fn attach_rank_log(log: &LogFile, run_dir: &Path, rank: u32) {
    let logs = run_dir.join("logs");
    if std::fs::create_dir_all(&logs).is_ok() {
        let _ = log.attach(&logs.join(format!("rank-{rank}.log")));
    }
}

pub fn run(registry: &Path, args: RunArgs, log: &LogFile, bars: Bars) -> Result<ExitCode> {
    let world = world()?;
    let coordinator = Coordinator::join(&world, Duration::from_secs(args.parallel.dist_timeout))?;
    let manager = announced(&coordinator, PluginManager::open(registry).map_err(anyhow::Error::from))?;
    let resolved = announced(&coordinator, commands::load_and_resolve(&manager, &args))?;
    if let Some(run_dir) = requeued_run(&world, &resolved.experiment, &args.file) {
        tracing::info!("Slurm requeued this job: continuing {}", run_dir.display());
        let how = Continue { parallel: &args.parallel, stop_after_epoch: args.stop_after_epoch };
        return resume_in(coordinator, &world, &manager, run_dir, how, log, bars);
    }
    let in_file = || args.file.display().to_string();
    let session = Session::for_rank(&manager, resolved, world.local_rank).with_context(in_file);
    let mut session = announced(&coordinator, session)?;
    let dp = connect(coordinator, &mut session, &args.parallel)?;
    let mut prepared = prepare_everywhere(&session, &dp, None, &in_file())?;
    // What `run` checks before the folder exists, on every rank (each has its own batches).
    let checked = session.check(&mut prepared, &commands::planned_run_dir(&session, &args.file)).with_context(in_file);
    dp.coordinator.ask("checked", checked.as_ref().map(|_| String::new()).map_err(|e| format!("{e:#}")))?;
    checked?;

    // Rank 0 makes the folder and tells the others where it is.
    let run_dir = match dp.is_root() {
        true => {
            let created = commands::create_run_folder(&session, &args.file, log);
            let run_dir = announced(&dp.coordinator, created)?;
            dp.coordinator.publish(RUN_DIR, run_dir.as_os_str().as_encoded_bytes())?;
            run_dir
        }
        false => {
            let bytes = dp.coordinator.receive(RUN_DIR)?;
            std::path::PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    if !dp.is_root() {
        attach_rank_log(log, &run_dir, dp.rank());
        let mut observers = Observers::new();
        controls(&mut observers, args.stop_after_epoch)?;
        return finish_other(&dp, session.train(prepared, &mut observers));
    }
    let record = RecordWriter::fresh(run_dir.clone(), args.sweep_trial.clone());
    let outcome = match commands::attach(&session, &run_dir, record, None, bars, args.stop_after_epoch) {
        Ok(mut observers) => session.train(prepared, &mut observers),
        Err(outcome) => outcome,
    };
    if let Outcome::Failed(e) = &outcome {
        dp.announce_failure(&format!("{e:#}"));
    }
    commands::finish(&run_dir, outcome)
}

/// The run a requeued Slurm job started before: under Slurm, when the job runs again
/// (`SLURM_RESTART_COUNT` > 0), the latest run of this experiment recorded with this job's id
/// that did not complete.
fn requeued_run(world: &World, experiment: &experiment::Experiment, file: &Path) -> Option<std::path::PathBuf> {
    let Launcher::Slurm { job_id, restart_count } = &world.launcher else { return None };
    if *restart_count == 0 || job_id.is_empty() {
        return None;
    }
    let root = experiment::output_root(&experiment.experiment, &experiment::experiment_dir(file));
    let executions = root.join(&experiment.experiment.name).join(record::EXECUTIONS);
    let mut runs: Vec<std::path::PathBuf> =
        std::fs::read_dir(executions).ok()?.filter_map(|e| Some(e.ok()?.path())).collect();
    runs.sort();
    runs.into_iter().rev().find(|dir| {
        RunSummary::load(dir).is_ok_and(|summary| {
            let ours = summary
                .distributed
                .as_ref()
                .is_some_and(|d| matches!(&d.launcher, Launcher::Slurm { job_id: recorded, .. } if recorded == job_id));
            ours && summary.status != RunStatus::Completed
        })
    })
}

/// How a resumed run goes on.
struct Continue<'a> {
    parallel: &'a ParallelArgs,
    stop_after_epoch: Option<u32>,
}

pub fn resume(registry: &Path, args: ResumeArgs, log: &LogFile, bars: Bars) -> Result<ExitCode> {
    let world = world()?;
    let coordinator = Coordinator::join(&world, Duration::from_secs(args.parallel.dist_timeout))?;
    let manager = announced(&coordinator, PluginManager::open(registry).map_err(anyhow::Error::from))?;
    let run_dir = announced(&coordinator, std::path::absolute(&args.run_dir).map_err(anyhow::Error::from))?;
    let how = Continue { parallel: &args.parallel, stop_after_epoch: args.stop_after_epoch };
    resume_in(coordinator, &world, &manager, run_dir, how, log, bars)
}

/// `resume` of the run in `run_dir`, as one rank.
fn resume_in(
    coordinator: Coordinator,
    world: &World,
    manager: &PluginManager,
    run_dir: std::path::PathBuf,
    how: Continue<'_>,
    log: &LogFile,
    bars: Bars,
) -> Result<ExitCode> {
    let opened = (|| -> Result<_> {
        record::check_run_dir(&run_dir)?;
        if RunSummary::load(&run_dir)?.status == RunStatus::Completed {
            anyhow::bail!("{}: this run already completed; nothing to resume", run_dir.display());
        }
        commands::last_checkpoint(&run_dir)
    })();
    let checkpoint = announced(&coordinator, opened)?;
    let config = run_dir.join(record::TRAINING_CONFIG);
    let resolved = experiment::load(&config, &[])
        .map_err(anyhow::Error::from)
        .and_then(|exp| commands::resolve(manager, &config, &exp));
    let resolved = announced(&coordinator, resolved)?;
    let in_run = || format!("run {}", run_dir.display());
    let session = Session::for_rank(manager, resolved, world.local_rank).with_context(in_run);
    let mut session = announced(&coordinator, session)?;
    let dp = connect(coordinator, &mut session, how.parallel)?;
    match dp.is_root() {
        true => {
            log.attach(&run_dir.join(record::LOG))
                .with_context(|| format!("{}: cannot write the log", run_dir.display()))?;
            tracing::info!("resuming {} on {} processes", run_dir.display(), dp.size());
        }
        false => attach_rank_log(log, &run_dir, dp.rank()),
    }
    let prepared = prepare_everywhere(&session, &dp, Some(checkpoint), &in_run());
    if !dp.is_root() {
        let prepared = prepared?;
        let mut observers = Observers::new();
        controls(&mut observers, how.stop_after_epoch)?;
        return finish_other(&dp, session.train(prepared, &mut observers));
    }
    let record = RecordWriter::resumed(run_dir.clone())?;
    // Refused before anything of it ran: the run is left as it was (see `commands::resume`).
    let prepared = prepared.inspect_err(|e| dp.announce_failure(&format!("{e:#}")))?;
    let resumed_at = prepared.start.resumed.as_ref().map(|r| r.epoch);
    let outcome = match commands::attach(&session, &run_dir, record, resumed_at, bars, how.stop_after_epoch) {
        Ok(mut observers) => session.train(prepared, &mut observers),
        Err(outcome) => outcome,
    };
    if let Outcome::Failed(e) = &outcome {
        dp.announce_failure(&format!("{e:#}"));
    }
    commands::finish(&run_dir, outcome)
}
