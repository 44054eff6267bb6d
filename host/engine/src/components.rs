//! The run's components — data set, preprocessors, augmentors, model, trackers — created from
//! the resolved experiment through the plugin ABI and wrapped in types that check each
//! plugin's contract. Every call into a plugin goes through [`call`], so a failure (or a caught
//! panic) reaches the user as one line naming the plugin, its version, where it sits in the
//! experiment, and the call.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use gymnos_host::{experiment::ResolvedPlugin, PluginManager};
use gymnos_plugin_api::{
    abi_stable::std_types::{RResult, RSlice, RStr, RVec},
    rng::derive_seed,
    AugmentorBox, Component, CreateContext, DatasetBox, DatasetInfo, DeviceSpec, LoadedData, Metric, ModelBox,
    PluginError, PreprocessorBox, Samples as AbiSamples, Task, TensorHandle, TrackerBox,
};
use gymnos_plugin_sdk::{contract, from_handle, from_named, from_samples, to_handle, to_named, to_samples};
use tch::Tensor;

use crate::{checkpoint::with_prefix, data::Examples, loader::BatchTransform};

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

impl ComponentFactory<'_> {
    fn create(&self, plugin: &ResolvedPlugin, index: u64, shape: Option<&ModelShape>) -> Result<Component> {
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
        let component = library
            .create(&plugin.name, &plugin.config.to_string(), &context)
            .map_err(|e| anyhow!("{} ({}) failed in create: {}", plugin.label(), plugin.path, e.error))?;
        if component.kind() != plugin.kind {
            bail!("{} ({}): the library created a {} instead", plugin.label(), plugin.path, component.kind());
        }
        Ok(component)
    }

    /// Creates each plugin of a list, in order.
    fn create_each<T>(
        &self,
        plugins: &[&ResolvedPlugin],
        unwrap: fn(Component) -> Option<T>,
    ) -> Result<Vec<(ResolvedPlugin, T)>> {
        let created = plugins.iter().enumerate().map(|(i, &p)| {
            let component = unwrap(self.create(p, i as u64, None)?).expect("kind checked in create");
            Ok((p.clone(), component))
        });
        created.collect()
    }

    pub fn dataset(&self, plugin: &ResolvedPlugin) -> Result<Dataset> {
        match self.create(plugin, 0, None)? {
            Component::Dataset(inner) => Ok(Dataset { plugin: plugin.clone(), inner }),
            _ => unreachable!("kind checked in create"),
        }
    }

    pub fn preprocessors(&self, plugins: &[&ResolvedPlugin]) -> Result<Preprocessors> {
        let unwrap = |c| if let Component::Preprocessor(p) = c { Some(p) } else { None };
        Ok(Preprocessors(self.create_each(plugins, unwrap)?))
    }

    pub fn augmentors(&self, plugins: &[&ResolvedPlugin], task: Task, num_outputs: i64) -> Result<Augmentors> {
        let unwrap = |c| if let Component::DataAugmentor(a) = c { Some(a) } else { None };
        Ok(Augmentors { list: self.create_each(plugins, unwrap)?, task, num_outputs })
    }

    pub fn model(&self, plugin: &ResolvedPlugin, shape: &ModelShape) -> Result<Model> {
        match self.create(plugin, 0, Some(shape))? {
            Component::Model(inner) => Ok(Model { plugin: plugin.clone(), inner, num_outputs: shape.num_outputs }),
            _ => unreachable!("kind checked in create"),
        }
    }

    pub fn trackers(&self, plugins: &[&ResolvedPlugin]) -> Result<Trackers> {
        let unwrap = |c| if let Component::Tracker(t) = c { Some(t) } else { None };
        Ok(Trackers { list: self.create_each(plugins, unwrap)?, failures: Vec::new() })
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

/// The preprocessors, in order.
pub struct Preprocessors(Vec<(ResolvedPlugin, PreprocessorBox)>);

impl Preprocessors {
    /// Fits each preprocessor on the training split as transformed by the ones before it, and
    /// returns the transformed training split.
    pub fn fit_transform(&mut self, train: Examples) -> Result<Examples> {
        let mut current = train;
        for (plugin, p) in &mut self.0 {
            call(plugin, "fit", p.fit(to_abi(&current)))?;
            let rows = current.len();
            let x = checked_rows(plugin, rows, call(plugin, "transform", p.transform(to_handle(current.x)))?)?;
            current = Examples { x, y: current.y };
        }
        Ok(current)
    }

    pub fn transform(&self, x: &Tensor) -> Result<Tensor> {
        let mut current = x.shallow_clone();
        for (plugin, p) in &self.0 {
            let rows = current.size()[0];
            current = checked_rows(plugin, rows, call(plugin, "transform", p.transform(to_handle(current)))?)?;
        }
        Ok(current)
    }

    pub fn transform_examples(&self, examples: Examples) -> Result<Examples> {
        Ok(Examples { x: self.transform(&examples.x)?, y: examples.y })
    }

    /// Fitted states, named `preprocessors.<index>.<name>`.
    pub fn states(&self) -> Result<Vec<(String, Tensor)>> {
        let mut all = Vec::new();
        for (i, (plugin, p)) in self.0.iter().enumerate() {
            for (name, t) in from_named(call(plugin, "state", p.state())?) {
                all.push((format!("preprocessors.{i}.{name}"), t));
            }
        }
        Ok(all)
    }

    pub fn load_states(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        for (i, (plugin, p)) in self.0.iter_mut().enumerate() {
            let mine = with_prefix(tensors, &format!("preprocessors.{i}."));
            call(plugin, "load_state", p.load_state(to_named(mine)))?;
        }
        Ok(())
    }
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
