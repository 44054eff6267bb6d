//! `tensorboard`: writes a run's metrics, hyperparameters and experiment as TensorBoard event
//! files in a folder of the run folder, for `tensorboard --logdir`.
//!
//! What a run writes (one event file per session; a resumed run adds a file to the same folder,
//! which TensorBoard reads as the same run):
//!
//! - SCALARS: every metric as `<scope>/<name>` at the step the host gives: `train_step/loss` and
//!   `train_step/lr` at the global optimizer step, `epoch/<name>` at the epoch (from 1),
//!   `test/<name>` at the number of epochs completed. Values are stored as float32.
//! - TEXT: the resolved experiment, as a JSON code block, under the tag `experiment` at step 0.
//! - HPARAMS: the resolved experiment flattened into dotted names (`training.optimizer.lr`),
//!   and the metric tags the table shows: every `epoch/<name>` of the first epoch and the
//!   `test/<name>` matching each `val_<name>` (the test split is evaluated with the same
//!   metrics as the validation split). They are written when the first epoch's metrics arrive
//!   (or at the end, if none does), since TensorBoard keeps the first hparams summary of a run.
//!   The session's end is written at `finish`: `completed` is success, `failed` failure;
//!   `interrupted` writes no end, so that the status of a resumed run is the one recorded.
//!
//! A resumed session is not given the parameters again: the first session's hparams stand, and
//! it adds its scalars and its end. TensorBoard keeps the first session end of a run, so a run
//! resumed after a failure stays marked as failed in the HPARAMS tab. Epochs trained after the
//! last checkpoint are trained, and logged, again by the resumed session (only possible with
//! `checkpoint.every_n_epochs` above 1): TensorBoard then shows two points at their steps.

pub mod events;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use events::{unix_time_now, EventWriter, HParamValue, SessionStatus};
use gymnos_plugin_sdk::{Config, Configurable, Context, PluginError, Result, Tracker};
use serde_json::Value;

/// The configuration of `tensorboard`.
#[derive(Config)]
pub struct TensorBoardConfig {
    /// Folder for the event files, in the run folder
    #[config(default = "tensorboard", inside_run_folder)]
    pub dir: String,
}

pub struct TensorBoardTracker {
    dir: PathBuf,
    /// Created at the first event, so that building the tracker writes nothing.
    writer: Option<EventWriter>,
    /// The flattened experiment from `log_params`, until the metric tags are known.
    pending_hparams: Option<Vec<(String, HParamValue)>>,
    /// Whether the hparams summary was written, by this session or (a resumed run) an earlier
    /// one: a session end needs a session start. (An end without a start is ignored by
    /// TensorBoard, as is every end after a run's first.)
    session_started: bool,
    /// The `epoch/` and `test/` tags logged so far, for hparams written at `finish`.
    seen_tags: BTreeSet<String>,
}

impl TensorBoardTracker {
    fn writer(&mut self) -> Result<&mut EventWriter> {
        if self.writer.is_none() {
            self.writer = Some(EventWriter::create(&self.dir).map_err(|e| io_error(&self.dir, e))?);
        }
        Ok(self.writer.as_mut().expect("created above"))
    }

    /// Runs `f` on the writer, naming the event file in its error.
    fn with_writer(&mut self, f: impl FnOnce(&mut EventWriter) -> std::io::Result<()>) -> Result<()> {
        let writer = self.writer()?;
        f(writer).map_err(|e| io_error(writer.path(), e))
    }

