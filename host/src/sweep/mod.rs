//! `gymnos-host sweep`: many runs of one experiment with some fields varied — a grid or random
//! draws — on this machine or on a Slurm cluster. Each trial is an ordinary run, recorded in
//! the sweep's folder; the sweep is resumable: run it again and it skips finished trials,
//! resumes interrupted ones from their checkpoints and retries failed ones up to a limit.
//!
//! `<output_root>/<name>/`: `sweep.json` (the results), `trials/trial-NNNN.json` (each trial's
//! resolved experiment), `runs/trial-NNNN/executions/<timestamp>/` (its runs), `logs/`.

mod checks;
pub mod definition;
pub mod executor;
mod format;
pub mod local;
mod read;
pub mod slurm;
mod state;
mod trials;

use std::path::{Path, PathBuf};

pub use checks::OWN_FIELDS;
pub use format::*;
pub use read::load;
pub use state::*;
pub use trials::{expand, Assignment};

use self::{
    checks::{Checked as BaseChecked, EdgeProblem},
    definition::Definition,
    executor::{Action, HostCall, Task},
};
use crate::{
    compat::HostCompat,
    experiment::{self, metric_names::Produced, ExperimentError, Problem},
    record::{self, RecordError},
    registry::Registry,
};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{}: cannot read the sweep file: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{}: {}", path.display(), list(problems))]
    Structure { path: PathBuf, problems: Vec<Problem> },
    #[error("{}: {field}: {message}", path.display())]
    Invalid { path: PathBuf, field: String, message: String },
    #[error("{}: {field}: {label} breaks a rule of the experiment: {}: {}", path.display(), base.display(), list(problems))]
    Edge { path: PathBuf, field: String, label: String, base: PathBuf, problems: Vec<Problem> },
    #[error("{}: trial {trial} ({assignment}): {error}", path.display())]
    Trial { path: PathBuf, trial: u32, assignment: String, error: ExperimentError },
    #[error(
        "{}: {what} changed since the sweep in {} was started, so its recorded trials no longer match the files; \
         run `gymnos-host sweep {} --restart` to discard its results and start afresh, or give the sweep another name",
        path.display(), dir.display(), path.display()
    )]
    Changed { path: PathBuf, dir: PathBuf, what: String },
    #[error(
        "{}: {what}; run `gymnos-host sweep {} --restart` to discard it and start afresh, or give the sweep another name",
        dir.display(), path.display()
    )]
    Unusable { path: PathBuf, dir: PathBuf, what: String },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Slurm(#[from] slurm::SlurmError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

fn list(problems: &[Problem]) -> String {
    let joined: Vec<String> = problems.iter().map(ToString::to_string).collect();
    match problems.len() {
        1 => joined[0].clone(),
        n => format!("{n} problems: {}", joined.join("; ")),
    }
}

/// A sweep ready to run: every trial's experiment checked and written.
pub struct Prepared {
    pub file: SweepFile,
    pub dir: SweepDir,
    pub results: SweepResults,
    /// Each trial's `training.epochs`.
    pub epochs: Vec<u32>,
}

/// How a sweep is prepared.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Discard what an earlier run of the sweep left in its folder (results, trials, runs,
    /// logs) and start afresh; done only once every check has passed.
    pub restart: bool,
}

fn describe(assignment: &Assignment) -> String {
    let parts: Vec<String> = assignment.iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join(", ")
}

/// [`prepare_with`] with the default options: a sweep started before continues.
pub fn prepare(path: &Path, registry: &Registry, compat: &HostCompat) -> Result<Prepared, SweepError> {
    prepare_with(path, registry, compat, Options::default())
}

