//! `gymnos-host sweep`: many runs of one experiment with some fields varied — a grid or random
//! draws — on this machine or on a Slurm cluster. Each trial is an ordinary run, recorded in
//! the sweep's folder; the sweep is resumable: run it again and it skips finished trials,
//! resumes interrupted ones from their checkpoints and retries failed ones up to a limit.
//!
//! `<output_root>/<name>/`: `sweep.json` (the results), `trials/trial-NNNN.json` (each trial's
//! resolved experiment), `runs/trial-NNNN/executions/<timestamp>/` (its runs), `logs/`.

pub mod executor;
mod format;
pub mod local;
pub mod slurm;
mod state;
mod trials;

use std::path::{Path, PathBuf};

pub use format::*;
pub use state::*;
pub use trials::{expand, Assignment};

use self::executor::{Action, HostCall, Task};
use crate::{
    compat::HostCompat,
    experiment::{self, ExperimentError},
    record::{self, RecordError},
    registry::Registry,
};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{}: cannot read the sweep file: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {field}: {message}", path.display())]
    Invalid { path: PathBuf, field: String, message: String },
    #[error("{}: trial {trial} ({assignment}): {error}", path.display())]
    Trial { path: PathBuf, trial: u32, assignment: String, error: ExperimentError },
    #[error("{}: the sweep's trials changed since it was started there; give the sweep another name to start a new one", dir.display())]
    Changed { dir: PathBuf },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Slurm(#[from] slurm::SlurmError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

/// Reads a sweep file.
pub fn load(path: &Path) -> Result<SweepFile, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|cause| SweepError::Read { path: path.to_path_buf(), cause })?;
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let message = e.into_inner().to_string();
        let message = if field == "." { message } else { format!("{field}: {message}") };
        SweepError::Parse { path: path.to_path_buf(), message }
    })
}

/// A sweep ready to run: every trial's experiment checked and written.
pub struct Prepared {
    pub file: SweepFile,
    pub dir: SweepDir,
    pub results: SweepResults,
    /// Each trial's `training.epochs`.
    pub epochs: Vec<u32>,
}

fn describe(assignment: &Assignment) -> String {
    let parts: Vec<String> = assignment.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(", ")
}

/// Reads the sweep file, expands its trials, checks every trial's experiment (settings,
/// plugins, keys and their rules) before any starts, and writes each trial's resolved
/// experiment into the sweep's folder. A sweep started before continues where it was.
pub fn prepare(path: &Path, registry: &Registry, compat: &HostCompat) -> Result<Prepared, SweepError> {
    let file = load(path)?;
    let invalid =
        |field: &str, message: String| SweepError::Invalid { path: path.to_path_buf(), field: field.into(), message };
    if let Some(problem) = experiment::folder_name_problem(&file.name) {
        return Err(invalid("name", problem));
    }
    if let Some(problem) = metric_problem(&file.metric.name) {
        return Err(invalid("metric.name", problem));
    }
    if let Some(halving) = &file.early_stopping {
        if halving.min_epochs == 0 {
            return Err(invalid("early_stopping.min_epochs", "must be at least 1".into()));
        }
        if halving.reduction_factor < 2 {
            return Err(invalid("early_stopping.reduction_factor", "must be at least 2".into()));
        }
        if file.metric.name.starts_with("test.") {
            let message = format!(
                "`{}` exists only when a trial ends; early stopping compares trials by a per-epoch metric (val_loss, val_accuracy...)",
                file.metric.name
            );
            return Err(invalid("metric.name", message));
        }
    }
    let assignments = expand(&file).map_err(|(field, message)| invalid(&field, message))?;
    let base_dir = experiment::experiment_dir(path);
    let base = base_dir.join(&file.experiment);
    let root = match &file.output_root {
        Some(root) => crate::fsio::lexically_normal(&base_dir.join(root)),
        None => std::env::current_dir().map_err(|cause| SweepError::Io { path: ".".into(), cause })?.join("sweeps"),
    };
    let dir = SweepDir(root.join(&file.name));

    let mut experiments = Vec::with_capacity(assignments.len());
    for (i, assignment) in assignments.iter().enumerate() {
        let trial = i as u32;
        let mut overrides: Vec<String> = assignment.iter().map(|(k, v)| format!("{k}={v}")).collect();
        overrides.push(format!("experiment.name={}", serde_json::to_string(&trial_name(trial)).expect("a string")));
        let runs = dir.runs().to_string_lossy().into_owned();
        overrides.push(format!("experiment.output_root={}", serde_json::to_string(&runs).expect("a string")));
        let trial_error =
            |error| SweepError::Trial { path: path.to_path_buf(), trial, assignment: describe(assignment), error };
        let exp = experiment::load(&base, &overrides).map_err(trial_error)?;
        let resolved = experiment::validate(&base, &exp, registry, compat).map_err(trial_error)?;
        experiments.push(resolved.experiment);
    }

    let results = if dir.results().is_file() {
        let results = SweepResults::load(&dir.results())?;
        let same = results.trials.len() == assignments.len()
            && results.trials.iter().zip(&assignments).all(|(t, a)| &t.parameters == a);
        if !same {
            return Err(SweepError::Changed { dir: dir.0.clone() });
        }
        results
    } else {
        SweepResults {
            name: file.name.clone(),
            sweep_file: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            metric: file.metric.clone(),
            max_retries: file.max_retries,
            trials: assignments
                .iter()
                .enumerate()
                .map(|(i, a)| TrialResult {
                    trial: i as u32,
                    parameters: a.clone(),
                    status: TrialStatus::Pending,
                    failures: 0,
                    run_dir: None,
                    epochs: 0,
                    metric: None,
                    error: None,
                })
                .collect(),
            best: None,
            rungs_done: Vec::new(),
        }
    };
    for (i, exp) in experiments.iter().enumerate() {
        let trial_file = dir.experiment(i as u32);
        if let Some(parent) = trial_file.parent() {
            std::fs::create_dir_all(parent).map_err(|cause| SweepError::Io { path: parent.to_path_buf(), cause })?;
        }
        record::write_json(&trial_file, exp)?;
    }
    results.save(&dir)?;
    let epochs = experiments.iter().map(|e| e.training.epochs).collect();
    Ok(Prepared { file, dir, results, epochs })
}

