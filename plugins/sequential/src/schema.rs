//! The layer list's JSON Schema, and the check of a layer list against it.
//!
//! The schema is what `gymnos-host schema` shows for the `layers` key: one object per layer,
//! told apart by `type`, with its fields, their types and bounds. `build` checks the list
//! against the same schema before anything else, reporting problems as the host reports an
//! experiment's (`layers[2].type: `denze` is not one of dense, conv2d, ...`,
//! `layers[0].unitz: unknown field (fields: type, units)`), so the schema and the checks cannot
//! disagree.
//!
//! `residual` nests a layer list. JSON Schema would say that with a reference, but a key's
//! schema is folded into the experiment's, where references resolve against the experiment's
//! own definitions; the nesting is written out instead, [`SCHEMA_NESTING`] levels deep for the
//! declared schema (deeper lists are checked in `build`, with a schema as deep as they are).

use gymnos_plugin_sdk::serde_json::{json, Map, Value};

/// How many `residual` levels the declared schema spells out.
pub const SCHEMA_NESTING: usize = 4;

/// The layer types, in the order the schema lists them.
pub const LAYER_TYPES: [&str; 13] = [
    "dense",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "global_avg_pool",
    "batch_norm",
    "dropout",
    "flatten",
    "relu",
    "gelu",
    "tanh",
    "sigmoid",
    "residual",
];

/// Bounds that keep every layer's arithmetic far from overflow.
pub const MAX_UNITS: i64 = 1 << 20;
pub const MAX_WINDOW: i64 = 1 << 10;

/// The schema of the `layers` key (the derive's `schema = ...`).
pub fn layers_schema() -> Value {
    layer_list(SCHEMA_NESTING)
}

/// The schema of a layer list whose `residual` layers nest `nesting` levels deep.
pub fn layer_list(nesting: usize) -> Value {
    json!({ "type": "array", "items": { "oneOf": alternatives(nesting) } })
}

fn integer(min: i64, max: i64, description: &str) -> Value {
    json!({ "type": "integer", "minimum": min, "maximum": max, "description": description })
}

fn layer(ty: &str, description: &str, fields: Value, required: &[&str]) -> Value {
    let mut properties = Map::new();
    properties.insert("type".into(), json!({ "const": ty }));
    if let Value::Object(fields) = fields {
        properties.extend(fields);
    }
    let mut names = vec!["type"];
    names.extend_from_slice(required);
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": names,
        "additionalProperties": false,
    })
}

fn alternatives(nesting: usize) -> Vec<Value> {
    let window = |what: &str| integer(1, MAX_WINDOW, what);
    let pool = |ty: &str, what: &str| {
        layer(
            ty,
            &format!("{what} pooling of an image [channels, height, width] over size x size windows"),
            json!({
                "size": window("Side of the square window"),
                "stride": window("Step between windows (default: size)"),
            }),
            &["size"],
        )
    };
    let activation = |ty: &str| layer(ty, &format!("{ty}, element-wise"), json!({}), &[]);
    let inner = if nesting == 0 {
        json!({ "type": "array", "items": { "type": "object" }, "description": "Layers (checked when the model is built)" })
    } else {
        let mut list = layer_list(nesting - 1);
        list["description"] = json!("Layers whose output has the shape of their input");
        list
    };
    vec![
        layer(
            "dense",
            "Fully connected layer on a vector [features]",
            json!({ "units": integer(1, MAX_UNITS, "Output features") }),
            &["units"],
        ),
        layer(
            "conv2d",
            "2-D convolution of an image [channels, height, width] with square kernels",
            json!({
                "filters": integer(1, MAX_UNITS, "Output channels"),
                "kernel_size": window("Side of the square kernel"),
                "stride": window("Step of the kernel (default 1)"),
                "padding": {
                    "description": "same (the output is the input's size divided by the stride, rounded up; the default), valid (none), or pixels on each side",
                    "anyOf": [
                        { "type": "string", "enum": ["same", "valid"] },
                        { "type": "integer", "minimum": 0, "maximum": MAX_WINDOW }
                    ]
                },
            }),
            &["filters", "kernel_size"],
        ),
        pool("max_pool2d", "Max"),
        pool("avg_pool2d", "Average"),
        layer("global_avg_pool", "Mean over height and width: [channels, height, width] to [channels]", json!({}), &[]),
        layer(
            "batch_norm",
            "Batch normalization over the first dimension of [features], [channels, length], [channels, height, width] or [channels, depth, height, width]",
            json!({}),
            &[],
        ),
        layer(
            "dropout",
            "Zeroes each value with probability rate while training",
            json!({ "rate": { "type": "number", "minimum": 0, "exclusiveMaximum": 1, "description": "Probability of zeroing a value" } }),
            &["rate"],
        ),
        layer("flatten", "All dimensions into one: [a, b, c] to [a*b*c]", json!({}), &[]),
        activation("relu"),
        activation("gelu"),
        activation("tanh"),
        activation("sigmoid"),
        layer(
            "residual",
            "Adds its input to the output of its layers, which must keep the input's shape",
            json!({ "layers": inner }),
            &["layers"],
        ),
    ]
}

