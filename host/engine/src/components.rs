//! The run's components, created from the resolved experiment through the plugin ABI.
//! Every call into a plugin goes through [`call`], so a failure (or a caught panic) reaches the
//! user as one line naming the plugin, its version, where it sits in the experiment, and the call.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use gymnos_host::{experiment::ResolvedPlugin, PluginManager};
use gymnos_plugin_api::{
    abi_stable::std_types::{RResult, RSlice, RStr, RVec},
    AugmentorBox, Component, CreateContext, DatasetBox, DatasetInfo, DeviceSpec, LoadedData, Metric, ModelBox,
    PluginError, PreprocessorBox, Samples as AbiSamples, Task, TrackerBox,
};
use gymnos_plugin_sdk::{from_handle, from_named, from_samples, to_handle, to_named, to_samples};
use tch::Tensor;

use crate::{data::Samples, seeds::derive};

/// Turns a plugin's result into ours, naming the plugin.
pub fn call<T>(plugin: &ResolvedPlugin, what: &str, result: RResult<T, PluginError>) -> Result<T> {
    result.into_result().map_err(|e| anyhow!("{} ({}) failed in {what}: {e}", plugin.label(), plugin.path))
}

/// What components are created with, besides their configuration.
pub struct Setup<'a> {
    pub manager: &'a PluginManager,
    pub device: DeviceSpec,
    pub seed: u64,
    pub base_dir: &'a Path,
    pub output_dir: Option<&'a Path>,
}

/// The model's side of creation.
pub struct ModelShape {
    pub input_shape: Vec<i64>,
    pub num_outputs: i64,
    pub task: Task,
}

impl Setup<'_> {
    fn create(&self, plugin: &ResolvedPlugin, index: u64, shape: Option<&ModelShape>) -> Result<Component> {
        let library = self.manager.load_installed(&plugin.library).with_context(|| format!("{} ({})", plugin.label(), plugin.path))?;
        let base_dir = self.base_dir.to_string_lossy();
        let output_dir = self.output_dir.map(|d| d.to_string_lossy()).unwrap_or_default();
        let context = CreateContext {
            device: self.device,
            seed: derive(self.seed, &plugin.path, &[index]),
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

    pub fn dataset(&self, plugin: &ResolvedPlugin) -> Result<Dataset> {
        match self.create(plugin, 0, None)? {
            Component::Dataset(inner) => Ok(Dataset { plugin: plugin.clone(), inner }),
            _ => unreachable!("kind checked in create"),
        }
    }

    /// Creates each plugin of a list (preprocessors, augmentors, trackers), in order.
    fn create_list<T>(&self, plugins: &[ResolvedPlugin], unwrap: fn(Component) -> Option<T>) -> Result<Vec<(ResolvedPlugin, T)>> {
        plugins
            .iter()
            .enumerate()
            .map(|(i, p)| Ok((p.clone(), unwrap(self.create(p, i as u64, None)?).expect("kind checked in create"))))
            .collect()
    }

    pub fn preprocessors(&self, plugins: &[ResolvedPlugin]) -> Result<Preprocessors> {
        let unwrap = |c| if let Component::Preprocessor(p) = c { Some(p) } else { None };
        Ok(Preprocessors(self.create_list(plugins, unwrap)?))
    }

    pub fn augmentors(&self, plugins: &[ResolvedPlugin]) -> Result<Augmentors> {
        let unwrap = |c| if let Component::DataAugmentor(a) = c { Some(a) } else { None };
        Ok(Augmentors(self.create_list(plugins, unwrap)?))
    }

    pub fn model(&self, plugin: &ResolvedPlugin, shape: &ModelShape) -> Result<Model> {
        match self.create(plugin, 0, Some(shape))? {
            Component::Model(inner) => Ok(Model { plugin: plugin.clone(), inner, num_outputs: shape.num_outputs }),
            _ => unreachable!("kind checked in create"),
        }
    }

    pub fn trackers(&self, plugins: &[ResolvedPlugin]) -> Result<Vec<(ResolvedPlugin, TrackerBox)>> {
        self.create_list(plugins, |c| if let Component::Tracker(t) = c { Some(t) } else { None })
    }
}

fn to_abi(samples: &Samples) -> AbiSamples {
    to_samples(samples.x.shallow_clone(), samples.y.shallow_clone())
}

fn from_abi(samples: AbiSamples) -> Samples {
    let (x, y) = from_samples(samples);
    Samples { x, y }
}

pub struct Dataset {
    pub plugin: ResolvedPlugin,
    inner: DatasetBox,
}

/// A loaded data set.
pub struct Loaded {
    pub info: DatasetInfo,
    pub all: Samples,
    pub test: Option<Samples>,
}

impl Dataset {
    pub fn load(&mut self) -> Result<Loaded> {
        let LoadedData { info, samples, test } = call(&self.plugin, "load", self.inner.load())?;
        let loaded = Loaded { info, all: from_abi(samples), test: test.into_option().map(from_abi) };
        // The data set's contract, checked once here so that the loss never sees bad targets.
        for (name, part) in std::iter::once(("samples", &loaded.all)).chain(loaded.test.iter().map(|t| ("test split", t))) {
            gymnos_plugin_sdk::harness::check_split(&loaded.info, &part.x, &part.y, name)
                .map_err(|e| anyhow!("{} ({}) broke the dataset contract: {e}", self.plugin.label(), self.plugin.path))?;
        }
        Ok(loaded)
    }

    pub fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        let handle = call(&self.plugin, "read_inputs", self.inner.read_inputs(RStr::from_str(&path.to_string_lossy())))?;
        Ok(from_handle(handle))
    }
}