/// The next attempt of each trial that needs one to reach `target(trial)` epochs (`None`: its
/// last): pending ones run, interrupted and paused ones (and ones whose process was killed)
/// resume from their checkpoint, failed ones are retried while they have retries left; pruned
/// ones are done.
pub fn next_tasks(results: &SweepResults, dir: &SweepDir, target: &dyn Fn(u32) -> Option<u32>) -> Vec<Task> {
    let mut tasks = Vec::new();
    for t in &results.trials {
        let stop_after_epoch = target(t.trial);
        let go = match t.status {
            TrialStatus::Completed | TrialStatus::Pruned => false,
            TrialStatus::Paused => stop_after_epoch.is_none_or(|r| t.epochs < r),
            TrialStatus::Pending | TrialStatus::Interrupted | TrialStatus::Running => true,
            TrialStatus::Failed => t.failures <= results.max_retries,
        };
        if !go {
            continue;
        }
        let resumable = t.run_dir.as_ref().filter(|d| d.join(record::CHECKPOINTS).join(record::LAST).is_file());
        let action = match resumable {
            Some(run_dir) if t.status != TrialStatus::Pending => Action::Resume { run_dir: run_dir.clone() },
            _ => Action::Run { experiment: dir.experiment(t.trial) },
        };
        tasks.push(Task { trial: t.trial, action, stop_after_epoch });
    }
    tasks
}

/// Successive halving at rung `rung`: of the trials that reached it, the best go on and the
/// others are pruned.
pub fn prune(results: &mut SweepResults, rung: u32, halving: &Halving) {
    let direction = results.metric.direction;
    let mut reached: Vec<(u32, Option<f64>)> = results
        .trials
        .iter()
        .filter(|t| t.status == TrialStatus::Completed || (t.status == TrialStatus::Paused && t.epochs >= rung))
        .map(|t| (t.trial, t.metric))
        .collect();
    reached.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) if direction.better(x, y) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) if direction.better(y, x) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        _ => a.0.cmp(&b.0),
    });
    let kept = halving.kept(reached.len());
    for (trial, _) in reached.into_iter().skip(kept) {
        let t = &mut results.trials[trial as usize];
        if t.status == TrialStatus::Paused {
            t.status = TrialStatus::Pruned;
        }
    }
    results.rungs_done.push(rung);
}

/// After an attempt of `task`: reads the trial's state, and counts a failure (an attempt that
/// neither completed nor was interrupted, including one refused before its run folder existed).
pub fn record_attempt(results: &mut SweepResults, dir: &SweepDir, task: &Task, run_before: Option<&PathBuf>) {
    results.refresh_trial(dir, task.trial);
    let t = &mut results.trials[task.trial as usize];
    let started_nothing =
        matches!(task.action, Action::Run { .. }) && dir.latest_run(task.trial).as_ref() == run_before;
    if started_nothing {
        t.status = TrialStatus::Failed;
        t.error = dir.last_error(task.trial).or_else(|| Some("the trial ended before it created a run folder".into()));
    }
    if !matches!(t.status, TrialStatus::Completed | TrialStatus::Interrupted | TrialStatus::Paused) {
        t.status = TrialStatus::Failed;
        t.failures += 1;
    }
}

