//! A session: one `run` or `resume` of a resolved experiment, stage by stage in run order.
//! [`Session::prepare`] runs the stages up to the first epoch — `load_plugins`, `load_dataset`,
//! `split`, `preprocess`, `build_model` (and the checkpoint's restore when resuming) — and
//! writes nothing, so that a run refused there leaves no run folder. [`Session::train`] then
//! runs `train`, `test` and `save_model` with the run's observers and returns the
//! [`Outcome`]. Each stage is a `tracing` span (its duration lands in `execution.log`) and is
//! timed into `metrics.json`.

use std::{path::Path, rc::Rc, sync::Arc, time::Instant};

use anyhow::{bail, Context, Result};
use gymnos_host::{
    experiment::{Precision, ResolvedExperiment, Training},
    record::{DataDescription, DataMode, DistributedRun},
    PluginManager,
};
use gymnos_plugin_api::{rng::derive_seed, ComponentKind, DataPart, DatasetInfo};

use crate::{
    callbacks::CallbackState,
    checkpoint::{self, Checkpoint},
    components::{
        ComponentFactory, DatasetForm, IndexedDataset, ModelShape, Preprocessors, StreamedSplit, WholeDataset,
    },
    data::{first_non_finite, split, split_sizes, BatchSource, Order, Shuffle, Splits},
    device::{self, Placement},
    distributed::{DataParallel, Fingerprint},
    evaluation::LossFn,
    events::{Event, Observers, Resumed, RunStart},
    fingerprint::DataFingerprint,
    learner::{seed_torch, Learner, Replicas},
    loader::{Loader, LoaderSettings},
    optim::{LossScaler, Optimizer},
    outcome::Outcome,
    trainer::{FirstBatch, Trainer},
};

/// The store key of rank 0's fitted preprocessors.
const FITTED_PREPROCESSORS: &str = "fitted-preprocessors";

/// The stages' durations, in the order they ran.
#[derive(Default)]
pub struct Stages(pub Vec<(String, f64)>);

impl Stages {
    /// Runs stage `name` inside a tracing span of the same name and times it.
    pub fn run<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let (result, seconds) = timed(name, f);
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += seconds,
            None => self.0.push((name.to_string(), seconds)),
        }
        result
    }
}

/// Runs `f` as stage `name`: a tracing span, its start and end in the log. Returns its result
/// and seconds.
fn timed<T>(name: &str, f: impl FnOnce() -> Result<T>) -> (Result<T>, f64) {
    let span = tracing::info_span!("stage", stage = name);
    let _entered = span.enter();
    let started = Instant::now();
    tracing::info!("{name}: started");
    let result = f();
    let seconds = started.elapsed().as_secs_f64();
    match &result {
        Ok(_) => tracing::info!("{name}: done in {seconds:.2}s"),
        // The user gets the error once, as the command's last line; the log keeps it too.
        Err(e) => tracing::error!(target: "log_only", "{name}: failed after {seconds:.2}s: {e:#}"),
    }
    (result, seconds)
}

/// A run of one resolved experiment on this machine (in a data-parallel run, this rank's part).
pub struct Session<'a> {
    manager: &'a PluginManager,
    resolved: ResolvedExperiment,
    placement: Placement,
    /// The other ranks, in a data-parallel run.
    parallel: Option<Rc<DataParallel>>,
}

/// What the stages before the first epoch made: the trainer, and what the run starts with.
pub struct Prepared<'s> {
    pub trainer: Trainer<'s>,
    pub start: RunStart,
}

impl<'a> Session<'a> {
    /// A session of `resolved`; a device this machine lacks is refused here, before anything
    /// loads.
    pub fn new(manager: &'a PluginManager, resolved: ResolvedExperiment) -> Result<Self> {
        let placement = device::select(resolved.experiment.training.device)?;
        Ok(Self { manager, resolved, placement, parallel: None })
    }

