//! The traits plugin authors implement, in plain Rust with `tch` tensors.
//!
//! Contracts (the host relies on them; `gymnos_plugin_sdk::harness` checks them):
//! - tensors given to a method are the component's to keep or drop; tensors it returns are the
//!   host's;
//! - datasets, preprocessors and augmentors work on CPU tensors; models on `Context::device`;
//! - dim 0 is always the sample dimension and is never changed by a transformation.

use std::path::Path;

use gymnos_plugin_api::{ConfigKey, DatasetInfo};
use tch::{nn, Tensor};

use crate::{rng::Rng, Config, Context, Result};

/// What every component declares, and how it is built from its configuration.
pub trait Component: Sized + Send + 'static {
    /// Name used in experiments and the registry (lowercase, `-` or `_` separated).
    const NAME: &'static str;
    /// The component's own semver version.
    const VERSION: &'static str;
    /// One line saying what it does.
    const DESCRIPTION: &'static str;

    /// The configuration keys it accepts (see [`crate::key`] and [`crate::required`]).
    fn config_keys() -> Vec<ConfigKey> {
        Vec::new()
    }

    /// Builds the component. `config` has been validated against `config_keys()`.
    fn create(config: &Config, ctx: &Context) -> Result<Self>;
}

/// All samples of a data set, as returned by [`Dataset::load`].
pub struct Loaded {
    pub info: DatasetInfo,
    /// `[n, ...info.feature_shape]`, any numeric dtype.
    pub features: Tensor,
    /// `int64 [n]` class indices, or `float32 [n, info.num_outputs]` regression targets.
    pub targets: Tensor,
    /// A fixed test split shipped with the data, if any.
    pub test: Option<(Tensor, Tensor)>,
}

pub trait Dataset: Component {
    fn load(&mut self) -> Result<Loaded>;
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

/// Shared by several loader threads: take `&self`, and draw all randomness from `rng`.
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

pub trait Tracker: Component {
    fn start(&mut self, run: &serde_json::Value) -> Result<()>;
    fn log_params(&mut self, params: &serde_json::Value) -> Result<()>;
    fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) -> Result<()>;
    fn finish(&mut self, status: &str) -> Result<()>;
}
