//! Recorded runs, read back: finding the run folders under an output root ([`discover`]),
//! reading one ([`Run::load`]) and summing it up as a row of `gymnos-host runs list`
//! ([`RunRow`]) or as `runs show`'s details ([`RunDetails`]). `compare.rs` sets runs side by
//! side. Nothing here writes: a damaged folder is reported, never repaired.

pub mod compare;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::Value;

use crate::record::{self, BestCheckpoint, EvaluationReport, RunSummary, SweepTrial};

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("{}: cannot read: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: not valid JSON: {cause}", path.display())]
    Parse { path: PathBuf, cause: serde_json::Error },
    #[error("{}: not a recorded experiment: expected a JSON object", path.display())]
    NotAnObject { path: PathBuf },
    #[error(transparent)]
    Record(#[from] record::RecordError),
    #[error("{}: the path is not UTF-8 text; run records name their folders in UTF-8 JSON, so rename it", path.display())]
    NotUtf8 { path: PathBuf },
}

/// Refuses a folder whose absolute path is not UTF-8 (its records could not name it).
fn check_utf8(dir: &Path) -> Result<(), RunsError> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    match absolute.to_str() {
        Some(_) => Ok(()),
        None => Err(RunsError::NotUtf8 { path: dir.to_path_buf() }),
    }
}

/// How far below the root the folders holding an `executions/` folder are looked for:
/// `<root>/<name>/executions/` (an output root), `<root>/runs/<trial>/executions/` (a sweep's
/// folder) and `<root>/<sweep>/runs/<trial>/executions/` (a sweeps root).
const MAX_DEPTH: usize = 3;

/// Whether `dir` is a run folder, perhaps a damaged one: it holds one of the files only a run
/// folder has (its configuration, its record or its log).
fn looks_like_run(dir: &Path) -> bool {
    [record::TRAINING_CONFIG, record::METRICS, record::LOG].iter().any(|f| dir.join(f).is_file())
}

