//! The run's components — data set, preprocessors, augmentors, model, trackers — created from
//! the resolved experiment through the plugin ABI and wrapped in types that check each
//! plugin's contract. Every call into a plugin goes through [`call`], so a failure (or a caught
//! panic) reaches the user as one line naming the plugin, its version, where it sits in the
//! experiment, and the call.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::{anyhow, bail, Context, Result};
use gymnos_host::{experiment::ResolvedPlugin, PluginManager};
use gymnos_plugin_api::{
    abi_stable::std_types::{RResult, RSlice, RStr, RVec},
    rng::derive_seed,
    AugmentorBox, Component, CreateContext, DataPart, DatasetBox, DatasetInfo, DeviceSpec, IncrementalPreprocessorBox,
    IndexedDatasetBox, IndexedDescription, LoadedData, Metric, ModelBox, PluginError, PreprocessorBox,
    Samples as AbiSamples, StreamingComponent, Task, TensorHandle, TrackerBox,
};
use gymnos_plugin_sdk::{contract, from_handle, from_named, from_samples, to_handle, to_named, to_samples};
use tch::Tensor;

use crate::{
    checkpoint::with_prefix,
    data::{BatchSource, Examples, Order},
    loader::BatchTransform,
};

/// Turns a plugin's result into ours, naming the plugin.
pub fn call<T>(plugin: &ResolvedPlugin, what: &str, result: RResult<T, PluginError>) -> Result<T> {
    result.into_result().map_err(|e| anyhow!("{} ({}) failed in {what}: {e}", plugin.label(), plugin.path))
}

fn to_abi(examples: &Examples) -> AbiSamples {
    to_samples(examples.x.shallow_clone(), examples.y.shallow_clone())
}

fn from_abi(samples: AbiSamples) -> Examples {
    let (x, y) = from_samples(samples);
    Examples { x, y }
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

/// How a component is created: its 1.0 form, or (API 1.2) its streaming form first.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    V1,
    StreamingFirst,
}

/// What a plugin's create call gave.
enum Created {
    V1(Component),
    Streaming(StreamingComponent),
}

