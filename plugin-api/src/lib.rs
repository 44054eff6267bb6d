//! The stable ABI between `gymnos-host` and the plugins it loads.
//!
//! This crate holds the `#[repr(C)]`/`StableAbi` types of the boundary, and what both sides must
//! compute the same way: configuration validation and its rules, the seed streams. It carries no
//! libtorch dependency, so the host's lightweight commands (`plugins list`, `validate`) use it
//! without loading libtorch. Plugin authors use `gymnos-plugin-sdk`, which builds on this crate.
//!
//! A plugin library exports these symbols:
//! - [`manifest::MANIFEST_SYMBOL`]: a frozen C struct with the API and libtorch versions it was
//!   built against, read before anything else so incompatible libraries are never called;
//! - abi_stable's root module ([`module::PluginModuleRef`]): the component metadata and the
//!   factory that creates components. Its layout, and that of the component traits, is the one of
//!   API 1.0 and never changes;
//! - since API 1.1, [`module::DETAILS_SYMBOL`] (a [`module::DetailsFn`]): the components' details
//!   (rules, schemas) as JSON. Optional: a library built against 1.0 lacks it;
//! - since API 1.2, [`streaming::STREAMING_SYMBOL`] (a [`streaming::CreateStreamingFn`]): the
//!   streaming forms of components (data sets read by index, preprocessors fitted batch by
//!   batch). Optional: a library built against 1.0 or 1.1 lacks it.

pub mod component;
pub mod config;
pub mod constraint;
pub mod details;
pub mod error;
pub mod manifest;
pub mod meta;
pub mod module;
pub mod rng;
pub mod streaming;
pub mod tensor;
pub mod version;

pub use component::{
    AugmentorBox, AugmentorObj, Component, DatasetBox, DatasetObj, ModelBox, ModelObj, PreprocessorBox,
    PreprocessorObj, TrackerBox, TrackerObj,
};
pub use constraint::{Constraint, PathKind};
pub use details::{ComponentDetails, LibraryDetails};
pub use error::{ErrorKind, PluginError};
pub use manifest::PluginManifest;
pub use meta::{
    check_component_name, normalized_name, ComponentKind, ComponentMeta, ConfigKey, ConfigType, CreateContext,
    DatasetInfo, DeviceSpec, Metric, Task,
};
pub use module::{DetailsFn, PluginModule, PluginModuleRef, DETAILS_SYMBOL};
pub use streaming::{
    CreateStreamingFn, DataPart, IncrementalPreprocessorBox, IncrementalPreprocessorObj, IndexedDatasetBox,
    IndexedDatasetObj, IndexedDescription, StreamingComponent, STREAMING_SYMBOL,
};
pub use tensor::{LoadedData, NamedTensor, Samples, TensorHandle};
pub use version::{ApiVersion, API_VERSION};

/// Re-exported so that the SDK's macros and plugin crates use the exact same abi_stable.
pub use abi_stable;
