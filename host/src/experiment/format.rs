//! The experiment's sections, as in Gymnos: experiment, dataset, preprocessors,
//! data_augmentors, model, training, tracking. `gymnos-host schema` prints this as JSON Schema,
//! and the same schema checks the structure of every experiment file (`shape.rs`).
//!
//! Relative paths in an experiment (`experiment.output_root`, plugin `path` keys) are relative
//! to the experiment file's folder.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A whole experiment file.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub experiment: ExperimentInfo,
    pub dataset: DatasetSection,
    /// Applied in order; fitted on the training split only.
    #[serde(default)]
    pub preprocessors: Vec<PluginSpec>,
    /// Applied in order, to training batches only.
    #[serde(default)]
    pub data_augmentors: Vec<PluginSpec>,
    pub model: PluginSpec,
    #[serde(default)]
    pub training: Training,
    #[serde(default)]
    pub tracking: Tracking,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentInfo {
    /// Names the run folder: `<output_root>/<name>/executions/<timestamp>/`.
    pub name: String,
    /// Seeds every random choice: split, shuffling, initialisation, dropout, augmentation.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub description: String,
    /// Folder under which runs are recorded, relative to the experiment file's folder. Without
    /// it, runs go to `trainings/` in the current folder.
    #[serde(default)]
    pub output_root: Option<String>,
}

/// Where runs go when the experiment names no `output_root`: under the current folder.
pub const DEFAULT_OUTPUT_ROOT: &str = "trainings";

/// A reference to an installed plugin and its configuration.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginSpec {
    /// `NAME` or `NAME@VERSION_REQ`, e.g. `mlp@^1.2`.
    pub plugin: String,
    /// The plugin's configuration; `gymnos-host plugins info NAME` lists its keys.
    #[serde(default = "empty_object")]
    pub config: Value,
    /// Written by the host in `training_config.json`: the exact library that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<ResolvedLibrary>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// The library a plugin reference was resolved to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolvedLibrary {
    pub version: String,
    pub library: String,
    pub sha256: String,
    pub package: String,
    pub api_version: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetSection {
    pub plugin: String,
    #[serde(default = "empty_object")]
    pub config: Value,
    #[serde(default)]
    pub split: Split,
    /// Shuffle before splitting (with the experiment's seed).
    #[serde(default = "yes")]
    pub shuffle: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved: Option<ResolvedLibrary>,
}

fn yes() -> bool {
    true
}

/// Fractions of the samples for each split; they must add up to 1. When the dataset ships a
/// fixed test split, `test` is not used and train/val share the rest in their proportion.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub train: f64,
    pub val: f64,
    pub test: f64,
}

impl Default for Split {
    fn default() -> Self {
        Self { train: 0.8, val: 0.1, test: 0.1 }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Training {
    pub epochs: u32,
    pub batch_size: u32,
    /// Batch size for validation, test and prediction (no gradients, so it can be larger).
    pub eval_batch_size: u32,
    pub optimizer: Optimizer,
    pub lr_schedule: LrSchedule,
    pub loss: Loss,
    /// `auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`.
    pub device: DeviceSetting,
    pub precision: Precision,
    /// Clip the global gradient norm to this value (none when absent).
    pub grad_clip_norm: Option<f64>,
    pub callbacks: Callbacks,
    /// Background threads that assemble and augment training batches.
    pub num_workers: u32,
    /// Batches prepared ahead of the model.
    pub prefetch_batches: u32,
    /// Keep the whole data set on the device and index batches there, when it fits in this
    /// many MiB and no augmentor needs the CPU.
    pub device_cache_mib: u32,
    /// Train on at most this many batches per epoch (all when absent): for quick checks and
    /// for data sets larger than an epoch is worth.
    pub limit_train_batches: Option<u32>,
    /// Evaluate validation and test on at most this many batches (all when absent).
    pub limit_eval_batches: Option<u32>,
}

impl Default for Training {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 64,
            eval_batch_size: 1024,
            optimizer: Optimizer::Adam(AdamSettings { lr: 1e-3, betas: default_betas(), eps: 1e-8, weight_decay: 0.0 }),
            lr_schedule: LrSchedule::Constant,
            loss: Loss::Auto,
            device: DeviceSetting::Auto,
            precision: Precision::Fp32,
            grad_clip_norm: None,
            callbacks: Callbacks::default(),
            num_workers: 2,
            prefetch_batches: 4,
            device_cache_mib: 2048,
            limit_train_batches: None,
            limit_eval_batches: None,
        }
    }
}

/// `training.device`, parsed once: `auto`, `cpu`, `cuda` or `cuda:N`. It reads and writes as
/// the text the experiment has (`cuda` stays `cuda`, not `cuda:0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSetting {
    /// CUDA device 0 when CUDA is available, else the CPU.
    Auto,
    Cpu,
    /// `cuda` (None: device 0) or `cuda:N`.
    Cuda(Option<u32>),
}