/// Reads the sweep file and checks, before any trial starts and before anything is written:
/// its own fields and counts; that no parameter varies a field the sweep sets itself or one
/// another parameter sets; that each parameter's edge values keep the experiment's rules;
/// that the metric is one the trials' runs record; and every trial's experiment (settings,
/// plugins, keys and their rules). Then writes each trial's resolved experiment into the
/// sweep's folder. A sweep started before continues where it was, if the files still define
/// the same trials (else it is refused, unless `options.restart`); a changed metric ranks the
/// trials again from their records.
pub fn prepare_with(
    path: &Path,
    registry: &Registry,
    compat: &HostCompat,
    options: Options,
) -> Result<Prepared, SweepError> {
    let Plan { file, dir, mut results, experiments } = plan(path, registry, compat, options)?;
    // Every check passed: from here on the folder is written.
    if options.restart && dir.0.exists() {
        discard(&dir)?;
    }
    std::fs::create_dir_all(&dir.0).map_err(|cause| SweepError::Io { path: dir.0.clone(), cause })?;
    for (i, exp) in experiments.iter().enumerate() {
        let trial_file = dir.experiment(i as u32);
        if let Some(parent) = trial_file.parent() {
            std::fs::create_dir_all(parent).map_err(|cause| SweepError::Io { path: parent.to_path_buf(), cause })?;
        }
        record::write_json(&trial_file, exp)?;
    }
    results.refresh(&dir);
    results.save(&dir)?;
    let epochs = experiments.iter().map(|e| e.training.epochs).collect();
    Ok(Prepared { file, dir, results, epochs })
}

/// What `validate` says of a sweep file that passes every check `sweep` makes before a trial
/// runs (nothing is written).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Checked {
    pub name: String,
    /// The base experiment file.
    pub experiment: PathBuf,
    pub trials: usize,
    /// The sweep's folder.
    pub dir: PathBuf,
    /// Trials an earlier run of the sweep finished there (it continues with the others).
    pub finished: usize,
}

/// Every check [`prepare`] makes, writing nothing: the sweep as `validate` sees it.
pub fn check(path: &Path, registry: &Registry, compat: &HostCompat) -> Result<Checked, SweepError> {
    let Plan { file, dir, mut results, experiments } = plan(path, registry, compat, Options::default())?;
    results.refresh(&dir);
    let base = experiment::experiment_dir(path).join(&file.experiment);
    let finished = results.trials.iter().filter(|t| t.status == TrialStatus::Completed).count();
    Ok(Checked { name: file.name, experiment: base, trials: experiments.len(), dir: dir.0, finished })
}

/// Whether `path` holds a sweep file rather than an experiment (a JSON object with
/// `parameters` and an `experiment` that names a file).
pub fn is_sweep_file(path: &Path) -> bool {
    crate::fsio::read_text(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|v| v.get("parameters").is_some() && v.get("experiment").is_some_and(serde_json::Value::is_string))
}

/// A sweep checked and ready to be written: its trials' resolved experiments, and its results
/// (the recorded ones taken up, or fresh).
struct Plan {
    file: SweepFile,
    dir: SweepDir,
    results: SweepResults,
    experiments: Vec<experiment::Experiment>,
}

