//! The structure of an experiment file, checked against the experiment's JSON Schema (the one
//! `gymnos-host schema` prints) before serde reads it, so that every problem is reported at its
//! exact path.
//!
//! serde alone would accept a JSON array where an object is expected (it reads structs from
//! sequences by position), lose the path of a field inside a tagged section (the optimizer,
//! the learning-rate schedule), and stop at the first problem of a section. The schema says all
//! of it, so one walker over schema and value reports: values of the wrong JSON type, unknown
//! and missing fields, unknown tags and enum values, numbers out of their type's range and
//! lists of the wrong length.

use schemars::JsonSchema;
use serde_json::{Map, Value};

use super::Problem;

/// A JSON Schema (as schemars writes it) to check values against.
pub struct Shape {
    schema: Value,
}

/// `a.b`, `a[0]`: how problems name places.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn here(path: &str) -> String {
    if path.is_empty() {
        "$".into()
    } else {
        path.to_string()
    }
}

fn found(value: &Value) -> &'static str {
    gymnos_plugin_api::config::json_type_name(value)
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => true,
    }
}

fn type_name(ty: &str) -> &str {
    match ty {
        "object" => "an object",
        "array" => "a list",
        "string" => "a string",
        "boolean" => "a bool",
        "null" => "null",
        "integer" => "an integer",
        "number" => "a number",
        other => other,
    }
}

/// The JSON types a schema node allows (`None`: any).
fn types_of(schema: &Map<String, Value>) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn show(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), |s| format!("`{s}`"))
}

impl Shape {
    pub fn of<T: JsonSchema>() -> Self {
        Self { schema: serde_json::to_value(schemars::schema_for!(T)).expect("schemas serialize") }
    }

    /// A JSON Schema given as a value: a plugin's schema for a `json` key.
    pub fn from_schema(schema: Value) -> Self {
        Self { schema }
    }

    /// Every structural problem of `value`, in document order.
    pub fn check(&self, value: &Value) -> Vec<Problem> {
        self.check_at(value, "")
    }

