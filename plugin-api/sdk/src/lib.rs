//! Write gymnos plugins in safe Rust.
//!
//! Declare the configuration as a struct with `#[derive(Config)]`, implement [`Configurable`]
//! plus one of [`Dataset`] (or, SDK 1.2, [`IndexedDataset`] for data read by index),
//! [`Preprocessor`] (and, SDK 1.2, [`IncrementalPreprocessor`] to fit batch by batch),
//! [`DataAugmentor`], [`Model`] or [`Tracker`] for your type, list your components in [`export_plugin!`], and call
//! `gymnos_plugin_build::link_libtorch()` from your `build.rs`. The SDK turns tensors into
//! handles and back, validates configuration against the keys and rules you declare, and
//! catches panics at the boundary so that the host gets an error instead of an abort.
//!
//! SDK 1.0's way, [`Component`] with keys listed by [`key`] and read by [`Config::get`], still
//! compiles and works: a plugin written for SDK 1.x builds with every 1.y.

// `#[derive(Config)]` names `::gymnos_plugin_sdk`; this makes the name resolve here too.
extern crate self as gymnos_plugin_sdk;

pub mod component;
pub mod config;
pub mod contract;
pub mod convert;
#[doc(hidden)]
pub mod export;
pub mod fitting;
mod guard;
pub mod harness;
pub mod layout;
pub mod memory;
pub mod nn;
pub mod rng;
pub mod shape;

#[allow(deprecated)]
pub use component::Loaded;
pub use component::{
    fit_whole, Component, Configurable, DataAugmentor, Dataset, Description, IncrementalPreprocessor, IndexedDataset,
    LoadedData, Model, Preprocessor, Tracker,
};
pub use config::{key, required, Config, ConfigSchema, ConfigValues, Context, KeySpec};
pub use convert::{from_handle, from_named, from_samples, to_handle, to_named, to_samples};
pub use gymnos_plugin_api as api;
pub use gymnos_plugin_api::{
    ComponentKind, ConfigKey, ConfigType, DataPart, DatasetInfo, DeviceSpec, ErrorKind, PluginError, Task,
};
/// `#[derive(Config)]`: see [`ConfigSchema`] and the `gymnos-plugin-derive` crate.
pub use gymnos_plugin_derive::Config;
pub use rng::Rng;
pub use serde_json;
pub use shape::numel;
pub use tch;

/// Result type of every plugin-side function.
pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// Converts any displayable error into a [`PluginError`] of the given kind.
pub trait ResultExt<T> {
    fn or_kind(self, kind: ErrorKind, context: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> ResultExt<T> for std::result::Result<T, E> {
    fn or_kind(self, kind: ErrorKind, context: &str) -> Result<T> {
        self.map_err(|e| PluginError::new(kind, format!("{context}: {e}")))
    }
}