    fn write_hparams(&mut self, metric_tags: Vec<String>) -> Result<()> {
        let Some(hparams) = self.pending_hparams.take() else { return Ok(()) };
        self.session_started = true;
        self.with_writer(|w| w.hparams(&hparams, &metric_tags, unix_time_now()))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> PluginError {
    PluginError::io(format!("{}: {e}", path.display()))
}

impl Configurable for TensorBoardTracker {
    const NAME: &'static str = "tensorboard";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Writes the run's metrics, hyperparameters and experiment as TensorBoard event files";
    type Config = TensorBoardConfig;

    fn build(config: TensorBoardConfig, ctx: &Context) -> Result<Self> {
        let dir = match &ctx.output_dir {
            Some(run_dir) => run_dir.join(&config.dir),
            None => ctx.resolve(config.dir.as_ref()),
        };
        Ok(Self { dir, writer: None, pending_hparams: None, session_started: false, seen_tags: BTreeSet::new() })
    }
}

impl Tracker for TensorBoardTracker {
    fn start(&mut self, run: &Value) -> Result<()> {
        // Resumed: the parameters are not logged again; the first session's start stands.
        self.session_started = run.get("resumed_at_epoch").is_some_and(|e| !e.is_null());
        Ok(())
    }

    fn log_params(&mut self, params: &Value) -> Result<()> {
        let text = serde_json::to_string_pretty(params).map_err(|e| PluginError::data(format!("parameters: {e}")))?;
        self.pending_hparams = Some(hparams_of(params));
        self.with_writer(|w| {
            w.text("experiment", 0, &format!("```json\n{text}\n```"), unix_time_now())?;
            w.flush()
        })
    }

    fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) -> Result<()> {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let tags: Vec<String> = metrics.iter().map(|(name, _)| format!("{scope}/{name}")).collect();
        if matches!(scope, "epoch" | "test") {
            self.seen_tags.extend(tags.iter().cloned());
        }
        let now = unix_time_now();
        self.with_writer(|w| {
            for (tag, (_, value)) in tags.iter().zip(metrics) {
                w.scalar(tag, step, *value as f32, now)?;
            }
            Ok(())
        })?;
        if scope == "epoch" {
            if self.pending_hparams.is_some() {
                self.write_hparams(metric_tags_of_epoch(metrics))?;
            }
            // Each epoch's values reach the file at once, for a TensorBoard watching the run.
            self.with_writer(EventWriter::flush)?;
        }
        Ok(())
    }

    fn finish(&mut self, status: &str) -> Result<()> {
        let tags: Vec<String> = self.seen_tags.iter().cloned().collect();
        self.write_hparams(tags)?;
        let status = match status {
            "completed" => Some(SessionStatus::Success),
            "failed" => Some(SessionStatus::Failure),
            // The run may be resumed, and TensorBoard keeps a run's first session end.
            "interrupted" => None,
            _ => Some(SessionStatus::Unknown),
        };
        if let Some(status) = status.filter(|_| self.session_started) {
            self.with_writer(|w| w.hparams_end(status, unix_time_now()))?;
        }
        match &mut self.writer {
            Some(w) => w.flush().map_err(|e| io_error(w.path(), e)),
            None => Ok(()),
        }
    }
}

/// The metric tags the HPARAMS table shows, from the first epoch's metrics: each `epoch/<name>`,
/// then `test/<name>` for each `val_<name>` (sorted within each group).
fn metric_tags_of_epoch(metrics: &[(String, f64)]) -> Vec<String> {
    let names: BTreeSet<&str> = metrics.iter().map(|(name, _)| name.as_str()).collect();
    let epoch = names.iter().map(|name| format!("epoch/{name}"));
    let test = names.iter().filter_map(|name| name.strip_prefix("val_")).map(|name| format!("test/{name}"));
    let mut tags: Vec<String> = epoch.collect();
    let mut test: Vec<String> = test.collect();
    test.sort();
    tags.extend(test);
    tags
}

/// The experiment as hyperparameters: objects flattened into dotted names
/// (`training.optimizer.lr`), lists of objects by index (`preprocessors.0.plugin`), other lists
/// as their JSON text (`model.config.hidden` = `[16]`). Nulls are left out, and so are the
/// `resolved` records of plugin sections (library paths and hashes; the `plugin` entry already
/// names the exact version). A name met twice keeps its first value.
pub fn hparams_of(params: &Value) -> Vec<(String, HParamValue)> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    flatten(String::new(), params, &mut out, &mut seen);
    out
}