/// Every check of [`prepare_with`], reading only.
fn plan(path: &Path, registry: &Registry, compat: &HostCompat, options: Options) -> Result<Plan, SweepError> {
    let file = load(path)?;
    let invalid =
        |field: &str, message: String| SweepError::Invalid { path: path.to_path_buf(), field: field.into(), message };
    if let Some(problem) = experiment::folder_name_problem(&file.name) {
        return Err(invalid("name", problem));
    }
    if let Some((field, message)) = file.settings_problem() {
        return Err(invalid(&field, message));
    }
    if file.early_stopping.is_some() && file.metric.name.starts_with("test.") {
        let message = format!(
            "`{}` exists only when a trial ends; early stopping compares trials by a per-epoch metric (val_loss, val_accuracy...)",
            file.metric.name
        );
        return Err(invalid("metric.name", message));
    }
    if let Some((field, message)) = checks::dimension_problem(&file) {
        return Err(invalid(&field, message));
    }
    let assignments = expand(&file).map_err(|(field, message)| invalid(&field, message))?;
    let base_dir = experiment::experiment_dir(path);
    let base = base_dir.join(&file.experiment);
    if let Some(message) = read::not_an_experiment(path, &base) {
        return Err(invalid("experiment", message));
    }
    let root = match &file.output_root {
        Some(root) => crate::fsio::lexically_normal(&base_dir.join(root)),
        None => std::env::current_dir().map_err(|cause| SweepError::Io { path: ".".into(), cause })?.join("sweeps"),
    };
    let dir = SweepDir(root.join(&file.name));

    // The base experiment as every trial gets it, before its values: the context of the checks.
    let own = checks::own_overrides(0, &dir);
    let base_context =
        checks::check(&base, &own, registry, compat).map_err(|e| invalid("experiment", e.to_string()))?;
    if let BaseChecked::Valid(valid) = &base_context {
        let (exp, resolved) = valid.as_ref();
        if let Some(problem) = Produced::of(exp, Some(resolved)).sweep_metric_problem(&file.metric.name) {
            return Err(invalid("metric.name", problem));
        }
    }
    let first = assignments.first().cloned().unwrap_or_default();
    checks::check_edges(&file, &base, &own, &first, registry, compat).map_err(|(field, problem)| match problem {
        EdgeProblem::Path(message) => invalid(&field, message),
        EdgeProblem::Rules { label, problems } => {
            SweepError::Edge { path: path.to_path_buf(), field, label, base: base.clone(), problems }
        }
        EdgeProblem::Other(e) => invalid("experiment", e.to_string()),
    })?;

    let mut experiments = Vec::with_capacity(assignments.len());
    for (i, assignment) in assignments.iter().enumerate() {
        let trial = i as u32;
        let mut overrides = checks::value_overrides(assignment);
        overrides.extend(checks::own_overrides(trial, &dir));
        let trial_error =
            |error| SweepError::Trial { path: path.to_path_buf(), trial, assignment: describe(assignment), error };
        let exp = experiment::load(&base, &overrides).map_err(trial_error)?;
        let resolved = experiment::validate(&base, &exp, registry, compat).map_err(trial_error)?;
        if let Some(problem) = Produced::of(&exp, Some(&resolved)).sweep_metric_problem(&file.metric.name) {
            return Err(invalid("metric.name", format!("{problem} (trial {trial}: {})", describe(assignment))));
        }
        experiments.push(resolved.experiment);
    }

    // What defines the trials, to tell on a re-run whether the recorded ones are still these.
    let base_value: serde_json::Value = crate::fsio::read_text(&base)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(serde_json::Value::Null);
    let base_abs = std::path::absolute(&base).unwrap_or_else(|_| base.clone());
    let definition = Definition::of(&file, &crate::fsio::lexically_normal(&base_abs), &base_value);
    let fingerprints: Vec<String> = assignments.iter().map(|a| definition::trial_fingerprint(&base_value, a)).collect();

    let unusable = |what: String| SweepError::Unusable { path: path.to_path_buf(), dir: dir.0.clone(), what };
    let existing = match options.restart || !dir.results().exists() {
        true => None,
        false => Some(read_results(&dir.results()).map_err(unusable)?),
    };
    let results = match existing {
        Some(mut results) => {
            continue_results(&mut results, &file, &definition, &fingerprints, &assignments, &experiments, &dir)
                .map_err(|what| match what {
                    Refusal::Changed(what) => {
                        SweepError::Changed { path: path.to_path_buf(), dir: dir.0.clone(), what }
                    }
                    Refusal::Unusable(what) => unusable(what),
                })?;
            results
        }
        None => {
            if !options.restart && holds_runs(&dir) {
                return Err(unusable(
                    "the folder holds trial runs but no sweep.json, so they cannot be matched to this sweep's trials"
                        .into(),
                ));
            }
            SweepResults {
                name: file.name.clone(),
                sweep_file: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
                metric: file.metric.clone(),
                max_retries: file.max_retries,
                trials: assignments
                    .iter()
                    .zip(&fingerprints)
                    .enumerate()
                    .map(|(i, (a, fingerprint))| TrialResult::pending(i as u32, a.clone(), Some(fingerprint.clone())))
                    .collect(),
                best: None,
                rungs_done: Vec::new(),
                definition: Some(definition),
            }
        }
    };
    Ok(Plan { file, dir, results, experiments })
}

