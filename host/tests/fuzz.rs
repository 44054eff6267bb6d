//! Property tests: no input makes the experiment reader, the `--set` overrides or the registry
//! reader panic, and every error they give names the file (and, in a registry, the entry). The test suite runs a bounded number of cases; a longer search is
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

/// A change to a text file as editors, copies and truncations make them.
#[derive(Clone, Debug)]
enum Mutation {
    /// A UTF-8 byte order mark first (Notepad, Excel).
    Bom,
    /// A byte order mark, then the file cut at this fraction of its length.
    BomAndCut(f64),
    /// Cut at this fraction of the length.
    Cut(f64),
    /// This character inserted at this fraction of the length.
    Insert(f64, char),
    /// The character at this fraction of the length removed.
    Remove(f64),
    /// The byte order mark somewhere inside, where it is no whitespace.
    BomInside(f64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0.0..1.0f64;
    prop_oneof![
        Just(Mutation::Bom),
        at.clone().prop_map(Mutation::BomAndCut),
        at.clone().prop_map(Mutation::Cut),
        (at.clone(), prop_oneof![Just('{'), Just('}'), Just(','), Just('"'), Just(':'), Just('\\'), any::<char>()])
            .prop_map(|(f, c)| Mutation::Insert(f, c)),
        at.clone().prop_map(Mutation::Remove),
        at.prop_map(Mutation::BomInside),
    ]
}

fn mutate(text: &str, mutation: &Mutation) -> String {
    let boundary = |f: f64| {
        let mut i = ((text.len() as f64) * f) as usize;
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    match *mutation {
        Mutation::Bom => format!("\u{feff}{text}"),
        Mutation::BomAndCut(f) => format!("\u{feff}{}", &text[..boundary(f)]),
        Mutation::Cut(f) => text[..boundary(f)].to_string(),
        Mutation::Insert(f, c) => {
            let i = boundary(f);
            format!("{}{c}{}", &text[..i], &text[i..])
        }
        Mutation::Remove(f) => {
            let i = boundary(f);
            let next = text[i..].chars().next().map_or(0, char::len_utf8);
            format!("{}{}", &text[..i], &text[i + next..])
        }
        Mutation::BomInside(f) => {
            let i = boundary(f);
            format!("{}\u{feff}{}", &text[..i], &text[i..])
        }
    }
}

const KINDS: [&str; 5] = ["dataset", "preprocessor", "data_augmentor", "model", "tracker"];

/// A declared component: mostly valid, sometimes with a wrong kind, name or version.
fn declared_component() -> impl Strategy<Value = (String, String, String)> {
    let kind = prop_oneof![
        4 => prop::sample::select(KINDS.to_vec()).prop_map(str::to_string),
        1 => prop_oneof![
            Just("gizmo".to_string()),
            Just("Model".to_string()),
            Just(String::new()),
            Just("model\n".to_string()),
            "(?s).{0,6}"
        ],
    ];
    let name = prop_oneof![
        4 => "[a-c][a-c_-]{0,2}[a-c]",
        1 => prop_oneof![
            Just(String::new()),
            Just("..".to_string()),
            Just("../../etc/passwd".to_string()),
            Just("a/b".to_string()),
            Just("A".to_string()),
            Just("a-".to_string()),
            Just("a\nb".to_string()),
            "(?s).{0,6}",
            "\\PC{0,8}",
        ],
    ];
    let version = prop_oneof![
        4 => (0..3u32, 0..3u32).prop_map(|(a, b)| format!("{a}.{b}.0")),
        1 => prop_oneof![Just("one".to_string()), Just("1.0".to_string()), Just(String::new()), "\\PC{0,6}"],
    ];
    (kind, name, version)
}

/// What is wrong with each entry of `components`, by the registry's rules (the version's
/// syntax, the kind, the name rule, a component declared twice); `None` for a right one.
fn entry_faults(components: &[(String, String, String)]) -> Vec<bool> {
    let mut seen = std::collections::BTreeSet::new();
    components
        .iter()
        .map(|(kind, name, version)| {
            let Ok(version) = semver::Version::parse(version) else { return true };
            let bad = !KINDS.contains(&kind.as_str()) || gymnos_plugin_api::check_component_name(name).is_err();
            let again = !seen.insert((kind.clone(), name.replace('_', "-"), version));
            bad || again
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_mutated_experiment_file_is_read_or_refused_naming_the_file(mutation in mutation()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exp.json");
        let text = serde_json::to_string_pretty(&valid_experiment()).unwrap();
        std::fs::write(&path, mutate(&text, &mutation)).unwrap();
        match experiment::load(&path, &[]) {
            Ok(exp) => {
                // Whatever reads, reads as the file without its byte order mark would.
                std::fs::write(&path, mutate(&text, &mutation).trim_start_matches('\u{feff}')).unwrap();
                let plain = experiment::load(&path, &[]).expect("the same file without its byte order mark");
                prop_assert_eq!(serde_json::to_value(exp).unwrap(), serde_json::to_value(plain).unwrap());
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.starts_with(&format!("{}: ", path.display())), "{}", message);
                prop_assert!(!message.contains('\n'), "{}", message);
            }
        }
        if matches!(mutation, Mutation::Bom) {
            prop_assert!(experiment::load(&path, &[]).is_ok());
        }
    }

    #[test]
    fn a_registry_is_read_exactly_when_every_entry_is_right_and_else_names_a_wrong_one(
        components in prop::collection::vec(declared_component(), 0..6),
        bom in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let entries: Vec<Value> = components
            .iter()
            .map(|(kind, name, version)| json!({ "kind": kind, "name": name, "version": version, "package": "p" }))
            .collect();
        let text = serde_json::to_string_pretty(&json!({ "format": 2, "components": entries })).unwrap();
        std::fs::write(&path, if bom { format!("\u{feff}{text}") } else { text }).unwrap();
        let faults = entry_faults(&components);
        match Registry::load(&path) {
            Ok(registry) => {
                prop_assert!(faults.iter().all(|f| !f), "accepted a wrong entry: {:?}", components);
                prop_assert_eq!(registry.installed().count(), components.len());
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.starts_with(&format!("{}: the registry is not valid: ", path.display())),
                    "{}", message
                );
                prop_assert!(!message.contains('\n'), "{}", message);
                let named: Vec<usize> = (0..components.len())
                    .filter(|i| message.contains(&format!("components[{i}]")))
                    .collect();
                prop_assert!(!named.is_empty(), "no entry named: {}", message);
                prop_assert!(named.iter().any(|&i| faults[i]), "a right entry named: {} for {:?}", message, components);
            }
        }
    }

    #[test]
    fn a_mutated_registry_or_state_is_read_or_refused_naming_its_file(
        mutation in mutation(),
        state in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let declaration = json!({ "format": 2, "plugin_dirs": ["plugin-store"], "components": [
            { "kind": "model", "name": "mlp", "version": "1.0.0", "package": "gymnos-mlp" }
        ]});
        let library = json!({ "libraries": [{
            "path": "plugin-store/libgymnos_mlp.so", "sha256": "00", "size": 1, "modified_ns": 1,
            "package": "gymnos-mlp", "package_version": "1.0.0", "api_version": "1.2.0", "libtorch_version": "2.11.0",
            "components": [{ "name": "mlp", "kind": "model", "version": "1.0.0", "description": "", "config": [] }]
        }]});
        std::fs::create_dir_all(dir.path().join("plugin-store")).unwrap();
        let state_path = dir.path().join("plugin-store/state.json");
        let (changed, kept, changed_text, kept_text) = match state {
            false => (&path, &state_path, declaration, library),
            true => (&state_path, &path, library, declaration),
        };
        std::fs::write(changed, mutate(&serde_json::to_string_pretty(&changed_text).unwrap(), &mutation)).unwrap();
        std::fs::write(kept, kept_text.to_string()).unwrap();
        match Registry::load(&path) {
            Ok(registry) => prop_assert!(registry.installed().count() <= 1),
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.starts_with(&format!("{}: ", changed.display())), "{}", message);
                prop_assert!(!message.contains('\n'), "{}", message);
            }
        }
        if matches!(mutation, Mutation::Bom) {
            let registry = Registry::load(&path).unwrap();
            prop_assert!(registry.installed().all(|i| i.found.is_some()));
        }
    }

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
