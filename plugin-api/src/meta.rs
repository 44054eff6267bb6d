//! What components declare about themselves, and what the host tells them when it creates them.

use std::fmt;

use abi_stable::{
    std_types::{RStr, RString, RVec},
    StableAbi,
};

/// The five kinds of component a plugin can provide.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Dataset,
    Preprocessor,
    DataAugmentor,
    Model,
    Tracker,
}

impl ComponentKind {
    pub const ALL: [ComponentKind; 5] = [
        ComponentKind::Dataset,
        ComponentKind::Preprocessor,
        ComponentKind::DataAugmentor,
        ComponentKind::Model,
        ComponentKind::Tracker,
    ];

    /// The name used in the registry, the CLI and experiment files.
    pub const fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Dataset => "dataset",
            ComponentKind::Preprocessor => "preprocessor",
            ComponentKind::DataAugmentor => "data_augmentor",
            ComponentKind::Model => "model",
            ComponentKind::Tracker => "tracker",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let normalized = s.trim().to_ascii_lowercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == normalized || (normalized == "augmentor" && *k == Self::DataAugmentor))
    }
}

/// The longest component name: it names folders and crates.
pub const MAX_NAME_LEN: usize = 64;

/// The one rule for component names (checked by the host at load, the SDK's harness and
/// `plugins new`): 1 to 64 characters, lowercase ASCII letters, digits, `-` and `_`, starting
/// with a letter and not ending with `-` or `_`.
pub fn check_component_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with(['-', '_'])
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a component name: use 1 to {MAX_NAME_LEN} lowercase letters, digits, `-` or `_`, \
             starting with a letter"
        ))
    }
}

/// Names are compared with `-` and `_` taken as the same character, as Cargo and pip do:
/// `random_flip` finds `random-flip`.
pub fn normalized_name(name: &str) -> String {
    name.replace('_', "-")
}

impl fmt::Display for ComponentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON type a configuration key accepts.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigType {
    Bool,
    Integer,
    Number,
    String,
    /// A file or folder path (a string; relative paths are resolved by the host).
    Path,
    IntegerList,
    NumberList,
    StringList,
    /// Any JSON value; the component validates it itself.
    Json,
}

impl ConfigType {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConfigType::Bool => "bool",
            ConfigType::Integer => "integer",
            ConfigType::Number => "number",
            ConfigType::String => "string",
            ConfigType::Path => "path",
            ConfigType::IntegerList => "integer[]",
            ConfigType::NumberList => "number[]",
            ConfigType::StringList => "string[]",
            ConfigType::Json => "json",
        }
    }

    pub const ALL: [ConfigType; 9] = [
        ConfigType::Bool,
        ConfigType::Integer,
        ConfigType::Number,
        ConfigType::String,
        ConfigType::Path,
        ConfigType::IntegerList,
        ConfigType::NumberList,
        ConfigType::StringList,
        ConfigType::Json,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One configuration key a component accepts.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ConfigKey {
    pub name: RString,
    pub ty: ConfigType,
    /// The default as JSON text; empty when the key is required.
    pub default_json: RString,
    /// What the key means, one line.
    pub description: RString,
}

/// A component's self-description, returned by the library for each component it exports.
/// The API and libtorch versions are per library and live in the manifest.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct ComponentMeta {
    pub name: RString,
    pub kind: ComponentKind,
    /// The component's own semver version.
    pub version: RString,
    /// One line saying what it does.
    pub description: RString,
    pub config: RVec<ConfigKey>,
}

/// Where tensors live. `Cpu`, or `Cuda(index)`.
#[repr(C, u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSpec {
    Cpu,
    Cuda(u32),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// The learning task a dataset poses.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Classification,
    Regression,
}

/// What a dataset's samples are.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct DatasetInfo {
    pub task: Task,
    /// Shape of one sample's features (without the batch dimension).
    pub feature_shape: RVec<i64>,
    /// Number of classes (classification) or of target values per sample (regression).
    pub num_outputs: i64,
    /// Class names, in class-index order (empty for regression).
    pub class_names: RVec<RString>,
}

impl DatasetInfo {
    /// A classification data set: one output per class, named in class-index order.
    pub fn classification(feature_shape: Vec<i64>, class_names: Vec<String>) -> Self {
        Self {
            task: Task::Classification,
            feature_shape: feature_shape.into(),
            num_outputs: class_names.len() as i64,
            class_names: class_names.into_iter().map(RString::from).collect(),
        }
    }

    /// A regression data set with `num_outputs` target values per sample.
    pub fn regression(feature_shape: Vec<i64>, num_outputs: i64) -> Self {
        Self { task: Task::Regression, feature_shape: feature_shape.into(), num_outputs, class_names: RVec::new() }
    }
}

/// What the host tells a component when creating it. Fields that do not concern a kind are
/// left at their neutral value (empty shape, zero outputs...). Since API 1.1, data augmentors
/// get the task and the number of outputs too (mixing augmentors build soft targets from them).
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct CreateContext<'a> {
    /// Device the component's tensors must live on.
    pub device: DeviceSpec,
    /// Seed derived by the host from the experiment seed for this component.
    pub seed: u64,
    /// Model: shape of one input sample after preprocessing.
    pub input_shape: RVec<i64>,
    /// Model (and, since 1.1, data augmentor): number of outputs (classes, or regression targets).
    pub num_outputs: i64,
    /// Model (and, since 1.1, data augmentor): the task, which decides what the outputs mean.
    pub task: Task,
    /// Folder where the component may write files (the run folder); empty when none.
    pub output_dir: RStr<'a>,
    /// Folder relative paths in the configuration are resolved against (the experiment's).
    pub base_dir: RStr<'a>,
}

/// One named value, as sent to trackers.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: RString,
    pub value: f64,
}