impl ComponentFactory<'_> {
    fn create(&self, plugin: &ResolvedPlugin, index: u64, shape: Option<&ModelShape>) -> Result<Component> {
        match self.create_in(plugin, index, shape, Form::V1)? {
            Created::V1(component) => Ok(component),
            Created::Streaming(_) => unreachable!("asked for the 1.0 form"),
        }
    }

    fn create_in(
        &self,
        plugin: &ResolvedPlugin,
        index: u64,
        shape: Option<&ModelShape>,
        form: Form,
    ) -> Result<Created> {
        let library = self
            .manager
            .load_installed(&plugin.library)
            .with_context(|| format!("{} ({})", plugin.label(), plugin.path))?;
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
        let config = plugin.config.to_string();
        let failed = |e: gymnos_host::library::CallError| {
            anyhow!("{} ({}) failed in create: {}", plugin.label(), plugin.path, e.error)
        };
        let streaming = match form {
            Form::StreamingFirst => library.create_streaming(&plugin.name, &config, &context).map_err(failed)?,
            Form::V1 => None,
        };
        let (kind, created) = match streaming {
            Some(streaming) => (streaming.kind(), Created::Streaming(streaming)),
            None => {
                let component = library.create(&plugin.name, &config, &context).map_err(failed)?;
                (component.kind(), Created::V1(component))
            }
        };
        if kind != plugin.kind {
            bail!("{} ({}): the library created a {kind} instead", plugin.label(), plugin.path);
        }
        Ok(created)
    }

    /// Creates each plugin of a list, in order.
    fn create_each<T>(
        &self,
        plugins: &[&ResolvedPlugin],
        shape: Option<&ModelShape>,
        unwrap: fn(Component) -> Option<T>,
    ) -> Result<Vec<(ResolvedPlugin, T)>> {
        let created = plugins.iter().enumerate().map(|(i, &p)| {
            let component = unwrap(self.create(p, i as u64, shape)?).expect("kind checked in create");
            Ok((p.clone(), component))
        });
        created.collect()
    }

    /// The data set, read by index when it streams (API 1.2), else loaded whole.
    pub fn dataset(&self, plugin: &ResolvedPlugin) -> Result<DataSet> {
        match self.create_in(plugin, 0, None, Form::StreamingFirst)? {
            Created::V1(Component::Dataset(inner)) => {
                Ok(DataSet::Whole(Box::new(Dataset { plugin: plugin.clone(), inner })))
            }
            Created::Streaming(StreamingComponent::IndexedDataset(inner)) => {
                Ok(DataSet::Indexed(Arc::new(IndexedDataset::new(plugin.clone(), inner)?)))
            }
            _ => unreachable!("kind checked in create_in"),
        }
    }

    /// The preprocessors, each in the form that fits batch by batch when it has one (API 1.2).
    pub fn preprocessors(&self, plugins: &[&ResolvedPlugin]) -> Result<Preprocessors> {
        let mut list = Vec::with_capacity(plugins.len());
        for (i, &plugin) in plugins.iter().enumerate() {
            let fitted = match self.create_in(plugin, i as u64, None, Form::StreamingFirst)? {
                Created::V1(Component::Preprocessor(p)) => Fitted::Whole(Mutex::new(p)),
                Created::Streaming(StreamingComponent::IncrementalPreprocessor(p)) => Fitted::Incremental(p),
                _ => unreachable!("kind checked in create_in"),
            };
            list.push((plugin.clone(), fitted));
        }
        Ok(Preprocessors(list))
    }

    pub fn augmentors(&self, plugins: &[&ResolvedPlugin], task: Task, num_outputs: i64) -> Result<Augmentors> {
        let unwrap = |c| if let Component::DataAugmentor(a) = c { Some(a) } else { None };
        // Since API 1.1 augmentors know the task and the outputs (mixing ones build soft
        // targets from them); the input shape is the model's business.
        let shape = ModelShape { input_shape: Vec::new(), num_outputs, task };
        Ok(Augmentors { list: self.create_each(plugins, Some(&shape), unwrap)?, task, num_outputs })
    }

    pub fn model(&self, plugin: &ResolvedPlugin, shape: &ModelShape) -> Result<Model> {
        match self.create(plugin, 0, Some(shape))? {
            Component::Model(inner) => Ok(Model { plugin: plugin.clone(), inner, num_outputs: shape.num_outputs }),
            _ => unreachable!("kind checked in create"),
        }
    }

    pub fn trackers(&self, plugins: &[&ResolvedPlugin]) -> Result<Trackers> {
        let unwrap = |c| if let Component::Tracker(t) = c { Some(t) } else { None };
        Ok(Trackers { list: self.create_each(plugins, None, unwrap)?, failures: Vec::new() })
    }
}

/// The run's data set, in the form its plugin gave.
pub enum DataSet {
    /// Loaded into memory at once (the 1.0 contract).
    Whole(Box<Dataset>),
    /// Read by index, a batch at a time (API 1.2).
    Indexed(Arc<IndexedDataset>),
}

impl DataSet {
    /// Features of new samples for `predict`.
    pub fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        match self {
            DataSet::Whole(d) => d.read_inputs(path),
            DataSet::Indexed(d) => d.read_inputs(path),
        }
    }
}

pub struct Dataset {
    pub plugin: ResolvedPlugin,
    inner: DatasetBox,
}

/// A data set loaded into memory.
pub struct DatasetContents {
    pub info: DatasetInfo,
    pub all: Examples,
    /// The test split the data set ships, if it ships one.
    pub test: Option<Examples>,
}

impl Dataset {
    /// Loads every sample; checks the data set's contract once here, so that the loss never
    /// sees bad targets.
    pub fn load(&mut self) -> Result<DatasetContents> {
        let LoadedData { info, samples, test } = call(&self.plugin, "load", self.inner.load())?;
        let contents = DatasetContents { info, all: from_abi(samples), test: test.into_option().map(from_abi) };
        let parts = std::iter::once(("samples", &contents.all)).chain(contents.test.iter().map(|t| ("test split", t)));
        for (name, part) in parts {
            contract::check_split(&contents.info, &part.x, &part.y, name).map_err(|e| {
                anyhow!("{} ({}) broke the dataset contract: {e}", self.plugin.label(), self.plugin.path)
            })?;
        }
        Ok(contents)
    }

    /// Features of new samples for `predict`.
    pub fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        let handle =
            call(&self.plugin, "read_inputs", self.inner.read_inputs(RStr::from_str(&path.to_string_lossy())))?;
        Ok(from_handle(handle))
    }
}

