//! The record of a run: `<output_root>/<name>/executions/<timestamp>/` with
//! `training_config.json`, `execution.log`, `metrics.json`, `model.safetensors` and
//! `checkpoints/`. This module owns the folder's layout and `metrics.json`'s typed form
//! ([`RunSummary`]); the engine writes it, `gymnos-host` reads it (runs, sweeps) and records a
//! run whose engine process died. Every file is written whole (temporary file, then rename).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub const TRAINING_CONFIG: &str = "training_config.json";
pub const METRICS: &str = "metrics.json";
pub const LOG: &str = "execution.log";
pub const MODEL: &str = "model.safetensors";
pub const CHECKPOINTS: &str = "checkpoints";
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const EXECUTIONS: &str = "executions";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: cannot read: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: not a valid run record: {cause}", path.display())]
    Parse { path: PathBuf, cause: serde_json::Error },
    #[error("{}: cannot write: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("{}: not a run folder (no {TRAINING_CONFIG})", path.display())]
    NotARun { path: PathBuf },
}

/// Where a run is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    #[default]
    Running,
    Completed,
    Failed,
    /// Stopped by Ctrl-C or SIGTERM after a batch; `resume` continues it.
    Interrupted,
    /// Stopped at the end of an epoch, as asked (a sweep's early stopping); `resume` continues
    /// it.
    Paused,
    /// Checkpointed where it stood and stopped at a cluster's notice (SIGUSR1 before a
    /// preemption or the time limit); `resume` continues at the next step.
    Preempted,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Paused => "paused",
            RunStatus::Preempted => "preempted",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The learning task, as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskName {
    Classification,
    Regression,
}

impl From<gymnos_plugin_api::Task> for TaskName {
    fn from(task: gymnos_plugin_api::Task) -> Self {
        match task {
            gymnos_plugin_api::Task::Classification => TaskName::Classification,
            gymnos_plugin_api::Task::Regression => TaskName::Regression,
        }
    }
}

impl From<TaskName> for gymnos_plugin_api::Task {
    fn from(task: TaskName) -> Self {
        match task {
            TaskName::Classification => gymnos_plugin_api::Task::Classification,
            TaskName::Regression => gymnos_plugin_api::Task::Regression,
        }
    }
}

/// How the run reached its samples.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataMode {
    /// The data set was loaded into memory at once.
    #[default]
    InMemory,
    /// Batches were read by index as training went (the data set need not fit in memory).
    Indexed,
}

/// What the data looked like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataDescription {
    pub task: TaskName,
    #[serde(default)]
    pub mode: DataMode,
    pub train_samples: u64,
    pub val_samples: u64,
    pub test_samples: u64,
    /// One sample's features as the data set gives them.
    pub feature_shape: Vec<i64>,
    /// One sample's features as the model sees them (after preprocessing).
    pub input_shape: Vec<i64>,
    pub num_outputs: i64,
    #[serde(default)]
    pub class_names: Vec<String>,
    /// What a streaming data set noted while it was read (skipped samples...), as it said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_notes: Option<serde_json::Value>,
}

/// The best value of the checkpoint's monitored metric, and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    pub metric: String,
    pub value: Option<f64>,
    pub epoch: u32,
}

