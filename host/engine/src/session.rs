//! A session: one `run` or `resume` of a resolved experiment, stage by stage in run order —
//! `load_plugins`, `load_dataset`, `split`, `preprocess`, `build_model` (and the checkpoint's
//! restore when resuming), then the trainer's `train`, `test` and `save_model`. Each stage is a
//! `tracing` span (its duration lands in `execution.log`) and is timed into `metrics.json`.

use std::{
    path::{Path, PathBuf},
    sync::{atomic::AtomicBool, Arc},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use gymnos_host::{
    experiment::{Precision, ResolvedExperiment},
    record::{self, DataDescription, DataMode, RunStatus, RunSummary, SweepTrial, TaskName},
    PluginManager,
};
use gymnos_plugin_api::{rng::derive_seed, ComponentKind, DataPart, DatasetInfo, DeviceSpec, Task};
use serde_json::json;

use crate::{
    callbacks::CallbackState,
    checkpoint::Checkpoint,
    components::{
        ComponentFactory, DataSet, Dataset, IndexedDataset, ModelShape, Preprocessors, StreamedSplit, Trackers,
    },
    data::{split, split_sizes, BatchSource, Order, Shuffle, Splits},
    device,
    evaluation::LossFn,
    loader::{Loader, LoaderSettings},
    optim::{LossScaler, Optimizer},
    progress::Progress,
    train::{seed_torch, Interrupted, Learner, Paused, Trainer},
};

/// Where a session starts.
pub enum Start<'a> {
    /// A new run. `create_run_dir` makes its folder once everything up to the first epoch has
    /// worked, so that a run refused by its data, its components or its model leaves none.
    Fresh {
        experiment_file: &'a Path,
        create_run_dir: &'a dyn Fn() -> Result<PathBuf>,
        /// The sweep the run is a trial of, for its record.
        sweep: Option<SweepTrial>,
    },
    /// The run in this folder, from its `checkpoints/last.safetensors`.
    Resume { run_dir: PathBuf },
}

impl Start<'_> {
    fn is_resume(&self) -> bool {
        matches!(self, Start::Resume { .. })
    }
}

pub struct Session<'a> {
    pub manager: &'a PluginManager,
    /// Set by SIGINT/SIGTERM.
    pub stop: Arc<AtomicBool>,
    pub resolved: ResolvedExperiment,
    pub bars: Option<indicatif::MultiProgress>,
    /// Stop, checkpointed, at the end of this epoch (a sweep's early stopping).
    pub stop_after_epoch: Option<u32>,
}

/// Times a stage into `summary` inside a tracing span of the same name.
pub fn stage<T>(summary: &mut RunSummary, name: &str, f: impl FnOnce(&mut RunSummary) -> Result<T>) -> Result<T> {
    let span = tracing::info_span!("stage", stage = name);
    let _entered = span.enter();
    let started = Instant::now();
    tracing::info!("{name}: started");
    let result = f(summary);
    let seconds = started.elapsed().as_secs_f64();
    summary.add_elapsed(name, seconds);
    match &result {
        Ok(_) => tracing::info!("{name}: done in {seconds:.2}s"),
        // The user gets the error once, as the command's last line; the log keeps it too.
        Err(e) => tracing::error!(target: "log_only", "{name}: failed after {seconds:.2}s: {e:#}"),
    }
    result
}

pub fn task_name(task: Task) -> TaskName {
    match task {
        Task::Classification => TaskName::Classification,
        Task::Regression => TaskName::Regression,
    }
}

