//! A component's configuration: declared once as a struct (`#[derive(Config)]`, which implements
//! [`ConfigSchema`]), or, as in SDK 1.0, as a list of keys ([`key`], [`required`]) read with
//! [`ConfigValues::get`].

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use gymnos_plugin_api::{
    config::{check_constraints, resolve_config, KeyRules},
    ConfigKey, ConfigType, Constraint, CreateContext, DeviceSpec, PluginError, Task,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Declares an optional key with its default (SDK 1.0 style; `#[derive(Config)]` is simpler).
pub fn key(name: &str, ty: ConfigType, default: impl Into<Value>, description: &str) -> ConfigKey {
    KeySpec::new(name, ty, Some(default.into()), description).to_abi()
}

/// Declares a key the user must set (SDK 1.0 style).
pub fn required(name: &str, ty: ConfigType, description: &str) -> ConfigKey {
    KeySpec::new(name, ty, None, description).to_abi()
}

/// One configuration key in plain Rust types: what `#[derive(Config)]` produces per field.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySpec {
    pub name: String,
    pub ty: ConfigType,
    /// `None`: the key is required.
    pub default: Option<Value>,
    /// One line: what the key means.
    pub description: String,
    /// Rules its values must follow (plugin API 1.1).
    pub rules: Vec<Constraint>,
    /// A JSON Schema for a `json` key.
    pub schema: Option<Value>,
}

impl KeySpec {
    pub fn new(name: &str, ty: ConfigType, default: Option<Value>, description: &str) -> Self {
        Self { name: name.into(), ty, default, description: description.into(), rules: Vec::new(), schema: None }
    }

    /// The key as the 1.0 metadata declares it.
    pub fn to_abi(&self) -> ConfigKey {
        ConfigKey {
            name: self.name.as_str().into(),
            ty: self.ty,
            default_json: self.default.as_ref().map(Value::to_string).unwrap_or_default().into(),
            description: self.description.as_str().into(),
        }
    }
}

/// A configuration written as a struct: implemented by `#[derive(Config)]`.
pub trait ConfigSchema: Sized {
    /// The keys, with types, defaults, descriptions and rules.
    fn keys() -> Vec<KeySpec>;

    /// Reads the struct from a configuration already checked against `keys()`.
    fn from_config(config: &ConfigValues) -> Result<Self, PluginError>;

    /// Reads the struct from JSON, checked as the host would (tests, tools). Paths are resolved
    /// against the current folder.
    fn from_json(json: Value) -> Result<Self, PluginError> {
        let keys = Self::keys();
        let config = ConfigValues::resolve("config", &keys, &json.to_string(), &Context::standalone())?;
        Self::from_config(&config)
    }
}

/// The rules of a list of keys, by key name.
pub fn rules_of(keys: &[KeySpec]) -> KeyRules {
    keys.iter().filter(|k| !k.rules.is_empty()).map(|k| (k.name.clone(), k.rules.clone())).collect()
}

/// The JSON Schemas of a list of keys, by key name.
pub fn schemas_of(keys: &[KeySpec]) -> BTreeMap<String, Value> {
    keys.iter().filter_map(|k| Some((k.name.clone(), k.schema.clone()?))).collect()
}

/// A component's configuration values, checked against its declared keys and rules and completed
/// with defaults; `path` keys are absolute. (`Config` names the derive: the typed configuration.)
#[derive(Clone, Debug)]
pub struct ConfigValues {
    component: String,
    values: Map<String, Value>,
}

/// The name [`ConfigValues`] had before SDK 1.4, kept so that sources written for 1.0–1.3
/// compile; `Config` now names the derive. Not marked deprecated: the derive is imported by the
/// same name, and every such import would warn.
#[doc(hidden)]
pub type Config = ConfigValues;

fn one_error(problems: Vec<gymnos_plugin_api::config::ConfigProblem>) -> PluginError {
    let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
    PluginError::config(list.join("; "))
}

