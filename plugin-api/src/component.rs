//! The five component interfaces, as abi_stable trait objects.
//!
//! Each trait's last method is marked `#[sabi(last_prefix_field)]`. abi_stable refuses a library
//! whose vtables have fewer entries than the host's, so a plugin built against an older minor
//! would no longer load if a later minor added a method: minor versions never add methods to
//! these traits (nor change them). What a minor version adds comes as new, optional exported
//! symbols (see [`crate::module`]).
//! Plugin authors do not implement these traits directly: the SDK implements them for a guard
//! that catches panics, so that no panic ever unwinds through an `extern "C"` function.
//!
//! Tensor arguments and results follow the ownership rule of [`crate::tensor`].

// sabi_trait expands to impls inside a const block, which this lint flags.
#![allow(non_local_definitions)]

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RSlice, RStr, RVec},
    StableAbi,
};

use crate::{
    error::PluginError,
    meta::Metric,
    tensor::{LoadedData, NamedTensor, Samples, TensorHandle},
};

/// Loads a data set into memory.
#[sabi_trait]
pub trait DatasetObj: Send {
    /// Loads every sample (and the fixed test split, if the data set has one). CPU tensors.
    fn load(&mut self) -> RResult<LoadedData, PluginError>;

    /// Reads the features of new samples from a file the data set understands, for prediction.
    /// Returns a CPU tensor `[n, ...feature_shape]` in the same encoding `load` uses.
    #[sabi(last_prefix_field)]
    fn read_inputs(&mut self, path: RStr<'_>) -> RResult<TensorHandle, PluginError>;
}

/// Learns a transformation from the training split and applies it to any split.
#[sabi_trait]
pub trait PreprocessorObj: Send {
    /// Fits on the training split only. CPU tensors.
    fn fit(&mut self, data: Samples) -> RResult<(), PluginError>;

    /// Transforms features (any number of samples along dim 0). Must not change dim 0.
    fn transform(&self, features: TensorHandle) -> RResult<TensorHandle, PluginError>;

    /// The fitted state, saved with the model and given back by `load_state`.
    fn state(&self) -> RResult<RVec<NamedTensor>, PluginError>;

    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RVec<NamedTensor>) -> RResult<(), PluginError>;
}

/// Randomly alters training batches. Called from several loader threads at once, hence `Sync`;
/// all randomness must come from `seed` so that runs are reproducible.
#[sabi_trait]
pub trait AugmentorObj: Send + Sync {
    /// Returns the augmented batch (same number of samples). CPU tensors.
    #[sabi(last_prefix_field)]
    fn augment(&self, batch: Samples, seed: u64) -> RResult<Samples, PluginError>;
}

/// A trainable model. The host owns the training loop: it calls `forward`, computes the loss,
/// runs backward and updates `parameters` itself.
#[sabi_trait]
pub trait ModelObj: Send {
    /// Maps a batch `[n, ...input_shape]` on the model's device to outputs `[n, num_outputs]`
    /// (logits for classification). The result must keep its autograd graph when `train`.
    fn forward(&mut self, input: TensorHandle, train: bool) -> RResult<TensorHandle, PluginError>;

    /// Trainable parameters: shallow handles sharing storage and gradients with the model's.
    fn parameters(&self) -> RResult<RVec<NamedTensor>, PluginError>;

    /// Everything needed to restore the model: parameters and buffers (e.g. running stats).
    fn state(&self) -> RResult<RVec<NamedTensor>, PluginError>;

    /// Copies values into the model's tensors by name; unknown or missing names are errors.
    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RVec<NamedTensor>) -> RResult<(), PluginError>;
}

/// Receives what a run does. Errors are reported by the host and never stop a training.
#[sabi_trait]
pub trait TrackerObj: Send {
    /// Called once before training, with the run's description as JSON.
    fn start(&mut self, run_json: RStr<'_>) -> RResult<(), PluginError>;

    /// The run's parameters (the resolved experiment) as a JSON object.
    fn log_params(&mut self, params_json: RStr<'_>) -> RResult<(), PluginError>;

    /// Metrics at `step`; `scope` is `train_step`, `epoch` or `test`.
    fn log_metrics(&mut self, step: u64, scope: RStr<'_>, metrics: RSlice<'_, Metric>) -> RResult<(), PluginError>;

    /// Called once at the end with `completed`, `failed` or `interrupted`.
    #[sabi(last_prefix_field)]
    fn finish(&mut self, status: RStr<'_>) -> RResult<(), PluginError>;
}

pub type DatasetBox = DatasetObj_TO<'static, RBox<()>>;
pub type PreprocessorBox = PreprocessorObj_TO<'static, RBox<()>>;
pub type AugmentorBox = AugmentorObj_TO<'static, RBox<()>>;
pub type ModelBox = ModelObj_TO<'static, RBox<()>>;
pub type TrackerBox = TrackerObj_TO<'static, RBox<()>>;

/// A created component. Dropping it drops the plugin's object through its own vtable.
#[repr(C, u8)]
#[derive(StableAbi)]
pub enum Component {
    Dataset(DatasetBox),
    Preprocessor(PreprocessorBox),
    DataAugmentor(AugmentorBox),
    Model(ModelBox),
    Tracker(TrackerBox),
}

impl Component {
    pub fn kind(&self) -> crate::meta::ComponentKind {
        use crate::meta::ComponentKind as K;
        match self {
            Component::Dataset(_) => K::Dataset,
            Component::Preprocessor(_) => K::Preprocessor,
            Component::DataAugmentor(_) => K::DataAugmentor,
            Component::Model(_) => K::Model,
            Component::Tracker(_) => K::Tracker,
        }
    }
}
