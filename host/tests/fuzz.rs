//! Property tests: no input makes the experiment reader, the `--set` overrides or the registry
//! reader panic. The test suite runs a bounded number of cases; a longer search is
//! `PROPTEST_CASES=100000 cargo test --release -p gymnos-host --test fuzz`.

use std::path::Path;

use gymnos_host::{
    experiment::{self, apply_override},
    registry::Registry,
    HostCompat,
};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Any JSON value, up to a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-z_]{0,8}".prop_map(Value::String),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

fn valid_experiment() -> Value {
    json!({
        "experiment": { "name": "fuzz", "seed": 1, "output_root": "runs" },
        "dataset": { "plugin": "csv", "config": { "path": "data.csv" }, "split": { "train": 0.7, "val": 0.2, "test": 0.1 } },
        "preprocessors": [{ "plugin": "standardize" }],
        "data_augmentors": [],
        "model": { "plugin": "mlp@^1", "config": { "hidden": [8] } },
        "training": {
            "epochs": 2, "batch_size": 4,
            "optimizer": { "name": "adam", "lr": 0.01 },
            "lr_schedule": { "name": "step", "step_size": 1 },
            "callbacks": { "early_stopping": { "patience": 1 } }
        },
        "tracking": { "trackers": [] }
    })
}

/// Every path to a value inside `value`.
fn paths(value: &Value, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(prefix.clone());
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| paths(v, [prefix.clone(), vec![k.clone()]].concat(), out)),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| paths(v, [prefix.clone(), vec![i.to_string()]].concat(), out))
        }
        _ => {}
    }
}

fn replace(value: &mut Value, path: &[String], with: Value) {
    match path.split_first() {
        None => *value = with,
        Some((head, rest)) => {
            let child = match value {
                Value::Object(map) => map.get_mut(head),
                Value::Array(items) => head.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
                _ => None,
            };
            if let Some(child) = child {
                replace(child, rest, with);
            }
        }
    }
}

/// Reads `text` as an experiment file and validates it against an empty registry.
fn read_and_validate(dir: &Path, text: &str, overrides: &[String]) {
    let path = dir.join("exp.json");
    std::fs::write(&path, text).unwrap();
    if let Ok(exp) = experiment::load(&path, overrides) {
        let registry = Registry::empty(&dir.join("registry.json"));
        let _ = experiment::validate(&path, &exp, &registry, &HostCompat::default());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_text_is_read_without_a_panic(text in "\\PC{0,300}") {
        let dir = tempfile::tempdir().unwrap();
        read_and_validate(dir.path(), &text, &[]);
    }

    #[test]
    fn a_valid_experiment_with_any_value_anywhere_is_read_without_a_panic(
        pick in any::<prop::sample::Index>(),
        with in any_json(),
    ) {
        let mut exp = valid_experiment();
        let mut all = Vec::new();
        paths(&exp, Vec::new(), &mut all);
        replace(&mut exp, &all[pick.index(all.len())], with);
        let dir = tempfile::tempdir().unwrap();
        read_and_validate(dir.path(), &exp.to_string(), &[]);
    }

    #[test]
    fn any_override_is_applied_or_refused_without_a_panic(
        path in "[a-z_]{0,12}(\\.[a-z_0-9]{0,12}){0,4}",
        value in "\\PC{0,16}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        read_and_validate(dir.path(), &valid_experiment().to_string(), &[format!("{path}={value}")]);
        let mut exp = valid_experiment();
        let _ = apply_override(&mut exp, None, &format!("{path}={value}"));
    }

    #[test]
    fn any_registry_file_is_read_without_a_panic(
        text in prop_oneof!["\\PC{0,200}".boxed(), any_json().prop_map(|v| v.to_string()).boxed()],
        declared in any_json(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        std::fs::write(&path, &text).unwrap();
        let _ = Registry::load(&path);
        // A well-formed declaration with any machine state beside it.
        std::fs::write(&path, json!({ "format": 2, "plugin_dirs": ["plugin-store"], "components": [] }).to_string()).unwrap();
        std::fs::create_dir_all(dir.path().join("plugin-store")).unwrap();
        std::fs::write(dir.path().join("plugin-store/state.json"), declared.to_string()).unwrap();
        if let Ok(registry) = Registry::load(&path) {
            let _ = registry.installed().count();
        }
    }
}