impl ConfigValues {
    /// Validates `json` against `keys` (SDK 1.0). All problems are reported in one error.
    pub fn parse(component: &str, keys: &[ConfigKey], json: &str) -> Result<Self, PluginError> {
        Self::checked(component, keys, &KeyRules::new(), json, None)
    }

    /// Validates `json` against `keys` and their rules, with `path` keys resolved against the
    /// context's folder: what the host's validation does, done again at creation.
    pub fn resolve(component: &str, keys: &[KeySpec], json: &str, ctx: &Context) -> Result<Self, PluginError> {
        let abi: Vec<ConfigKey> = keys.iter().map(KeySpec::to_abi).collect();
        Self::checked(component, &abi, &rules_of(keys), json, Some(ctx))
    }

    pub(crate) fn checked(
        component: &str,
        keys: &[ConfigKey],
        rules: &KeyRules,
        json: &str,
        ctx: Option<&Context>,
    ) -> Result<Self, PluginError> {
        let value: Value = if json.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(json)
                .map_err(|e| PluginError::config(format!("configuration is not valid JSON: {e}")))?
        };
        let mut values = resolve_config(keys, &value).map_err(one_error)?;
        if let Some(ctx) = ctx {
            for key in keys.iter().filter(|k| k.ty == ConfigType::Path) {
                if let Some(Value::String(p)) = values.get_mut(key.name.as_str()) {
                    *p = ctx.resolve(Path::new(p.as_str())).to_string_lossy().into_owned();
                }
            }
        }
        let problems = check_constraints(&values, rules);
        if !problems.is_empty() {
            return Err(one_error(problems));
        }
        Ok(Self { component: component.to_string(), values })
    }

    /// The value of a declared key, deserialized.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, PluginError> {
        let value = self
            .values
            .get(name)
            .ok_or_else(|| PluginError::config(format!("{}: `{name}` is not a declared key", self.component)))?;
        T::deserialize(value).map_err(|e| PluginError::config(format!("{}: `{name}`: {e}", self.component)))
    }

    /// A path key, resolved against the experiment's folder when relative.
    pub fn path(&self, name: &str, ctx: &Context) -> Result<PathBuf, PluginError> {
        let raw: String = self.get(name)?;
        Ok(ctx.resolve(Path::new(&raw)))
    }

    /// The whole resolved configuration.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.values
    }
}

/// What the host tells a component at creation, as plain Rust types.
#[derive(Clone, Debug)]
pub struct Context {
    pub device: tch::Device,
    pub seed: u64,
    /// Models: one input sample's shape after preprocessing.
    pub input_shape: Vec<i64>,
    /// Models and (since 1.1) data augmentors: classes, or regression targets.
    pub num_outputs: i64,
    /// Models and (since 1.1) data augmentors.
    pub task: Task,
    /// The run folder, where components may write files.
    pub output_dir: Option<PathBuf>,
    /// The folder relative paths are resolved against (the experiment's).
    pub base_dir: PathBuf,
}

