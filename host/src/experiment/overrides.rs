//! `--set PATH=VALUE`: change one field of the experiment from the command line.

use serde_json::{Map, Value};

/// Applies `path=value` to `root`. `path` is dotted (`training.optimizer.lr`); a number indexes
/// an array (`preprocessors.0.config.epsilon`). `value` is read as JSON when it parses (`3`,
/// `true`, `[64,32]`, `{"name":"sgd","lr":0.1}`) and as a string otherwise (`adamw`).
/// Missing objects along the path are created.
pub fn apply_override(root: &mut Value, assignment: &str) -> Result<(), String> {
    let (path, raw) = assignment.split_once('=').ok_or("expected PATH=VALUE")?;
    let path = path.trim();
    if path.is_empty() {
        return Err("the path is empty".into());
    }
    let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
    let segments: Vec<&str> = path.split('.').collect();
    let mut node = root;
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let here = segments[..=i].join(".");
        node = match node {
            Value::Object(map) => {
                if last {
                    map.insert(segment.to_string(), value);
                    return Ok(());
                }
                map.entry(segment.to_string()).or_insert_with(|| Value::Object(Map::new()))
            }
            Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| format!("`{here}`: an array needs a numeric index"))?;
                let len = items.len();
                let slot = items.get_mut(index).ok_or_else(|| format!("`{here}`: index {index} is past the end (length {len})"))?;
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
    }
    unreachable!("the loop returns at the last segment")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sets_nested_fields_arrays_and_strings() {
        let mut v = json!({"training": {"epochs": 10}, "preprocessors": [{"config": {}}]});
        apply_override(&mut v, "training.epochs=3").unwrap();
        apply_override(&mut v, "training.optimizer.name=sgd").unwrap();
        apply_override(&mut v, "preprocessors.0.config.hidden=[64,32]").unwrap();
        assert_eq!(v, json!({
            "training": {"epochs": 3, "optimizer": {"name": "sgd"}},
            "preprocessors": [{"config": {"hidden": [64, 32]}}]
        }));
        assert_eq!(apply_override(&mut v, "epochs").unwrap_err(), "expected PATH=VALUE");
        assert_eq!(apply_override(&mut v, "preprocessors.4.x=1").unwrap_err(), "`preprocessors.4`: index 4 is past the end (length 1)");
        assert_eq!(apply_override(&mut v, "training.epochs.x=1").unwrap_err(), "`training.epochs` is a plain value, not an object");
    }
}
