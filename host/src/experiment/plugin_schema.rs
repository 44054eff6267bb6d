//! The installed plugins' configurations as JSON Schema, folded into the experiment's schema
//! (`gymnos-host schema`): each plugin section's `config` is described for the plugin it names,
//! with the keys' types, defaults, descriptions and rules, and the schemas plugins give for
//! their JSON keys (a model's layer list, say).

use gymnos_plugin_api::{ComponentKind, Constraint};
use serde_json::{json, Map, Value};

use crate::registry::{ComponentRecord, Registry};

fn key_schema(key: &crate::registry::ConfigKeyRecord) -> Value {
    let mut schema = match key.ty.as_str() {
        "bool" => json!({ "type": "boolean" }),
        "integer" => json!({ "type": "integer" }),
        "number" => json!({ "type": "number" }),
        "string" | "path" => json!({ "type": "string" }),
        "integer[]" => json!({ "type": "array", "items": { "type": "integer" } }),
        "number[]" => json!({ "type": "array", "items": { "type": "number" } }),
        "string[]" => json!({ "type": "array", "items": { "type": "string" } }),
        _ => key.schema.clone().unwrap_or(json!({})),
    };
    let obj = schema.as_object_mut().expect("object schemas");
    obj.insert("description".into(), json!(key.description));
    if let Some(default) = &key.default {
        obj.insert("default".into(), default.clone());
        if default.is_null() {
            // An optional value: null or the type.
            let inner = Value::Object(std::mem::take(obj));
            return json!({ "anyOf": [inner, { "type": "null" }], "default": null });
        }
    }
    let list = obj.get("type").is_some_and(|t| t == "array");
    for rule in &key.rules {
        let target = if list && matches!(rule, Constraint::Range { .. } | Constraint::OneOf { .. }) {
            obj.get_mut("items").and_then(Value::as_object_mut).expect("lists have items")
        } else {
            &mut *obj
        };
        match rule {
            Constraint::Range { min, max, exclusive_min, exclusive_max } => {
                if let Some(min) = min {
                    target.insert(if *exclusive_min { "exclusiveMinimum" } else { "minimum" }.into(), json!(min));
                }
                if let Some(max) = max {
                    target.insert(if *exclusive_max { "exclusiveMaximum" } else { "maximum" }.into(), json!(max));
                }
            }
            Constraint::OneOf { values } => {
                target.insert("enum".into(), json!(values));
            }
            Constraint::Url { schemes } => {
                target.insert("format".into(), json!("uri"));
                if !schemes.is_empty() {
                    // ECMA-262 patterns have no case flag: each letter of a scheme in both cases.
                    let any_case = |s: &String| -> String {
                        s.chars()
                            .map(|c| match c {
                                'a'..='z' | 'A'..='Z' => {
                                    format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                                }
                                '0'..='9' | '-' => c.to_string(),
                                _ => format!("[{c}]"),
                            })
                            .collect()
                    };
                    let alternatives: Vec<String> = schemes.iter().map(any_case).collect();
                    target.insert("pattern".into(), json!(format!("^({})://[^\\s?#]+$", alternatives.join("|"))));
                }
            }
            Constraint::Length { min, max } => {
                let (lo, hi) = if list { ("minItems", "maxItems") } else { ("minLength", "maxLength") };
                if let Some(min) = min {
                    target.insert(lo.into(), json!(min));
                }
                if let Some(max) = max {
                    target.insert(hi.into(), json!(max));
                }
            }
            _ => {}
        }
    }
    schema
}

/// The schema of one component's configuration object.
fn config_schema(component: &ComponentRecord) -> Value {
    let properties: Map<String, Value> = component.config.iter().map(|k| (k.name.clone(), key_schema(k))).collect();
    let required: Vec<&str> =
        component.config.iter().filter(|k| k.default.is_none()).map(|k| k.name.as_str()).collect();
    json!({
        "type": "object",
        "description": format!("{} {}: {}", component.name, component.version, component.description),
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}

/// `plugin` values that name `name`: `name`, `name@REQ`, with `-` and `_` alike.
fn name_pattern(name: &str) -> String {
    let escaped: String =
        name.chars().map(|c| if c == '-' || c == '_' { "[-_]".to_string() } else { c.to_string() }).collect();
    format!("^{escaped}(@.*)?$")
}

/// Adds, to the schema of each plugin section, the configuration schema of every installed
/// plugin of its kind (as `if plugin names it, then config is ...`).
pub fn add_plugin_schemas(schema: &mut Value, registry: &Registry) {
    let sections: [(ComponentKind, &[&str]); 5] = [
        (ComponentKind::Dataset, &["properties", "dataset"]),
        (ComponentKind::Preprocessor, &["properties", "preprocessors", "items"]),
        (ComponentKind::DataAugmentor, &["properties", "data_augmentors", "items"]),
        (ComponentKind::Model, &["properties", "model"]),
        (ComponentKind::Tracker, &["$defs", "Tracking", "properties", "trackers", "items"]),
    ];
    for (kind, path) in sections {
        let mut conditions: Vec<Value> = Vec::new();
        let mut seen = Vec::new();
        for installed in registry.installed().filter(|i| i.declared.kind() == Some(kind)) {
            let Some((_, component)) = installed.found else { continue };
            if seen.contains(&component.name) {
                continue; // one schema per name: the first (lowest version) listed
            }
            seen.push(component.name.clone());
            conditions.push(json!({
                "if": { "properties": { "plugin": { "pattern": name_pattern(&component.name) } }, "required": ["plugin"] },
                "then": { "properties": { "config": config_schema(component) } },
            }));
        }
        if conditions.is_empty() {
            continue;
        }
        let mut node = &mut *schema;
        for segment in path {
            node = &mut node[*segment];
        }
        let original = node.take();
        let mut all = vec![original];
        all.extend(conditions);
        *node = json!({ "allOf": all });
    }
}
