//! `gymnos-host runs compare`: runs side by side. Each run's `training_config.json` is
//! flattened to dotted paths (the paths `--set` takes: `training.optimizer.lr`,
//! `preprocessors.0.config.epsilon`) and only the paths whose values differ are kept; the
//! metrics are set in rows (status, epochs, duration, test headline, best, final epoch).

use std::{
    cmp::Ordering,
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use serde::Serialize;
use serde_json::Value;

use super::{number, Run};
use crate::record::RunSummary;

/// `value`'s leaves by dotted path. Objects are walked by key and lists by index, except a list
/// of plain values (`"hidden": [64, 32]`), which is one leaf, as `--set` would set it; an empty
/// object or list is a leaf too.
pub fn flatten(value: &Value) -> BTreeMap<String, Value> {
    let mut leaves = BTreeMap::new();
    walk(value, String::new(), &mut leaves);
    leaves
}

fn walk(value: &Value, path: String, leaves: &mut BTreeMap<String, Value>) {
    let join = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                walk(child, join(key), leaves);
            }
        }
        Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
            for (i, child) in items.iter().enumerate() {
                walk(child, join(&i.to_string()), leaves);
            }
        }
        leaf => {
            leaves.insert(path, leaf.clone());
        }
    }
}

/// Whether two leaves are the same value (`1` and `1.0` are).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Dotted paths in reading order: segment by segment, list indices as numbers
/// (`preprocessors.2` before `preprocessors.10`).
fn path_order(a: &str, b: &str) -> Ordering {
    let mut left = a.split('.');
    let mut right = b.split('.');
    loop {
        match (left.next(), right.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(i), Ok(j)) => i.cmp(&j),
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// A parameter whose value is not the same in every run; `None` where a run lacks the path.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ParameterDiff {
    pub path: String,
    pub values: Vec<Option<Value>>,
}

/// The paths whose values differ across `configs`, in reading order.
pub fn differing_parameters(configs: &[&Value]) -> Vec<ParameterDiff> {
    let flat: Vec<BTreeMap<String, Value>> = configs.iter().map(|c| flatten(c)).collect();
    let mut paths: Vec<&String> = flat.iter().flat_map(|f| f.keys()).collect::<BTreeSet<_>>().into_iter().collect();
    paths.sort_by(|a, b| path_order(a, b));
    paths
        .into_iter()
        .filter_map(|path| {
            let values: Vec<Option<&Value>> = flat.iter().map(|f| f.get(path)).collect();
            let first = values[0];
            let differ = values.iter().any(|v| match (first, v) {
                (Some(a), Some(b)) => !same(a, b),
                (None, None) => false,
                _ => true,
            });
            differ
                .then(|| ParameterDiff { path: path.clone(), values: values.into_iter().map(|v| v.cloned()).collect() })
        })
        .collect()
}

/// One metric of each run; `None` where a run lacks it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricRow {
    pub metric: String,
    pub values: Vec<Option<Value>>,
}

/// The runs' metrics in rows: `status`, `epochs_completed`, `duration_seconds`, `test.<name>`
/// (the test headline), `best.<monitored metric>` and `best.epoch`, and `final.<name>` (the
/// last epoch's value of every per-epoch metric).
pub fn metric_rows(summaries: &[&RunSummary]) -> Vec<MetricRow> {
    let mut rows: Vec<MetricRow> = Vec::new();
    let mut add = |metric: String, value: &dyn Fn(&RunSummary) -> Option<Value>| {
        rows.push(MetricRow { metric, values: summaries.iter().map(|s| value(s)).collect() });
    };
    let float = |v: f64| serde_json::Number::from_f64(v).map(Value::Number);
    add("status".into(), &|s| Some(Value::from(s.status.name())));
    add("epochs_completed".into(), &|s| Some(Value::from(s.epochs_completed)));
    add("duration_seconds".into(), &|s| float(s.total_seconds()));

    let mut test_names: Vec<String> = Vec::new();
    let mut best_names: Vec<String> = Vec::new();
    for summary in summaries {
        for (name, _) in summary.test.iter().flat_map(|t| t.headline()) {
            if !test_names.contains(&name) {
                test_names.push(name);
            }
        }
        if let Some(best) = summary.best.as_ref().filter(|b| !best_names.contains(&b.metric)) {
            best_names.push(best.metric.clone());
        }
    }
    for name in test_names {
        add(format!("test.{name}"), &|s| s.test.as_ref().and_then(|t| t.get(&name)).and_then(float));
    }
    for name in &best_names {
        let value = |s: &RunSummary| s.best.as_ref().filter(|b| &b.metric == name).and_then(|b| b.value);
        add(format!("best.{name}"), &|s| value(s).and_then(float));
    }
    if !best_names.is_empty() {
        add("best.epoch".into(), &|s| s.best.as_ref().map(|b| Value::from(b.epoch)));
    }
    let history: BTreeSet<&String> = summaries.iter().flat_map(|s| s.history.keys()).collect();
    for name in history {
        add(format!("final.{name}"), &|s| s.history.get(name).and_then(|h| h.last()).and_then(|v| float(*v)));
    }
    rows
}

