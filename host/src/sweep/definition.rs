//! What defines a sweep's trials, recorded in its results (`sweep.json`): the base
//! experiment's contents, the parameters and how they are drawn, successive halving; and for
//! each trial, a fingerprint of its experiment. A re-run of the sweep compares them with the
//! files as they are now, so that it never reports results the files no longer describe.
//!
//! What does not define a trial may change between runs of a sweep: the metric and its
//! direction (the trials are ranked again from their records), the executor, `max_retries`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    format::{Halving, Parameter, SweepFile},
    trials::Assignment,
};

/// What a sweep's trials are made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    /// The base experiment file, as last read (for messages: a moved file with the same
    /// contents is the same base).
    pub experiment: PathBuf,
    /// The sha256 of the base experiment's JSON, keys sorted and without white space (a file
    /// re-indented or with its keys reordered is the same experiment).
    pub experiment_sha256: String,
    /// The base experiment's JSON, to name the fields that changed.
    pub base: Value,
    pub parameters: BTreeMap<String, Parameter>,
    #[serde(default)]
    pub trials: Option<u32>,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub early_stopping: Option<Halving>,
}

/// The sha256 of a JSON value written canonically (object keys sorted, no white space).
pub fn canonical_sha256(value: &Value) -> String {
    // serde_json's maps are sorted by key (the `preserve_order` feature is off), so this text is
    // the same for any layout of the same value.
    crate::hash::sha256_bytes(serde_json::to_string(value).expect("JSON values serialize").as_bytes())
}

/// The fingerprint of one trial: the base experiment with the trial's values set, as the
/// trial's `--set` overrides set them.
pub fn trial_fingerprint(base: &Value, assignment: &Assignment) -> String {
    let mut experiment = base.clone();
    for (path, value) in assignment {
        // Every trial's overrides were checked before this is asked; a path that points at
        // nothing would leave the value out, so the assignment is part of the fingerprint too.
        let _ = crate::experiment::apply_override(&mut experiment, None, &format!("{path}={value}"));
    }
    canonical_sha256(&serde_json::json!({ "experiment": experiment, "parameters": assignment }))
}

impl Definition {
    pub fn of(file: &SweepFile, base_path: &Path, base: &Value) -> Definition {
        Definition {
            experiment: base_path.to_path_buf(),
            experiment_sha256: canonical_sha256(base),
            base: base.clone(),
            parameters: file.parameters.clone(),
            trials: file.trials,
            seed: file.seed,
            early_stopping: file.early_stopping.clone(),
        }
    }

    /// What differs between `old` (recorded) and `self` (the files now), in words; empty when
    /// the trials are the same.
    pub fn changes(&self, old: &Definition) -> Vec<String> {
        let mut changes = Vec::new();
        if self.experiment_sha256 != old.experiment_sha256 {
            let mut fields = Vec::new();
            differences(&old.base, &self.base, "", &mut fields);
            changes.push(format!("the base experiment {} ({})", self.experiment.display(), summary(&fields)));
        }
        if self.parameters != old.parameters {
            let mut fields = Vec::new();
            let mut names: Vec<&String> = old.parameters.keys().chain(self.parameters.keys()).collect();
            names.sort();
            names.dedup();
            for name in names {
                let line = match (old.parameters.get(name), self.parameters.get(name)) {
                    (Some(_), None) => format!("{name} removed"),
                    (None, Some(_)) => format!("{name} added"),
                    (Some(a), Some(b)) if a != b => format!("{name}: {} → {}", short(a), short(b)),
                    _ => continue,
                };
                fields.push(line);
            }
            changes.push(format!("the parameters ({})", summary(&fields)));
        }
        if self.trials != old.trials {
            changes.push(format!("trials ({} → {})", shown(old.trials), shown(self.trials)));
        }
        if self.seed != old.seed {
            changes.push(format!("seed ({} → {})", old.seed, self.seed));
        }
        if self.early_stopping != old.early_stopping {
            changes.push(format!(
                "early_stopping ({} → {})",
                old.early_stopping.as_ref().map_or_else(|| "none".into(), short),
                self.early_stopping.as_ref().map_or_else(|| "none".into(), short)
            ));
        }
        changes
    }
}

fn shown(value: Option<u32>) -> String {
    value.map_or_else(|| "none".into(), |v| v.to_string())
}