    /// A session of one rank of a data-parallel run: on CUDA, the GPU of its local rank.
    pub fn for_rank(manager: &'a PluginManager, resolved: ResolvedExperiment, local_rank: u32) -> Result<Self> {
        let placement = device::select_for_rank(resolved.experiment.training.device, local_rank)?;
        Ok(Self { manager, resolved, placement, parallel: None })
    }

    /// Makes this session a rank of `parallel`'s run: it trains on its shard and averages
    /// gradients with the others.
    pub fn join(&mut self, parallel: Rc<DataParallel>) {
        self.parallel = Some(parallel);
    }

    /// What must be the same on every rank of a data-parallel run.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut experiment = serde_json::to_value(&self.resolved.experiment).unwrap_or_default();
        // Library paths may differ between nodes; their hashes may not.
        strip_library_paths(&mut experiment);
        let plugins = self
            .resolved
            .plugins
            .iter()
            .map(|p| (p.path.clone(), format!("{}@{} {}", p.name, p.version, p.library.sha256)))
            .collect();
        Fingerprint {
            experiment_sha256: gymnos_host::hash::sha256_bytes(experiment.to_string().as_bytes()),
            plugins,
            libtorch: env!("GYMNOS_LIBTORCH_BUILD").to_string(),
        }
    }

    pub fn resolved(&self) -> &ResolvedExperiment {
        &self.resolved
    }

    pub fn placement(&self) -> Placement {
        self.placement
    }

    pub fn factory<'s>(&'s self, output_dir: Option<&'s Path>) -> ComponentFactory<'s> {
        ComponentFactory {
            manager: self.manager,
            device: self.placement.spec,
            seed: self.resolved.experiment.experiment.seed,
            base_dir: &self.resolved.base_dir,
            output_dir,
        }
    }

    /// Everything up to the first epoch: components, data, model, and the checkpoint's state
    /// when resuming. Writes nothing (`validate --deep` runs it too).
    pub fn prepare(&self, checkpoint: Option<Checkpoint>) -> Result<Prepared<'_>> {
        let exp = &self.resolved.experiment;
        let settings = &exp.training;
        let seed = exp.experiment.seed;
        let device = self.placement.device;
        let hardware = device::probe_hardware(device);
        tracing::info!("device: {device:?}, libtorch {}", env!("GYMNOS_LIBTORCH_BUILD"));
        let factory = self.factory(None);
        let mut stages = Stages::default();

        let preprocessor_plugins: Vec<_> = self.resolved.of_kind(ComponentKind::Preprocessor).collect();
        let (dataset, preprocessors) = stages.run("load_plugins", || {
            Ok((factory.dataset(self.resolved.dataset())?, factory.preprocessors(&preprocessor_plugins)?))
        })?;
        let data = match dataset {
            DatasetForm::Whole(dataset) => self.in_memory(&mut stages, *dataset, preprocessors, checkpoint.as_ref())?,
            DatasetForm::Indexed(dataset) => self.streamed(&mut stages, dataset, preprocessors, checkpoint.as_ref())?,
        };
        self.share_fitted(&data.preprocessors, checkpoint.is_some())?;
        let PreparedData { info, fingerprint, splits, preprocessors, streamed_from } = data;
        let loss = LossFn::for_task(settings.loss, info.task)?;
        let class_names: Vec<String> = info.class_names.iter().map(|c| c.to_string()).collect();
        let input_shape = input_shape(&splits)?;
        let description = describe(&info, &splits, &class_names, &input_shape, streamed_from.is_some());

        let augmentor_plugins: Vec<_> = self.resolved.of_kind(ComponentKind::DataAugmentor).collect();
        let augmentors = factory.augmentors(&augmentor_plugins, info.task, info.num_outputs)?;
        let model = stages.run("build_model", || {
            seed_torch(derive_seed(seed, "init", &[]));
            let shape = ModelShape { input_shape: input_shape.clone(), num_outputs: info.num_outputs, task: info.task };
            factory.model(self.resolved.model(), &shape)
        })?;
        let parameters = model.parameters()?;
        let count: i64 = parameters.iter().map(|(_, t)| t.numel() as i64).sum();
        tracing::info!("{}: {} parameter tensors, {count} parameters", self.resolved.model().label(), parameters.len());
        warn_about_precision(settings.precision, device);
        let learner = Learner {
            model,
            optimizer: Optimizer::new(settings.optimizer.clone(), parameters),
            loss,
            device,
            precision: settings.precision,
            grad_clip_norm: settings.grad_clip_norm,
            scaler: (settings.precision == Precision::Fp16).then(LossScaler::new),
            replicas: None,
        };
        let mut trainer = Trainer {
            settings,
            log_every: exp.tracking.log_every_n_steps,
            seed,
            info,
            class_names,
            splits,
            preprocessors,
            streamed_from,
            augmentors,
            learner,
            callbacks: CallbackState::new(&settings.callbacks),
            first_epoch: 0,
            history: Default::default(),
            data_fingerprint: fingerprint,
            parallel: self.parallel.clone(),
            resume_at: None,
        };
        let resumed = match checkpoint {
            Some(checkpoint) => {
                trainer.restore(checkpoint).context("restoring the checkpoint")?;
                tracing::info!("resuming after epoch {}", trainer.first_epoch);
                Some(Resumed { epoch: trainer.first_epoch, history: trainer.history.clone() })
            }
            None => None,
        };
        let distributed = self.parallel.as_ref().map(|dp| DistributedRun {
            world_size: dp.size(),
            nodes: dp.world.nodes(),
            backend: dp.backend.name().to_string(),
            hosts: dp.coordinator.hosts(),
            launcher: dp.world.launcher.clone(),
            world_sizes: Vec::new(),
        });
        let start = RunStart {
            hardware,
            data: description,
            stage_seconds: stages.0,
            epochs: settings.epochs,
            resumed,
            distributed,
        };
        Ok(Prepared { trainer, start })
    }

    /// What `run` and `validate --deep` check before a run folder exists, so that a run they
    /// refuse leaves nothing behind: every tracker can be created (for `run_dir`, where the run
    /// would be), and the first batch goes through the whole run
    /// ([`Trainer::check_first_batch`], which changes nothing).
    pub fn check(&self, prepared: &mut Prepared<'_>, run_dir: &Path) -> Result<FirstBatch> {
        let trackers: Vec<_> = self.resolved.of_kind(ComponentKind::Tracker).collect();
        drop(self.factory(Some(run_dir)).trackers(&trackers)?);
        prepared.trainer.check_first_batch()
    }

    /// The stages from the first epoch on, with the run folder in place and `observers`
    /// attached: `train`, then (unless the epochs were paused or interrupted) `test` and
    /// `save_model`. The observers see every event up to [`Event::RunEnded`].
    pub fn train(&self, prepared: Prepared<'_>, observers: &mut Observers) -> Outcome {
        let Prepared { mut trainer, start } = prepared;
        let outcome = match self.train_stages(&mut trainer, &start, observers) {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed(e),
        };
        match observers.emit_to_all(&Event::RunEnded(&outcome)) {
            // The record could not say how the run ended: that is how it ended.
            Err(e) if !matches!(outcome, Outcome::Failed(_)) => Outcome::Failed(e),
            _ => outcome,
        }
    }

    fn train_stages(&self, trainer: &mut Trainer<'_>, start: &RunStart, observers: &mut Observers) -> Result<Outcome> {
        observers.emit(&Event::RunStarted(start))?;
        let outcome = self.stage("train", observers, |observers| {
            let outcome = trainer.fit(observers);
            observers.emit(&Event::TrainingEnded)?;
            outcome
        })?;
        if let Some(dp) = &self.parallel {
            // Every rank's copy, for the record: they must be the same.
            tracing::info!("rank {}: model sha256 {}", dp.rank(), trainer.model_digest()?);
        }
        if !outcome.trained() {
            return Ok(outcome);
        }
        self.stage("test", observers, |observers| trainer.test(observers))?;
        self.stage("save_model", observers, |observers| {
            let model = trainer.final_model()?;
            observers.emit(&Event::ModelReady(&model))?;
            Ok(())
        })?;
        Ok(outcome)
    }

    /// Runs a stage after the run folder exists; its time reaches the observers whatever its
    /// result.
    fn stage<T>(
        &self,
        name: &str,
        observers: &mut Observers,
        f: impl FnOnce(&mut Observers) -> Result<T>,
    ) -> Result<T> {
        let (result, seconds) = timed(name, || f(observers));
        observers.emit(&Event::StageEnded { stage: name, seconds })?;
        result
    }

    /// A data set loaded whole: split, then preprocessed, in memory.
    fn in_memory(
        &self,
        stages: &mut Stages,
        mut dataset: WholeDataset,
        mut preprocessors: Preprocessors,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PreparedData> {
        let exp = &self.resolved.experiment;
        let data = stages.run("load_dataset", || dataset.load())?;
        let fingerprint = DataFingerprint::of_loaded(&data.info, &data.samples, data.test.as_ref());
        fingerprint.check_unchanged(checkpoint.and_then(|c| c.state.data.as_ref()))?;
        let (train, val, test) = stages.run("split", || {
            split(data.samples, data.test, &exp.dataset.split, exp.dataset.shuffle, exp.experiment.seed)
        })?;
        let splits = stages.run("preprocess", || {
            let raw = [train.x.shallow_clone(), val.x.shallow_clone(), test.x.shallow_clone()];
            let train = match self.fitted_states(checkpoint)? {
                Some(states) => {
                    preprocessors.load_states(&states)?;
                    preprocessors.transform_samples(train)?
                }
                None => preprocessors.fit_transform(train)?,
            };
            let val = preprocessors.transform_samples(val)?;
            let test = preprocessors.transform_samples(test)?;
            // The model must see finite inputs: one pass over each split names the stage that
            // made NaN or infinite values, before any training step turns them into a NaN loss.
            for ((x, raw), name) in
                [&train.x, &val.x, &test.x].into_iter().zip(&raw).zip(["training", "validation", "test"])
            {
                if first_non_finite(x).is_some() {
                    return Err(preprocessors.blame_non_finite(raw, name, &dataset.plugin));
                }
            }
            Ok(Splits { train: Box::new(train), val: Box::new(val), test: Box::new(test) })
        })?;
        Ok(PreparedData {
            info: data.info,
            fingerprint,
            splits,
            preprocessors: Arc::new(preprocessors),
            streamed_from: None,
        })
    }

    /// A data set read by index: the splits are lists of indices; batches are read, and
    /// preprocessed, as training goes. The preprocessors fit on a stream of training batches.
    fn streamed(
        &self,
        stages: &mut Stages,
        dataset: Arc<IndexedDataset>,
        mut preprocessors: Preprocessors,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PreparedData> {
        let exp = &self.resolved.experiment;
        let description = dataset.description.clone();
        tracing::info!(
            "{}: streaming {} samples{}",
            dataset.plugin.label(),
            description.len,
            description.test_len.into_option().map(|n| format!(" and a test split of {n}")).unwrap_or_default()
        );
        let (n, test_len) = (description.len as i64, description.test_len.into_option());
        let fingerprint = DataFingerprint::of_indexed(&description.info, description.len, test_len, |part, at| {
            dataset.read(part, at)
        })?;
        fingerprint.check_unchanged(checkpoint.and_then(|c| c.state.data.as_ref()))?;
        let (n_train, n_val) = stages.run("split", || {
            split_sizes(n as usize, test_len.is_some(), &exp.dataset.split).map(|(t, v)| (t as i64, v as i64))
        })?;
        let order = match exp.dataset.shuffle {
            true => Order::Shuffled(Shuffle::new(n as u64, derive_seed(exp.experiment.seed, "split", &[]))),
            false => Order::Identity,
        };
        let part = |part: DataPart, order: &Order, start: i64, len: i64| StreamedSplit {
            dataset: dataset.clone(),
            part,
            order: order.clone(),
            start,
            len,
            preprocessors: None,
        };
        let train = part(DataPart::Samples, &order, 0, n_train);
        let val = part(DataPart::Samples, &order, n_train, n_val);
        let test = match test_len {
            Some(n_test) => part(DataPart::Test, &Order::Identity, 0, n_test as i64),
            None => part(DataPart::Samples, &order, n_train + n_val, n - n_train - n_val),
        };
        check_batch_memory(&exp.training, &fingerprint.input_shape, n_train, n_val.max(test.len))?;
        let preprocessors = stages.run("preprocess", || {
            match self.fitted_states(checkpoint)? {
                Some(states) => preprocessors.load_states(&states)?,
                None => {
                    let whole = preprocessors.not_incremental();
                    if !whole.is_empty() {
                        bail!(
                            "{} cannot fit on a streaming data set: it fits only on the whole training split at once (its plugin predates API 1.2 or has no batch-by-batch fit); load the data set in memory or choose a preprocessor that fits batch by batch",
                            whole.join(", ")
                        );
                    }
                    let settings = self.loader_settings(exp.training.eval_batch_size, None);
                    let device = self.placement.device;
                    preprocessors.fit_streamed(|fit_batch| {
                        let loader = Loader::new(Box::new(train.clone()), device, true, settings, 0);
                        std::thread::scope(|scope| {
                            for batch in loader.in_order(scope) {
                                let batch = batch?.to_device(tch::Device::Cpu);
                                if !batch.is_empty() {
                                    fit_batch(batch)?;
                                }
                            }
                            Ok(())
                        })
                    })?;
                }
            }
            Ok(Arc::new(preprocessors))
        })?;
        let with_preprocessors = |mut split: StreamedSplit| -> Box<dyn BatchSource> {
            split.preprocessors = Some(preprocessors.clone());
            Box::new(split)
        };
        let splits =
            Splits { train: with_preprocessors(train), val: with_preprocessors(val), test: with_preprocessors(test) };
        Ok(PreparedData {
            info: description.info.clone(),
            fingerprint,
            splits,
            preprocessors,
            streamed_from: Some(dataset),
        })
    }

    /// The preprocessors' states when they are not to be fitted here: a resumed run's (from its
    /// checkpoint), or, in a fresh data-parallel run, rank 0's (each fits once, on rank 0).
    fn fitted_states(&self, checkpoint: Option<&Checkpoint>) -> Result<Option<Vec<(String, tch::Tensor)>>> {
        if let Some(checkpoint) = checkpoint {
            return Ok(Some(checkpoint.tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()));
        }
        match &self.parallel {
            Some(dp) if !dp.is_root() => {
                let bytes = dp.coordinator.receive(FITTED_PREPROCESSORS)?;
                Ok(Some(checkpoint::deserialize(&bytes).context("rank 0's fitted preprocessors")?.0))
            }
            _ => Ok(None),
        }
    }

    /// Rank 0 of a fresh data-parallel run leaves its fitted preprocessors for the others.
    fn share_fitted(&self, preprocessors: &Preprocessors, resumed: bool) -> Result<()> {
        match &self.parallel {
            Some(dp) if dp.is_root() && !resumed => {
                let bytes = checkpoint::serialize(&preprocessors.states()?, None)?;
                dp.coordinator.publish(FITTED_PREPROCESSORS, &bytes)
            }
            _ => Ok(()),
        }
    }

    /// Gives every rank rank 0's model, once every rank is prepared (a data-parallel run).
    pub fn replicate(&self, prepared: &mut Prepared<'_>) -> Result<()> {
        let Some(dp) = &self.parallel else { return Ok(()) };
        let learner = &mut prepared.trainer.learner;
        let parameters = learner.model.parameters()?;
        learner.replicas = Some(Replicas::new(dp.clone(), &mut learner.model, &parameters)?);
        Ok(())
    }

    /// How batches of `batch_size` are made off the training thread (never kept on the device).
    fn loader_settings(&self, batch_size: u32, limit: Option<u32>) -> LoaderSettings {
        let training = &self.resolved.experiment.training;
        LoaderSettings {
            batch_size: batch_size as i64,
            workers: training.num_workers as usize,
            prefetch: training.prefetch_batches as usize,
            device_cache_bytes: 0,
            limit,
            shard: None,
        }
    }
}

fn warn_about_precision(precision: Precision, device: tch::Device) {
    if precision == Precision::Fp16 && !device.is_cuda() {
        tracing::warn!(
            "training.precision fp16 needs CUDA; on {device:?} the run trains in fp32 (bf16 runs on the CPU)"
        );
    }
    if precision == Precision::Bf16 && !device.is_cuda() && device::cpu_has_bf16() == Some(false) {
        tracing::warn!(
            "training.precision bf16: this CPU has no bfloat16 instructions (avx512_bf16, amx_bf16); libtorch emulates them and the run may be slower than in fp32"
        );
    }
}

/// The data set's splits, ready for the model, and how they are read.
struct PreparedData {
    info: DatasetInfo,
    fingerprint: DataFingerprint,
    splits: Splits,
    preprocessors: Arc<Preprocessors>,
    /// The data set the splits stream from; none when they are in memory.
    streamed_from: Option<Arc<IndexedDataset>>,
}

/// Removes `resolved.library` (a path) from every plugin section of a recorded experiment.
fn strip_library_paths(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(resolved)) = map.get_mut("resolved") {
                resolved.remove("library");
            }
            map.values_mut().for_each(strip_library_paths);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_library_paths),
        _ => {}
    }
}

