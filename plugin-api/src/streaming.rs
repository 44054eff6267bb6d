//! Plugin API 1.2: data sets read by index (streaming) and preprocessors fitted batch by batch.
//!
//! Both are created through one optional exported symbol, [`STREAMING_SYMBOL`], rather than
//! through the root module (whose layout, and that of the 1.0 component traits, never changes;
//! see [`crate::module`]). A library built against 1.0 or 1.1 lacks the symbol: the host then
//! uses its components as 1.0 defines them (a data set loaded whole, a preprocessor fitted on
//! the whole training split).
//!
//! Like every ABI type, these are frozen once released: a later minor adds a new symbol and new
//! traits instead of changing these.

// sabi_trait expands to impls inside a const block, which this lint flags.
#![allow(non_local_definitions)]

use abi_stable::{
    sabi_trait,
    std_types::{RBox, ROption, RResult, RSlice, RStr, RString, RVec},
    StableAbi,
};

use crate::{
    error::PluginError,
    meta::{CreateContext, DatasetInfo},
    tensor::{NamedTensor, Samples, TensorHandle},
};

/// Which part of a data set a read concerns.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataPart {
    /// The samples the host splits into training, validation (and test, when the data set
    /// ships no test split).
    Samples,
    /// The fixed test split the data set ships.
    Test,
}

/// What an indexed data set holds, as `describe` returns it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug)]
pub struct IndexedDescription {
    pub info: DatasetInfo,
    /// Number of samples in [`DataPart::Samples`].
    pub len: u64,
    /// Number of samples in the shipped test split, if the data set ships one.
    pub test_len: ROption<u64>,
    /// Whether `read` may run on several threads at once. When false, the host makes one read
    /// at a time (still off the training thread).
    pub concurrent_reads: bool,
}

/// A data set read by index: the host's loader threads ask for batches of samples, so that
/// memory is bounded by the number of batches in flight, not by the data set's size.
#[sabi_trait]
pub trait IndexedDatasetObj: Send + Sync {
    /// The data set's shape and size; called once, before any read.
    fn describe(&self) -> RResult<IndexedDescription, PluginError>;

    /// The samples of `part` at `indices` (each below that part's length), in that order:
    /// CPU features `[k, ...feature_shape]` and targets as `load`'s. `k` equals the number of
    /// indices unless the data set skips unreadable samples as its configuration allows (and
    /// counts them in `notes`).
    fn read(&self, part: DataPart, indices: RSlice<'_, u64>) -> RResult<Samples, PluginError>;

    /// Features of new samples read from `path`, encoded like `read`'s, for prediction.
    fn read_inputs(&self, path: RStr<'_>) -> RResult<TensorHandle, PluginError>;

    /// What the reads so far have noted, as a JSON object of counters and lists (skipped
    /// samples, say); the host stores it in the run's record.
    #[sabi(last_prefix_field)]
    fn notes(&self) -> RResult<RString, PluginError>;
}

/// A preprocessor that fits on a stream of batches of the training split. The host calls
/// `begin_fit`, then `fit_batch` for every batch, then `end_fit`; `transform` may then run on
/// several threads at once (the loader's), hence `Sync`.
#[sabi_trait]
pub trait IncrementalPreprocessorObj: Send + Sync {
    /// Starts a fit, forgetting any previous one.
    fn begin_fit(&mut self) -> RResult<(), PluginError>;

    /// Adds a batch of training samples (CPU tensors) to the fit.
    fn fit_batch(&mut self, batch: Samples) -> RResult<(), PluginError>;

    /// Ends the fit; the state is final.
    fn end_fit(&mut self) -> RResult<(), PluginError>;

    /// Transforms features (any number of samples along dim 0). Must not change dim 0.
    fn transform(&self, features: TensorHandle) -> RResult<TensorHandle, PluginError>;

    /// The fitted state, saved with the model and given back by `load_state`.
    fn state(&self) -> RResult<RVec<NamedTensor>, PluginError>;

    #[sabi(last_prefix_field)]
    fn load_state(&mut self, state: RVec<NamedTensor>) -> RResult<(), PluginError>;
}

pub type IndexedDatasetBox = IndexedDatasetObj_TO<'static, RBox<()>>;
pub type IncrementalPreprocessorBox = IncrementalPreprocessorObj_TO<'static, RBox<()>>;

/// A component in its streaming form.
#[repr(C, u8)]
#[derive(StableAbi)]
pub enum StreamingComponent {
    IndexedDataset(IndexedDatasetBox),
    IncrementalPreprocessor(IncrementalPreprocessorBox),
}

impl StreamingComponent {
    pub fn kind(&self) -> crate::meta::ComponentKind {
        match self {
            StreamingComponent::IndexedDataset(_) => crate::meta::ComponentKind::Dataset,
            StreamingComponent::IncrementalPreprocessor(_) => crate::meta::ComponentKind::Preprocessor,
        }
    }
}

/// The name (NUL-terminated, for `dlsym`) under which a library built against API 1.2 or later
/// exports its [`CreateStreamingFn`].
pub const STREAMING_SYMBOL: &[u8] = b"gymnos_plugin_create_streaming\0";

/// Creates the streaming form of component `name` (its configuration already validated, as for
/// the root module's `create`), or returns none when the component has no streaming form or
/// its configuration asks for the 1.0 form (a data set loaded whole).
pub type CreateStreamingFn = extern "C" fn(
    name: RStr<'_>,
    config_json: RStr<'_>,
    context: &CreateContext<'_>,
) -> RResult<ROption<StreamingComponent>, PluginError>;