/// A data set read by index, shared by the loader threads.
pub struct IndexedDataset {
    pub plugin: ResolvedPlugin,
    inner: IndexedDatasetBox,
    pub description: IndexedDescription,
    /// Held during each read when the data set does not allow concurrent reads.
    serial: Option<Mutex<()>>,
}

impl IndexedDataset {
    fn new(plugin: ResolvedPlugin, inner: IndexedDatasetBox) -> Result<Self> {
        let description = call(&plugin, "describe", inner.describe())?;
        let label = || format!("{} ({})", plugin.label(), plugin.path);
        if description.len == 0 {
            bail!("{} describes a data set of no samples", label());
        }
        if description.test_len.into_option() == Some(0) {
            bail!("{} describes a shipped test split of no samples", label());
        }
        let info = &description.info;
        if info.task == Task::Classification && info.class_names.len() as i64 != info.num_outputs {
            bail!(
                "{} broke the dataset contract: {} class names for {} classes",
                label(),
                info.class_names.len(),
                info.num_outputs
            );
        }
        let serial = (!description.concurrent_reads).then(|| Mutex::new(()));
        Ok(Self { plugin, inner, description, serial })
    }

    pub fn info(&self) -> &DatasetInfo {
        &self.description.info
    }

    /// The samples of `part` at `indices`, checked against the data set's contract.
    pub fn read(&self, part: DataPart, indices: &[u64]) -> Result<Examples> {
        let _one_at_a_time = self.serial.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
        let samples = call(&self.plugin, "read", self.inner.read(part, RSlice::from_slice(indices)))?;
        let batch = from_abi(samples);
        let n = batch.len();
        if n == 0 && batch.y.size().first() == Some(&0) {
            return Ok(batch); // every sample of the batch was skipped, as configured
        }
        let broke =
            |e: String| anyhow!("{} ({}) broke the dataset contract: {e}", self.plugin.label(), self.plugin.path);
        if n > indices.len() as i64 {
            return Err(broke(format!("read returned {n} samples for {} indices", indices.len())));
        }
        contract::check_split(self.info(), &batch.x, &batch.y, "read").map_err(broke)?;
        Ok(batch)
    }

    /// What the reads noted (skipped samples...), a JSON object for the record.
    pub fn notes(&self) -> Result<serde_json::Value> {
        let text = call(&self.plugin, "notes", self.inner.notes())?;
        let notes: serde_json::Value = serde_json::from_str(text.as_str())
            .map_err(|e| anyhow!("{} ({}) notes are not JSON: {e}", self.plugin.label(), self.plugin.path))?;
        match notes.is_object() {
            true => Ok(notes),
            false => bail!("{} ({}) notes are not a JSON object", self.plugin.label(), self.plugin.path),
        }
    }

    pub fn read_inputs(&self, path: &Path) -> Result<Tensor> {
        let handle =
            call(&self.plugin, "read_inputs", self.inner.read_inputs(RStr::from_str(&path.to_string_lossy())))?;
        Ok(from_handle(handle))
    }
}

/// A split of a streaming data set, read and preprocessed per batch: the samples at positions
/// `start..start + len` of the data set's split order (a [`crate::data::Shuffle`], so that no
/// list of indices is held, whatever the size).
#[derive(Clone)]
pub struct StreamedSplit {
    pub dataset: Arc<IndexedDataset>,
    pub part: DataPart,
    pub order: Order,
    pub start: i64,
    pub len: i64,
    /// Applied to each batch read; none while the preprocessors are being fitted.
    pub preprocessors: Option<Arc<Preprocessors>>,
}

impl BatchSource for StreamedSplit {
    fn len(&self) -> i64 {
        self.len
    }

    fn gather(&self, positions: &[i64]) -> Result<Examples> {
        let indices: Vec<u64> = positions.iter().map(|&p| self.order.at(self.start + p) as u64).collect();
        let batch = self.dataset.read(self.part, &indices)?;
        match (&self.preprocessors, batch.is_empty()) {
            (Some(p), false) => p.transform_examples(batch),
            _ => Ok(batch),
        }
    }

    fn in_memory(&self) -> Option<&Examples> {
        None
    }

    fn fork(&self) -> Box<dyn BatchSource> {
        Box::new(self.clone())
    }
}

/// A preprocessor in the form its plugin gave.
enum Fitted {
    /// Fits on the whole training split at once (the 1.0 contract). Its transform may not run
    /// on several threads at once.
    Whole(Mutex<PreprocessorBox>),
    /// Fits batch by batch; transforms concurrently (API 1.2).
    Incremental(IncrementalPreprocessorBox),
}