impl Session<'_> {
    /// Runs the session and returns its run folder. Once the folder exists, the record says
    /// how the session ended (`completed`, `interrupted` or `failed` with the error).
    pub fn execute(&self, start: Start<'_>) -> Result<PathBuf> {
        let (mut summary, checkpoint) = match &start {
            Start::Fresh { sweep, .. } => {
                (RunSummary { started_at: record::now(), sweep: sweep.clone(), ..RunSummary::default() }, None)
            }
            Start::Resume { run_dir } => (RunSummary::load(run_dir)?, Some(last_checkpoint(run_dir)?)),
        };
        let resuming = start.is_resume();
        let prepared = self.prepare(&mut summary, checkpoint);
        let (mut trainer, run_dir) = match (prepared, start) {
            (Ok(trainer), Start::Fresh { create_run_dir, .. }) => (trainer, create_run_dir()?),
            (Ok(trainer), Start::Resume { run_dir }) => (trainer, run_dir),
            (Err(e), Start::Fresh { experiment_file, .. }) => {
                return Err(e).with_context(|| experiment_file.display().to_string());
            }
            (Err(e), Start::Resume { run_dir }) => {
                let ended = record_end(&mut summary, Err(e), &run_dir);
                return ended.with_context(|| format!("run {}", run_dir.display())).map(|()| run_dir);
            }
        };
        trainer.run_dir = run_dir.clone();
        let mut trackers = Trackers::default();
        let outcome = self.train(&mut trainer, &mut summary, &mut trackers, resuming);
        // The trackers' `finish` may upload the record: it sees the final one (a failure to
        // write it here is reported by the save after).
        summary.tracker_errors.append(&mut trackers.failures);
        mark_end(&mut summary, &outcome);
        let _ = summary.save(&run_dir);
        // Trackers know completed, failed and interrupted; a paused run is an interrupted one.
        let tracker_status = match status_of(&outcome) {
            RunStatus::Paused => RunStatus::Interrupted,
            status => status,
        };
        trackers.finish(tracker_status.name());
        summary.tracker_errors.append(&mut trackers.failures);
        let ended = record_end(&mut summary, outcome, &run_dir);
        if ended.is_ok() && summary.status == RunStatus::Completed {
            // The pictures and report.html; a run that trained well does not fail for them.
            if let Err(e) = gymnos_host::report::write_report(&run_dir) {
                tracing::warn!("the run's report was not written: {e}");
            }
        }
        ended.with_context(|| format!("run {}", run_dir.display())).map(|()| run_dir)
    }

    /// The stages from the first epoch on, with the run folder in place.
    fn train(
        &self,
        trainer: &mut Trainer<'_>,
        summary: &mut RunSummary,
        trackers: &mut Trackers,
        resuming: bool,
    ) -> Result<()> {
        *trackers = self.start_trackers(trainer, resuming)?;
        summary.save(&trainer.run_dir)?;
        stage(summary, "train", |summary| trainer.fit(summary, trackers))?;
        stage(summary, "test", |summary| trainer.test(summary, trackers))?;
        stage(summary, "save_model", |_| trainer.save_model())
    }

    fn factory<'s>(&'s self, device: DeviceSpec, output_dir: Option<&'s Path>) -> ComponentFactory<'s> {
        ComponentFactory {
            manager: self.manager,
            device,
            seed: self.resolved.experiment.experiment.seed,
            base_dir: &self.resolved.base_dir,
            output_dir,
        }
    }

    /// Everything up to the first epoch: components, data, model, and the checkpoint's state
    /// when resuming. Writes nothing (`validate --deep` runs it too).
    pub fn prepare(&self, summary: &mut RunSummary, checkpoint: Option<Checkpoint>) -> Result<Trainer<'_>> {
        let exp = &self.resolved.experiment;
        let settings = &exp.training;
        let seed = exp.experiment.seed;
        let (device, device_spec) = device::select(&settings.device)?;
        summary.hardware = Some(device::probe_hardware(device));
        tracing::info!("device: {device:?}, libtorch {}", env!("GYMNOS_LIBTORCH_BUILD"));
        let factory = self.factory(device_spec, None);

        let preprocessor_plugins: Vec<_> = self.resolved.of_kind(ComponentKind::Preprocessor).collect();
        let (dataset, preprocessors) = stage(summary, "load_plugins", |_| {
            Ok((factory.dataset(self.resolved.dataset())?, factory.preprocessors(&preprocessor_plugins)?))
        })?;
        let data = match dataset {
            DataSet::Whole(dataset) => self.in_memory(summary, *dataset, preprocessors, checkpoint.as_ref())?,
            DataSet::Indexed(dataset) => self.streamed(summary, dataset, preprocessors, checkpoint.as_ref(), device)?,
        };
        let PreparedData { info, splits, preprocessors, streamed_from } = data;
        let loss = LossFn::for_task(settings.loss, info.task)?;
        let class_names: Vec<String> = info.class_names.iter().map(|c| c.to_string()).collect();
        let input_shape = input_shape(&splits)?;
        summary.data = Some(describe(&info, &splits, &class_names, &input_shape, streamed_from.is_some()));

        let augmentor_plugins: Vec<_> = self.resolved.of_kind(ComponentKind::DataAugmentor).collect();
        let augmentors = factory.augmentors(&augmentor_plugins, info.task, info.num_outputs)?;
        let model = stage(summary, "build_model", |_| {
            seed_torch(derive_seed(seed, "init", &[]));
            let shape = ModelShape { input_shape: input_shape.clone(), num_outputs: info.num_outputs, task: info.task };
            factory.model(self.resolved.model(), &shape)
        })?;
        let parameters = model.parameters()?;
        let count: i64 = parameters.iter().map(|(_, t)| t.numel() as i64).sum();
        tracing::info!("{}: {} parameter tensors, {count} parameters", self.resolved.model().label(), parameters.len());

        if settings.precision == Precision::Fp16 && !device.is_cuda() {
            tracing::warn!(
                "training.precision fp16 needs CUDA; on {device:?} the run trains in fp32 (bf16 runs on the CPU)"
            );
        }
        if settings.precision == Precision::Bf16 && !device.is_cuda() && device::cpu_has_bf16() == Some(false) {
            tracing::warn!(
                "training.precision bf16: this CPU has no bfloat16 instructions (avx512_bf16, amx_bf16); libtorch emulates them and the run may be slower than in fp32"
            );
        }
        let learner = Learner {
            model,
            optimizer: Optimizer::new(settings.optimizer.clone(), parameters),
            loss,
            device,
            precision: settings.precision,
            grad_clip_norm: settings.grad_clip_norm,
            scaler: (settings.precision == Precision::Fp16).then(LossScaler::new),
        };
        let mut trainer = Trainer {
            settings,
            tracking: &exp.tracking,
            seed,
            run_dir: PathBuf::new(),
            stop: &self.stop,
            info,
            class_names,
            splits,
            preprocessors,
            streamed_from,
            augmentors,
            learner,
            callbacks: CallbackState::new(&settings.callbacks),
            first_epoch: 0,
            stop_after_epoch: self.stop_after_epoch,
            progress: Progress::new(self.bars.clone(), settings.epochs, 0),
        };
        if let Some(checkpoint) = checkpoint {
            trainer.restore(checkpoint, summary).context("restoring the checkpoint")?;
            trainer.progress = Progress::new(self.bars.clone(), settings.epochs, trainer.first_epoch);
            summary.resumed_at_epochs.push(trainer.first_epoch);
            summary.status = RunStatus::Running;
            summary.error = None;
            tracing::info!("resuming after epoch {}", trainer.first_epoch);
        }
        Ok(trainer)
    }

    /// A data set loaded whole: split, then preprocessed, in memory.
    fn in_memory(
        &self,
        summary: &mut RunSummary,
        mut dataset: Dataset,
        mut preprocessors: Preprocessors,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PreparedData> {
        let exp = &self.resolved.experiment;
        let contents = stage(summary, "load_dataset", |_| dataset.load())?;
        let (train, val, test) = stage(summary, "split", |_| {
            split(contents.all, contents.test, &exp.dataset.split, exp.dataset.shuffle, exp.experiment.seed)
        })?;
        let splits = stage(summary, "preprocess", |_| {
            let train = match checkpoint {
                Some(checkpoint) => {
                    preprocessors.load_states(&checkpoint.tensors)?;
                    preprocessors.transform_examples(train)?
                }
                None => preprocessors.fit_transform(train)?,
            };
            let val = preprocessors.transform_examples(val)?;
            let test = preprocessors.transform_examples(test)?;
            Ok(Splits { train: Box::new(train), val: Box::new(val), test: Box::new(test) })
        })?;
        Ok(PreparedData { info: contents.info, splits, preprocessors: Arc::new(preprocessors), streamed_from: None })
    }

    /// A data set read by index: the splits are lists of indices; batches are read, and
    /// preprocessed, as training goes. The preprocessors fit on a stream of training batches.
    fn streamed(
        &self,
        summary: &mut RunSummary,
        dataset: Arc<IndexedDataset>,
        mut preprocessors: Preprocessors,
        checkpoint: Option<&Checkpoint>,
        device: tch::Device,
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
        let (n_train, n_val) = stage(summary, "split", |_| {
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
        let preprocessors = stage(summary, "preprocess", |_| {
            match checkpoint {
                Some(checkpoint) => preprocessors.load_states(&checkpoint.tensors)?,
                None => {
                    let whole = preprocessors.not_incremental();
                    if !whole.is_empty() {
                        bail!(
                            "{} cannot fit on a streaming data set: it fits only on the whole training split at once (its plugin predates API 1.2 or has no batch-by-batch fit); load the data set in memory or choose a preprocessor that fits batch by batch",
                            whole.join(", ")
                        );
                    }
                    let settings = self.loader_settings(self.resolved.experiment.training.eval_batch_size, None);
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
        Ok(PreparedData { info: description.info.clone(), splits, preprocessors, streamed_from: Some(dataset) })
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
        }
    }

    fn start_trackers(&self, trainer: &Trainer<'_>, resuming: bool) -> Result<Trackers> {
        let exp = &self.resolved.experiment;
        let plugins: Vec<_> = self.resolved.of_kind(ComponentKind::Tracker).collect();
        let mut trackers = self.factory(DeviceSpec::Cpu, Some(&trainer.run_dir)).trackers(&plugins)?;
        let resumed_at = resuming.then_some(trainer.first_epoch);
        let run =
            json!({ "experiment": exp.experiment.name, "run_dir": trainer.run_dir, "resumed_at_epoch": resumed_at });
        trackers.start(&run);
        if exp.tracking.log_params && !resuming {
            trackers.log_params(&serde_json::to_value(exp)?);
        }
        Ok(trackers)
    }
}

fn last_checkpoint(run_dir: &Path) -> Result<Checkpoint> {
    let path = run_dir.join(record::CHECKPOINTS).join(record::LAST);
    if !path.is_file() {
        bail!(
            "{}: no checkpoint to resume from (the run stopped before its first checkpoint); start it again with `gymnos-host run`",
            path.display()
        );
    }
    Checkpoint::load(&path)
}

fn status_of(outcome: &Result<()>) -> RunStatus {
    match outcome {
        Ok(()) => RunStatus::Completed,
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => RunStatus::Interrupted,
        Err(e) if e.downcast_ref::<Paused>().is_some() => RunStatus::Paused,
        Err(_) => RunStatus::Failed,
    }
}

/// Notes in the record how the session ended.
fn mark_end(summary: &mut RunSummary, outcome: &Result<()>) {
    summary.finished_at = Some(record::now());
    summary.status = status_of(outcome);
    summary.error = match summary.status {
        RunStatus::Paused => None,
        _ => outcome.as_ref().err().map(|e| format!("{e:#}")),
    };
}

/// Writes how the session ended into the record, and passes its outcome on.
fn record_end(summary: &mut RunSummary, outcome: Result<()>, run_dir: &Path) -> Result<()> {
    mark_end(summary, &outcome);
    let saved = summary.save(run_dir);
    // Pausing as asked is a successful end of this session.
    let outcome = match outcome {
        Err(e) if e.downcast_ref::<Paused>().is_some() => {
            tracing::info!("{e}");
            Ok(())
        }
        other => other,
    };
    outcome.and(saved.map_err(anyhow::Error::from))
}

/// The data set's splits, ready for the model, and how they are read.
struct PreparedData {
    info: DatasetInfo,
    splits: Splits,
    preprocessors: Arc<Preprocessors>,
    /// The data set the splits stream from; none when they are in memory.
    streamed_from: Option<Arc<IndexedDataset>>,
}

/// One sample's shape as the model sees it: after preprocessing.
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
        task: task_name(info.task),
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
