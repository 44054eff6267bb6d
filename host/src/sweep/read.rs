//! Reading a sweep file as people write it (a byte order mark, a truncated file, a list where
//! the object goes, a wrong type, an unknown or misspelt field): every problem in words that
//! name the field, never serde's internal names; and telling a sweep file from an experiment.

use std::path::Path;

use serde_json::Value;

use super::{
    format::{SweepFile, PARAMETER_FORMS},
    SweepError,
};
use crate::experiment::{metric_names::suggest, Problem, Shape};

/// The fields of a sweep file, required ones first, for messages.
const REQUIRED: [&str; 4] = ["name", "experiment", "parameters", "metric"];
const OPTIONAL: [&str; 6] = ["output_root", "trials", "seed", "executor", "max_retries", "early_stopping"];

fn what_a_sweep_file_is() -> String {
    format!("a JSON object with the fields {} (and optionally {})", REQUIRED.join(", "), OPTIONAL.join(", "))
}

fn json_type(value: &Value) -> &'static str {
    gymnos_plugin_api::config::json_type_name(value)
}

/// Reads and checks a sweep file.
pub fn load(path: &Path) -> Result<SweepFile, SweepError> {
    let text = crate::fsio::read_text(path).map_err(|cause| SweepError::Read { path: path.to_path_buf(), cause })?;
    let parse = |message: String| SweepError::Parse { path: path.to_path_buf(), message };
    let value: Value = serde_json::from_str(&text).map_err(|e| parse(json_error(&text, &e)))?;
    let problems = structure(&value);
    if !problems.is_empty() {
        return Err(SweepError::Structure { path: path.to_path_buf(), problems });
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        // Not reached for anything `structure` knows; kept in words all the same.
        let field = e.path().to_string();
        parse(format!("{field}: {}", e.into_inner()))
    })
}

/// A JSON syntax error in words, with its line and column; a file that ends early says so.
fn json_error(text: &str, e: &serde_json::Error) -> String {
    let (line, column) = (e.line(), e.column());
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or_default();
    // Where the parser stopped; nothing but white space after it: the text ended early.
    let offset = text.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum::<usize>() + column;
    let rest_is_empty = text.get(offset.min(text.len())..).is_some_and(|rest| rest.trim().is_empty());
    if text.trim().is_empty() {
        return format!("the file is empty; expected {}", what_a_sweep_file_is());
    }
    if e.classify() == serde_json::error::Category::Eof || rest_is_empty {
        return format!("the JSON ends early at line {line}, column {column} ({message}): is the file truncated?");
    }
    format!("invalid JSON at line {line}, column {column}: {message}")
}

/// Every structural problem of a sweep file's value, each at its field.
pub fn structure(value: &Value) -> Vec<Problem> {
    let problem = |path: &str, message: String| Problem { path: path.into(), message };
    let Value::Object(map) = value else {
        return vec![problem("$", format!("expected {}, found {}", what_a_sweep_file_is(), json_type(value)))];
    };
    let looks_like_experiment = ["dataset", "model", "training"].iter().any(|k| map.contains_key(*k));
    if looks_like_experiment && !map.contains_key("parameters") {
        return vec![problem(
            "$",
            format!(
                "this is an experiment file, not a sweep file (run it with `gymnos-host run`); a sweep file is {}",
                what_a_sweep_file_is()
            ),
        )];
    }
    let fields: Vec<&str> = REQUIRED.iter().chain(OPTIONAL.iter()).copied().collect();
    let mut problems: Vec<Problem> = Shape::of::<SweepFile>()
        .check(value)
        .into_iter()
        // Each parameter's form is checked below, in words that name the forms.
        .filter(|p| !p.path.starts_with("parameters."))
        .map(|mut p| {
            // The walker words the top of an experiment (sections); a sweep file has fields.
            if !p.path.contains('.') && p.path != "$" {
                if p.message.starts_with("unknown section") {
                    p.message = match suggest(&p.path, fields.iter().copied()) {
                        Some(near) => format!("unknown field; did you mean `{near}`? (fields: {})", fields.join(", ")),
                        None => format!("unknown field (fields: {})", fields.join(", ")),
                    };
                } else if p.message == "missing section" {
                    p.message = "missing field".into();
                }
            } else if let Some((parent, key)) = p.path.rsplit_once('.') {
                if p.message.starts_with("unknown field (fields: ") {
                    let listed = p.message.trim_start_matches("unknown field (fields: ").trim_end_matches(')');
                    let known: Vec<&str> = listed.split(", ").collect();
                    if let Some(near) = suggest(key, known.iter().copied()) {
                        p.message = format!("unknown field of `{parent}`; did you mean `{near}`? ({})", p.message);
                    }
                }
            }
            p
        })
        .collect();
    if let Some(Value::Object(parameters)) = map.get("parameters") {
        for (name, parameter) in parameters {
            if let Some(p) = parameter_problem(parameter) {
                problems.push(problem(&format!("parameters.{name}"), p));
            }
        }
    }
    // Shape names problems in the file's order of fields; parameters come in name order too.
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    problems.dedup_by(|a, b| a.path == b.path && a.message == b.message);
    problems
}