fn flatten(name: String, value: &Value, out: &mut Vec<(String, HParamValue)>, seen: &mut BTreeSet<String>) {
    let join = |key: &str| if name.is_empty() { key.to_string() } else { format!("{name}.{key}") };
    let leaf = match value {
        Value::Null => return,
        Value::Bool(b) => HParamValue::Bool(*b),
        Value::Number(n) => HParamValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => HParamValue::String(s.clone()),
        Value::Object(map) => {
            let plugin_section = map.get("plugin").is_some_and(Value::is_string);
            for (key, item) in map {
                if !(plugin_section && key == "resolved") {
                    flatten(join(key), item, out, seen);
                }
            }
            return;
        }
        Value::Array(items) if items.iter().any(Value::is_object) => {
            for (i, item) in items.iter().enumerate() {
                flatten(join(&i.to_string()), item, out, seen);
            }
            return;
        }
        Value::Array(_) => HParamValue::String(value.to_string()),
    };
    // A bare value (never an experiment) still needs a name.
    let name = if name.is_empty() { "params".to_string() } else { name };
    if seen.insert(name.clone()) {
        out.push((name, leaf));
    }
}

gymnos_plugin_sdk::export_plugin!(tracker(TensorBoardTracker));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    use super::*;

    #[test]
    fn flattens_the_experiment_into_dotted_names() {
        let params = json!({
            "experiment": { "name": "wine", "seed": 5, "output_root": null },
            "model": {
                "plugin": "mlp@=1.0.0",
                "config": { "hidden": [16, 8], "dropout": 0.1, "batch_norm": false },
                "resolved": { "sha256": "ab", "library": "/store/libmlp.so" }
            },
            "preprocessors": [{ "plugin": "standardize@=1.0.0", "config": { "per_feature": true }, "resolved": {} }],
            "data_augmentors": [],
            "training": { "optimizer": { "name": "adam", "lr": 0.01 }, "resolved": 3 },
            "a": { "b": 1 },
            "a.b": 2
        });
        let got = hparams_of(&params);
        let want = [
            ("experiment.name", HParamValue::String("wine".into())),
            ("experiment.seed", HParamValue::Number(5.0)),
            ("model.plugin", HParamValue::String("mlp@=1.0.0".into())),
            ("model.config.hidden", HParamValue::String("[16,8]".into())),
            ("model.config.dropout", HParamValue::Number(0.1)),
            ("model.config.batch_norm", HParamValue::Bool(false)),
            ("preprocessors.0.plugin", HParamValue::String("standardize@=1.0.0".into())),
            ("preprocessors.0.config.per_feature", HParamValue::Bool(true)),
            ("data_augmentors", HParamValue::String("[]".into())),
            ("training.optimizer.name", HParamValue::String("adam".into())),
            ("training.optimizer.lr", HParamValue::Number(0.01)),
            // Not a plugin section: a key named `resolved` is kept.
            ("training.resolved", HParamValue::Number(3.0)),
            ("a.b", HParamValue::Number(1.0)),
        ];
        let mut got_sorted: Vec<_> = got.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        let mut want_sorted: Vec<_> = want.to_vec();
        got_sorted.sort_by(|a, b| a.0.cmp(b.0));
        want_sorted.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(got_sorted, want_sorted);
        assert_eq!(hparams_of(&json!(0.5)), [("params".to_string(), HParamValue::Number(0.5))]);
    }

    #[test]
    fn the_first_epoch_names_the_metric_tags() {
        let metrics: Vec<(String, f64)> =
            ["train_loss", "val_loss", "lr", "val_accuracy"].iter().map(|n| (n.to_string(), 1.0)).collect();
        assert_eq!(
            metric_tags_of_epoch(&metrics),
            ["epoch/lr", "epoch/train_loss", "epoch/val_accuracy", "epoch/val_loss", "test/accuracy", "test/loss"]
        );
    }

    #[test]
    fn meets_the_tracker_contract_and_refuses_paths_outside_the_run_folder() {
        let dir = std::env::temp_dir().join(format!("gymnos-tensorboard-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        harness::check_tracker::<TensorBoardTracker>(json!({ "dir": "tb" }), &dir).unwrap();
        let files: Vec<String> = std::fs::read_dir(dir.join("tb"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].starts_with("events.out.tfevents."), "{files:?}");
        let err = harness::check_tracker::<TensorBoardTracker>(json!({ "dir": "../tb" }), &dir).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: dir: `../tb` leaves the run folder; give a relative path inside it"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