/// The preprocessors, in order.
pub struct Preprocessors(Vec<(ResolvedPlugin, PreprocessorBox)>);

impl Preprocessors {
    /// Fits each preprocessor on the training split as transformed by the ones before it, and
    /// returns the transformed training split.
    pub fn fit_transform(&mut self, train: Samples) -> Result<Samples> {
        let mut current = train;
        for (plugin, p) in &mut self.0 {
            call(plugin, "fit", p.fit(to_abi(&current)))?;
            let x = Self::checked(plugin, current.x.size()[0], call(plugin, "transform", p.transform(to_handle(current.x.shallow_clone())))?)?;
            current = Samples { x, y: current.y };
        }
        Ok(current)
    }

    pub fn transform(&self, x: &Tensor) -> Result<Tensor> {
        let mut current = x.shallow_clone();
        for (plugin, p) in &self.0 {
            current = Self::checked(plugin, current.size()[0], call(plugin, "transform", p.transform(to_handle(current)))?)?;
        }
        Ok(current)
    }

    fn checked(plugin: &ResolvedPlugin, rows: i64, handle: gymnos_plugin_api::TensorHandle) -> Result<Tensor> {
        let out = from_handle(handle);
        if out.size().first() != Some(&rows) {
            bail!("{} ({}) transform changed the number of samples from {rows} to {:?}", plugin.label(), plugin.path, out.size().first());
        }
        Ok(out)
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
            let mine = crate::checkpoint::with_prefix(tensors, &format!("preprocessors.{i}."));
            call(plugin, "load_state", p.load_state(to_named(mine)))?;
        }
        Ok(())
    }
}

/// The augmentors, in order; shared by the loader threads.
pub struct Augmentors(Vec<(ResolvedPlugin, AugmentorBox)>);

impl Augmentors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn apply(&self, batch: Samples, seed: u64) -> Result<Samples> {
        let mut current = batch;
        for (i, (plugin, a)) in self.0.iter().enumerate() {
            let n = current.len();
            current = from_abi(call(plugin, "augment", a.augment(to_abi(&current), derive(seed, "augmentor", &[i as u64])))?);
            if current.len() != n || current.y.size().first() != Some(&n) {
                bail!("{} ({}) augment returned {} samples for a batch of {n}", plugin.label(), plugin.path, current.len());
            }
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
            bail!("{} ({}) forward returned shape {:?}, expected [{n}, {}]", self.plugin.label(), self.plugin.path, out.size(), self.num_outputs);
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
pub struct Trackers {
    list: Vec<(ResolvedPlugin, TrackerBox)>,
    pub failures: Vec<String>,
}

impl Trackers {
    pub fn new(list: Vec<(ResolvedPlugin, TrackerBox)>) -> Self {
        Self { list, failures: Vec::new() }
    }

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