/// Why a sweep's recorded results cannot be continued.
enum Refusal {
    /// The files define other trials than the recorded ones.
    Changed(String),
    /// The records cannot be continued for another reason.
    Unusable(String),
}

/// Takes up a sweep's recorded results when the files still define the same trials; the
/// metric, its direction and `max_retries` may have changed (the trials are ranked again from
/// their records). A sweep recorded before definitions were is compared by each trial's
/// resolved experiment, and then recorded.
fn continue_results(
    results: &mut SweepResults,
    file: &SweepFile,
    definition: &Definition,
    fingerprints: &[String],
    assignments: &[Assignment],
    experiments: &[experiment::Experiment],
    dir: &SweepDir,
) -> Result<(), Refusal> {
    match &results.definition {
        Some(old) => {
            let changes = definition.changes(old);
            if !changes.is_empty() {
                return Err(Refusal::Changed(changes.join("; ")));
            }
        }
        None => {
            // Recorded by an earlier gymnos-host: the trials' experiment files it wrote are
            // what its trials ran.
            for (i, exp) in experiments.iter().enumerate() {
                let recorded = std::fs::read_to_string(dir.experiment(i as u32))
                    .ok()
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .map(checks::without_own_fields);
                let now = serde_json::to_value(exp).ok().map(checks::without_own_fields);
                if recorded.is_none() || recorded != now {
                    return Err(Refusal::Changed(format!(
                        "trial {i}'s experiment (as {} recorded it)",
                        dir.experiment(i as u32).display()
                    )));
                }
            }
        }
    }
    let same_trials = results.trials.len() == assignments.len()
        && results.trials.iter().zip(assignments).all(|(t, a)| &t.parameters == a)
        && results.trials.iter().zip(fingerprints).all(|(t, f)| t.fingerprint.as_ref().is_none_or(|g| g == f));
    if !same_trials {
        return Err(Refusal::Changed("the trials' values".into()));
    }
    if results.metric != file.metric && !results.rungs_done.is_empty() {
        return Err(Refusal::Unusable(format!(
            "the metric changed ({} {} → {} {}) after successive halving pruned trials by the old one",
            results.metric.name,
            direction_name(results.metric.direction),
            file.metric.name,
            direction_name(file.metric.direction)
        )));
    }
    results.metric = file.metric.clone();
    results.max_retries = file.max_retries;
    results.definition = Some(definition.clone());
    for (t, fingerprint) in results.trials.iter_mut().zip(fingerprints) {
        t.fingerprint = Some(fingerprint.clone());
    }
    Ok(())
}

fn direction_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Min => "min",
        Direction::Max => "max",
    }
}

/// The results an earlier run of the sweep recorded, or why they cannot be read back.
fn read_results(path: &Path) -> Result<SweepResults, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("its sweep.json cannot be read ({e})"))?;
    serde_json::from_str(&text).map_err(|e| format!("its sweep.json is not a sweep's results ({e})"))
}

/// Whether the sweep's folder holds any trial's runs.
fn holds_runs(dir: &SweepDir) -> bool {
    std::fs::read_dir(dir.runs()).is_ok_and(|mut entries| entries.next().is_some())
}

