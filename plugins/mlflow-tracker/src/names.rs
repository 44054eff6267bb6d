//! What MLflow accepts as names and values, and the run's parameters and tags as MLflow wants
//! them: flat, named within its character set, and no longer than its limits
//! (`mlflow/utils/validation.py`).

use std::collections::BTreeSet;

use serde_json::Value;

/// Longest parameter, tag or metric name.
pub const MAX_KEY_CHARS: usize = 250;
/// Longest parameter value; MLflow truncates longer ones (or refuses them, when so configured).
pub const MAX_PARAM_VALUE_CHARS: usize = 6000;
/// Longest tag value.
pub const MAX_TAG_VALUE_CHARS: usize = 8000;
/// Parameters (and tags) per `runs/log-batch`.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Metrics per `runs/log-batch`.
pub const MAX_METRICS_PER_BATCH: usize = 1000;

/// `s` cut to at most `max` characters (MLflow counts characters, not bytes).
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => s[..end].to_string(),
        None => s.to_string(),
    }
}

/// One segment of a name, in MLflow's character set (letters, digits, `_`, `-`, `.`, space,
/// `:`), with every other character, `/` included, replaced by `_`. A segment of dots only
/// (`.`, `..`), which MLflow takes for a path, becomes underscores; an empty one `_`.
pub fn segment(s: &str) -> String {
    if s.is_empty() {
        return "_".into();
    }
    if s.chars().all(|c| c == '.') {
        return "_".repeat(s.chars().count());
    }
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ' ' | ':') { c } else { '_' })
        .collect()
}

/// A metric's MLflow name: `<scope>/<name>` (`train_step/loss`, `epoch/val_accuracy`,
/// `test/accuracy`). MLflow's UI groups the charts by the part before the `/`.
pub fn metric_key(scope: &str, name: &str) -> String {
    truncate(&format!("{}/{}", segment(scope), segment(name)), MAX_KEY_CHARS)
}

/// A parameter or tag name: dotted, without `/`.
pub fn param_key(key: &str) -> String {
    truncate(&segment(key), MAX_KEY_CHARS)
}