/// The run folders under `root`, sorted by path: every folder inside an `executions/` folder
/// found at most [`MAX_DEPTH`] levels down, and every run folder found on the way (copied or
/// moved out of its `executions/`, e.g. `DIR/<run>/`); hidden folders are skipped and run
/// folders are not searched. `root` may itself be an `executions/` folder or a run folder. A
/// folder inside `executions/` without `training_config.json`, or one elsewhere with a record
/// or a log but no configuration, is returned too: it is a damaged run, which [`RunRow::of`]
/// reports as unreadable. A root whose path is not UTF-8 is refused.
pub fn discover(root: &Path) -> Result<Vec<PathBuf>, RunsError> {
    check_utf8(root)?;
    let read = |cause| RunsError::Read { path: root.to_path_buf(), cause };
    if !root.is_dir() {
        let cause = std::fs::metadata(root).err().unwrap_or_else(|| std::io::Error::other("not a folder"));
        return Err(read(cause));
    }
    if looks_like_run(root) {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut runs = Vec::new();
    if root.file_name().is_some_and(|n| n == record::EXECUTIONS) {
        runs.extend(subfolders(root).map_err(read)?);
    } else {
        visit(root, 0, &mut runs).map_err(read)?;
    }
    runs.sort();
    Ok(runs)
}

fn visit(dir: &Path, depth: usize, runs: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for child in subfolders(dir)? {
        if child.file_name().is_some_and(|n| n == record::EXECUTIONS) {
            // A folder below the root that cannot be read holds no run we can show.
            runs.extend(subfolders(&child).unwrap_or_default());
        } else if looks_like_run(&child) {
            runs.push(child);
        } else if depth < MAX_DEPTH {
            let _ = visit(&child, depth + 1, runs);
        }
    }
    Ok(())
}

/// The folders in `dir` whose names do not start with a dot.
fn subfolders(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if !hidden && path.is_dir() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// One run as recorded: `training_config.json` (kept as JSON, so that records of older and
/// newer formats are read alike) and `metrics.json`.
#[derive(Clone, Debug)]
pub struct Run {
    pub dir: PathBuf,
    pub config: Value,
    pub summary: RunSummary,
}

impl Run {
    pub fn load(dir: &Path) -> Result<Run, RunsError> {
        check_utf8(dir)?;
        record::check_run_dir(dir)?;
        let config = read_config(dir)?;
        let summary = RunSummary::load(dir)?;
        Ok(Run { dir: dir.to_path_buf(), config, summary })
    }

    /// The experiment's name, else the name of the folder holding `executions/`.
    pub fn experiment(&self) -> String {
        experiment_name(&self.config, &self.dir)
    }

    /// The run folder's name, the time it was created.
    pub fn timestamp(&self) -> String {
        folder_name(&self.dir)
    }

    pub fn plugins(&self) -> Vec<PluginUse> {
        plugins(&self.config)
    }
}

/// `training_config.json` as JSON (an object; a byte order mark before it is ignored).
pub fn read_config(dir: &Path) -> Result<Value, RunsError> {
    let path = dir.join(record::TRAINING_CONFIG);
    let text = crate::fsio::read_text(&path).map_err(|cause| RunsError::Read { path: path.clone(), cause })?;
    let config: Value = serde_json::from_str(&text).map_err(|cause| RunsError::Parse { path: path.clone(), cause })?;
    if !config.is_object() {
        return Err(RunsError::NotAnObject { path });
    }
    Ok(config)
}

fn folder_name(dir: &Path) -> String {
    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn experiment_name(config: &Value, dir: &Path) -> String {
    match config.pointer("/experiment/name").and_then(Value::as_str) {
        Some(name) => name.to_string(),
        // <root>/<name>/executions/<timestamp>, else a run folder out of its place: its own name.
        None => match dir.parent().filter(|p| p.file_name().is_some_and(|n| n == record::EXECUTIONS)) {
            Some(executions) => executions.parent().map(folder_name).unwrap_or_default(),
            None => folder_name(dir),
        },
    }
}

/// A plugin a run used, as `training_config.json` pinned it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PluginUse {
    /// dataset, preprocessor, data_augmentor, model or tracker.
    pub kind: &'static str,
    pub name: String,
    pub version: String,
    /// The package that built the library (`gymnos-mlp 1.0.0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

impl std::fmt::Display for PluginUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.version.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}@{}", self.name, self.version)
        }
    }
}