/// How deep `residual` layers nest in a layer list (0: none).
pub fn nesting(layers: &Value) -> usize {
    let Value::Array(items) = layers else { return 0 };
    items.iter().filter_map(|layer| layer.get("layers")).map(|inner| 1 + nesting(inner)).max().unwrap_or(0)
}

/// `a.b`, as the host names places.
fn join(path: &str, key: &str) -> String {
    format!("{path}.{key}")
}

fn found(value: &Value) -> &'static str {
    gymnos_plugin_sdk::api::config::json_type_name(value)
}

fn type_name(ty: &str) -> &str {
    match ty {
        "object" => "an object",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        other => other,
    }
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        _ => true,
    }
}

fn show(value: &Value) -> String {
    value.as_str().map_or_else(|| value.to_string(), |s| format!("`{s}`"))
}

/// Every problem of `value` against `schema` (one of this module's), in document order, as
/// `path: message`.
pub fn check(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let Value::Object(s) = schema else { return };
    let mut problem = |message: String| problems.push(format!("{path}: {message}"));
    if let Some(Value::Array(alternatives)) = s.get("oneOf") {
        return check_tagged(alternatives, value, path, problems);
    }
    if let Some(Value::Array(alternatives)) = s.get("anyOf") {
        let accepting = alternatives.iter().find(|a| a["type"].as_str().is_some_and(|t| type_matches(t, value)));
        return match accepting {
            Some(alternative) => check(alternative, value, path, problems),
            None => {
                let expected: Vec<&str> =
                    alternatives.iter().filter_map(|a| a["type"].as_str()).map(type_name).collect();
                problem(format!("expected {}, found {}", expected.join(" or "), found(value)))
            }
        };
    }
    if let Some(ty) = s.get("type").and_then(Value::as_str) {
        if !type_matches(ty, value) {
            return problem(format!("expected {}, found {}", type_name(ty), found(value)));
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum") {
        if !allowed.contains(value) {
            let names: Vec<String> =
                allowed.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).collect();
            return problem(format!("{} is not one of {}", show(value), names.join(", ")));
        }
    }
    match value {
        Value::Object(map) => {
            let properties = s.get("properties").and_then(Value::as_object);
            for (key, v) in map {
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => check(property, v, &join(path, key), problems),
                    None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        let fields: Vec<&str> =
                            properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                        problems.push(format!("{}: unknown field (fields: {})", join(path, key), fields.join(", ")));
                    }
                    None => {}
                }
            }
            for required in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
            {
                if !map.contains_key(required) {
                    problems.push(format!("{}: missing field", join(path, required)));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = s.get("items") {
                for (i, v) in items.iter().enumerate() {
                    check(item, v, &format!("{path}[{i}]"), problems);
                }
            }
        }
        Value::Number(n) => {
            let v = n.as_f64().unwrap_or(0.0);
            let bound = |key: &str| s.get(key).and_then(Value::as_f64);
            if let Some(min) = bound("minimum").filter(|&min| v < min) {
                problem(format!("{n} is below the smallest value allowed, {min}"));
            } else if let Some(max) = bound("maximum").filter(|&max| v > max) {
                problem(format!("{n} is above the largest value allowed, {max}"));
            } else if let Some(max) = bound("exclusiveMaximum").filter(|&max| v >= max) {
                problem(format!("{n} is not below {max}"));
            }
        }
        _ => {}
    }
}

/// Alternatives told apart by the constant of their `type` field.
fn check_tagged(alternatives: &[Value], value: &Value, path: &str, problems: &mut Vec<String>) {
    let Value::Object(map) = value else {
        return problems.push(format!("{path}: expected an object, found {}", found(value)));
    };
    let tags: Vec<&Value> = alternatives.iter().map(|a| &a["properties"]["type"]["const"]).collect();
    let names =
        || tags.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), String::from)).collect::<Vec<_>>().join(", ");
    match map.get("type") {
        None => problems.push(format!("{}: missing field (one of {})", join(path, "type"), names())),
        Some(given) => match tags.iter().position(|t| *t == given) {
            Some(i) => check(&alternatives[i], value, path, problems),
            None => problems.push(format!("{}: {} is not one of {}", join(path, "type"), show(given), names())),
        },
    }
}