/// A run as `runs compare` names it.
#[derive(Clone, Debug, Serialize)]
pub struct ComparedRun {
    /// The run's column header: its experiment, with the run folder's name when two compared
    /// runs share an experiment.
    pub label: String,
    pub path: PathBuf,
    pub experiment: String,
    pub timestamp: String,
}

/// `gymnos-host runs compare`.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub runs: Vec<ComparedRun>,
    /// The recorded experiment's paths whose values differ, one value per run.
    pub parameters: Vec<ParameterDiff>,
    pub metrics: Vec<MetricRow>,
}

pub fn compare(runs: &[Run]) -> Comparison {
    let names: Vec<(String, String)> = runs.iter().map(|r| (r.experiment(), r.timestamp())).collect();
    let labels = labels(&names);
    Comparison {
        runs: runs
            .iter()
            .zip(labels)
            .map(|(run, label)| ComparedRun {
                label,
                path: run.dir.clone(),
                experiment: run.experiment(),
                timestamp: run.timestamp(),
            })
            .collect(),
        parameters: differing_parameters(&runs.iter().map(|r| &r.config).collect::<Vec<_>>()),
        metrics: metric_rows(&runs.iter().map(|r| &r.summary).collect::<Vec<_>>()),
    }
}

/// Column headers for runs named (experiment, timestamp): the experiment when it is unique,
/// else `experiment/timestamp`, else the run's position (`#2`).
pub fn labels(runs: &[(String, String)]) -> Vec<String> {
    let count = |label: &String, all: &[String]| all.iter().filter(|l| *l == label).count();
    let experiments: Vec<String> = runs.iter().map(|(e, _)| e.clone()).collect();
    let stamped: Vec<String> = runs.iter().map(|(e, t)| format!("{e}/{t}")).collect();
    (0..runs.len())
        .map(|i| {
            if count(&experiments[i], &experiments) == 1 {
                experiments[i].clone()
            } else if count(&stamped[i], &stamped) == 1 {
                stamped[i].clone()
            } else {
                format!("#{}", i + 1)
            }
        })
        .collect()
}

