//! The stable ABI between `gymnos-host` and the plugins it loads.
//!
//! This crate holds only `#[repr(C)]`/`StableAbi` types and carries no libtorch dependency,
//! so the host's lightweight commands (`plugins list`, `--help`) can use it without loading
//! libtorch. Plugin authors use `gymnos-plugin-sdk`, which builds on this crate.
//!
//! A plugin library exports two symbols:
//! - [`manifest::MANIFEST_SYMBOL`]: a frozen C struct with the API and libtorch versions it was
//!   built against, read before anything else so incompatible libraries are never called;
//! - abi_stable's root module ([`module::PluginModuleRef`]): the component metadata and the
//!   factory that creates components.

pub mod component;
pub mod config;
pub mod error;
pub mod manifest;
pub mod meta;
pub mod module;
pub mod tensor;
pub mod version;

pub use component::{
    AugmentorBox, AugmentorObj, Component, DatasetBox, DatasetObj, ModelBox, ModelObj,
    PreprocessorBox, PreprocessorObj, TrackerBox, TrackerObj,
};
pub use error::{ErrorKind, PluginError};
pub use manifest::PluginManifest;
pub use meta::{
    ComponentKind, ComponentMeta, ConfigKey, ConfigType, CreateContext, DatasetInfo, DeviceSpec,
    Metric, Task,
};
pub use module::{PluginModule, PluginModuleRef};
pub use tensor::{LoadedData, NamedTensor, Samples, TensorHandle};
pub use version::{ApiVersion, API_VERSION};

/// Re-exported so that the SDK's macros and plugin crates use the exact same abi_stable.
pub use abi_stable;
