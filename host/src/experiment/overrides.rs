//! `--set PATH=VALUE`: change one field of the experiment from the command line.

use serde_json::{Map, Value};

fn child<'v>(node: &'v Value, segment: &str) -> Option<&'v Value> {
    match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// The parts of an override's path: `preprocessors[0].config.x` and `preprocessors.0.config.x`
/// both give `preprocessors`, `0`, `config`, `x`.
fn parse_path(path: &str) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if name.contains(']') {
            return Err(format!("`{path}`: `]` without its `[`"));
        }
        if name.is_empty() && (segments.is_empty() || rest.is_empty()) {
            return Err(format!("`{path}`: an empty name (write `a.b.c`, with list indices as `a[0]` or `a.0`)"));
        }
        if !name.is_empty() {
            segments.push(name.to_string());
        }
        while !rest.is_empty() {
            let Some(close) = rest.find(']') else {
                return Err(format!("`{path}`: `[` without its `]`"));
            };
            let index = &rest[1..close];
            if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("`{path}`: `[{index}]` is not a list index (a number, as in `preprocessors[0]`)"));
            }
            segments.push(index.to_string());
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("`{path}`: `{rest}` after `]` (separate the next name with a dot)"));
            }
        }
    }
    Ok(segments)
}

/// How an override names a place, in the form problems use: `preprocessors[0].config`.
fn place(segments: &[String]) -> String {
    let mut out = String::new();
    for segment in segments {
        if !out.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
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

/// An override's text as messages show it: whole up to 80 characters, else its start and its
/// length (a generated value can be megabytes long).
pub(crate) fn shown(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        None => text.to_string(),
        Some((end, _)) => format!("{}... ({} characters)", &text[..end], text.chars().count()),
    }
}

/// The value of an override: JSON when it is JSON, else the text as a string. A value that
/// starts as JSON does (`[`, `{`, `"`) but does not parse, or a number too large for a double
/// (`1e400`), is refused, saying where the JSON went wrong: read as a string it would only
/// meet a type error later.
fn parse_value(raw: &str) -> Result<Value, String> {
    match serde_json::from_str(raw) {
        Ok(value) => Ok(value),
        Err(e) => {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            let looks_like_json = raw.trim_start().starts_with(['[', '{', '"']);
            if looks_like_json {
                Err(format!(
                    "the value `{}` is not valid JSON: {message} at column {} (a text starting with `[`, `{{` or `\"` is given as a JSON string)",
                    shown(raw),
                    e.column()
                ))
            } else if message.starts_with("number out of range") {
                Err(format!("the value `{raw}` is a number too large for a double (the largest is about 1.8e308)"))
            } else {
                Ok(Value::String(raw.to_string()))
            }
        }
    }
}

/// Applies `path=value` to `root`. `path` is dotted (`training.optimizer.lr`); a list is
/// indexed by a number, as a part (`preprocessors.0.config.epsilon`) or in brackets
/// (`preprocessors[0].config.epsilon`). `value` is read as JSON when it parses (`3`, `true`,
/// `[64,32]`, `{"name":"sgd","lr":0.1}`) and as a string otherwise (`adamw`); a value that
/// starts like JSON (`[`, `{`, `"`) must parse.
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
    let segments = parse_path(path)?;
    let value = parse_value(raw)?;
    let mut node = root;
    let mut known = defaults;
    for (i, segment) in segments.iter().enumerate() {
        let segment = segment.as_str();
        let last = i + 1 == segments.len();
        let here = place(&segments[..=i]);
        let free_form = segments[..i].iter().any(|s| s == "config");
        let known_child = known.and_then(|k| child(k, segment));
        node = match node {
            Value::Object(map) => {
                if !map.contains_key(segment) {
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
                                format!("`{}`", place(&segments[..i]))
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
                let slot = map.get_mut(segment).expect("inserted above");
                if slot.is_null() {
                    *slot = Value::Object(Map::new());
                }
                slot
            }
            Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| {
                    format!(
                        "`{here}`: `{}` is a list; index it with a number, as in `{}[0]`",
                        place(&segments[..i]),
                        place(&segments[..i])
                    )
                })?;
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
                return Err(format!("`{}` is {kind}, not an object", place(&segments[..i])));
            }
        };
        // A section whose default is null (absent) has no known fields: the shape check after
        // the overrides names a wrong one.
        known = known_child.filter(|k| !k.is_null());
    }
    unreachable!("the loop returns at the last segment")
}

