//! Validation of a component's configuration against the keys it declares, and the rules on
//! their values.
//!
//! One implementation for both sides: the host runs it on every plugin section of an experiment
//! before anything runs (and reports every problem), and the SDK runs it again when a component
//! is created, so a component never sees an unknown key, a wrong type, a missing default or a
//! value outside its declared rules.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::{
    constraint::{self, Constraint},
    meta::{ConfigKey, ConfigType},
};

/// One thing wrong with a configuration, with the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key (empty when the configuration as a whole is wrong).
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl ConfigType {
    /// Whether `value` has this type.
    pub fn matches(self, value: &Value) -> bool {
        let all = |items: &Vec<Value>, f: fn(&Value) -> bool| items.iter().all(f);
        match (self, value) {
            (ConfigType::Bool, Value::Bool(_)) => true,
            (ConfigType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
            (ConfigType::Number, Value::Number(_)) => true,
            (ConfigType::String | ConfigType::Path, Value::String(_)) => true,
            (ConfigType::IntegerList, Value::Array(a)) => all(a, |v| v.is_i64() || v.is_u64()),
            (ConfigType::NumberList, Value::Array(a)) => all(a, Value::is_number),
            (ConfigType::StringList, Value::Array(a)) => all(a, Value::is_string),
            (ConfigType::Json, _) => true,
            _ => false,
        }
    }
}

/// What kind of JSON value `value` is, as messages say it: `a string`, `an array`...
pub fn json_type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Checks `config` (a JSON object, or null for "all defaults") against `keys` and returns it
/// completed with the defaults of the keys it does not set. Collects every problem.
pub fn resolve_config(keys: &[ConfigKey], config: &Value) -> Result<Map<String, Value>, Vec<ConfigProblem>> {
    let given = match config {
        Value::Null => Map::new(),
        Value::Object(map) => map.clone(),
        other => {
            return Err(vec![ConfigProblem {
                key: String::new(),
                message: format!("expected an object, found {}", json_type_name(other)),
            }])
        }
    };
    let mut problems = Vec::new();
    for name in given.keys() {
        if !keys.iter().any(|k| k.name.as_str() == name) {
            let known: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            problems
                .push(ConfigProblem { key: name.clone(), message: format!("unknown key (accepted keys: {known})") });
        }
    }
    let mut resolved = Map::new();
    for key in keys {
        let name = key.name.as_str();
        match given.get(name) {
            // An optional value (declared with a null default) may be given as null.
            Some(Value::Null) if key.default_json.as_str() == "null" => {
                resolved.insert(name.to_string(), Value::Null);
            }
            Some(value) if key.ty.matches(value) => {
                resolved.insert(name.to_string(), value.clone());
            }
            Some(value) => problems.push(ConfigProblem {
                key: name.to_string(),
                message: format!("expected {}, found {}", key.ty.as_str(), json_type_name(value)),
            }),
            None if key.default_json.is_empty() => problems.push(ConfigProblem {
                key: name.to_string(),
                message: format!("required key of type {} is missing", key.ty.as_str()),
            }),
            None => match serde_json::from_str(key.default_json.as_str()) {
                Ok(default) => {
                    resolved.insert(name.to_string(), default);
                }
                Err(e) => problems.push(ConfigProblem {
                    key: name.to_string(),
                    message: format!("the plugin declares an invalid default: {e}"),
                }),
            },
        }
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}

/// Rules per key name, as a component declares them.
pub type KeyRules = BTreeMap<String, Vec<Constraint>>;

/// Checks a resolved configuration (paths already absolute) against the rules of its keys.
/// Collects every problem, in key order.
pub fn check_constraints(resolved: &Map<String, Value>, rules: &KeyRules) -> Vec<ConfigProblem> {
    rules
        .iter()
        .filter_map(|(key, rules)| {
            let value = resolved.get(key)?;
            constraint::check(value, rules).err().map(|v| ConfigProblem { key: key.clone(), message: v.0 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str, ty: ConfigType, default: &str) -> ConfigKey {
        ConfigKey { name: name.into(), ty, default_json: default.into(), description: "".into() }
    }

    #[test]
    fn fills_defaults_and_reports_every_problem() {
        let keys = [
            key("lr", ConfigType::Number, "0.1"),
            key("hidden", ConfigType::IntegerList, "[64]"),
            key("path", ConfigType::Path, ""),
        ];
        let ok = resolve_config(&keys, &json!({"path": "x", "lr": 1})).unwrap();
        assert_eq!(Value::Object(ok), json!({"lr": 1, "hidden": [64], "path": "x"}));

        let problems = resolve_config(&keys, &json!({"hidden": [1.5], "color": "red"})).unwrap_err();
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "color: unknown key (accepted keys: lr, hidden, path)",
                "hidden: expected integer[], found an array",
                "path: required key of type path is missing",
            ]
        );
        assert_eq!(
            resolve_config(&keys, &json!([1])).unwrap_err()[0].to_string(),
            "expected an object, found an array"
        );
    }

    #[test]
    fn optional_keys_take_null_and_rules_name_their_key() {
        let keys = [key("limit", ConfigType::Integer, "null"), key("dropout", ConfigType::Number, "0.1")];
        let resolved = resolve_config(&keys, &json!({ "limit": null, "dropout": 1.5 })).unwrap();
        assert_eq!(resolved["limit"], Value::Null);
        let rules = KeyRules::from([
            (
                "dropout".to_string(),
                vec![Constraint::Range { min: Some(0.0), max: Some(1.0), exclusive_min: false, exclusive_max: true }],
            ),
            (
                "limit".to_string(),
                vec![Constraint::Range { min: Some(1.0), max: None, exclusive_min: false, exclusive_max: false }],
            ),
        ]);
        let problems: Vec<String> = check_constraints(&resolved, &rules).iter().map(ToString::to_string).collect();
        assert_eq!(problems, ["dropout: 1.5 is not in [0, 1)"]);
        let not_null =
            resolve_config(&[key("hidden", ConfigType::Integer, "8")], &json!({ "hidden": null })).unwrap_err();
        assert_eq!(not_null[0].to_string(), "hidden: expected integer, found null");
    }
}