/// The plugins of a recorded experiment, in run order.
pub fn plugins(config: &Value) -> Vec<PluginUse> {
    let list = |pointer: &str| config.pointer(pointer).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut sections: Vec<(&'static str, Value)> = Vec::new();
    sections.extend(config.get("dataset").map(|s| ("dataset", s.clone())));
    sections.extend(list("/preprocessors").into_iter().map(|s| ("preprocessor", s)));
    sections.extend(list("/data_augmentors").into_iter().map(|s| ("data_augmentor", s)));
    sections.extend(config.get("model").map(|s| ("model", s.clone())));
    sections.extend(list("/tracking/trackers").into_iter().map(|s| ("tracker", s)));
    sections.into_iter().filter_map(|(kind, section)| plugin_use(kind, &section)).collect()
}

fn plugin_use(kind: &'static str, section: &Value) -> Option<PluginUse> {
    let reference = section.get("plugin")?.as_str()?;
    let (name, requirement) = reference.split_once('@').unwrap_or((reference, ""));
    let resolved = |key: &str| section.pointer(&format!("/resolved/{key}")).and_then(Value::as_str);
    let version = resolved("version").unwrap_or_else(|| requirement.trim_start_matches('=')).to_string();
    Some(PluginUse { kind, name: name.to_string(), version, package: resolved("package").map(str::to_string) })
}

/// The run's model plugin, `mlp@1.0.0`.
pub fn model(config: &Value) -> Option<String> {
    config.get("model").and_then(|m| plugin_use("model", m)).map(|p| p.to_string())
}

/// The number a test report is ranked by: accuracy (classification) or R² (regression);
/// higher is better for both.
pub fn test_score(report: &EvaluationReport) -> f64 {
    match report {
        EvaluationReport::Classification(r) => r.accuracy,
        EvaluationReport::Regression(r) => r.r2,
    }
}

/// A test report in a few characters: `accuracy=0.9429`, or `r2=0.9120 mse=0.0123`.
pub fn headline_text(report: &EvaluationReport) -> String {
    match report {
        EvaluationReport::Classification(r) => format!("accuracy={}", number(r.accuracy)),
        EvaluationReport::Regression(r) => format!("r2={} mse={}", number(r.r2), number(r.mse)),
    }
}

/// The best checkpoint as `val_loss=0.1234 (epoch 5)`.
pub fn best_text(best: &BestCheckpoint) -> String {
    let value = best.value.map_or_else(|| "-".to_string(), number);
    format!("{}={value} (epoch {})", best.metric, best.epoch)
}

/// A metric for people: four decimals, or four significant digits in scientific notation for
/// values far from 1.
pub fn number(value: f64) -> String {
    let size = value.abs();
    if value == 0.0 || (1e-3..1e5).contains(&size) {
        format!("{value:.4}")
    } else if value.is_finite() {
        format!("{value:.3e}")
    } else {
        value.to_string()
    }
}

/// Seconds for people: `0.42s`, `12.3s`, `3m 05s`, `2h 01m`.
pub fn human_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".into();
    }
    if seconds < 10.0 {
        return format!("{seconds:.2}s");
    }
    if seconds < 60.0 {
        return format!("{seconds:.1}s");
    }
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{}m {:02}s", whole / 60, whole % 60)
    } else {
        format!("{}h {:02}m", whole / 3600, whole % 3600 / 60)
    }
}

/// The status `runs list` gives a folder whose record cannot be read.
pub const UNREADABLE: &str = "unreadable";

/// One line of `gymnos-host runs list`.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub path: PathBuf,
    pub experiment: String,
    /// The run folder's name: when the run was created.
    pub timestamp: String,
    /// running, completed, failed, interrupted, or `unreadable` (see `reason`).
    pub status: String,
    /// Why the record cannot be read, for an unreadable run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub epochs_completed: Option<u32>,
    pub best: Option<BestCheckpoint>,
    /// The test report's headline numbers.
    pub test: Option<BTreeMap<String, f64>>,
    /// The accuracy (classification) or R² (regression) the `test` sort ranks by.
    pub test_score: Option<f64>,
    /// The sum of the stages' seconds.
    pub duration_seconds: Option<f64>,
    /// The model plugin, `mlp@1.0.0`.
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepTrial>,
    #[serde(skip)]
    pub test_text: Option<String>,
}

impl RunRow {
    /// The row of the run in `dir`; a folder whose record cannot be read gets a row with status
    /// `unreadable` and the reason.
    pub fn of(dir: &Path) -> RunRow {
        let config = read_config(dir);
        let mut row = RunRow {
            path: dir.to_path_buf(),
            experiment: experiment_name(config.as_ref().unwrap_or(&Value::Null), dir),
            timestamp: folder_name(dir),
            status: UNREADABLE.into(),
            reason: None,
            error: None,
            started_at: None,
            epochs_completed: None,
            best: None,
            test: None,
            test_score: None,
            duration_seconds: None,
            model: config.as_ref().ok().and_then(model),
            sweep: None,
            test_text: None,
        };
        match Run::load(dir) {
            Ok(run) => row.fill(&run.summary),
            Err(e) => row.reason = Some(e.to_string()),
        }
        row
    }

    fn fill(&mut self, summary: &RunSummary) {
        self.status = summary.status.name().into();
        self.error = summary.error.clone();
        self.started_at = Some(summary.started_at.clone());
        self.epochs_completed = Some(summary.epochs_completed);
        self.best = summary.best.clone();
        self.test = summary.test.as_ref().map(|t| t.headline().into_iter().collect());
        self.test_score = summary.test.as_ref().map(test_score);
        self.test_text = summary.test.as_ref().map(headline_text);
        self.duration_seconds = Some(summary.total_seconds());
        self.sweep = summary.sweep.clone();
    }

