//! The run's components — data set, preprocessors, augmentors, model, trackers — created from
//! the resolved experiment through the plugin ABI and wrapped in types that check each
//! plugin's contract. Every call into a plugin goes through [`call`], so a failure (or a caught
//! panic) reaches the user as one line naming the plugin, its version, where it sits in the
//! experiment, and the call.
//!
//! Creation is typed per kind ([`OfKind`]): asking for a model gives a `ModelBox` or an error
//! naming what the library made instead, never a variant to match.

mod augmentors;
mod dataset;
mod model;
mod preprocessors;
mod trackers;

use std::{path::Path, sync::Arc};

use anyhow::{anyhow, Context, Result};
use gymnos_host::{experiment::ResolvedPlugin, LoadedLibrary, PluginManager};
use gymnos_plugin_api::{
    abi_stable::std_types::{RResult, RStr, RVec},
    rng::derive_seed,
    AugmentorBox, Component, ComponentKind, CreateContext, DatasetBox, DeviceSpec, IncrementalPreprocessorBox,
    IndexedDatasetBox, ModelBox, PluginError, PreprocessorBox, Samples as AbiSamples, StreamingComponent, Task,
    TrackerBox,
};
use gymnos_plugin_sdk::{from_samples, to_samples};

pub use augmentors::Augmentors;
pub use dataset::{DatasetForm, IndexedDataset, LoadedData, StreamedSplit, WholeDataset};
pub use model::Model;
pub use preprocessors::Preprocessors;
pub use trackers::Trackers;

use crate::data::Samples;

/// Turns a plugin's result into ours, naming the plugin.
pub fn call<T>(plugin: &ResolvedPlugin, what: &str, result: RResult<T, PluginError>) -> Result<T> {
    result.into_result().map_err(|e| match out_of_memory(&e.message) {
        Some(why) => anyhow!("{} failed in {what}: {why}; make the sizes in `{}` smaller", named(plugin), plugin.path),
        None => anyhow!("{} failed in {what}: {e}", named(plugin)),
    })
}

/// libtorch's allocation failures (a caught panic's text, with its C++ backtrace) said as
/// what they are: the bytes asked for against the machine's memory, or sizes whose product
/// overflows. Any plugin's, the ones this repository has never seen included.
fn out_of_memory(message: &str) -> Option<String> {
    let after = |marker: &str| message.find(marker).map(|i| &message[i + marker.len()..]);
    if let Some(rest) = after("you tried to allocate ").or_else(|| after("Tried to allocate ")) {
        let asked: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
        let limit = gymnos_plugin_sdk::memory::human(u128::from(gymnos_plugin_sdk::memory::limit_bytes()));
        return Some(match asked.parse::<u128>() {
            Ok(bytes) => format!(
                "out of memory: it asked libtorch for {} ({bytes} bytes), and this machine has {limit}",
                gymnos_plugin_sdk::memory::human(bytes)
            ),
            // CUDA's message gives a unit: `2.00 GiB`.
            Err(_) => format!(
                "out of device memory: it asked libtorch for {asked} {}",
                rest.split_whitespace().nth(1).unwrap_or("")
            ),
        });
    }
    if let Some(rest) = after("Storage size calculation overflowed with sizes=") {
        let sizes: String = rest.chars().take_while(|c| *c != ']').chain(std::iter::once(']')).collect();
        return Some(format!("a tensor of sizes {sizes} has more bytes than 64 bits count"));
    }
    None
}

/// `model `mlp@1.0.0` (model)`: the plugin and where it sits in the experiment.
pub fn named(plugin: &ResolvedPlugin) -> String {
    format!("{} ({})", plugin.label(), plugin.path)
}

fn to_abi(samples: &Samples) -> AbiSamples {
    to_samples(samples.x.shallow_clone(), samples.y.shallow_clone())
}

fn from_abi(samples: AbiSamples) -> Samples {
    let (x, y) = from_samples(samples);
    Samples { x, y }
}

/// A component of one kind in its 1.0 form, taken out of what a plugin's `create` gave; a
/// component of another kind is handed back.
pub trait OfKind: Sized {
    fn take(component: Component) -> Result<Self, Component>;
}