impl DeviceSetting {
    /// What plugins are told, where the setting names a device: `auto` does not.
    pub fn spec(self) -> Option<gymnos_plugin_api::DeviceSpec> {
        use gymnos_plugin_api::DeviceSpec;
        match self {
            DeviceSetting::Auto => None,
            DeviceSetting::Cpu => Some(DeviceSpec::Cpu),
            DeviceSetting::Cuda(i) => Some(DeviceSpec::Cuda(i.unwrap_or(0))),
        }
    }
}

impl std::fmt::Display for DeviceSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSetting::Auto => f.write_str("auto"),
            DeviceSetting::Cpu => f.write_str("cpu"),
            DeviceSetting::Cuda(None) => f.write_str("cuda"),
            DeviceSetting::Cuda(Some(i)) => write!(f, "cuda:{i}"),
        }
    }
}

impl std::str::FromStr for DeviceSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "auto" => Ok(DeviceSetting::Auto),
            "cpu" => Ok(DeviceSetting::Cpu),
            "cuda" => Ok(DeviceSetting::Cuda(None)),
            other => other
                .strip_prefix("cuda:")
                .filter(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|i| i.parse().ok())
                .map(|i| DeviceSetting::Cuda(Some(i)))
                .ok_or_else(|| format!("`{other}` is not auto, cpu, cuda or cuda:N")),
        }
    }
}

impl Serialize for DeviceSetting {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for DeviceSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DeviceSetting".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(auto|cpu|cuda|cuda:[0-9]+)$",
            "description": "`auto` (CUDA when available), `cpu`, `cuda` or `cuda:N`."
        })
    }
}

fn default_betas() -> [f64; 2] {
    [0.9, 0.999]
}
fn default_eps() -> f64 {
    1e-8
}
fn default_adamw_decay() -> f64 {
    0.01
}

/// Stochastic gradient descent, with momentum and Nesterov's variant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SgdSettings {
    pub lr: f64,
    #[serde(default)]
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub weight_decay: f64,
}

