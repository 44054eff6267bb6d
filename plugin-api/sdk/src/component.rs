//! The traits plugin authors implement, in plain Rust with `tch` tensors.
//!
//! A component is a type that implements [`Configurable`] (its configuration a struct deriving
//! `Config`; recommended) or, as in SDK 1.0, [`Component`] directly; and one kind trait:
//! [`Dataset`], [`Preprocessor`], [`DataAugmentor`], [`Model`] or [`Tracker`].
//!
//! Contracts (the host relies on them; [`crate::harness`] checks them):
//! - tensors given to a method are the component's to keep or drop; tensors it returns are the
//!   host's;
//! - datasets, preprocessors and augmentors work on CPU tensors; models on `Context::device`;
//! - dim 0 is always the sample dimension and is never changed by a transformation.

use std::{collections::BTreeMap, path::Path};

use gymnos_plugin_api::{config::KeyRules, ConfigKey, DataPart, DatasetInfo};
use serde_json::Value;
use tch::{nn, Tensor};

use crate::{
    config::{rules_of, schemas_of, ConfigSchema},
    rng::Rng,
    ConfigValues, Context, Result,
};

/// What every component declares, and how it is built from its configuration (SDK 1.0 style:
/// keys listed by hand and read by name). [`Configurable`] implements it from a typed config.
pub trait Component: Sized + Send + 'static {
    /// Name used in experiments and the registry: 1 to 64 lowercase letters, digits, `-` or
    /// `_`, starting with a letter (`gymnos_plugin_api::check_component_name`).
    const NAME: &'static str;
    /// The component's own semver version; `env!("CARGO_PKG_VERSION")` ties it to the crate's.
    const VERSION: &'static str;
    /// One line saying what it does.
    const DESCRIPTION: &'static str;

    /// The configuration keys it accepts (see [`crate::key`] and [`crate::required`]).
    fn config_keys() -> Vec<ConfigKey> {
        Vec::new()
    }

    /// Rules on the keys' values, checked by the host before anything runs (SDK 1.1).
    fn key_rules() -> KeyRules {
        KeyRules::new()
    }

    /// JSON Schemas of `json` keys, by key name (SDK 1.1).
    fn key_schemas() -> BTreeMap<String, Value> {
        BTreeMap::new()
    }

    /// Builds the component. `config` has been validated against `config_keys()`.
    fn create(config: &ConfigValues, ctx: &Context) -> Result<Self>;
}

/// A component whose configuration is a struct deriving `Config`: the keys it declares and the
/// values it reads come from that one struct.
///
/// ```ignore
/// impl Configurable for Mlp {
///     const NAME: &'static str = "mlp";
///     const VERSION: &'static str = env!("CARGO_PKG_VERSION");
///     const DESCRIPTION: &'static str = "Multilayer perceptron";
///     type Config = MlpConfig;
///     fn build(config: MlpConfig, ctx: &Context) -> Result<Self> { ... }
/// }
/// ```
pub trait Configurable: Sized + Send + 'static {
    const NAME: &'static str;
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;
    type Config: ConfigSchema;

    /// Builds the component from its configuration, checked against the declared rules.
    fn build(config: Self::Config, ctx: &Context) -> Result<Self>;
}

impl<T: Configurable> Component for T {
    const NAME: &'static str = T::NAME;
    const VERSION: &'static str = T::VERSION;
    const DESCRIPTION: &'static str = T::DESCRIPTION;

    fn config_keys() -> Vec<ConfigKey> {
        T::Config::keys().iter().map(crate::KeySpec::to_abi).collect()
    }

    fn key_rules() -> KeyRules {
        rules_of(&T::Config::keys())
    }

    fn key_schemas() -> BTreeMap<String, Value> {
        schemas_of(&T::Config::keys())
    }

    fn create(config: &ConfigValues, ctx: &Context) -> Result<Self> {
        T::build(T::Config::from_config(config)?, ctx)
    }
}

/// All samples of a data set, as returned by [`Dataset::load`] (the plugin API's `LoadedData`,
/// as tensors).
pub struct LoadedData {
    pub info: DatasetInfo,
    /// `[n, ...info.feature_shape]`, any numeric dtype.
    pub features: Tensor,
    /// `int64 [n]` class indices, or `float32 [n, info.num_outputs]` regression targets.
    pub targets: Tensor,
    /// A fixed test split shipped with the data, if any.
    pub test: Option<(Tensor, Tensor)>,
}

/// The name [`LoadedData`] had before SDK 1.4.
#[deprecated(since = "1.4.0", note = "renamed `LoadedData`, the name the plugin API gives it")]
pub type Loaded = LoadedData;

pub trait Dataset: Component {
    /// Every sample at once (and the fixed test split, if the data set has one).
    fn load(&mut self) -> Result<LoadedData>;

    /// Features of new samples read from `path`, encoded like `load`'s, for prediction.
    fn read_inputs(&mut self, path: &Path) -> Result<Tensor>;
}