/// A component of one kind in its streaming form (API 1.2).
pub trait OfStreamingKind: Sized {
    fn take(component: StreamingComponent) -> Result<Self, StreamingComponent>;
}

macro_rules! of_kind {
    ($trait:ident, $enum:ident :: $variant:ident => $ty:ty) => {
        impl $trait for $ty {
            fn take(component: $enum) -> Result<Self, $enum> {
                match component {
                    $enum::$variant(inner) => Ok(inner),
                    other => Err(other),
                }
            }
        }
    };
}

of_kind!(OfKind, Component::Dataset => DatasetBox);
of_kind!(OfKind, Component::Preprocessor => PreprocessorBox);
of_kind!(OfKind, Component::DataAugmentor => AugmentorBox);
of_kind!(OfKind, Component::Model => ModelBox);
of_kind!(OfKind, Component::Tracker => TrackerBox);
of_kind!(OfStreamingKind, StreamingComponent::IndexedDataset => IndexedDatasetBox);
of_kind!(OfStreamingKind, StreamingComponent::IncrementalPreprocessor => IncrementalPreprocessorBox);

/// A component in its streaming form when its plugin gives one (API 1.2), else in its 1.0 form.
pub enum Form<S, W> {
    Streaming(S),
    Whole(W),
}

/// What components are created with, besides their configuration.
pub struct ComponentFactory<'a> {
    pub manager: &'a PluginManager,
    pub device: DeviceSpec,
    pub seed: u64,
    /// Where relative paths in configurations were written from (they are absolute once
    /// resolved; plugins still receive it).
    pub base_dir: &'a Path,
    /// The run folder, where trackers may write; none for `predict`.
    pub output_dir: Option<&'a Path>,
}

/// What the model is built for.
pub struct ModelShape {
    pub input_shape: Vec<i64>,
    pub num_outputs: i64,
    pub task: Task,
}