impl Fitted {
    fn transform(&self, x: TensorHandle) -> RResult<TensorHandle, PluginError> {
        match self {
            Fitted::Whole(p) => p.lock().unwrap_or_else(|e| e.into_inner()).transform(x),
            Fitted::Incremental(p) => p.transform(x),
        }
    }
}

/// The preprocessors, in order.
pub struct Preprocessors(Vec<(ResolvedPlugin, Fitted)>);

impl Preprocessors {
    /// Fits each preprocessor on the training split as transformed by the ones before it, and
    /// returns the transformed training split.
    pub fn fit_transform(&mut self, train: Examples) -> Result<Examples> {
        let mut current = train;
        for (plugin, p) in &mut self.0 {
            match p {
                Fitted::Whole(p) => {
                    let p = p.get_mut().unwrap_or_else(|e| e.into_inner());
                    call(plugin, "fit", p.fit(to_abi(&current)))?;
                }
                Fitted::Incremental(p) => {
                    call(plugin, "begin_fit", p.begin_fit())?;
                    call(plugin, "fit_batch", p.fit_batch(to_abi(&current)))?;
                    call(plugin, "end_fit", p.end_fit())?;
                }
            }
            let rows = current.len();
            let x = checked_rows(plugin, rows, call(plugin, "transform", p.transform(to_handle(current.x)))?)?;
            current = Examples { x, y: current.y };
        }
        Ok(current)
    }

    /// The preprocessors that cannot fit batch by batch (built against an API before 1.2, or
    /// without that form), as `label (path)`.
    pub fn not_incremental(&self) -> Vec<String> {
        let whole = self.0.iter().filter(|(_, p)| matches!(p, Fitted::Whole(_)));
        whole.map(|(plugin, _)| format!("{} ({})", plugin.label(), plugin.path)).collect()
    }