pub trait Preprocessor: Component {
    fn fit(&mut self, features: &Tensor, targets: &Tensor) -> Result<()>;
    fn transform(&self, features: &Tensor) -> Result<Tensor>;
    /// The fitted state as named tensors.
    fn state(&self) -> Result<Vec<(String, Tensor)>>;
    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()>;
}

/// What an [`IndexedDataset`] holds (SDK 1.2).
#[derive(Clone, Debug)]
pub struct Description {
    pub info: DatasetInfo,
    /// Number of samples in [`DataPart::Samples`] (what the host splits).
    pub len: u64,
    /// Number of samples of the fixed test split the data set ships, if any.
    pub test_len: Option<u64>,
    /// Whether `read` may run on several threads at once; when false, the host makes one read
    /// at a time.
    pub concurrent_reads: bool,
}

/// A data set read by index (SDK 1.2, plugin API 1.2): the host's loader threads ask for
/// batches of samples, so memory stays bounded by the batches in flight, not by the data set's
/// size. Exported with `indexed_dataset(T)` in [`crate::export_plugin!`]; the SDK derives the
/// 1.0 form (`load`, everything at once) from `read`, used when [`IndexedDataset::streams`]
/// says so or by hosts that predate 1.2.
pub trait IndexedDataset: Component + Sync {
    /// The data set's shape and size. Called once, before any read.
    fn describe(&self) -> Result<Description>;

    /// The samples of `part` at `indices` (each below that part's length), in that order:
    /// CPU features `[k, ...feature_shape]` and targets as [`Dataset::load`]'s. `k` is the
    /// number of indices unless the configuration allows skipping unreadable samples (count
    /// them in [`IndexedDataset::notes`]).
    fn read(&self, part: DataPart, indices: &[u64]) -> Result<(Tensor, Tensor)>;

    /// Features of new samples read from `path`, encoded like `read`'s, for prediction.
    fn read_inputs(&self, path: &Path) -> Result<Tensor>;

    /// What the reads so far noted (skipped samples, say), as a JSON object for the run's record.
    fn notes(&self) -> Result<Value> {
        Ok(Value::Object(Default::default()))
    }

    /// Whether this configuration streams. When false, the host loads every sample once
    /// (through `read`) and keeps them in memory.
    fn streams(&self) -> bool {
        true
    }
}

/// A preprocessor that also fits batch by batch (SDK 1.2, plugin API 1.2), so that it can fit
/// on the training split of a streaming data set (a running mean and variance, say). The host
/// calls `begin_fit`, `fit_batch` for each batch of the training split, then `end_fit`; and
/// then `transform` from several loader threads at once, hence `Sync`. Exported with
/// `incremental_preprocessor(T)` in [`crate::export_plugin!`]; [`fit_whole`] implements
/// [`Preprocessor::fit`] from these three.
pub trait IncrementalPreprocessor: Preprocessor + Sync {
    /// Starts a fit, forgetting any previous one.
    fn begin_fit(&mut self) -> Result<()>;
    /// Adds a batch of training samples to the fit.
    fn fit_batch(&mut self, features: &Tensor, targets: &Tensor) -> Result<()>;
    /// Ends the fit: the state is final.
    fn end_fit(&mut self) -> Result<()>;
}

/// [`Preprocessor::fit`] of an [`IncrementalPreprocessor`]: the whole split as one batch.
pub fn fit_whole<T: IncrementalPreprocessor>(preprocessor: &mut T, features: &Tensor, targets: &Tensor) -> Result<()> {
    preprocessor.begin_fit()?;
    preprocessor.fit_batch(features, targets)?;
    preprocessor.end_fit()
}

/// Shared by several loader threads: take `&self`, and draw all randomness from `rng`.
///
/// Returns the batch with as many samples. Targets come back unchanged, except that a mixing
/// augmentor (mixup, cutmix) of a classification data set may return soft targets: float
/// `[n, num_classes]` rows that sum to 1 (`Context::num_outputs` gives the classes).
pub trait DataAugmentor: Component + Sync {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)>;
}

/// A model keeps its parameters and buffers in a `VarStore` on `Context::device`; the SDK
/// derives parameter listing, state saving and loading from it.
pub trait Model: Component {
    fn var_store(&self) -> &nn::VarStore;
    /// Logits (classification) or predictions (regression), `[n, num_outputs]`.
    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor>;
}

/// Receives what a run does. Only `log_metrics` is required; errors are reported by the host
/// and never stop a training.
pub trait Tracker: Component {
    /// Once before training, with the run's description (experiment, run folder, plugins).
    fn start(&mut self, run: &Value) -> Result<()> {
        let _ = run;
        Ok(())
    }

    /// The run's parameters: the resolved experiment.
    fn log_params(&mut self, params: &Value) -> Result<()> {
        let _ = params;
        Ok(())
    }

    /// Metrics at `step`; `scope` is `train_step`, `epoch` or `test`.
    fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) -> Result<()>;

    /// Once at the end, with `completed`, `failed` or `interrupted`; the run folder's files are
    /// final by then.
    fn finish(&mut self, status: &str) -> Result<()> {
        let _ = status;
        Ok(())
    }
}