/// One sample's shape as the model sees it: after preprocessing.
/// A training and an evaluation batch of a streamed data set fit in memory (as float32),
/// before anything reads one: batch sizes are the user's numbers, and nothing in memory clamps
/// them (a split in memory is its own bound).
fn check_batch_memory(settings: &Training, input_shape: &[i64], train: i64, longest_eval: i64) -> Result<()> {
    let features = input_shape.iter().try_fold(1u64, |n, &d| n.checked_mul(u64::try_from(d).ok()?));
    let batches = [
        ("training.batch_size", u64::from(settings.batch_size).min(train as u64)),
        ("training.eval_batch_size", u64::from(settings.eval_batch_size).min(longest_eval as u64)),
    ];
    for (field, samples) in batches {
        let what = format!("{field}: a batch of {samples} samples of shape {input_shape:?}");
        let bytes = features.and_then(|f| gymnos_plugin_sdk::memory::bytes_of(&[samples, f], 4));
        gymnos_plugin_sdk::memory::ensure_bytes_fit(&what, bytes).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    }
    Ok(())
}

fn input_shape(splits: &Splits) -> Result<Vec<i64>> {
    let first = match splits.train.in_memory() {
        Some(train) => train.narrow(0, 1),
        None => splits.train.gather(&[0])?,
    };
    Ok(first.x.size()[1..].to_vec())
}

fn describe(
    info: &DatasetInfo,
    splits: &Splits,
    class_names: &[String],
    input_shape: &[i64],
    streamed: bool,
) -> DataDescription {
    DataDescription {
        task: info.task.into(),
        mode: if streamed { DataMode::Indexed } else { DataMode::InMemory },
        train_samples: splits.train.len() as u64,
        val_samples: splits.val.len() as u64,
        test_samples: splits.test.len() as u64,
        feature_shape: info.feature_shape.to_vec(),
        input_shape: input_shape.to_vec(),
        num_outputs: info.num_outputs,
        class_names: class_names.to_vec(),
        dataset_notes: None,
    }
}
