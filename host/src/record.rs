//! The record of a run: `<output_root>/<name>/executions/<timestamp>/` with
//! `training_config.json`, `execution.log`, `metrics.json`, `model.safetensors` and
//! `checkpoints/`. This module owns the folder's layout and `metrics.json`'s typed form
//! ([`RunSummary`]); the engine writes it, `gymnos-host` reads it (runs, sweeps) and records a
//! run whose engine process died. Every file is written whole (temporary file, then rename).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};

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
    /// A record that is JSON but not a run record's: the field at fault named.
    #[error("{}: not a valid run record: {cause}", path.display())]
    Invalid { path: PathBuf, cause: JsonError },
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
    #[serde(deserialize_with = "lenient::number")]
    pub precision: f64,
    #[serde(deserialize_with = "lenient::number")]
    pub recall: f64,
    #[serde(deserialize_with = "lenient::number")]
    pub f1: f64,
    pub support: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    #[serde(deserialize_with = "lenient::number")]
    pub loss: f64,
    #[serde(deserialize_with = "lenient::number")]
    pub accuracy: f64,
    #[serde(deserialize_with = "lenient::number")]
    pub f1_macro: f64,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion_matrix[true][predicted]`.
    pub confusion_matrix: Vec<Vec<i64>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegressionReport {
    #[serde(deserialize_with = "lenient::number")]
    pub loss: f64,
    #[serde(deserialize_with = "lenient::number")]
    pub mse: f64,
    #[serde(deserialize_with = "lenient::number")]
    pub mae: f64,
    #[serde(deserialize_with = "lenient::number")]
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
    #[serde(deserialize_with = "lenient::number")]
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
    #[serde(deserialize_with = "lenient::numbers_by_name")]
    pub elapsed_seconds: BTreeMap<String, f64>,
    pub epochs_completed: u32,
    /// Per-epoch lists: `history["val_loss"][i]` is epoch i+1's validation loss.
    #[serde(deserialize_with = "lenient::lists_by_name")]
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

    /// Reads `metrics.json` (a byte order mark before it is ignored; a `null` where a number
    /// belongs is NaN, which is how a NaN loss is written).
    pub fn load(run_dir: &Path) -> Result<Self, RecordError> {
        read_record(&run_dir.join(METRICS))
    }

    pub fn save(&self, run_dir: &Path) -> Result<(), RecordError> {
        write_json(&run_dir.join(METRICS), self)
    }

    /// Seconds the whole run took (the sum of its stages).
    pub fn total_seconds(&self) -> f64 {
        self.elapsed_seconds.values().sum()
    }
}

/// Reads a JSON record file of the run folder as `T`; an error names the file and the field.
pub fn read_record<T: DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
    let text = crate::fsio::read_text(path).map_err(|cause| RecordError::Read { path: path.to_path_buf(), cause })?;
    parse_json(&text).map_err(|error| match error {
        JsonProblem::Syntax(cause) => RecordError::Parse { path: path.to_path_buf(), cause },
        JsonProblem::Field(cause) => RecordError::Invalid { path: path.to_path_buf(), cause },
    })
}

/// Why a JSON file the host reads (a run record, the registry, its state) could not be read as
/// its type.
#[derive(Debug)]
pub enum JsonProblem {
    /// Not JSON at all (serde_json's message has the line and column).
    Syntax(serde_json::Error),
    /// JSON, but a field of the wrong form.
    Field(JsonError),
}

impl std::fmt::Display for JsonProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JsonProblem::Syntax(cause) => write!(f, "{cause}"),
            JsonProblem::Field(cause) => write!(f, "{cause}"),
        }
    }
}

/// A field of the wrong form: its path (`components[4].version`, empty for the whole file)
/// and serde's message, said in the file's terms rather than the host's types.
#[derive(Debug)]
pub struct JsonError {
    pub field: String,
    pub cause: serde_json::Error,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = one_line(&plain_serde_message(&self.cause.to_string()));
        match self.field.as_str() {
            "" | "." => f.write_str(&message),
            field => write!(f, "{}: {message}", one_line(field)),
        }
    }
}

/// Parses `text` (already without its byte order mark) as `T`, which is read from a JSON
/// object: a syntax error, a file that is no object and a field of the wrong form are told
/// apart, the last with the field's path.
pub fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, JsonProblem> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(JsonProblem::Syntax)?;
    if !value.is_object() {
        let found = match value {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "a string",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => unreachable!("checked"),
        };
        let cause = <serde_json::Error as serde::de::Error>::custom(format!("expected an object, found {found}"));
        return Err(JsonProblem::Field(JsonError { field: String::new(), cause }));
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| JsonProblem::Field(JsonError { field: e.path().to_string(), cause: e.into_inner() }))
}

/// serde's messages name Rust types (`expected struct DeclaredComponent`, `invalid length 0,
/// expected struct RunSummary with 16 elements`); a file's reader knows objects and arrays.
fn plain_serde_message(message: &str) -> String {
    let (head, at) = match message.find(" at line ") {
        Some(i) => message.split_at(i),
        None => (message, ""),
    };
    let head = if head.starts_with("invalid length ") && head.contains(", expected struct ") {
        "expected an object, found an array".to_string()
    } else if let Some(i) = head.find("expected struct ") {
        format!("{}expected an object", &head[..i])
    } else if head.starts_with("data did not match any variant of untagged enum ") {
        "matches none of the forms this field takes".to_string()
    } else {
        head.to_string()
    };
    format!("{head}{at}")
}