/// Where and how the trials run.
pub enum Executing {
    /// `processes` per trial, sharing its `threads`.
    Local {
        parallel: u32,
        threads: u32,
        processes: u32,
    },
    Slurm(slurm::Resources),
}

impl Executing {
    pub fn of(executor: &Executor) -> Self {
        match executor {
            Executor::Local { parallel, threads_per_trial, processes_per_trial } => {
                let gpus = executor::gpu_count();
                let processes = processes_per_trial.unwrap_or(1).max(1);
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                let parallel =
                    parallel.unwrap_or(if gpus > 0 { (gpus / processes).max(1) } else { (cores / 2).max(1) }).max(1);
                let threads = threads_per_trial.unwrap_or_else(|| executor::threads_per_trial(parallel)).max(1);
                Executing::Local { parallel, threads, processes }
            }
            Executor::Slurm {
                parallel,
                threads_per_trial,
                partition,
                memory,
                time_limit,
                gpus_per_trial,
                sbatch_args,
                processes_per_trial,
            } => Executing::Slurm(slurm::Resources {
                parallel: *parallel,
                threads: threads_per_trial.unwrap_or(1).max(1),
                partition: partition.clone(),
                memory: memory.clone(),
                time_limit: time_limit.clone(),
                gpus: *gpus_per_trial,
                sbatch_args: sbatch_args.clone(),
                processes: processes_per_trial.unwrap_or(1).max(1),
            }),
        }
    }
}

/// Runs the sweep's remaining trials until none is left, or `stop` is set. With successive
/// halving, trials first train to each rung, where the best go on; otherwise straight to their
/// last epoch. Each stage goes round after round (a round retries what the previous one left
/// failed). `report` hears of each trial that ends an attempt.
pub fn run(
    prepared: &mut Prepared,
    call: &HostCall,
    stop: &std::sync::atomic::AtomicBool,
    mut report: impl FnMut(&TrialResult),
) -> Result<(), SweepError> {
    let Prepared { file, dir, results, epochs } = prepared;
    let executing = Executing::of(&file.executor);
    let stopped = || stop.load(std::sync::atomic::Ordering::Relaxed);
    results.refresh(dir);
    let longest = epochs.iter().copied().max().unwrap_or(0);
    let rungs = file.early_stopping.as_ref().map(|h| h.rungs(longest)).unwrap_or_default();
    for stage in rungs.iter().copied().map(Some).chain([None]) {
        let target = |trial: u32| stage.filter(|&r| r < epochs[trial as usize]);
        // Each round either finishes trials or spends a retry; interrupted trials that do not
        // finish are bounded by the rounds.
        for _round in 0..=file.max_retries + 2 {
            if stopped() {
                break;
            }
            let tasks = next_tasks(results, dir, &target);
            if tasks.is_empty() {
                break;
            }
            run_round(&tasks, &executing, call, dir, results, stop, &mut report)?;
            results.save(dir)?;
        }
        if stopped() {
            break;
        }
        if let (Some(rung), Some(halving)) = (stage, &file.early_stopping) {
            if !results.rungs_done.contains(&rung) {
                prune(results, rung, halving);
                results.save(dir)?;
            }
        }
    }
    results.refresh(dir);
    results.save(dir)?;
    Ok(())
}

/// One attempt of each of `tasks`.
fn run_round(
    tasks: &[Task],
    executing: &Executing,
    call: &HostCall,
    dir: &SweepDir,
    results: &mut SweepResults,
    stop: &std::sync::atomic::AtomicBool,
    report: &mut impl FnMut(&TrialResult),
) -> Result<(), SweepError> {
    let before: Vec<Option<PathBuf>> = tasks.iter().map(|t| dir.latest_run(t.trial)).collect();
    match executing {
        Executing::Local { parallel, threads, processes } => {
            let by_trial = |trial: u32| tasks.iter().position(|t| t.trial == trial).expect("a task of this round");
            let slots = local::Slots { parallel: *parallel, threads: *threads, processes: *processes };
            local::run(tasks.to_vec(), slots, call, dir, stop, |trial, _ok| {
                let i = by_trial(trial);
                record_attempt(results, dir, &tasks[i], before[i].as_ref());
                let _ = results.save(dir);
                report(&results.trials[trial as usize]);
            })
            .map_err(|cause| SweepError::Io { path: dir.0.clone(), cause })?;
        }
        Executing::Slurm(resources) => {
            slurm::run_array(tasks, resources, call, dir, stop)?;
            for (task, before) in tasks.iter().zip(&before) {
                record_attempt(results, dir, task, before.as_ref());
                report(&results.trials[task.trial as usize]);
            }
        }
    }
    Ok(())
}