impl ComponentFactory<'_> {
    fn library(&self, plugin: &ResolvedPlugin) -> Result<Arc<LoadedLibrary>> {
        self.manager.load_installed(&plugin.library).with_context(|| named(plugin))
    }

    /// Creates `plugin` (the `index`th of its list) in its 1.0 form.
    fn create<T: OfKind>(&self, plugin: &ResolvedPlugin, index: u64, shape: Option<&ModelShape>) -> Result<T> {
        let library = self.library(plugin)?;
        self.create_in(&library, plugin, index, shape)
    }

    fn create_in<T: OfKind>(
        &self,
        library: &LoadedLibrary,
        plugin: &ResolvedPlugin,
        index: u64,
        shape: Option<&ModelShape>,
    ) -> Result<T> {
        self.with_context(plugin, index, shape, |config, context| {
            let created = library.create(&plugin.name, config, context).map_err(|e| failed_create(plugin, e))?;
            T::take(created).map_err(|other| wrong_kind(plugin, other.kind()))
        })
    }

    /// Creates `plugin` in its streaming form when its library has one, else in its 1.0 form.
    fn create_streaming_first<S: OfStreamingKind, W: OfKind>(
        &self,
        plugin: &ResolvedPlugin,
        index: u64,
    ) -> Result<Form<S, W>> {
        let library = self.library(plugin)?;
        let streaming = self.with_context(plugin, index, None, |config, context| {
            library.create_streaming(&plugin.name, config, context).map_err(|e| failed_create(plugin, e))
        })?;
        match streaming {
            Some(created) => S::take(created).map(Form::Streaming).map_err(|other| wrong_kind(plugin, other.kind())),
            None => self.create_in(&library, plugin, index, None).map(Form::Whole),
        }
    }

    /// Calls `create` with `plugin`'s configuration and its creation context.
    fn with_context<T>(
        &self,
        plugin: &ResolvedPlugin,
        index: u64,
        shape: Option<&ModelShape>,
        create: impl FnOnce(&str, &CreateContext<'_>) -> Result<T>,
    ) -> Result<T> {
        let base_dir = self.base_dir.to_string_lossy();
        let output_dir = self.output_dir.map(|d| d.to_string_lossy()).unwrap_or_default();
        let context = CreateContext {
            device: self.device,
            seed: derive_seed(self.seed, &plugin.path, &[index]),
            input_shape: RVec::from(shape.map(|s| s.input_shape.clone()).unwrap_or_default()),
            num_outputs: shape.map_or(0, |s| s.num_outputs),
            task: shape.map_or(Task::Classification, |s| s.task),
            output_dir: RStr::from_str(&output_dir),
            base_dir: RStr::from_str(&base_dir),
        };
        create(&plugin.config.to_string(), &context)
    }

    /// Creates each plugin of a list, in order.
    fn create_each<T: OfKind>(
        &self,
        plugins: &[&ResolvedPlugin],
        shape: Option<&ModelShape>,
    ) -> Result<Vec<(ResolvedPlugin, T)>> {
        let created = plugins.iter().enumerate().map(|(i, &p)| Ok((p.clone(), self.create(p, i as u64, shape)?)));
        created.collect()
    }

    /// The data set, read by index when it streams (API 1.2), else loaded whole.
    pub fn dataset(&self, plugin: &ResolvedPlugin) -> Result<DatasetForm> {
        Ok(match self.create_streaming_first(plugin, 0)? {
            Form::Whole(inner) => DatasetForm::Whole(Box::new(WholeDataset::new(plugin.clone(), inner))),
            Form::Streaming(inner) => DatasetForm::Indexed(Arc::new(IndexedDataset::new(plugin.clone(), inner)?)),
        })
    }

    /// The preprocessors, each in the form that fits batch by batch when it has one (API 1.2).
    pub fn preprocessors(&self, plugins: &[&ResolvedPlugin]) -> Result<Preprocessors> {
        let mut list = Vec::with_capacity(plugins.len());
        for (i, &plugin) in plugins.iter().enumerate() {
            list.push((plugin.clone(), self.create_streaming_first(plugin, i as u64)?));
        }
        Ok(Preprocessors::new(list))
    }

    pub fn augmentors(&self, plugins: &[&ResolvedPlugin], task: Task, num_outputs: i64) -> Result<Augmentors> {
        // Since API 1.1 augmentors know the task and the outputs (mixing ones build soft
        // targets from them); the input shape is the model's business.
        let shape = ModelShape { input_shape: Vec::new(), num_outputs, task };
        Ok(Augmentors::new(self.create_each(plugins, Some(&shape))?, task, num_outputs))
    }

    pub fn model(&self, plugin: &ResolvedPlugin, shape: &ModelShape) -> Result<Model> {
        Ok(Model::new(plugin.clone(), self.create(plugin, 0, Some(shape))?, shape.num_outputs))
    }

    pub fn trackers(&self, plugins: &[&ResolvedPlugin]) -> Result<Trackers> {
        Ok(Trackers::new(self.create_each(plugins, None)?))
    }
}

fn failed_create(plugin: &ResolvedPlugin, e: gymnos_host::CallError) -> anyhow::Error {
    anyhow!("{} failed in create: {}", named(plugin), e.error)
}

fn wrong_kind(plugin: &ResolvedPlugin, made: ComponentKind) -> anyhow::Error {
    anyhow!("{}: the library created a {made} instead", named(plugin))
}

#[cfg(test)]
mod tests {
    use super::out_of_memory;

    #[test]
    fn libtorch_allocation_failures_are_said_as_sizes() {
        let cpu = "panicked: libtorch: [enforce fail at alloc_cpu.cpp:127] data. DefaultCPUAllocator: not enough memory: you tried to allocate 4000000000000 bytes.\nException raised from ...";
        let said = out_of_memory(cpu).unwrap();
        assert!(
            said.starts_with(
                "out of memory: it asked libtorch for 4.0 TB (4000000000000 bytes), and this machine has "
            ),
            "{said}"
        );
        let cuda = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.19 GiB total capacity)";
        assert_eq!(out_of_memory(cuda).unwrap(), "out of device memory: it asked libtorch for 2.00 GiB");
        let overflow =
            "libtorch: Storage size calculation overflowed with sizes=[8, 1, 2000000028, 2000000028]\nException";
        assert_eq!(
            out_of_memory(overflow).unwrap(),
            "a tensor of sizes [8, 1, 2000000028, 2000000028] has more bytes than 64 bits count"
        );
        assert_eq!(out_of_memory("shape mismatch"), None);
    }
}
