//! Declaring configuration keys, and reading a validated configuration.

use std::path::{Path, PathBuf};

use gymnos_plugin_api::{config::resolve_config, ConfigKey, ConfigType, CreateContext, DeviceSpec, PluginError, Task};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Declares an optional key with its default.
pub fn key(name: &str, ty: ConfigType, default: impl Into<Value>, description: &str) -> ConfigKey {
    ConfigKey {
        name: name.into(),
        ty,
        default_json: default.into().to_string().into(),
        description: description.into(),
    }
}

/// Declares a key the user must set.
pub fn required(name: &str, ty: ConfigType, description: &str) -> ConfigKey {
    ConfigKey { name: name.into(), ty, default_json: "".into(), description: description.into() }
}

/// A component's configuration, checked against its declared keys and completed with defaults.
#[derive(Clone, Debug)]
pub struct Config {
    component: String,
    values: Map<String, Value>,
}

impl Config {
    /// Validates `json` against `keys`. All problems are reported in one error.
    pub fn parse(component: &str, keys: &[ConfigKey], json: &str) -> Result<Self, PluginError> {
        let value: Value = if json.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(json)
                .map_err(|e| PluginError::config(format!("configuration is not valid JSON: {e}")))?
        };
        let values = resolve_config(keys, &value).map_err(|problems| {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            PluginError::config(list.join("; "))
        })?;
        Ok(Self { component: component.to_string(), values })
    }

    /// The value of a declared key, deserialized.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T, PluginError> {
        let value = self.values.get(name).ok_or_else(|| {
            PluginError::config(format!("{}: `{name}` is not a declared key", self.component))
        })?;
        serde_json::from_value(value.clone())
            .map_err(|e| PluginError::config(format!("{}: `{name}`: {e}", self.component)))
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
    pub input_shape: Vec<i64>,
    pub num_outputs: i64,
    pub task: Task,
    pub output_dir: Option<PathBuf>,
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
