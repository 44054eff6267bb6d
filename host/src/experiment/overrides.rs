//! `--set PATH=VALUE`: change one field of the experiment from the command line.

use serde_json::{Map, Value};

fn child<'v>(node: &'v Value, segment: &str) -> Option<&'v Value> {
    match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// Applies `path=value` to `root`. `path` is dotted (`training.optimizer.lr`); a number indexes
/// a list (`preprocessors.0.config.epsilon`). `value` is read as JSON when it parses (`3`,
/// `true`, `[64,32]`, `{"name":"sgd","lr":0.1}`) and as a string otherwise (`adamw`).
///
/// `defaults` is the experiment as it would run, defaults filled in (when the file is valid).
/// A path must name a field there, or a key inside a plugin's `config` (those are checked
/// against the plugin's declared keys later): an override that points at nothing is refused.
/// Objects the file leaves out are taken from `defaults` first, so `training.optimizer.lr=0.1`
/// changes the default optimizer's rate; an optional section left out (`null`) is started as `{}`.
pub fn apply_override(root: &mut Value, defaults: Option<&Value>, assignment: &str) -> Result<(), String> {
    let (path, raw) = assignment.split_once('=').ok_or("expected PATH=VALUE")?;
    let path = path.trim();
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let segments: Vec<&str> = path.split('.').collect();
    let mut node = root;
    let mut known = defaults;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let here = segments[..=i].join(".");
        let free_form = segments[..i].contains(&"config");
        let known_child = known.and_then(|k| child(k, segment));
        node = match node {
            Value::Object(map) => {
                if !map.contains_key(*segment) {
                    match known_child {
                        Some(default) => {
                            map.insert(segment.to_string(), default.clone());
                        }
                        None if known.is_some() && !free_form => {
                            let fields: Vec<&str> = known
                                .and_then(Value::as_object)
                                .map(|m| m.keys().map(String::as_str).collect())
                                .unwrap_or_default();
                            let parent = if i == 0 {
                                "the experiment".to_string()
                            } else {
                                format!("`{}`", segments[..i].join("."))
                            };
                            return Err(format!(
                                "`{here}` points at nothing: {parent} has no `{segment}` (it has: {})",
                                fields.join(", ")
                            ));
                        }
                        None => {
                            map.insert(segment.to_string(), Value::Object(Map::new()));
                        }
                    }
                }
                if last {
                    map.insert(segment.to_string(), value);
                    return Ok(());
                }
                let slot = map.get_mut(*segment).expect("inserted above");
                if slot.is_null() {
                    *slot = Value::Object(Map::new());
                }
                slot
            }
            Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| format!("`{here}`: a list needs a numeric index"))?;
                let len = items.len();
                let slot = items
                    .get_mut(index)
                    .ok_or_else(|| format!("`{here}`: index {index} is past the end (length {len})"))?;
                if last {
                    *slot = value;
                    return Ok(());
                }
                slot
            }
            other => {
                let kind = if other.is_null() { "null" } else { "a plain value" };
                return Err(format!("`{}` is {kind}, not an object", segments[..i].join(".")));
            }
        };
        // A section whose default is null (absent) has no known fields: the shape check after
        // the overrides names a wrong one.
        known = known_child.filter(|k| !k.is_null());
    }
    unreachable!("the loop returns at the last segment")
}

/// An override's path as problems name places: `preprocessors.0.config` -> `preprocessors[0].config`.
pub fn problem_path(assignment: &str) -> String {
    let path = assignment.split_once('=').map_or(assignment, |(p, _)| p).trim();
    let mut out = String::new();
    for segment in path.split('.') {
        if segment.parse::<usize>().is_ok() && !out.is_empty() {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_nested_fields_lists_and_strings() {
        let mut v = json!({"training": {"epochs": 10}, "preprocessors": [{"config": {}}]});
        apply_override(&mut v, None, "training.epochs=3").unwrap();
        apply_override(&mut v, None, "training.optimizer.name=sgd").unwrap();
        apply_override(&mut v, None, "preprocessors.0.config.hidden=[64,32]").unwrap();
        assert_eq!(
            v,
            json!({
                "training": {"epochs": 3, "optimizer": {"name": "sgd"}},
                "preprocessors": [{"config": {"hidden": [64, 32]}}]
            })
        );
        assert_eq!(apply_override(&mut v, None, "epochs").unwrap_err(), "expected PATH=VALUE");
        assert_eq!(
            apply_override(&mut v, None, "preprocessors.4.x=1").unwrap_err(),
            "`preprocessors.4`: index 4 is past the end (length 1)"
        );
        assert_eq!(
            apply_override(&mut v, None, "training.epochs.x=1").unwrap_err(),
            "`training.epochs` is a plain value, not an object"
        );
        assert_eq!(problem_path("preprocessors.0.config.x=1"), "preprocessors[0].config.x");
    }

    #[test]
    fn with_defaults_a_path_must_point_at_a_field_and_left_out_objects_start_from_their_defaults() {
        let defaults = json!({
            "training": { "epochs": 10, "optimizer": { "name": "adam", "lr": 0.001 }, "early_stopping": null },
            "model": { "plugin": "mlp", "config": {} }
        });
        let mut v = json!({ "training": { "epochs": 5 }, "model": { "plugin": "mlp" } });
        apply_override(&mut v, Some(&defaults), "training.optimizer.lr=0.1").unwrap();
        apply_override(&mut v, Some(&defaults), "model.config.hidden=[8]").unwrap();
        apply_override(&mut v, Some(&defaults), "training.early_stopping.patience=2").unwrap();
        assert_eq!(
            v,
            json!({
                "training": { "epochs": 5, "optimizer": { "name": "adam", "lr": 0.1 }, "early_stopping": { "patience": 2 } },
                "model": { "plugin": "mlp", "config": { "hidden": [8] } }
            })
        );
        assert_eq!(
            apply_override(&mut v, Some(&defaults), "training.epochz=3").unwrap_err(),
            "`training.epochz` points at nothing: `training` has no `epochz` (it has: early_stopping, epochs, optimizer)"
        );
        assert_eq!(
            apply_override(&mut v, Some(&defaults), "modle.plugin=x").unwrap_err(),
            "`modle` points at nothing: the experiment has no `modle` (it has: model, training)"
        );
    }
}