/// The resolved experiment as MLflow parameters: nested objects flattened to dotted keys
/// (`training.optimizer.lr`), lists of objects indexed (`preprocessors.0.plugin`), lists of
/// plain values kept whole as JSON (`model.config.hidden` = `[16]`), strings as they are and
/// other values as JSON text. The `resolved` records of the plugins are left out: they become
/// tags ([`plugin_tags`]). Keys are made valid and unique (the first of two that collide
/// wins); values are cut to MLflow's limit.
pub fn params(experiment: &Value) -> Vec<(String, String)> {
    let mut flat = Vec::new();
    flatten(experiment, "", &mut flat);
    let mut seen = BTreeSet::new();
    flat.into_iter()
        .map(|(k, v)| (param_key(&k), truncate(&v, MAX_PARAM_VALUE_CHARS)))
        .filter(|(k, _)| seen.insert(k.clone()))
        .collect()
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn flatten(value: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                if k == "resolved" && v.is_object() {
                    continue;
                }
                flatten(v, &join(prefix, k), out);
            }
        }
        Value::Array(items) if items.iter().any(|v| v.is_object() || v.is_array()) => {
            for (i, v) in items.iter().enumerate() {
                flatten(v, &join(prefix, &i.to_string()), out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Tags naming the exact library each plugin of the run came from, found wherever the
/// resolved experiment has a `resolved` record: `gymnos.plugin.<section>` =
/// `<name>@<version>` and `gymnos.plugin.<section>.sha256` = the library's hash, with
/// `<section>` the plugin's place in the experiment (`model`, `preprocessors.0`,
/// `tracking.trackers.0`).
pub fn plugin_tags(experiment: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    find_resolved(experiment, "", &mut out);
    out.into_iter().map(|(k, v)| (param_key(&k), truncate(&v, MAX_TAG_VALUE_CHARS))).collect()
}

fn find_resolved(value: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(resolved)) = map.get("resolved") {
                let text = |k: &str| resolved.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                let plugin = map.get("plugin").and_then(Value::as_str).unwrap_or_default();
                let name = plugin.split('@').next().unwrap_or_default();
                let tag = format!("gymnos.plugin.{prefix}");
                out.push((tag.clone(), format!("{name}@{}", text("version"))));
                out.push((format!("{tag}.sha256"), text("sha256")));
            }
            for (k, v) in map {
                if k != "resolved" {
                    find_resolved(v, &join(prefix, k), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                find_resolved(v, &join(prefix, &i.to_string()), out);
            }
        }
        _ => {}
    }
}

/// A metric value as MLflow's JSON reads it: a number, or `NaN`, `Infinity`, `-Infinity`.
pub fn metric_value(v: f64) -> Value {
    if v.is_nan() {
        Value::from("NaN")
    } else if v == f64::INFINITY {
        Value::from("Infinity")
    } else if v == f64::NEG_INFINITY {
        Value::from("-Infinity")
    } else {
        Value::from(v)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_keep_to_mlflows_character_set() {
        assert_eq!(metric_key("epoch", "val_accuracy"), "epoch/val_accuracy");
        assert_eq!(metric_key("test", "f1 (macro)/x"), "test/f1 _macro__x");
        assert_eq!(metric_key("epoch", ".."), "epoch/__");
        assert_eq!(metric_key("epoch", ""), "epoch/_");
        assert_eq!(param_key("model.config.a/b"), "model.config.a_b");
        assert_eq!(param_key("é"), "_");
        assert_eq!(param_key(&"k".repeat(300)).len(), MAX_KEY_CHARS);
        assert_eq!(truncate("ééé", 2), "éé");
        assert_eq!(truncate("ab", 5), "ab");
    }

    #[test]
    fn the_experiment_becomes_flat_parameters_and_plugin_tags() {
        let resolved = |v: &str, sha: &str| json!({ "version": v, "sha256": sha, "library": "/x.so", "package": "p", "api_version": "1.1.0" });
        let exp = json!({
            "experiment": { "name": "wine", "seed": 5, "description": "", "output_root": null },
            "dataset": { "plugin": "csv@=1.0.0", "config": { "path": "/d.csv" }, "resolved": resolved("1.0.0", "aa") },
            "preprocessors": [{ "plugin": "standardize@=1.0.0", "config": {}, "resolved": resolved("1.0.0", "bb") }],
            "model": { "plugin": "mlp@=1.2.0", "config": { "hidden": [16, 8], "dropout": 0.1 }, "resolved": resolved("1.2.0", "cc") },
            "training": { "optimizer": { "name": "adam", "lr": 0.01 }, "epochs": 8 },
            "long": "x".repeat(7000),
        });
        let params = params(&exp);
        let get = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("training.optimizer.lr"), Some("0.01"));
        assert_eq!(get("training.epochs"), Some("8"));
        assert_eq!(get("model.config.hidden"), Some("[16,8]"));
        assert_eq!(get("experiment.output_root"), Some("null"));
        assert_eq!(get("experiment.description"), Some(""));
        assert_eq!(get("preprocessors.0.plugin"), Some("standardize@=1.0.0"));
        assert_eq!(get("preprocessors.0.config"), Some("{}"));
        assert_eq!(get("long").map(str::len), Some(MAX_PARAM_VALUE_CHARS));
        assert!(params.iter().all(|(k, _)| !k.contains("resolved")), "{params:?}");

        let tags = plugin_tags(&exp);
        assert_eq!(
            tags,
            [
                ("gymnos.plugin.dataset".to_string(), "csv@1.0.0".to_string()),
                ("gymnos.plugin.dataset.sha256".into(), "aa".into()),
                ("gymnos.plugin.model".into(), "mlp@1.2.0".into()),
                ("gymnos.plugin.model.sha256".into(), "cc".into()),
                ("gymnos.plugin.preprocessors.0".into(), "standardize@1.0.0".into()),
                ("gymnos.plugin.preprocessors.0.sha256".into(), "bb".into()),
            ]
        );
    }

    #[test]
    fn colliding_keys_keep_the_first() {
        let params = params(&json!({ "a/b": 1, "a_b": 2 }));
        assert_eq!(params, [("a_b".to_string(), "1".to_string())]);
    }

    #[test]
    fn non_finite_values_are_written_as_mlflow_reads_them() {
        assert_eq!(metric_value(0.25), json!(0.25));
        assert_eq!(metric_value(f64::NAN), json!("NaN"));
        assert_eq!(metric_value(f64::INFINITY), json!("Infinity"));
        assert_eq!(metric_value(f64::NEG_INFINITY), json!("-Infinity"));
    }
}