/// Adam; with `adamw` the weight decay is decoupled (default 0.01, else 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdamSettings {
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default)]
    pub weight_decay: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdamwSettings {
    pub lr: f64,
    #[serde(default = "default_betas")]
    pub betas: [f64; 2],
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_adamw_decay")]
    pub weight_decay: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Optimizer {
    Sgd(SgdSettings),
    Adam(AdamSettings),
    /// Adam with decoupled weight decay.
    Adamw(AdamwSettings),
}

impl Optimizer {
    pub fn lr(&self) -> f64 {
        match self {
            Optimizer::Sgd(s) => s.lr,
            Optimizer::Adam(s) => s.lr,
            Optimizer::Adamw(s) => s.lr,
        }
    }

    pub fn weight_decay(&self) -> f64 {
        match self {
            Optimizer::Sgd(s) => s.weight_decay,
            Optimizer::Adam(s) => s.weight_decay,
            Optimizer::Adamw(s) => s.weight_decay,
        }
    }
}

/// Learning rate per epoch, before reduce-on-plateau's factor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum LrSchedule {
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step(StepSchedule),
    /// Cosine annealing from the optimizer's lr to `min_lr` over the training's epochs.
    Cosine(CosineSchedule),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSchedule {
    pub step_size: u32,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CosineSchedule {
    #[serde(default)]
    pub min_lr: f64,
}

fn default_gamma() -> f64 {
    0.1
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Cross-entropy for classification, MSE for regression.
    Auto,
    CrossEntropy,
    Mse,
    L1,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    /// Mixed precision: CUDA autocast (float16 kernels, float32 weights) with dynamic loss
    /// scaling. CUDA only.
    Fp16,
    /// Mixed precision: autocast to bfloat16 (matrix products and convolutions in bfloat16,
    /// float32 weights), no loss scaling (bfloat16 keeps float32's range). CUDA and the CPU,
    /// where CPUs with bfloat16 instructions (AVX-512 BF16, AMX) run it much faster.
    Bf16,
}

impl Precision {
    /// The name experiments use.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Callbacks {
    pub early_stopping: Option<EarlyStopping>,
    pub checkpoint: Checkpointing,
    pub reduce_on_plateau: Option<ReduceOnPlateau>,
    /// Stop the run with an error as soon as the loss is NaN or infinite.
    pub stop_on_nan: bool,
}

impl Default for Callbacks {
    fn default() -> Self {
        Self { early_stopping: None, checkpoint: Checkpointing::default(), reduce_on_plateau: None, stop_on_nan: true }
    }
}

/// Whether a monitored metric should go down or up; `auto` infers it from the name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Auto,
    Min,
    Max,
}

fn default_monitor() -> String {
    "val_loss".into()
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    #[serde(default = "default_monitor")]
    pub monitor: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_patience")]
    pub patience: u32,
    #[serde(default)]
    pub min_delta: f64,
}

fn default_patience() -> u32 {
    5
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Checkpointing {
    /// Write `checkpoints/last.safetensors` every N epochs (and always after the last).
    pub every_n_epochs: u32,
    /// Keep `checkpoints/best.safetensors` for the best value of `monitor`.
    pub save_best: bool,
    pub monitor: String,
    pub mode: Mode,
}

impl Default for Checkpointing {
    fn default() -> Self {
        Self { every_n_epochs: 1, save_best: true, monitor: default_monitor(), mode: Mode::Auto }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReduceOnPlateau {
    #[serde(default = "default_monitor")]
    pub monitor: String,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_plateau_factor")]
    pub factor: f64,
    #[serde(default = "default_plateau_patience")]
    pub patience: u32,
    #[serde(default)]
    pub min_lr: f64,
    #[serde(default)]
    pub min_delta: f64,
}

fn default_plateau_factor() -> f64 {
    0.1
}
fn default_plateau_patience() -> u32 {
    2
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Tracking {
    pub trackers: Vec<PluginSpec>,
    /// Send the resolved experiment to the trackers as the run's parameters.
    pub log_params: bool,
    /// Send training-step metrics every N steps (0: epoch metrics only).
    pub log_every_n_steps: u32,
}

impl Default for Tracking {
    fn default() -> Self {
        Self { trackers: Vec::new(), log_params: true, log_every_n_steps: 50 }
    }
}

/// Metric names callbacks may monitor.
pub const MONITORABLE: [&str; 8] =
    ["train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_mse", "val_mae", "val_f1_macro", "val_r2"];

impl Mode {
    /// `Min` or `Max` for a metric name (`Auto` resolved: accuracy/f1/r2 go up, the rest down).
    pub fn resolve(self, monitor: &str) -> Mode {
        match self {
            Mode::Auto if ["accuracy", "f1", "r2"].iter().any(|m| monitor.contains(m)) => Mode::Max,
            Mode::Auto => Mode::Min,
            explicit => explicit,
        }
    }
}

/// The parts every plugin section has, whatever else it holds: what `validate` resolves and
/// `training_config.json` records, for the dataset, the model and the lists alike.
pub trait PluginSection {
    fn spec(&self) -> (&str, &Value, Option<&ResolvedLibrary>);
    /// Records the exact component that ran: `name@=version`, the completed configuration, the
    /// library.
    fn record(&mut self, exact: String, config: Value, resolved: ResolvedLibrary);
}

impl PluginSection for PluginSpec {
    fn spec(&self) -> (&str, &Value, Option<&ResolvedLibrary>) {
        (&self.plugin, &self.config, self.resolved.as_ref())
    }
    fn record(&mut self, exact: String, config: Value, resolved: ResolvedLibrary) {
        (self.plugin, self.config, self.resolved) = (exact, config, Some(resolved));
    }
}

impl PluginSection for DatasetSection {
    fn spec(&self) -> (&str, &Value, Option<&ResolvedLibrary>) {
        (&self.plugin, &self.config, self.resolved.as_ref())
    }
    fn record(&mut self, exact: String, config: Value, resolved: ResolvedLibrary) {
        (self.plugin, self.config, self.resolved) = (exact, config, Some(resolved));
    }
}

/// A plugin section and where it sits in the experiment (`model`, `preprocessors[1]`).
pub struct SectionRef<'a> {
    pub path: String,
    pub kind: gymnos_plugin_api::ComponentKind,
    pub section: &'a dyn PluginSection,
}

impl Experiment {
    /// Every plugin section, in pipeline order: dataset, preprocessors, data augmentors,
    /// model, trackers.
    pub fn plugin_sections(&self) -> Vec<SectionRef<'_>> {
        use gymnos_plugin_api::ComponentKind as K;
        let list = |name: &str, kind, specs: &'_ [PluginSpec]| -> Vec<(String, K, usize)> {
            (0..specs.len()).map(|i| (format!("{name}[{i}]"), kind, i)).collect()
        };
        let mut out: Vec<SectionRef<'_>> =
            vec![SectionRef { path: "dataset".into(), kind: K::Dataset, section: &self.dataset }];
        for (path, kind, i) in list("preprocessors", K::Preprocessor, &self.preprocessors) {
            out.push(SectionRef { path, kind, section: &self.preprocessors[i] });
        }
        for (path, kind, i) in list("data_augmentors", K::DataAugmentor, &self.data_augmentors) {
            out.push(SectionRef { path, kind, section: &self.data_augmentors[i] });
        }
        out.push(SectionRef { path: "model".into(), kind: K::Model, section: &self.model });
        for (path, kind, i) in list("tracking.trackers", K::Tracker, &self.tracking.trackers) {
            out.push(SectionRef { path, kind, section: &self.tracking.trackers[i] });
        }
        out
    }

    /// The plugin sections in the order of [`Experiment::plugin_sections`], to record into.
    pub fn plugin_sections_mut(&mut self) -> Vec<&mut dyn PluginSection> {
        let mut out: Vec<&mut dyn PluginSection> = vec![&mut self.dataset];
        out.extend(self.preprocessors.iter_mut().map(|s| s as &mut dyn PluginSection));
        out.extend(self.data_augmentors.iter_mut().map(|s| s as &mut dyn PluginSection));
        out.push(&mut self.model);
        out.extend(self.tracking.trackers.iter_mut().map(|s| s as &mut dyn PluginSection));
        out
    }
}