/// What is wrong with one parameter's form, if anything.
fn parameter_problem(parameter: &Value) -> Option<String> {
    let forms = format!(
        "a parameter is an object with one of {}: {{\"values\": [...]}}, {{\"range\": [start, stop, step]}}, \
         {{\"uniform\": [low, high]}}, {{\"log_uniform\": [low, high]}}, {{\"int_uniform\": [low, high]}}",
        PARAMETER_FORMS.join(", ")
    );
    let Value::Object(map) = parameter else {
        return Some(format!("expected an object, found {} ({forms})", json_type(parameter)));
    };
    let keys: Vec<&String> = map.keys().collect();
    let [key] = keys.as_slice() else {
        let given: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
        let given = if given.is_empty() { "none".to_string() } else { given.join(", ") };
        return Some(format!("has {given}; {forms}"));
    };
    let value = &map[key.as_str()];
    let numbers = |n: usize, integers: bool| -> Option<String> {
        let what = if integers { "integers" } else { "numbers" };
        let ok = value.as_array().is_some_and(|items| {
            items.len() == n && items.iter().all(|v| if integers { v.is_i64() } else { v.is_number() })
        });
        (!ok).then(|| format!("`{key}` takes a list of {n} {what}, found {value}"))
    };
    match key.as_str() {
        "values" if !value.is_array() => Some(format!("`values` takes a list, found {}", json_type(value))),
        "values" => None,
        "range" => numbers(3, false),
        "uniform" | "log_uniform" => numbers(2, false),
        "int_uniform" => {
            let problem = numbers(2, true);
            // A whole number past the 64-bit integers reads as a number, not an integer.
            problem.map(|p| match value.as_array().is_some_and(|a| a.iter().any(|v| v.is_u64() && !v.is_i64())) {
                true => format!("{p}: the bounds must lie within ±9223372036854775807"),
                false => p,
            })
        }
        other => Some(match suggest(other, PARAMETER_FORMS) {
            Some(near) => format!("`{other}` is not a form of parameter; did you mean `{near}`? ({forms})"),
            None => format!("`{other}` is not a form of parameter ({forms})"),
        }),
    }
}