    /// Every structural problem of `value`, named under `path` (`model.config.layers`).
    pub fn check_at(&self, value: &Value, path: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        self.node(&self.schema, value, path, &mut problems);
        problems
    }

    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")) {
            Some(name) => self.schema["$defs"].get(name).map_or(&Value::Bool(true), |s| self.resolve(s)),
            None => schema,
        }
    }

    fn node(&self, schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
        let Value::Object(s) = self.resolve(schema) else { return };
        let problem = |message: String| Problem { path: here(path), message };
        if let Some(Value::Array(alternatives)) = s.get("oneOf").or_else(|| s.get("anyOf")) {
            return self.alternatives(alternatives, value, path, problems);
        }
        if let Some(types) = types_of(s) {
            if !types.iter().any(|t| type_matches(t, value)) {
                let expected: Vec<&str> = types.iter().map(|t| type_name(t)).collect();
                return problems.push(problem(format!("expected {}, found {}", expected.join(" or "), found(value))));
            }
        }
        if let Some(Value::Array(allowed)) = s.get("enum") {
            if !allowed.contains(value) {
                let names: Vec<String> =
                    allowed.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).collect();
                return problems.push(problem(format!("{} is not one of {}", show(value), names.join(", "))));
            }
        }
        match value {
            Value::Object(map) => self.object(s, map, path, problems),
            Value::Array(items) => {
                let len = items.len() as u64;
                let min = s.get("minItems").and_then(Value::as_u64);
                let max = s.get("maxItems").and_then(Value::as_u64);
                if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
                    let wanted = match (min, max) {
                        (Some(a), Some(b)) if a == b => format!("{a}"),
                        (Some(a), Some(b)) => format!("{a} to {b}"),
                        (Some(a), None) => format!("at least {a}"),
                        (None, Some(b)) => format!("at most {b}"),
                        (None, None) => unreachable!(),
                    };
                    return problems.push(problem(format!("has {len} items, expected {wanted}")));
                }
                if let Some(item) = s.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.node(item, v, &format!("{}[{i}]", here(path)), problems);
                    }
                }
            }
            Value::Number(n) => {
                let (lo, hi) = match s.get("format").and_then(Value::as_str) {
                    Some("uint8") => (0.0, u8::MAX as f64),
                    Some("uint16") => (0.0, u16::MAX as f64),
                    Some("uint32") => (0.0, u32::MAX as f64),
                    Some("uint64" | "uint") => (0.0, u64::MAX as f64),
                    Some("int32") => (i32::MIN as f64, i32::MAX as f64),
                    _ => (f64::NEG_INFINITY, f64::INFINITY),
                };
                let lo = s.get("minimum").and_then(Value::as_f64).map_or(lo, |m| m.max(lo));
                let v = n.as_f64().unwrap_or(0.0);
                if v < lo {
                    problems.push(problem(format!("{n} is below the smallest value allowed, {lo}")));
                } else if v > hi {
                    problems.push(problem(format!("{n} is above the largest value allowed, {hi}")));
                }
            }
            _ => {}
        }
    }

    fn object(&self, s: &Map<String, Value>, map: &Map<String, Value>, path: &str, problems: &mut Vec<Problem>) {
        let properties = s.get("properties").and_then(Value::as_object);
        let root = path.is_empty();
        for (key, value) in map {
            match (properties.and_then(|p| p.get(key)), s.get("additionalProperties")) {
                (Some(property), _) => self.node(property, value, &join(path, key), problems),
                (None, Some(Value::Bool(false))) => {
                    let fields: Vec<&str> =
                        properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                    let (what, plural) = if root { ("section", "sections") } else { ("field", "fields") };
                    problems.push(Problem {
                        path: join(path, key),
                        message: format!("unknown {what} ({plural}: {})", fields.join(", ")),
                    });
                }
                (None, Some(extra @ Value::Object(_))) => self.node(extra, value, &join(path, key), problems),
                (None, _) => {}
            }
        }
        for required in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(required) {
                let what = if root { "missing section" } else { "missing field" };
                problems.push(Problem { path: join(path, required), message: what.into() });
            }
        }
    }

    /// `oneOf`/`anyOf`: enum values, tagged sections (objects told apart by a constant field),
    /// or alternatives of different JSON types (`Option<T>`: T or null).
    fn alternatives(&self, alternatives: &[Value], value: &Value, path: &str, problems: &mut Vec<Problem>) {
        let alts: Vec<&Map<String, Value>> = alternatives.iter().filter_map(|a| self.resolve(a).as_object()).collect();
        let problem = |message: String| Problem { path: here(path), message };
        // Enum values: each alternative a constant or a list of them (schemars writes the
        // variants with doc comments as constants, the others as one `enum`).
        if alts.iter().all(|a| a.contains_key("const") || a.contains_key("enum")) {
            let allowed: Vec<&Value> = alts
                .iter()
                .flat_map(|a| match (a.get("const"), a.get("enum")) {
                    (Some(c), _) => vec![c],
                    (None, Some(Value::Array(values))) => values.iter().collect(),
                    _ => Vec::new(),
                })
                .collect();
            let names: Vec<String> =
                allowed.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).collect();
            if !allowed.contains(&value) {
                problems.push(problem(format!("{} is not one of {}", show(value), names.join(", "))));
            }
            return;
        }
        // Tagged sections: the field every alternative holds a constant of.
        let tag = alts.first().and_then(|first| {
            first.get("properties")?.as_object()?.iter().find_map(|(key, prop)| {
                let tagged = |a: &&Map<String, Value>| {
                    a.get("properties").and_then(|p| p.get(key)).is_some_and(|p| p.get("const").is_some())
                };
                (prop.get("const").is_some() && alts.iter().all(tagged)).then_some(key.as_str())
            })
        });
        if let (Some(tag), Value::Object(map)) = (tag, value) {
            let consts: Vec<&Value> = alts.iter().map(|a| &a["properties"][tag]["const"]).collect();
            let names: Vec<String> =
                consts.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).collect();
            match map.get(tag) {
                None => problems.push(Problem {
                    path: join(path, tag),
                    message: format!("missing field (one of {})", names.join(", ")),
                }),
                Some(given) => match consts.iter().position(|c| *c == given) {
                    Some(i) => self.node(&Value::Object(alts[i].clone()), value, path, problems),
                    None => problems.push(Problem {
                        path: join(path, tag),
                        message: format!("{} is not one of {}", show(given), names.join(", ")),
                    }),
                },
            }
            return;
        }
        let accepting = alts.iter().find(|a| types_of(a).is_none_or(|ts| ts.iter().any(|t| type_matches(t, value))));
        match accepting {
            Some(alt) => self.node(&Value::Object((*alt).clone()), value, path, problems),
            None => {
                let mut expected: Vec<&str> =
                    alts.iter().flat_map(|a| types_of(a).unwrap_or_default()).map(type_name).collect();
                expected.dedup();
                problems.push(problem(format!("expected {}, found {}", expected.join(" or "), found(value))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::experiment::Experiment;

    fn problems(value: Value) -> Vec<String> {
        Shape::of::<Experiment>().check(&value).iter().map(ToString::to_string).collect()
    }

    fn minimal() -> Value {
        json!({ "experiment": { "name": "x" }, "dataset": { "plugin": "csv" }, "model": { "plugin": "mlp" } })
    }

    #[test]
    fn a_valid_experiment_has_no_problems() {
        assert!(problems(minimal()).is_empty());
        let mut full = minimal();
        full["training"] = json!({
            "optimizer": { "name": "sgd", "lr": 0.1, "momentum": 0.9 },
            "lr_schedule": { "name": "cosine" },
            "callbacks": { "early_stopping": { "patience": 3 } },
            "precision": "fp16"
        });
        assert_eq!(problems(full), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_named_at_its_exact_path() {
        let mut v = minimal();
        v["training"] = json!({
            "epochs": "ten",
            "optimizer": { "name": "sgd", "lr": "fast", "momentun": 0.9 },
            "lr_schedule": { "name": "exponential" },
            "callbacks": { "early_stopping": [3, 0.1], "checkpoint": [] },
            "precision": "fp64",
            "batch_size": -1
        });
        v["preprocessors"] = json!({ "plugin": "standardize" });
        v["data_augmentors"] = json!([["random-flip"]]);
        v["extra"] = json!(1);
        assert_eq!(problems(v), [
            "data_augmentors[0]: expected an object, found an array",
            "extra: unknown section (sections: data_augmentors, dataset, experiment, model, preprocessors, tracking, training)",
            "preprocessors: expected a list, found an object",
            "training.batch_size: -1 is below the smallest value allowed, 0",
            "training.callbacks.checkpoint: expected an object, found an array",
            "training.callbacks.early_stopping: expected an object or null, found an array",
            "training.epochs: expected an integer, found a string",
            "training.lr_schedule.name: `exponential` is not one of constant, step, cosine",
            "training.optimizer.lr: expected a number, found a string",
            "training.optimizer.momentun: unknown field (fields: lr, momentum, name, nesterov, weight_decay)",
            "training.precision: `fp64` is not one of fp32, fp16, bf16",
        ]);
        assert_eq!(problems(json!([1, 2])), ["$: expected an object, found an array"]);
        assert_eq!(
            problems(json!({ "experiment": { "name": "x" } })),
            ["dataset: missing section", "model: missing section"]
        );
        let mut v = minimal();
        v["training"] = json!({ "optimizer": { "lr": 0.1 }, "lr_schedule": { "name": "step" } });
        assert_eq!(
            problems(v),
            [
                "training.lr_schedule.step_size: missing field",
                "training.optimizer.name: missing field (one of sgd, adam, adamw)"
            ]
        );
    }
}