fn short(value: &impl Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// At most three changes, then how many more.
fn summary(fields: &[String]) -> String {
    match fields.len() {
        0 => "its JSON".into(),
        n if n <= 3 => fields.join("; "),
        n => format!("{}; and {} more", fields[..3].join("; "), n - 3),
    }
}

/// The fields at which `old` and `new` differ, `path: old → new`.
fn differences(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    let at = |key: &str| if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => differences(x, y, &at(key), out),
                    (Some(_), None) => out.push(format!("{} removed", at(key))),
                    (None, Some(y)) => out.push(format!("{} added: {}", at(key), short(y))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(x, y, &format!("{}[{i}]", if path.is_empty() { "$" } else { path }), out);
            }
        }
        _ if old != new => {
            let path = if path.is_empty() { "$" } else { path };
            out.push(format!("{path}: {} → {}", short(old), short(new)))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn file(parameters: Value) -> SweepFile {
        serde_json::from_value(json!({
            "name": "s", "experiment": "e.json", "parameters": parameters, "trials": 4,
            "metric": { "name": "val_loss", "direction": "min" }
        }))
        .unwrap()
    }

    fn base() -> Value {
        json!({
            "experiment": { "name": "wine", "seed": 3 },
            "dataset": { "plugin": "csv", "config": { "path": "wine.csv" }, "split": { "train": 0.6, "val": 0.2, "test": 0.2 } },
            "model": { "plugin": "mlp", "config": { "hidden": [32, 16], "dropout": 0.1 } },
            "training": { "epochs": 2, "optimizer": { "name": "adam", "lr": 0.01 } }
        })
    }

    #[test]
    fn changes_are_named_field_by_field() {
        let parameters = json!({ "training.optimizer.lr": { "values": [0.01, 0.02] } });
        let old = Definition::of(&file(parameters.clone()), Path::new("/e.json"), &base());
        let same_text_elsewhere: Value = serde_json::from_str(&serde_json::to_string_pretty(&base()).unwrap()).unwrap();
        assert!(Definition::of(&file(parameters.clone()), Path::new("/moved.json"), &same_text_elsewhere)
            .changes(&old)
            .is_empty());
        let mut edited = base();
        edited["training"]["epochs"] = json!(3);
        edited["model"]["config"]["hidden"][1] = json!(8);
        edited["training"]["loss"] = json!("mse");
        let mut other = file(
            json!({ "training.optimizer.lr": { "values": [0.01] }, "model.config.dropout": { "uniform": [0, 0.5] } }),
        );
        other.seed = 9;
        let now = Definition::of(&other, Path::new("/e.json"), &edited);
        assert_eq!(
            now.changes(&old),
            [
                "the base experiment /e.json (model.config.hidden[1]: 16 → 8; training.epochs: 2 → 3; training.loss added: \"mse\")",
                "the parameters (model.config.dropout added; training.optimizer.lr: {\"values\":[0.01,0.02]} → {\"values\":[0.01]})",
                "seed (0 → 9)",
            ]
        );
    }

    #[test]
    fn a_trial_fingerprint_is_its_experiment() {
        let a: Assignment = [("training.optimizer.lr".to_string(), json!(0.02))].into();
        let b: Assignment = [("training.optimizer.lr".to_string(), json!(0.03))].into();
        assert_eq!(trial_fingerprint(&base(), &a), trial_fingerprint(&base(), &a));
        assert_ne!(trial_fingerprint(&base(), &a), trial_fingerprint(&base(), &b));
    }

    proptest! {
        /// Any change of any leaf of the base experiment changes the fingerprint of every trial
        /// and is named among the definition's changes (unless the trial's value covers it).
        #[test]
        fn any_mutation_of_the_base_is_detected(leaf in any::<prop::sample::Index>(), new in prop_oneof![
            any::<i64>().prop_map(|n| json!(n)), "[a-z]{0,6}".prop_map(|s| json!(s)), Just(json!(null)), Just(json!([]))
        ]) {
            let original = base();
            let mut leaves = Vec::new();
            fn walk(v: &Value, path: Vec<String>, out: &mut Vec<Vec<String>>) {
                match v {
                    Value::Object(m) => m.iter().for_each(|(k, x)| { let mut p = path.clone(); p.push(k.clone()); walk(x, p, out) }),
                    Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| { let mut p = path.clone(); p.push(i.to_string()); walk(x, p, out) }),
                    _ => out.push(path),
                }
            }
            walk(&original, Vec::new(), &mut leaves);
            let path = leaf.get(&leaves).clone();
            let mut mutated = original.clone();
            let pointer = format!("/{}", path.join("/"));
            prop_assume!(mutated.pointer(&pointer) != Some(&new));
            *mutated.pointer_mut(&pointer).unwrap() = new;
            let parameters = json!({ "experiment.seed": { "int_uniform": [0, 9] } });
            let old = Definition::of(&file(parameters.clone()), Path::new("/e.json"), &original);
            let now = Definition::of(&file(parameters), Path::new("/e.json"), &mutated);
            let changes = now.changes(&old);
            prop_assert_eq!(changes.len(), 1);
            prop_assert!(changes[0].starts_with("the base experiment /e.json ("), "{}", changes[0]);
            let trial: Assignment = [("training.epochs".to_string(), json!(5))].into();
            if path != ["training", "epochs"] {
                prop_assert_ne!(trial_fingerprint(&original, &trial), trial_fingerprint(&mutated, &trial));
            }
        }
    }
}