    /// The row's cells under [`RunRow::HEADER`].
    pub fn cells(&self) -> Vec<String> {
        let or_dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
        vec![
            self.experiment.clone(),
            self.timestamp.clone(),
            self.status.clone(),
            or_dash(self.epochs_completed.map(|e| e.to_string())),
            or_dash(self.best.as_ref().map(|b| format!("{}={}", b.metric, b.value.map_or("-".into(), number)))),
            or_dash(self.test_text.clone()),
            or_dash(self.duration_seconds.map(human_duration)),
            or_dash(self.model.clone()),
            self.path.display().to_string(),
        ]
    }

    pub const HEADER: [&'static str; 9] =
        ["experiment", "timestamp", "status", "epochs", "best", "test", "duration", "model", "path"];
}

/// How `runs list` orders its rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SortKey {
    /// Oldest first (the run folders' timestamps).
    #[default]
    Time,
    /// By status, then oldest first.
    Status,
    /// By experiment name, then oldest first.
    Experiment,
    /// Best test accuracy (or R²) first; runs without a test report last.
    Test,
    /// Longest first.
    Duration,
}

/// Sorts `rows` by `key`; ties go oldest first, then by path.
pub fn sort_rows(rows: &mut [RunRow], key: SortKey) {
    use std::cmp::Ordering;
    // Descending, with the rows that have no value last.
    fn desc(a: Option<f64>, b: Option<f64>) -> Ordering {
        match (a, b) {
            (Some(a), Some(b)) => b.total_cmp(&a),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
    }
    rows.sort_by(|a, b| {
        let first = match key {
            SortKey::Time => Ordering::Equal,
            SortKey::Status => a.status.cmp(&b.status),
            SortKey::Experiment => a.experiment.cmp(&b.experiment),
            SortKey::Test => desc(a.test_score, b.test_score),
            SortKey::Duration => desc(a.duration_seconds, b.duration_seconds),
        };
        first.then_with(|| a.timestamp.cmp(&b.timestamp)).then_with(|| a.path.cmp(&b.path))
    });
}

/// `gymnos-host runs show`: a run's record with the plugins it used.
#[derive(Clone, Debug, Serialize)]
pub struct RunDetails {
    pub path: PathBuf,
    pub experiment: String,
    pub timestamp: String,
    pub model: Option<String>,
    pub plugins: Vec<PluginUse>,
    pub duration_seconds: f64,
    #[serde(flatten)]
    pub summary: RunSummary,
}

impl RunDetails {
    pub fn of(run: &Run) -> RunDetails {
        RunDetails {
            path: run.dir.clone(),
            experiment: run.experiment(),
            timestamp: run.timestamp(),
            model: model(&run.config),
            plugins: run.plugins(),
            duration_seconds: run.summary.total_seconds(),
            summary: run.summary.clone(),
        }
    }
}

/// The stages in run order, then any others by name, with their seconds.
pub fn stages(summary: &RunSummary) -> Vec<(String, f64)> {
    const ORDER: [&str; 8] =
        ["load_plugins", "load_dataset", "split", "preprocess", "build_model", "train", "test", "save_model"];
    let mut known: Vec<(String, f64)> =
        ORDER.iter().filter_map(|s| summary.elapsed_seconds.get(*s).map(|v| (s.to_string(), *v))).collect();
    known.extend(
        summary.elapsed_seconds.iter().filter(|(k, _)| !ORDER.contains(&k.as_str())).map(|(k, v)| (k.clone(), *v)),
    );
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ClassificationReport, RegressionReport, RunStatus};
    use serde_json::json;

    fn config(name: &str) -> Value {
        json!({
            "experiment": { "name": name, "seed": 1 },
            "dataset": { "plugin": "csv@=1.0.0", "config": {}, "resolved": { "version": "1.0.0", "package": "gymnos-csv-dataset 1.0.0" } },
            "preprocessors": [{ "plugin": "standardize@=1.2.0", "config": {} }],
            "data_augmentors": [],
            "model": { "plugin": "mlp@=1.0.0", "config": { "hidden": [16] }, "resolved": { "version": "1.0.0" } },
            "training": { "optimizer": { "name": "adam", "lr": 0.01 } },
            "tracking": { "trackers": [{ "plugin": "jsonl@=1.0.0" }] }
        })
    }

    fn summary(accuracy: f64, seconds: f64) -> RunSummary {
        let mut s = RunSummary {
            status: RunStatus::Completed,
            started_at: "2026-01-01T00:00:00+00:00".into(),
            test: Some(EvaluationReport::Classification(ClassificationReport {
                loss: 0.3,
                accuracy,
                f1_macro: accuracy,
                per_class: vec![],
                confusion_matrix: vec![],
            })),
            best: Some(BestCheckpoint { metric: "val_loss".into(), value: Some(0.25), epoch: 2 }),
            ..RunSummary::default()
        };
        s.add_elapsed("train", seconds);
        s.add_epoch(&BTreeMap::from([("train_loss".to_string(), 0.5)]));
        s.add_epoch(&BTreeMap::from([("train_loss".to_string(), 0.4)]));
        s
    }

    /// Writes a run folder `root/<name>/executions/<stamp>` (or below `prefix`).
    fn write_run(root: &Path, name: &str, stamp: &str, summary: Option<&RunSummary>) -> PathBuf {
        let dir = root.join(name).join("executions").join(stamp);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("training_config.json"), config(name).to_string()).unwrap();
        if let Some(s) = summary {
            s.save(&dir).unwrap();
        }
        dir
    }

    #[test]
    fn discovers_runs_of_an_output_root_a_sweep_and_a_sweeps_root() {
        let tmp = tempfile::tempdir().unwrap();
        let trainings = tmp.path().join("trainings");
        let a = write_run(&trainings, "a", "2026-01-01_00-00-00", Some(&summary(0.9, 1.0)));
        let b = write_run(&trainings, "b", "2026-01-02_00-00-00", Some(&summary(0.8, 2.0)));
        // A hidden folder and a run's own subfolders are not searched.
        write_run(&trainings.join(".hidden"), "c", "2026-01-03_00-00-00", None);
        std::fs::create_dir_all(a.join("checkpoints/executions/x")).unwrap();
        assert_eq!(discover(&trainings).unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(discover(&trainings.join("a/executions")).unwrap(), vec![a.clone()]);
        assert_eq!(discover(&a).unwrap(), vec![a.clone()]);

        let sweeps = tmp.path().join("sweeps");
        let runs = sweeps.join("lr/runs");
        let t0 = write_run(&runs, "trial-0000", "2026-01-01_00-00-00", Some(&summary(0.7, 1.0)));
        let t1 = write_run(&runs, "trial-0001", "2026-01-01_00-00-00", Some(&summary(0.6, 1.0)));
        std::fs::create_dir_all(sweeps.join("lr/logs")).unwrap();
        assert_eq!(discover(&runs).unwrap(), vec![t0.clone(), t1.clone()]);
        assert_eq!(discover(&sweeps.join("lr")).unwrap(), vec![t0.clone(), t1.clone()]);
        assert_eq!(discover(&sweeps).unwrap(), vec![t0, t1]);

        assert!(matches!(discover(&tmp.path().join("nothing")), Err(RunsError::Read { .. })));
    }

    #[test]
    fn a_damaged_run_is_a_row_with_its_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let good = write_run(tmp.path(), "good", "2026-01-01_00-00-00", Some(&summary(0.9, 75.0)));
        let no_metrics = write_run(tmp.path(), "nometrics", "2026-01-01_00-00-01", None);
        let garbled = write_run(tmp.path(), "garbled", "2026-01-01_00-00-02", None);
        std::fs::write(garbled.join("metrics.json"), "{ not json").unwrap();
        let bad_config = write_run(tmp.path(), "badconfig", "2026-01-01_00-00-03", Some(&summary(0.9, 1.0)));
        std::fs::write(bad_config.join("training_config.json"), "[").unwrap();
        let empty = tmp.path().join("empty/executions/2026-01-01_00-00-04");
        std::fs::create_dir_all(&empty).unwrap();

        let row = RunRow::of(&good);
        assert_eq!((row.status.as_str(), row.reason.as_deref()), ("completed", None));
        assert_eq!(row.experiment, "good");
        assert_eq!(row.model.as_deref(), Some("mlp@1.0.0"));
        assert_eq!(row.epochs_completed, Some(2));
        assert_eq!(row.test.as_ref().unwrap()["accuracy"], 0.9);
        let cells = row.cells();
        assert_eq!(cells[4], "val_loss=0.2500");
        assert_eq!(cells[5], "accuracy=0.9000");
        assert_eq!(cells[6], "1m 15s");

        for (dir, needle) in [
            (&no_metrics, "metrics.json: cannot read"),
            (&garbled, "metrics.json: not a valid run record"),
            (&bad_config, "training_config.json: not valid JSON"),
            (&empty, "not a run folder"),
        ] {
            let row = RunRow::of(dir);
            assert_eq!(row.status, UNREADABLE, "{}", dir.display());
            assert!(row.reason.as_deref().unwrap().contains(needle), "{:?}", row.reason);
            assert_eq!(row.cells().len(), RunRow::HEADER.len());
        }
        // The experiment of a folder without a readable configuration is its folder's.
        assert_eq!(RunRow::of(&empty).experiment, "empty");
        assert_eq!(RunRow::of(&no_metrics).model.as_deref(), Some("mlp@1.0.0"));
        assert_eq!(discover(tmp.path()).unwrap().len(), 5);
    }

    #[test]
    fn rows_sort_by_each_key() {
        let row = |name: &str, stamp: &str, status: &str, score: Option<f64>, secs: Option<f64>| RunRow {
            path: PathBuf::from(format!("{name}/{stamp}")),
            experiment: name.into(),
            timestamp: stamp.into(),
            status: status.into(),
            reason: None,
            error: None,
            started_at: None,
            epochs_completed: None,
            best: None,
            test: None,
            test_score: score,
            duration_seconds: secs,
            model: None,
            sweep: None,
            test_text: None,
        };
        let mut rows = vec![
            row("b", "2", "failed", None, Some(5.0)),
            row("a", "3", "completed", Some(0.8), Some(1.0)),
            row("c", "1", "completed", Some(0.9), None),
        ];
        let order = |rows: &[RunRow]| rows.iter().map(|r| r.experiment.clone()).collect::<Vec<_>>().join("");
        sort_rows(&mut rows, SortKey::Time);
        assert_eq!(order(&rows), "cba");
        sort_rows(&mut rows, SortKey::Status);
        assert_eq!(order(&rows), "cab");
        sort_rows(&mut rows, SortKey::Experiment);
        assert_eq!(order(&rows), "abc");
        sort_rows(&mut rows, SortKey::Test);
        assert_eq!(order(&rows), "cab");
        sort_rows(&mut rows, SortKey::Duration);
        assert_eq!(order(&rows), "bac");
    }

    #[test]
    fn plugins_are_read_from_the_recorded_experiment() {
        let found = plugins(&config("x"));
        let shown: Vec<String> = found.iter().map(|p| format!("{} {p}", p.kind)).collect();
        assert_eq!(
            shown,
            ["dataset csv@1.0.0", "preprocessor standardize@1.2.0", "model mlp@1.0.0", "tracker jsonl@1.0.0"]
        );
        assert_eq!(found[0].package.as_deref(), Some("gymnos-csv-dataset 1.0.0"));
        assert!(plugins(&json!({})).is_empty());
    }

    #[test]
    fn numbers_and_durations_read_well() {
        assert_eq!(human_duration(0.4213), "0.42s");
        assert_eq!(human_duration(12.34), "12.3s");
        assert_eq!(human_duration(185.0), "3m 05s");
        assert_eq!(human_duration(7260.0), "2h 01m");
        assert_eq!(number(0.94286), "0.9429");
        assert_eq!(number(0.0001), "1.000e-4");
        assert_eq!(number(0.0), "0.0000");
        let regression = EvaluationReport::Regression(RegressionReport { loss: 0.1, mse: 0.1, mae: 0.2, r2: 0.912 });
        assert_eq!(headline_text(&regression), "r2=0.9120 mse=0.1000");
        assert_eq!(test_score(&regression), 0.912);
        let best = BestCheckpoint { metric: "val_loss".into(), value: Some(0.5), epoch: 3 };
        assert_eq!(best_text(&best), "val_loss=0.5000 (epoch 3)");
    }
    #[test]
    fn run_folders_out_of_their_executions_folder_are_found() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write_run(tmp.path(), "a", "2026-01-01_00-00-00", Some(&summary(0.9, 1.0)));
        // Copied out as DIR/<run>, with and without its configuration; a folder with neither
        // record nor log is no run.
        let dir = tmp.path().join("copies");
        let copy = |name: &str| {
            let to = dir.join(name);
            std::fs::create_dir_all(&to).unwrap();
            for f in [record::TRAINING_CONFIG, record::METRICS] {
                std::fs::copy(a.join(f), to.join(f)).unwrap();
            }
            to
        };
        let (first, second, damaged) = (copy("first"), copy("second"), copy("damaged"));
        std::fs::remove_file(damaged.join(record::TRAINING_CONFIG)).unwrap();
        std::fs::create_dir_all(dir.join("notes")).unwrap();
        // A run inside a copied run's folder (its checkpoints/) is not searched for.
        std::fs::create_dir_all(first.join("checkpoints/inner")).unwrap();
        assert_eq!(discover(&dir).unwrap(), vec![damaged.clone(), first.clone(), second.clone()]);
        assert_eq!(discover(&first).unwrap(), vec![first.clone()]);
        assert_eq!(discover(&damaged).unwrap(), vec![damaged.clone()]);
        let row = RunRow::of(&damaged);
        assert_eq!((row.status.as_str(), row.experiment.as_str()), (UNREADABLE, "damaged"));
        assert_eq!(RunRow::of(&second).status, "completed");
        // Both kinds together, under one root.
        assert_eq!(discover(tmp.path()).unwrap(), vec![a, damaged, first, second]);
    }

    #[test]
    fn a_root_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(std::ffi::OsStr::from_bytes(b"r\xff"));
        std::fs::create_dir_all(&root).unwrap();
        let err = discover(&root).unwrap_err().to_string();
        assert!(
            err.ends_with(": the path is not UTF-8 text; run records name their folders in UTF-8 JSON, so rename it"),
            "{err}"
        );
        assert!(matches!(Run::load(&root), Err(RunsError::NotUtf8 { .. })));
    }

    #[test]
    fn a_byte_order_mark_before_the_configuration_is_ignored() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write_run(tmp.path(), "a", "2026-01-01_00-00-00", Some(&summary(0.9, 1.0)));
        let text = std::fs::read_to_string(a.join(record::TRAINING_CONFIG)).unwrap();
        std::fs::write(a.join(record::TRAINING_CONFIG), format!("\u{feff}{text}")).unwrap();
        assert_eq!(Run::load(&a).unwrap().experiment(), "a");
        std::fs::write(a.join(record::TRAINING_CONFIG), "[1]").unwrap();
        let err = Run::load(&a).unwrap_err().to_string();
        assert!(err.ends_with("training_config.json: not a recorded experiment: expected a JSON object"), "{err}");
    }
}