impl Context {
    /// A context for using a component outside the host (tests, tools): CPU, seed 0.
    pub fn standalone() -> Self {
        Self {
            device: tch::Device::Cpu,
            seed: 0,
            input_shape: Vec::new(),
            num_outputs: 0,
            task: Task::Classification,
            output_dir: None,
            base_dir: std::env::current_dir().unwrap_or_default(),
        }
    }

    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    pub(crate) fn from_abi(ctx: &CreateContext<'_>) -> Self {
        let non_empty = |s: &str| (!s.is_empty()).then(|| PathBuf::from(s));
        Self {
            device: match ctx.device {
                DeviceSpec::Cpu => tch::Device::Cpu,
                DeviceSpec::Cuda(i) => tch::Device::Cuda(i as usize),
            },
            seed: ctx.seed,
            input_shape: ctx.input_shape.to_vec(),
            num_outputs: ctx.num_outputs,
            task: ctx.task,
            output_dir: non_empty(ctx.output_dir.as_str()),
            base_dir: non_empty(ctx.base_dir.as_str()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use gymnos_plugin_api::PathKind;
    use serde_json::json;

    use super::*;

    /// A configuration as plugin authors write it.
    #[derive(crate::Config, Debug, PartialEq)]
    struct Example {
        /// Sizes of the hidden layers.
        #[config(default = [64, 32], min = 1, non_empty)]
        hidden: Vec<i64>,
        /// Dropout probability.
        #[config(default = 0.1, range = 0.0..1.0)]
        dropout: f64,
        /// Activation
        /// function.
        #[config(default = "relu", one_of = ["relu", "gelu"])]
        activation: String,
        /// Where the data is.
        #[config(exists = "dir")]
        data: PathBuf,
        /// Keep only this many samples.
        limit: Option<u64>,
        /// The layers, as JSON.
        #[config(rename = "layer-list", ty = "json", default = [])]
        layers: Vec<Value>,
    }

    #[test]
    fn the_derive_declares_keys_and_reads_them_alike() {
        let keys = Example::keys();
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["hidden", "dropout", "activation", "data", "limit", "layer-list"]);
        assert_eq!(keys[0].ty, ConfigType::IntegerList);
        assert_eq!(keys[0].default, Some(json!([64, 32])));
        assert_eq!(keys[2].description, "Activation function.");
        assert_eq!(keys[3].default, None, "no default: required");
        assert_eq!(keys[3].rules, [Constraint::Exists { kind: PathKind::Dir }]);
        assert_eq!((keys[4].ty, keys[4].default.clone()), (ConfigType::Integer, Some(Value::Null)));
        assert_eq!(keys[5].ty, ConfigType::Json);
        assert_eq!(
            keys[1].rules,
            [Constraint::Range { min: Some(0.0), max: Some(1.0), exclusive_min: false, exclusive_max: true }]
        );

        let dir = std::env::temp_dir();
        let parsed = Example::from_json(json!({ "data": dir, "limit": 5 })).unwrap();
        assert_eq!(
            parsed,
            Example {
                hidden: vec![64, 32],
                dropout: 0.1,
                activation: "relu".into(),
                data: dir.clone(),
                limit: Some(5),
                layers: vec![]
            }
        );
        let err = Example::from_json(json!({ "data": dir, "dropout": 1.0, "hidden": [0], "colour": 1 })).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: colour: unknown key (accepted keys: hidden, dropout, activation, data, limit, \
             layer-list)"
        );
        let err = Example::from_json(json!({ "data": dir, "dropout": 1.0, "hidden": [0] })).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration error: dropout: 1.0 is not in [0, 1); hidden: item 0: 0 is not >= 1"
        );
        let err = Example::from_json(json!({})).unwrap_err();
        assert_eq!(err.to_string(), "configuration error: data: required key of type path is missing");
    }

    /// Bounds left out of the range (derive 1.3).
    #[derive(crate::Config, Debug, PartialEq)]
    struct Exclusive {
        /// A rate that must not be 0.
        #[config(default = 1.0, above = 0.0)]
        alpha: f64,
        /// Scales, each below 1.
        #[config(default = [0.5], below = 1)]
        scales: Vec<f64>,
    }

    #[test]
    fn above_and_below_leave_their_bound_out() {
        let keys = Exclusive::keys();
        assert_eq!(
            keys[0].rules,
            [Constraint::Range { min: Some(0.0), max: None, exclusive_min: true, exclusive_max: false }]
        );
        assert_eq!(
            keys[1].rules,
            [Constraint::Range { min: None, max: Some(1.0), exclusive_min: false, exclusive_max: true }]
        );
        assert_eq!(Exclusive::from_json(json!({ "alpha": 1e-9, "scales": [0.999] })).unwrap().alpha, 1e-9);
        let err = Exclusive::from_json(json!({ "alpha": 0, "scales": [0.2, 1] })).unwrap_err();
        assert_eq!(err.to_string(), "configuration error: alpha: 0 is not > 0; scales: item 1: 1 is not < 1");
    }
}