/// An override's path as problems name places: `preprocessors.0.config` and
/// `preprocessors[0].config` -> `preprocessors[0].config`.
pub fn problem_path(assignment: &str) -> String {
    let path = assignment.split_once('=').map_or(assignment, |(p, _)| p).trim();
    match parse_path(path) {
        Ok(segments) => place(&segments),
        Err(_) => path.to_string(),
    }
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
            "`preprocessors[4]`: index 4 is past the end (length 1)"
        );
        assert_eq!(
            apply_override(&mut v, None, "training.epochs.x=1").unwrap_err(),
            "`training.epochs` is a plain value, not an object"
        );
        assert_eq!(problem_path("preprocessors.0.config.x=1"), "preprocessors[0].config.x");
        assert_eq!(problem_path("preprocessors[0].config.x=1"), "preprocessors[0].config.x");
    }

    #[test]
    fn list_indices_may_be_written_in_brackets() {
        let mut dotted = json!({"preprocessors": [{"config": {}}, {"config": {"m": [[1, 2], [3, 4]]}}]});
        let mut bracketed = dotted.clone();
        for (a, b) in [
            ("preprocessors.0.config.per_feature=false", "preprocessors[0].config.per_feature=false"),
            ("preprocessors.1.config.m.1.0=9", "preprocessors[1].config.m[1][0]=9"),
        ] {
            apply_override(&mut dotted, None, a).unwrap();
            apply_override(&mut bracketed, None, b).unwrap();
        }
        assert_eq!(dotted, bracketed);
        assert_eq!(bracketed["preprocessors"][1]["config"]["m"], json!([[1, 2], [9, 4]]));
        for (assignment, error) in [
            (
                "preprocessors[x].config=1",
                "`preprocessors[x].config`: `[x]` is not a list index (a number, as in `preprocessors[0]`)",
            ),
            (
                "preprocessors[].config=1",
                "`preprocessors[].config`: `[]` is not a list index (a number, as in `preprocessors[0]`)",
            ),
            ("preprocessors[0.config=1", "`preprocessors[0.config`: `[` without its `]`"),
            ("preprocessors0].config=1", "`preprocessors0].config`: `]` without its `[`"),
            (
                "preprocessors[0]config=1",
                "`preprocessors[0]config`: `config` after `]` (separate the next name with a dot)",
            ),
            (
                "training..epochs=1",
                "`training..epochs`: an empty name (write `a.b.c`, with list indices as `a[0]` or `a.0`)",
            ),
            ("[0].x=1", "`[0].x`: an empty name (write `a.b.c`, with list indices as `a[0]` or `a.0`)"),
            (
                "preprocessors.x=1",
                "`preprocessors.x`: `preprocessors` is a list; index it with a number, as in `preprocessors[0]`",
            ),
            ("preprocessors[7].x=1", "`preprocessors[7]`: index 7 is past the end (length 2)"),
        ] {
            assert_eq!(apply_override(&mut bracketed, None, assignment).unwrap_err(), error, "{assignment}");
        }
    }

    #[test]
    fn a_value_that_starts_like_json_must_parse() {
        let mut v = json!({"model": {"config": {}}});
        for (assignment, error) in [
            ("model.config.hidden=[32,]", "the value `[32,]` is not valid JSON: trailing comma at column 5 (a text starting with `[`, `{` or `\"` is given as a JSON string)"),
            ("model.config.x={\"a\":", "the value `{\"a\":` is not valid JSON: EOF while parsing a value at column 5 (a text starting with `[`, `{` or `\"` is given as a JSON string)"),
            ("model.config.x=\"open", "the value `\"open` is not valid JSON: EOF while parsing a string at column 5 (a text starting with `[`, `{` or `\"` is given as a JSON string)"),
            ("model.config.x= [1 2]", "the value ` [1 2]` is not valid JSON: expected `,` or `]` at column 5 (a text starting with `[`, `{` or `\"` is given as a JSON string)"),
            ("model.config.lr=1e400", "the value `1e400` is a number too large for a double (the largest is about 1.8e308)"),
            (
                &format!("model.config.x={}", "[".repeat(200)),
                &format!("the value `{}... (200 characters)` is not valid JSON: recursion limit exceeded at column 128 (a text starting with `[`, `{{` or `\"` is given as a JSON string)", "[".repeat(80)),
            ),
        ] {
            assert_eq!(apply_override(&mut v, None, assignment).unwrap_err(), error, "{assignment}");
        }
        // Text that is not JSON-like stays a string; a JSON string may start with a bracket.
        apply_override(&mut v, None, "model.config.path=2024-data.csv").unwrap();
        apply_override(&mut v, None, "model.config.name=adamw").unwrap();
        apply_override(&mut v, None, "model.config.label=\"[a\"").unwrap();
        apply_override(&mut v, None, "model.config.empty=").unwrap();
        assert_eq!(v["model"]["config"], json!({"path": "2024-data.csv", "name": "adamw", "label": "[a", "empty": ""}));
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