/// A parameter's value as a table shows it: strings bare, other values as JSON, `-` when absent.
pub fn parameter_cell(value: Option<&Value>) -> String {
    match value {
        None => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// A metric as a table shows it: fractions with four decimals (see [`number`]).
pub fn metric_cell(value: Option<&Value>) -> String {
    match value {
        Some(Value::Number(n)) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), number),
        other => parameter_cell(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{BestCheckpoint, ClassificationReport, EvaluationReport, RunStatus};
    use serde_json::json;

    #[test]
    fn flattening_walks_objects_and_lists_of_objects() {
        let config = json!({
            "experiment": { "name": "a", "seed": 1 },
            "model": { "config": { "hidden": [64, 32], "extra": {} } },
            "preprocessors": [{ "plugin": "standardize", "config": { "epsilon": 1e-8 } }],
            "data_augmentors": [],
            "training": { "callbacks": { "reduce_on_plateau": null } }
        });
        let flat = flatten(&config);
        let keys: Vec<&str> = flat.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "data_augmentors",
                "experiment.name",
                "experiment.seed",
                "model.config.extra",
                "model.config.hidden",
                "preprocessors.0.config.epsilon",
                "preprocessors.0.plugin",
                "training.callbacks.reduce_on_plateau",
            ]
        );
        assert_eq!(flat["model.config.hidden"], json!([64, 32]));
        assert_eq!(flat["data_augmentors"], json!([]));
        assert_eq!(flat["training.callbacks.reduce_on_plateau"], Value::Null);
        assert_eq!(flatten(&json!(3)), BTreeMap::from([(String::new(), json!(3))]));
    }

    #[test]
    fn only_differing_paths_are_kept_with_absent_values_as_none() {
        let a = json!({
            "experiment": { "name": "a", "seed": 1 },
            "training": { "optimizer": { "name": "adam", "lr": 0.01 }, "epochs": 8 },
            "preprocessors": [{ "plugin": "p" }],
            "callbacks": { "plateau": null }
        });
        let b = json!({
            "experiment": { "name": "b", "seed": 1 },
            "training": { "optimizer": { "name": "adam", "lr": 0.001 }, "epochs": 8.0 },
            "preprocessors": [{ "plugin": "p" }, { "plugin": "q" }],
            "callbacks": { "plateau": { "factor": 0.5 } }
        });
        let diffs = differing_parameters(&[&a, &b]);
        let paths: Vec<&str> = diffs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "callbacks.plateau",
                "callbacks.plateau.factor",
                "experiment.name",
                "preprocessors.1.plugin",
                "training.optimizer.lr"
            ]
        );
        assert_eq!(diffs[0].values, [Some(Value::Null), None]);
        assert_eq!(diffs[1].values, [None, Some(json!(0.5))]);
        assert_eq!(diffs[4].values, [Some(json!(0.01)), Some(json!(0.001))]);
        // Identical runs differ nowhere; a third run that differs makes its path show for all.
        assert!(differing_parameters(&[&a, &a]).is_empty());
        let diffs = differing_parameters(&[&a, &a, &b]);
        assert_eq!(diffs.iter().find(|d| d.path == "experiment.name").unwrap().values.len(), 3);
    }

    #[test]
    fn list_indices_sort_as_numbers() {
        let mut paths = vec!["a.10.x", "a.2.x", "a.b", "a"];
        paths.sort_by(|a, b| path_order(a, b));
        assert_eq!(paths, ["a", "a.2.x", "a.10.x", "a.b"]);
    }

    #[test]
    fn metrics_are_set_side_by_side() {
        let mut a = RunSummary { status: RunStatus::Completed, ..RunSummary::default() };
        a.add_epoch(&BTreeMap::from([("val_loss".to_string(), 0.5), ("lr".to_string(), 0.01)]));
        a.add_epoch(&BTreeMap::from([("val_loss".to_string(), 0.4), ("lr".to_string(), 0.01)]));
        a.add_elapsed("train", 2.0);
        a.best = Some(BestCheckpoint { metric: "val_loss".into(), value: Some(0.4), epoch: 2 });
        a.test = Some(EvaluationReport::Classification(ClassificationReport {
            loss: 0.3,
            accuracy: 0.9,
            f1_macro: 0.85,
            per_class: vec![],
            confusion_matrix: vec![],
        }));
        let b = RunSummary { status: RunStatus::Failed, ..RunSummary::default() };
        let rows = metric_rows(&[&a, &b]);
        let get =
            |name: &str| rows.iter().find(|r| r.metric == name).unwrap_or_else(|| panic!("{name}")).values.clone();
        assert_eq!(get("status"), [Some(json!("completed")), Some(json!("failed"))]);
        assert_eq!(get("epochs_completed"), [Some(json!(2)), Some(json!(0))]);
        assert_eq!(get("duration_seconds"), [Some(json!(2.0)), Some(json!(0.0))]);
        assert_eq!(get("test.accuracy"), [Some(json!(0.9)), None]);
        assert_eq!(get("best.val_loss"), [Some(json!(0.4)), None]);
        assert_eq!(get("best.epoch"), [Some(json!(2)), None]);
        assert_eq!(get("final.val_loss"), [Some(json!(0.4)), None]);
        let names: Vec<&str> = rows.iter().map(|r| r.metric.as_str()).collect();
        assert_eq!(
            names,
            [
                "status",
                "epochs_completed",
                "duration_seconds",
                "test.loss",
                "test.accuracy",
                "test.f1_macro",
                "best.val_loss",
                "best.epoch",
                "final.lr",
                "final.val_loss"
            ]
        );
        assert_eq!(metric_cell(Some(&json!(0.123456))), "0.1235");
        assert_eq!(metric_cell(Some(&json!(8))), "8");
        assert_eq!(metric_cell(None), "-");
        assert_eq!(parameter_cell(Some(&json!("adam"))), "adam");
        assert_eq!(parameter_cell(Some(&json!([64, 32]))), "[64,32]");
    }

    #[test]
    fn labels_are_experiments_made_unique() {
        let runs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(e, t)| (e.to_string(), t.to_string())).collect()
        };
        assert_eq!(labels(&runs(&[("a", "1"), ("b", "1")])), ["a", "b"]);
        assert_eq!(labels(&runs(&[("a", "1"), ("a", "2"), ("b", "1")])), ["a/1", "a/2", "b"]);
        assert_eq!(labels(&runs(&[("a", "1"), ("a", "1")])), ["#1", "#2"]);
    }
}