/// How the file an `experiment` field names fails to be an experiment, if it does: a sweep
/// file (the sweep itself, or another), or JSON that is not an experiment's.
pub fn not_an_experiment(sweep: &Path, base: &Path) -> Option<String> {
    let same = match (sweep.canonicalize(), base.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if same {
        return Some(format!(
            "{} is this sweep file itself; `experiment` names the experiment file the sweep varies (with dataset, \
             model and training sections)",
            base.display()
        ));
    }
    // Unreadable or invalid JSON: the experiment's reader says so, at its line.
    let text = crate::fsio::read_text(base).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    let Value::Object(map) = &value else {
        return Some(format!(
            "{} is not an experiment: expected a JSON object with experiment, dataset, model and training \
             sections, found {}",
            base.display(),
            json_type(&value)
        ));
    };
    if map.contains_key("parameters") && map.get("experiment").is_some_and(Value::is_string) {
        return Some(format!(
            "{} is a sweep file, not an experiment; `experiment` names the experiment file the sweep varies \
             (with dataset, model and training sections)",
            base.display()
        ));
    }
    if !map.contains_key("dataset") && !map.contains_key("model") {
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        let found = if keys.is_empty() { "an empty object".to_string() } else { format!("fields {}", keys.join(", ")) };
        return Some(format!(
            "{} is not an experiment: it has no dataset and no model section ({found}); an experiment has \
             experiment, dataset, model and training sections",
            base.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn problems(value: Value) -> Vec<String> {
        structure(&value).iter().map(ToString::to_string).collect()
    }

    fn minimal() -> Value {
        json!({
            "name": "s", "experiment": "e.json",
            "parameters": { "training.optimizer.lr": { "values": [0.1] } },
            "metric": { "name": "val_loss", "direction": "min" }
        })
    }

    fn load_text(text: &str) -> Result<SweepFile, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        std::fs::write(&path, text).unwrap();
        load(&path).map_err(|e| e.to_string().replacen(&format!("{}: ", path.display()), "", 1))
    }

    #[test]
    fn a_valid_file_has_no_problems_and_a_bom_is_skipped() {
        assert_eq!(problems(minimal()), Vec::<String>::new());
        assert!(load_text(&format!("\u{feff}{}", minimal())).is_ok());
    }

    #[test]
    fn wrong_shapes_are_named_in_words() {
        assert_eq!(
            load_text("[]").unwrap_err(),
            "$: expected a JSON object with the fields name, experiment, parameters, metric (and optionally \
             output_root, trials, seed, executor, max_retries, early_stopping), found an array"
        );
        assert_eq!(
            load_text("{\"name\": \"trunc\", \"experiment\": \"base.json\", \"param\n").unwrap_err(),
            "the JSON ends early at line 2, column 0 (control character (\\u0000-\\u001F) found while parsing a \
             string): is the file truncated?"
        );
        assert!(load_text("{\"name\": \"x\",").unwrap_err().starts_with("the JSON ends early at line 1"));
        assert!(load_text("").unwrap_err().starts_with("the file is empty"));
        assert_eq!(load_text("{\"name\": x}").unwrap_err(), "invalid JSON at line 1, column 10: expected value");
        let mut v = minimal();
        v["metric"] = json!(["val_loss", "min"]);
        v["trials"] = json!("ten");
        v["executor"] = json!({ "kind": "kubernetes" });
        v["paramters"] = json!({});
        v["parameters"]["model.config.hidden"] = json!({ "value": [[8]] });
        v["parameters"]["x"] = json!({ "uniform": [1], "values": [] });
        v["parameters"]["y"] = json!({ "int_uniform": [0, 18446744073709551615u64] });
        assert_eq!(problems(v), [
            "executor.kind: `kubernetes` is not one of local, slurm",
            "metric: expected an object, found an array",
            "parameters.model.config.hidden: `value` is not a form of parameter; did you mean `values`? (a parameter \
             is an object with one of values, range, uniform, log_uniform, int_uniform: {\"values\": [...]}, \
             {\"range\": [start, stop, step]}, {\"uniform\": [low, high]}, {\"log_uniform\": [low, high]}, \
             {\"int_uniform\": [low, high]})",
            "parameters.x: has `uniform`, `values`; a parameter is an object with one of values, range, uniform, \
             log_uniform, int_uniform: {\"values\": [...]}, {\"range\": [start, stop, step]}, {\"uniform\": [low, \
             high]}, {\"log_uniform\": [low, high]}, {\"int_uniform\": [low, high]}",
            "parameters.y: `int_uniform` takes a list of 2 integers, found [0,18446744073709551615]: the bounds must \
             lie within ±9223372036854775807",
            "paramters: unknown field; did you mean `parameters`? (fields: name, experiment, parameters, metric, \
             output_root, trials, seed, executor, max_retries, early_stopping)",
            "trials: expected an integer or null, found a string",
        ]);
        let mut v = minimal();
        v["metric"] = json!({ "name": "val_loss", "direction": "up", "mode": 1 });
        v.as_object_mut().unwrap().remove("experiment");
        assert_eq!(
            problems(v),
            [
                "experiment: missing field",
                "metric.direction: `up` is not one of min, max",
                "metric.mode: unknown field (fields: direction, name)",
            ]
        );
        let experiment =
            json!({ "experiment": { "name": "x" }, "dataset": { "plugin": "csv" }, "model": { "plugin": "mlp" } });
        assert!(problems(experiment)[0].starts_with("$: this is an experiment file, not a sweep file"));
    }

    #[test]
    fn an_experiment_field_that_names_no_experiment_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let sweep = dir.path().join("s.json");
        std::fs::write(&sweep, minimal().to_string()).unwrap();
        assert!(not_an_experiment(&sweep, &sweep).unwrap().ends_with("is this sweep file itself; `experiment` names the experiment file the sweep varies (with dataset, model and training sections)"));
        let other = dir.path().join("other.json");
        std::fs::write(&other, minimal().to_string()).unwrap();
        assert!(not_an_experiment(&sweep, &other).unwrap().contains("is a sweep file, not an experiment"));
        std::fs::write(&other, "[1]").unwrap();
        assert!(not_an_experiment(&sweep, &other).unwrap().ends_with("found an array"));
        std::fs::write(&other, "{\"runs\": 1}").unwrap();
        assert!(not_an_experiment(&sweep, &other)
            .unwrap()
            .contains("it has no dataset and no model section (fields runs)"));
        std::fs::write(&other, "{\"dataset\": 1}").unwrap();
        assert_eq!(not_an_experiment(&sweep, &other), None, "an experiment with problems: its reader names them");
        assert_eq!(not_an_experiment(&sweep, &dir.path().join("missing.json")), None);
    }

    proptest! {
        /// Whatever JSON a sweep file holds, reading it never panics and a problem is named
        /// with words a person reads (no serde type names).
        #[test]
        fn any_json_is_read_or_refused_in_words(value in arb_json()) {
            let text = value.to_string();
            if let Err(message) = load_text(&text) {
                for internal in ["SweepFile", "struct ", "Parameter", "enum ", "variant"] {
                    prop_assert!(!message.contains(internal), "{message}");
                }
            }
        }

        /// Any prefix of a valid sweep file is refused with one line naming a line and column.
        #[test]
        fn any_truncation_is_named(cut in 0usize..200) {
            let text = serde_json::to_string_pretty(&minimal()).unwrap();
            let cut = cut.min(text.len() - 1);
            prop_assume!(text.is_char_boundary(cut));
            let message = load_text(&text[..cut]).unwrap_err();
            prop_assert!(!message.contains('\n'));
            prop_assert!(message.contains("line") || message.starts_with("the file is empty"), "{message}");
        }
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|n| json!(n)),
            prop::sample::select(vec!["name", "values", "min", "local", "slurm", "val_loss", "x"])
                .prop_map(|s| json!(s)),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            let keys = prop::sample::select(vec![
                "name",
                "experiment",
                "parameters",
                "metric",
                "direction",
                "executor",
                "kind",
                "trials",
                "values",
                "range",
                "uniform",
                "int_uniform",
                "early_stopping",
                "min_epochs",
                "lr",
            ]);
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
            ]
        })
    }
}