/// `text` on one line: control characters (a newline in a key or value quoted from a file) are
/// written escaped, as in Rust (`\n`, `\u{1b}`).
pub fn one_line(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Numbers of a record read back: `null` is NaN (serde_json writes NaN and infinities as
/// `null`), so a run whose loss went NaN stays readable.
mod lenient {
    use std::collections::BTreeMap;

    use super::{Deserialize, Deserializer};

    fn or_nan(value: Option<f64>) -> f64 {
        value.unwrap_or(f64::NAN)
    }

    pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Option::<f64>::deserialize(d).map(or_nan)
    }

    pub fn numbers_by_name<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let map = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(map.into_iter().map(|(k, v)| (k, or_nan(v))).collect())
    }

    pub fn lists_by_name<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<f64>>, D::Error> {
        let map = BTreeMap::<String, Vec<Option<f64>>>::deserialize(d)?;
        Ok(map.into_iter().map(|(k, v)| (k, v.into_iter().map(or_nan).collect())).collect())
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
    mark_failed(run_dir, reason, |status| status == RunStatus::Running)
}

/// Records why a run failed when its own process could not say it best (a data-parallel rank
/// that died of a signal): a run still running or already failed is marked failed with
/// `reason`. Its last checkpoint is untouched.
pub fn record_failure(run_dir: &Path, reason: &str) -> Result<bool, RecordError> {
    mark_failed(run_dir, reason, |status| matches!(status, RunStatus::Running | RunStatus::Failed))
}

/// Marks the run failed with `reason` if its status is one `replaces` accepts; whether it did.
fn mark_failed(run_dir: &Path, reason: &str, replaces: impl Fn(RunStatus) -> bool) -> Result<bool, RecordError> {
    let mut summary = RunSummary::load(run_dir)?;
    if !replaces(summary.status) {
        return Ok(false);
    }
    summary.status = RunStatus::Failed;
    summary.error = Some(reason.to_string());
    summary.finished_at = Some(now());
    summary.save(run_dir)?;
    Ok(true)
}

#[cfg(test)]
mod reading_tests {
    use super::*;

    fn summary() -> RunSummary {
        let mut s = RunSummary {
            status: RunStatus::Completed,
            started_at: "2026-01-01T00:00:00+00:00".into(),
            test: Some(EvaluationReport::Regression(RegressionReport {
                loss: f64::NAN,
                mse: f64::NAN,
                mae: 1.0,
                r2: f64::NEG_INFINITY,
            })),
            ..RunSummary::default()
        };
        s.add_epoch(&EpochMetrics::from([("val_loss".to_string(), f64::NAN), ("train_loss".to_string(), 0.5)]));
        s.add_elapsed("train", f64::INFINITY);
        s
    }

    #[test]
    fn a_record_with_nan_metrics_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        summary().save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(METRICS)).unwrap();
        assert!(text.contains("\"loss\": null"), "{text}");
        let read = RunSummary::load(dir.path()).unwrap();
        let Some(EvaluationReport::Regression(report)) = &read.test else { panic!("{read:?}") };
        assert!(report.loss.is_nan() && report.mse.is_nan() && report.r2.is_nan() && report.mae == 1.0);
        assert!(read.history["val_loss"][0].is_nan());
        assert_eq!(read.history["train_loss"], [0.5]);
        assert!(read.elapsed_seconds["train"].is_nan());
    }

    #[test]
    fn a_byte_order_mark_is_ignored_and_a_wrong_field_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS);
        let good = serde_json::to_string(&summary()).unwrap();
        std::fs::write(&path, format!("\u{feff}{good}")).unwrap();
        assert_eq!(RunSummary::load(dir.path()).unwrap().epochs_completed, 1);

        let shown = path.display().to_string();
        for (text, error) in [
            ("[]".to_string(), "expected an object, found an array".to_string()),
            ("3".to_string(), "expected an object, found a number".to_string()),
            ("{ \"status\": ".to_string(), "EOF while parsing a value at line 1 column 12".to_string()),
            (good.replace("\"completed\"", "\"exploded\""), "status: unknown variant `exploded`, expected one of `running`, `completed`, `failed`, `interrupted`, `paused`, `preempted` at line 1 column 20".to_string()),
            (good.replace("\"epochs_completed\":1", "\"epochs_completed\":-1"), "epochs_completed: invalid value: integer `-1`, expected u32".to_string()),
            (good.replace("\"mae\":1.0", "\"mae\":\"x\""), "test: matches none of the forms this field takes".to_string()),
            (good.replace("\"train_loss\":[0.5]", "\"train_loss\":[\"a\"]"), "history.train_loss[0]: invalid type: string \"a\", expected f64".to_string()),
            (good.replace("\"best\":null", "\"best\":[]"), "best: expected an object, found an array".to_string()),
        ] {
            std::fs::write(&path, &text).unwrap();
            let err = RunSummary::load(dir.path()).unwrap_err().to_string();
            let want = format!("{shown}: not a valid run record: {error}");
            assert!(err.starts_with(&want), "{text}\n  got  {err}\n  want {want}");
        }
    }
}
