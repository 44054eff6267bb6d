//! The record of a run: `<root>/<name>/executions/<timestamp>/` with `training_config.json`,
//! `execution.log`, `metrics.json`, `model.safetensors` and `checkpoints/`.
//! Every file is written whole (temporary file, then rename).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::checkpoint::write_atomically;

pub const TRAINING_CONFIG: &str = "training_config.json";
pub const METRICS: &str = "metrics.json";
pub const LOG: &str = "execution.log";
pub const MODEL: &str = "model.safetensors";
pub const CHECKPOINTS: &str = "checkpoints";
pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";

/// Creates a new, empty run folder named after the current time.
pub fn create_run_dir(root: &Path, name: &str) -> Result<PathBuf> {
    let executions = root.join(name).join("executions");
    std::fs::create_dir_all(&executions).with_context(|| format!("{}: cannot create the run folder", executions.display()))?;
    let stamp = chrono::Local::now().format("%Y-%m-%d_%H-%M-%S").to_string();
    for n in 0.. {
        let dir = if n == 0 { executions.join(&stamp) } else { executions.join(format!("{stamp}-{n}")) };
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                std::fs::create_dir(dir.join(CHECKPOINTS)).with_context(|| format!("{}: cannot create", dir.display()))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("{}: cannot create the run folder", dir.display())),
        }
    }
    unreachable!()
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_atomically(path, text.as_bytes())
}

/// One epoch's metrics; `history` in [`Metrics`] holds them as per-metric lists.
pub type EpochMetrics = BTreeMap<String, f64>;

/// `metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Metrics {
    /// `running`, `completed`, `failed` or `interrupted`.
    pub status: String,
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
    /// Epochs completed.
    pub epochs_completed: u32,
    /// Per-epoch lists: `history["val_loss"][i]` is epoch i+1's validation loss.
    pub history: BTreeMap<String, Vec<f64>>,
    #[serde(default)]
    pub best: Option<Value>,
    #[serde(default)]
    pub test: Option<Value>,
    #[serde(default)]
    pub data: Option<Value>,
    #[serde(default)]
    pub hardware: Option<Value>,
    /// Epochs at which the run was resumed.
    #[serde(default)]
    pub resumed_at_epochs: Vec<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tracker_errors: Vec<String>,
}

impl Metrics {
    pub fn add_epoch(&mut self, metrics: &EpochMetrics) {
        for (name, value) in metrics {
            self.history.entry(name.clone()).or_default().push(*value);
        }
        self.epochs_completed += 1;
    }

    pub fn add_elapsed(&mut self, stage: &str, seconds: f64) {
        *self.elapsed_seconds.entry(stage.to_string()).or_default() += seconds;
    }

    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = run_dir.join(METRICS);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: invalid", path.display()))
    }

    pub fn save(&self, run_dir: &Path) -> Result<()> {
        write_json(&run_dir.join(METRICS), self)
    }
}

pub fn now() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}