/// Removes what an earlier run of the sweep left: the folder is first renamed away (at once:
/// a crash leaves the old folder whole, or none), then deleted.
fn discard(dir: &SweepDir) -> Result<(), SweepError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| SweepError::Io { path, cause }
    };
    let name = dir.0.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let away = dir.0.with_file_name(format!(".{name}.discarded-{}", std::process::id()));
    std::fs::rename(&dir.0, &away).map_err(io(&dir.0))?;
    std::fs::remove_dir_all(&away).map_err(io(&away))
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn file(metric: serde_json::Value, halving: bool) -> SweepFile {
        let mut f = json!({
            "name": "s", "experiment": "e.json", "parameters": { "training.optimizer.lr": { "values": [0.1, 0.2] } },
            "metric": metric
        });
        if halving {
            f["early_stopping"] = json!({ "min_epochs": 1 });
        }
        serde_json::from_value(f).unwrap()
    }

    fn recorded(
        file: &SweepFile,
        base: &serde_json::Value,
    ) -> (SweepResults, Definition, Vec<Assignment>, Vec<String>) {
        let definition = Definition::of(file, Path::new("/e.json"), base);
        let assignments = expand(file).unwrap();
        let fingerprints: Vec<String> = assignments.iter().map(|a| definition::trial_fingerprint(base, a)).collect();
        let results = SweepResults {
            name: "s".into(),
            sweep_file: "s.json".into(),
            metric: file.metric.clone(),
            max_retries: 1,
            trials: assignments
                .iter()
                .zip(&fingerprints)
                .enumerate()
                .map(|(i, (a, f))| TrialResult {
                    status: TrialStatus::Completed,
                    epochs: 1,
                    metric: Some(0.5),
                    ..TrialResult::pending(i as u32, a.clone(), Some(f.clone()))
                })
                .collect(),
            best: None,
            rungs_done: Vec::new(),
            definition: Some(definition.clone()),
        };
        (results, definition, assignments, fingerprints)
    }

    #[test]
    fn a_rerun_takes_up_the_same_trials_ranks_by_a_new_metric_and_refuses_other_trials() {
        let base = json!({ "experiment": { "name": "b" }, "training": { "epochs": 2 } });
        let dir = SweepDir("/nowhere".into());
        let old = file(json!({ "name": "val_loss", "direction": "min" }), false);
        let (results, definition, assignments, fingerprints) = recorded(&old, &base);

        let mut now = file(json!({ "name": "val_accuracy", "direction": "max" }), false);
        now.max_retries = 3;
        let mut taken = results.clone();
        assert!(continue_results(&mut taken, &now, &definition, &fingerprints, &assignments, &[], &dir).is_ok());
        assert_eq!((taken.metric.name.as_str(), taken.max_retries), ("val_accuracy", 3));

        let mut edited = base.clone();
        edited["training"]["epochs"] = json!(3);
        let changed = Definition::of(&old, Path::new("/e.json"), &edited);
        let mut taken = results.clone();
        let Err(Refusal::Changed(what)) =
            continue_results(&mut taken, &old, &changed, &fingerprints, &assignments, &[], &dir)
        else {
            panic!("a changed base is refused")
        };
        assert_eq!(what, "the base experiment /e.json (training.epochs: 2 → 3)");

        // Successive halving pruned by the old metric: a new one cannot be applied after it.
        let halving = file(json!({ "name": "val_loss", "direction": "min" }), true);
        let (mut results, definition, assignments, fingerprints) = recorded(&halving, &base);
        results.rungs_done = vec![1];
        let mut other_metric = halving.clone();
        other_metric.metric.direction = Direction::Max;
        let Err(Refusal::Unusable(what)) =
            continue_results(&mut results, &other_metric, &definition, &fingerprints, &assignments, &[], &dir)
        else {
            panic!("refused")
        };
        assert_eq!(
            what,
            "the metric changed (val_loss min → val_loss max) after successive halving pruned trials by the old one"
        );
    }
}