/// One class's figures in a classification report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    pub loss: f64,
    pub accuracy: f64,
    pub f1_macro: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion_matrix[true][predicted]`.
    pub confusion_matrix: Vec<Vec<i64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionReport {
    pub loss: f64,
    pub mse: f64,
    pub mae: f64,
    pub r2: f64,
}

/// A split's evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EvaluationReport {
    Classification(ClassificationReport),
    Regression(RegressionReport),
}

impl EvaluationReport {
    /// Its headline numbers: `loss`, `accuracy`, `f1_macro` (classification) or `loss`, `mse`,
    /// `mae`, `r2` (regression).
    pub fn headline(&self) -> Vec<(String, f64)> {
        match self {
            EvaluationReport::Classification(r) => {
                vec![("loss".into(), r.loss), ("accuracy".into(), r.accuracy), ("f1_macro".into(), r.f1_macro)]
            }
            EvaluationReport::Regression(r) => {
                vec![("loss".into(), r.loss), ("mse".into(), r.mse), ("mae".into(), r.mae), ("r2".into(), r.r2)]
            }
        }
    }

    /// One headline number by name.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.headline().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// What the run ran on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hardware {
    pub cpu: String,
    pub cpu_cores: usize,
    pub memory_gib: f64,
    pub torch_threads: i32,
    pub device: String,
    pub cuda_available: bool,
    pub cuda_devices: i64,
    #[serde(default)]
    pub gpus: Vec<String>,
    pub cudnn_available: bool,
    pub libtorch: String,
    /// libtorch's build tag, e.g. `cu130` (the CUDA version it was built for) or `cpu`.
    pub libtorch_build: String,
    pub os: String,
}

/// How a data-parallel run is spread over processes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistributedRun {
    /// Processes (ranks) of the latest session.
    pub world_size: u32,
    pub nodes: u32,
    /// `gloo` or `nccl`.
    pub backend: String,
    /// The host of each rank.
    pub hosts: Vec<String>,
    pub launcher: crate::distributed::Launcher,
    /// The world size of every session of the run, in order (a resumed run may change it).
    #[serde(default)]
    pub world_sizes: Vec<u32>,
}

/// The sweep a run is a trial of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepTrial {
    pub sweep: String,
    pub trial: u32,
}

/// One epoch's metrics; [`RunSummary::history`] holds them as per-metric lists.
pub type EpochMetrics = BTreeMap<String, f64>;

/// `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunSummary {
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why training ended before its last epoch (early stopping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_early: Option<String>,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    /// Seconds spent in each stage, summed over resumes.
    pub elapsed_seconds: BTreeMap<String, f64>,
    pub epochs_completed: u32,
    /// Per-epoch lists: `history["val_loss"][i]` is epoch i+1's validation loss.
    pub history: BTreeMap<String, Vec<f64>>,
    #[serde(default)]
    pub best: Option<BestCheckpoint>,
    #[serde(default)]
    pub test: Option<EvaluationReport>,
    #[serde(default)]
    pub data: Option<DataDescription>,
    #[serde(default)]
    pub hardware: Option<Hardware>,
    /// Epochs at which the run was resumed.
    #[serde(default)]
    pub resumed_at_epochs: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracker_errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepTrial>,
    /// How the run was spread over processes (absent when it ran in one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distributed: Option<DistributedRun>,
}

impl RunSummary {
    pub fn add_epoch(&mut self, metrics: &EpochMetrics) {
        for (name, value) in metrics {
            self.history.entry(name.clone()).or_default().push(*value);
        }
        self.epochs_completed += 1;
    }

    pub fn add_elapsed(&mut self, stage: &str, seconds: f64) {
        *self.elapsed_seconds.entry(stage.to_string()).or_default() += seconds;
    }

    pub fn load(run_dir: &Path) -> Result<Self, RecordError> {
        let path = run_dir.join(METRICS);
        let text = std::fs::read_to_string(&path).map_err(|cause| RecordError::Read { path: path.clone(), cause })?;
        serde_json::from_str(&text).map_err(|cause| RecordError::Parse { path, cause })
    }

    pub fn save(&self, run_dir: &Path) -> Result<(), RecordError> {
        write_json(&run_dir.join(METRICS), self)
    }

    /// Seconds the whole run took (the sum of its stages).
    pub fn total_seconds(&self) -> f64 {
        self.elapsed_seconds.values().sum()
    }
}

/// Writes `value` as pretty JSON, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RecordError> {
    let mut text = serde_json::to_string_pretty(value).expect("records serialize");
    text.push('\n');
    crate::fsio::write_atomically(path, text.as_bytes(), 0o644)
        .map_err(|cause| RecordError::Write { path: path.to_path_buf(), cause })
}

/// Creates a new, empty run folder under `root/<name>/executions/`, named after the local time.
pub fn create_run_dir(root: &Path, name: &str) -> Result<PathBuf, RecordError> {
    let executions = root.join(name).join(EXECUTIONS);
    fn write(path: &Path) -> impl FnOnce(std::io::Error) -> RecordError + '_ {
        move |cause| RecordError::Write { path: path.to_path_buf(), cause }
    }
    std::fs::create_dir_all(&executions).map_err(write(&executions))?;
    let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string();
    for n in 0.. {
        let dir = if n == 0 { executions.join(&stamp) } else { executions.join(format!("{stamp}-{n}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::create_dir(dir.join(CHECKPOINTS)).map_err(write(&dir))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(write(&dir)(e)),
        }
    }
    unreachable!("the loop returns")
}

/// Checks that `dir` is a run folder.
pub fn check_run_dir(dir: &Path) -> Result<(), RecordError> {
    if dir.join(TRAINING_CONFIG).is_file() {
        Ok(())
    } else {
        Err(RecordError::NotARun { path: dir.to_path_buf() })
    }
}

/// Now, as the record writes times (local time, RFC 3339).
pub fn now() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// Records that a run's engine process died (a signal: a crash in a plugin, the kernel's
/// out-of-memory killer): a run still marked running is marked failed with `reason`. Its last
/// checkpoint is untouched and `resume` continues from it.
pub fn record_death(run_dir: &Path, reason: &str) -> Result<bool, RecordError> {
    let mut summary = RunSummary::load(run_dir)?;
    if summary.status != RunStatus::Running {
        return Ok(false);
    }
    summary.status = RunStatus::Failed;
    summary.error = Some(reason.to_string());
    summary.finished_at = Some(now());
    summary.save(run_dir)?;
    Ok(true)
}

/// Records why a run failed when its own process could not say it best (a data-parallel rank
/// that died of a signal): a run still running or already failed is marked failed with
/// `reason`. Its last checkpoint is untouched.
pub fn record_failure(run_dir: &Path, reason: &str) -> Result<bool, RecordError> {
    let mut summary = RunSummary::load(run_dir)?;
    if !matches!(summary.status, RunStatus::Running | RunStatus::Failed) {
        return Ok(false);
    }
    summary.status = RunStatus::Failed;
    summary.error = Some(reason.to_string());
    summary.finished_at = Some(now());
    summary.save(run_dir)?;
    Ok(true)
}