    /// Fits each preprocessor on a stream of training batches: one pass over the split per
    /// preprocessor, each batch transformed by the ones before it. `pass` starts a pass.
    pub fn fit_streamed(
        &mut self,
        mut pass: impl FnMut(&mut dyn FnMut(Examples) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        for i in 0..self.0.len() {
            let (before, rest) = self.0.split_at_mut(i);
            let (plugin, Fitted::Incremental(p)) = &mut rest[0] else {
                bail!("{} ({}) cannot fit batch by batch", rest[0].0.label(), rest[0].0.path);
            };
            call(plugin, "begin_fit", p.begin_fit())?;
            pass(&mut |batch: Examples| {
                let x = transform_with(before, &batch.x)?;
                call(plugin, "fit_batch", p.fit_batch(to_samples(x, batch.y)))
            })?;
            call(plugin, "end_fit", p.end_fit())?;
        }
        Ok(())
    }

    pub fn transform(&self, x: &Tensor) -> Result<Tensor> {
        transform_with(&self.0, x)
    }

    pub fn transform_examples(&self, examples: Examples) -> Result<Examples> {
        Ok(Examples { x: self.transform(&examples.x)?, y: examples.y })
    }

    /// Fitted states, named `preprocessors.<index>.<name>`.
    pub fn states(&self) -> Result<Vec<(String, Tensor)>> {
        let mut all = Vec::new();
        for (i, (plugin, p)) in self.0.iter().enumerate() {
            let state = match p {
                Fitted::Whole(p) => p.lock().unwrap_or_else(|e| e.into_inner()).state(),
                Fitted::Incremental(p) => p.state(),
            };
            for (name, t) in from_named(call(plugin, "state", state)?) {
                all.push((format!("preprocessors.{i}.{name}"), t));
            }
        }
        Ok(all)
    }

    pub fn load_states(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        for (i, (plugin, p)) in self.0.iter_mut().enumerate() {
            let mine = to_named(with_prefix(tensors, &format!("preprocessors.{i}.")));
            let loaded = match p {
                Fitted::Whole(p) => p.get_mut().unwrap_or_else(|e| e.into_inner()).load_state(mine),
                Fitted::Incremental(p) => p.load_state(mine),
            };
            call(plugin, "load_state", loaded)?;
        }
        Ok(())
    }
}

/// `x` through each of `preprocessors`, in order.
fn transform_with(preprocessors: &[(ResolvedPlugin, Fitted)], x: &Tensor) -> Result<Tensor> {
    let mut current = x.shallow_clone();
    for (plugin, p) in preprocessors {
        let rows = current.size()[0];
        current = checked_rows(plugin, rows, call(plugin, "transform", p.transform(to_handle(current)))?)?;
    }
    Ok(current)
}

fn checked_rows(plugin: &ResolvedPlugin, rows: i64, handle: TensorHandle) -> Result<Tensor> {
    let out = from_handle(handle);
    if out.size().first() != Some(&rows) {
        bail!(
            "{} ({}) transform changed the number of samples from {rows} to {:?}",
            plugin.label(),
            plugin.path,
            out.size().first()
        );
    }
    Ok(out)
}

/// The augmentors, in order; shared by the loader threads.
pub struct Augmentors {
    list: Vec<(ResolvedPlugin, AugmentorBox)>,
    task: Task,
    num_outputs: i64,
}

impl Augmentors {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// What the loader applies to each training batch; none without augmentors.
    pub fn as_transform(&self) -> Option<&dyn BatchTransform> {
        (!self.is_empty()).then_some(self as &dyn BatchTransform)
    }
}

impl BatchTransform for Augmentors {
    /// Applies every augmentor to one batch, each with its own seed derived from `seed`.
    fn apply(&self, batch: Examples, seed: u64) -> Result<Examples> {
        let mut current = batch;
        for (i, (plugin, a)) in self.list.iter().enumerate() {
            let n = current.len();
            let out =
                call(plugin, "augment", a.augment(to_abi(&current), derive_seed(seed, "augmentor", &[i as u64])))?;
            current = from_abi(out);
            contract::check_augmented(self.task, self.num_outputs, n, &current.x, &current.y)
                .map_err(|e| anyhow!("{} ({}) augment {e}", plugin.label(), plugin.path))?;
        }
        Ok(current)
    }
}

pub struct Model {
    pub plugin: ResolvedPlugin,
    inner: ModelBox,
    num_outputs: i64,
}

impl Model {
    /// Runs the model; checks the output is `[n, num_outputs]` so that the loss never sees a
    /// shape it would fail on.
    pub fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let n = x.size()[0];
        let out = from_handle(call(&self.plugin, "forward", self.inner.forward(to_handle(x.shallow_clone()), train))?);
        if out.size() != [n, self.num_outputs] {
            bail!(
                "{} ({}) forward returned shape {:?}, expected [{n}, {}]",
                self.plugin.label(),
                self.plugin.path,
                out.size(),
                self.num_outputs
            );
        }
        Ok(out)
    }

    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(from_named(call(&self.plugin, "parameters", self.inner.parameters())?))
    }

    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(from_named(call(&self.plugin, "state", self.inner.state())?))
    }

    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        call(&self.plugin, "load_state", self.inner.load_state(to_named(tensors)))
    }
}

/// The trackers. A failing tracker is reported on the log and never stops the training.
#[derive(Default)]
pub struct Trackers {
    list: Vec<(ResolvedPlugin, TrackerBox)>,
    /// What failed, for the record (at most 100).
    pub failures: Vec<String>,
}

impl Trackers {
    fn each(&mut self, what: &str, mut f: impl FnMut(&mut TrackerBox) -> RResult<(), PluginError>) {
        for (plugin, tracker) in &mut self.list {
            if let Err(e) = call(plugin, what, f(tracker)) {
                tracing::warn!("{e:#}");
                if self.failures.len() < 100 {
                    self.failures.push(format!("{e:#}"));
                }
            }
        }
    }

    pub fn start(&mut self, run: &serde_json::Value) {
        let text = run.to_string();
        self.each("start", |t| t.start(RStr::from_str(&text)));
    }

    pub fn log_params(&mut self, params: &serde_json::Value) {
        let text = params.to_string();
        self.each("log_params", |t| t.log_params(RStr::from_str(&text)));
    }

    pub fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) {
        let metrics: Vec<Metric> = metrics.iter().map(|(n, v)| Metric { name: n.as_str().into(), value: *v }).collect();
        self.each("log_metrics", |t| t.log_metrics(step, RStr::from_str(scope), RSlice::from_slice(&metrics)));
    }

    pub fn finish(&mut self, status: &str) {
        self.each("finish", |t| t.finish(RStr::from_str(status)));
    }
}
