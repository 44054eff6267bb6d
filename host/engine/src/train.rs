//! A training session: the run of an experiment from its resolved form, fresh or resumed from
//! a checkpoint. Stages are `tracing` spans (their durations land in `execution.log`) and are
//! timed into `metrics.json`.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{anyhow, bail, Context, Result};
use gymnos_host::{
    experiment::{Precision, ResolvedExperiment},
    PluginManager,
};
use gymnos_plugin_api::{DatasetInfo, Task};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use crate::{
    callbacks::{scheduled_lr, CallbackState},
    checkpoint,
    data::{split, Loader, Samples, Splits},
    device::{self, Hardware},
    metrics::{predict_split, report, LossFn, Running},
    optim::{LossScaler, Optimizer},
    pipeline::{Augmentors, Model, ModelShape, Preprocessors, Setup, Trackers},
    progress::Progress,
    record::{self, EpochMetrics, Metrics},
    seeds::{derive, seed_torch},
};

/// Ctrl-C: the training stops after the current batch; the run keeps its last checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at epoch {epoch}, step {step}; continue with `gymnos-host resume {}`", run_dir.display())]
pub struct Interrupted {
    pub epoch: u32,
    pub step: usize,
    pub run_dir: PathBuf,
}

/// Where a session starts.
pub enum Start {
    Fresh,
    /// From `checkpoints/last.safetensors` of the run folder.
    Resume,
}

pub struct Session<'a> {
    pub manager: &'a PluginManager,
    /// Set by SIGINT/SIGTERM.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub resolved: ResolvedExperiment,
    pub run_dir: PathBuf,
    /// Relative paths in plugin configurations are resolved against this folder.
    pub base_dir: PathBuf,
    pub bars: Option<indicatif::MultiProgress>,
}

/// Times a stage into `metrics` inside a tracing span of the same name.
fn stage<T>(metrics: &mut Metrics, name: &str, f: impl FnOnce(&mut Metrics) -> Result<T>) -> Result<T> {
    let span = tracing::info_span!("stage", stage = name);
    let _entered = span.enter();
    let started = Instant::now();
    tracing::info!("{name}: started");
    let result = f(metrics);
    let seconds = started.elapsed().as_secs_f64();
    metrics.add_elapsed(name, seconds);
    match &result {
        Ok(_) => tracing::info!("{name}: done in {seconds:.2}s"),
        // The user gets the error once, as the command's last line; the log keeps it too.
        Err(e) => tracing::error!(target: "log_only", "{name}: failed after {seconds:.2}s: {e:#}"),
    }
    result
}

/// The data, model and optimizer, ready for the epochs.
struct Prepared {
    info: DatasetInfo,
    splits: Splits,
    preprocessors: Preprocessors,
    augmentors: Augmentors,
    model: Model,
    optimizer: Optimizer,
    loss: LossFn,
    device: Device,
    callbacks: CallbackState,
    scaler: Option<LossScaler>,
    first_epoch: u32,
}

impl Prepared {
    /// What `predict` needs: the model's state (`model.*`) and the fitted preprocessors'
    /// (`preprocessors.<i>.*`).
    fn fitted_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let mut tensors: Vec<(String, Tensor)> = self.model.state()?.into_iter().map(|(n, t)| (format!("model.{n}"), t)).collect();
        tensors.extend(self.preprocessors.states()?);
        Ok(tensors)
    }
}

impl Session<'_> {
    /// Runs the session; on failure the record says so (status `failed` and the error).
    pub fn execute(&self, start: Start) -> Result<()> {
        let mut metrics = match start {
            Start::Fresh => Metrics { status: "running".into(), started_at: record::now(), ..Metrics::default() },
            Start::Resume => Metrics::load(&self.run_dir)?,
        };
        let resuming = matches!(start, Start::Resume);
        let mut trackers = Trackers::new(Vec::new());
        let outcome = self.train(&mut metrics, &mut trackers, resuming);
        metrics.tracker_errors = std::mem::take(&mut trackers.failures);
        metrics.finished_at = Some(record::now());
        match &outcome {
            Ok(()) => metrics.status = "completed".into(),
            Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
                metrics.status = "interrupted".into();
                metrics.error = Some(format!("{e:#}"));
            }
            Err(e) => {
                metrics.status = "failed".into();
                metrics.error = Some(format!("{e:#}"));
            }
        }
        trackers.finish(&metrics.status);
        metrics.tracker_errors.append(&mut trackers.failures);
        let saved = metrics.save(&self.run_dir);
        outcome.and(saved)
    }

    fn setup<'s>(&'s self, device: gymnos_plugin_api::DeviceSpec, output_dir: Option<&'s Path>) -> Setup<'s> {
        Setup { manager: self.manager, device, seed: self.resolved.experiment.experiment.seed, base_dir: &self.base_dir, output_dir }
    }

    fn prepare(&self, metrics: &mut Metrics, resuming: bool) -> Result<Prepared> {
        let exp = &self.resolved.experiment;
        let settings = &exp.training;
        let seed = exp.experiment.seed;
        let (device, device_spec) = device::select(&settings.device)?;
        if settings.precision == Precision::Fp16 && !device.is_cuda() {
            bail!("training.precision: fp16 needs a CUDA device, and this run is on the CPU");
        }
        metrics.hardware = Some(serde_json::to_value(Hardware::probe(device))?);
        tracing::info!("device: {device:?}, libtorch {}", env!("GYMNOS_LIBTORCH_BUILD"));

        let setup = self.setup(device_spec, Some(&self.run_dir));
        let (mut dataset, mut preprocessors, augmentors) = stage(metrics, "load_plugins", |_| {
            Ok((
                setup.dataset(&self.resolved.dataset)?,
                setup.preprocessors(&self.resolved.preprocessors)?,
                setup.augmentors(&self.resolved.data_augmentors)?,
            ))
        })?;
        let loaded = stage(metrics, "load_dataset", |_| dataset.load())?;
        let info = loaded.info.clone();
        let classification = info.task == Task::Classification;
        let loss = LossFn::for_task(settings.loss, info.task)?;
        let splits = stage(metrics, "split", |_| split(loaded.all, loaded.test, &exp.dataset.split, exp.dataset.shuffle, seed))?;
        if splits.val.is_empty() {
            let monitors = [Some(&settings.callbacks.checkpoint.monitor), settings.callbacks.early_stopping.as_ref().map(|e| &e.monitor), settings.callbacks.reduce_on_plateau.as_ref().map(|r| &r.monitor)];
            if let Some(m) = monitors.into_iter().flatten().find(|m| m.starts_with("val_")) {
                bail!("training.callbacks: `{m}` needs a validation split, but dataset.split.val leaves it empty");
            }
        }

        let checkpoint = if resuming {
            let path = self.run_dir.join(record::CHECKPOINTS).join(record::LAST);
            if !path.is_file() {
                bail!("{}: no checkpoint to resume from (the run stopped before its first checkpoint); start it again with `gymnos-host run`", path.display());
            }
            Some(checkpoint::load(&path)?)
        } else {
            None
        };
        let splits = stage(metrics, "preprocess", |_| {
            let train = match &checkpoint {
                Some((tensors, _)) => {
                    preprocessors.load_states(tensors)?;
                    Samples { x: preprocessors.transform(&splits.train.x)?, y: splits.train.y }
                }
                None => preprocessors.fit_transform(splits.train)?,
            };
            Ok(Splits {
                train,
                val: Samples { x: preprocessors.transform(&splits.val.x)?, y: splits.val.y },
                test: Samples { x: preprocessors.transform(&splits.test.x)?, y: splits.test.y },
            })
        })?;
        metrics.data = Some(json!({
            "task": if classification { "classification" } else { "regression" },
            "train_samples": splits.train.len(),
            "val_samples": splits.val.len(),
            "test_samples": splits.test.len(),
            "feature_shape": &info.feature_shape[..],
            "input_shape": &splits.train.x.size()[1..],
            "num_outputs": info.num_outputs,
            "class_names": info.class_names.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        }));

        let mut model = stage(metrics, "build_model", |_| {
            seed_torch(derive(seed, "init", &[]));
            let shape = ModelShape { input_shape: splits.train.x.size()[1..].to_vec(), num_outputs: info.num_outputs, task: info.task };
            setup.model(&self.resolved.model, &shape)
        })?;
        let parameters = model.parameters()?;
        let count: i64 = parameters.iter().map(|(_, t)| t.numel() as i64).sum();
        tracing::info!("{}: {} parameter tensors, {count} parameters", self.resolved.model.label(), parameters.len());
        let mut optimizer = Optimizer::new(settings.optimizer.clone(), parameters);
        let mut callbacks = CallbackState::new(&settings.callbacks);
        let mut scaler = (settings.precision == Precision::Fp16).then(LossScaler::new);
        let mut first_epoch = 0;
        if let Some((tensors, meta)) = checkpoint {
            let mut restore = || -> Result<()> {
                model.load_state(checkpoint::with_prefix(&tensors, "model."))?;
                let field = |k: &str| meta.get(k).ok_or_else(|| anyhow!("checkpoint metadata lacks `{k}`"));
                optimizer.load_state(&checkpoint::with_prefix(&tensors, "optim."), field("optimizer_steps")?.parse()?)?;
                callbacks = serde_json::from_str(field("callbacks")?)?;
                scaler = serde_json::from_str(field("loss_scaler")?)?;
                first_epoch = field("epoch")?.parse()?;
                metrics.history = serde_json::from_str(field("history")?)?;
                metrics.epochs_completed = first_epoch;
                Ok(())
            };
            restore().context("restoring the checkpoint")?;
            metrics.resumed_at_epochs.push(first_epoch);
            metrics.status = "running".into();
            metrics.error = None;
            tracing::info!("resuming after epoch {first_epoch}");
        }
        Ok(Prepared { info, splits, preprocessors, augmentors, model, optimizer, loss, device, callbacks, scaler, first_epoch })
    }

    fn train(&self, metrics: &mut Metrics, trackers: &mut Trackers, resuming: bool) -> Result<()> {
        let exp = &self.resolved.experiment;
        let settings = &exp.training;
        let seed = exp.experiment.seed;
        let mut p = self.prepare(metrics, resuming)?;
        let classification = p.info.task == Task::Classification;
        let class_names: Vec<String> = p.info.class_names.iter().map(|c| c.to_string()).collect();

        let setup = self.setup(gymnos_plugin_api::DeviceSpec::Cpu, Some(&self.run_dir));
        *trackers = Trackers::new(setup.trackers(&self.resolved.trackers)?);
        trackers.start(&json!({ "experiment": exp.experiment.name, "run_dir": self.run_dir, "resumed_at_epoch": resuming.then_some(p.first_epoch) }));
        if exp.tracking.log_params && !resuming {
            trackers.log_params(&serde_json::to_value(exp)?);
        }
        metrics.save(&self.run_dir)?;

        let loader = Loader::new(p.splits.train.shallow_clone(), p.device, !p.augmentors.is_empty(), settings, seed);
        tracing::info!(
            "training on {} samples in {} batches per epoch ({})",
            loader.num_samples(),
            loader.num_batches(),
            if loader.is_device_resident() { "data resident on the device" } else { "batches from background workers" }
        );
        let mut progress = Progress::new(self.bars.clone(), settings.epochs, p.first_epoch);
        let eval_batch = settings.eval_batch_size as i64;
        let base_lr = settings.optimizer.lr();
        let log_every = exp.tracking.log_every_n_steps as u64;
        let mut global_step = p.optimizer.steps;

        stage(metrics, "train", |metrics| {
            for epoch in p.first_epoch..settings.epochs {
                let span = tracing::info_span!("epoch", number = epoch + 1);
                let _entered = span.enter();
                let started = Instant::now();
                let lr = scheduled_lr(&settings.lr_schedule, base_lr, epoch, settings.epochs) * p.callbacks.lr_factor;
                seed_torch(derive(seed, "epoch", &[epoch as u64]));
                progress.start_epoch(loader.num_batches());
                let mut running = Running::new(p.device);
                let read_every_step = !p.device.is_cuda();
                std::thread::scope(|scope| -> Result<()> {
                    for (i, batch) in loader.epoch(epoch, &p.augmentors, scope).enumerate() {
                        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return Err(Interrupted { epoch: epoch + 1, step: i, run_dir: self.run_dir.clone() }.into());
                        }
                        let batch = batch?;
                        p.optimizer.zero_grad();
                        let out = match settings.precision {
                            Precision::Fp16 => tch::autocast(true, || p.model.forward(&batch.x, true))?,
                            Precision::Fp32 => p.model.forward(&batch.x, true)?,
                        };
                        let loss = p.loss.compute(&out.to_kind(Kind::Float), &batch.y);
                        global_step += 1;
                        let log_now = log_every > 0 && global_step % log_every == 0;
                        let value = (read_every_step || log_now).then(|| loss.double_value(&[]));
                        if settings.callbacks.stop_on_nan {
                            let finite = value.map_or_else(|| loss.isfinite().int64_value(&[]) == 1, f64::is_finite);
                            if !finite {
                                bail!("the loss became {} at epoch {}, step {} (stop_on_nan); the last checkpoint holds the last good state", value.map_or("non-finite".into(), |v| v.to_string()), epoch + 1, i + 1);
                            }
                        }
                        let step_ok = match &mut p.scaler {
                            Some(scaler) => {
                                (&loss * scaler.scale).backward();
                                scaler.unscale(&p.optimizer)
                            }
                            None => {
                                loss.backward();
                                true
                            }
                        };
                        if step_ok {
                            if let Some(max_norm) = settings.grad_clip_norm {
                                p.optimizer.clip_grad_norm(max_norm);
                            }
                            p.optimizer.step(lr);
                        }
                        running.add(&loss, &out, &batch.y, classification);
                        progress.batch(i + 1, batch.len() as u64, value);
                        if let (true, Some(v)) = (log_now, value) {
                            trackers.log_metrics(global_step, "train_step", &[("loss".into(), v), ("lr".into(), lr)]);
                        }
                    }
                    Ok(())
                })?;
                let train_seconds = started.elapsed().as_secs_f64();
                let mut epoch_metrics: EpochMetrics = BTreeMap::new();
                epoch_metrics.insert("train_loss".into(), running.mean_loss());
                if classification {
                    epoch_metrics.insert("train_accuracy".into(), running.accuracy());
                }
                if !p.splits.val.is_empty() {
                    let (outputs, val_loss) = predict_split(&mut p.model, &p.splits.val, eval_batch, p.device, p.loss)?;
                    let (_, headline) = report(&outputs, &p.splits.val.y, val_loss, p.info.task, &class_names)?;
                    epoch_metrics.extend(headline.into_iter().map(|(k, v)| (format!("val_{k}"), v)));
                }
                if let Some(bad) = epoch_metrics.iter().find(|(k, v)| k.ends_with("loss") && !v.is_finite()).filter(|_| settings.callbacks.stop_on_nan) {
                    bail!("{} became {} at epoch {} (stop_on_nan)", bad.0, bad.1, epoch + 1);
                }
                epoch_metrics.insert("lr".into(), lr);
                epoch_metrics.insert("epoch_seconds".into(), started.elapsed().as_secs_f64());
                epoch_metrics.insert("train_samples_per_second".into(), running.samples as f64 / train_seconds.max(1e-9));
                let decision = p.callbacks.end_epoch(&settings.callbacks, &epoch_metrics, lr);
                metrics.add_epoch(&epoch_metrics);
                let done = epoch + 1;
                let last = done == settings.epochs || decision.stop.is_some();
                if done % settings.callbacks.checkpoint.every_n_epochs == 0 || last {
                    self.save_checkpoint(&p, record::LAST, done, metrics)?;
                }
                if decision.save_best {
                    self.save_checkpoint(&p, record::BEST, done, metrics)?;
                    let monitor = &p.callbacks.best_checkpoint;
                    metrics.best = Some(json!({ "metric": monitor.metric, "value": monitor.best, "epoch": done }));
                }
                metrics.save(&self.run_dir)?;
                trackers.log_metrics(done as u64, "epoch", &epoch_metrics.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>());
                let summary: Vec<String> = ["train_loss", "val_loss", "val_accuracy", "val_mae"]
                    .iter()
                    .filter_map(|k| epoch_metrics.get(*k).map(|v| format!("{k} {v:.4}")))
                    .collect();
                tracing::info!("epoch {done}/{}: {} ({:.1}s)", settings.epochs, summary.join(", "), epoch_metrics["epoch_seconds"]);
                progress.end_epoch(&summary.join("  "));
                if let Some(reason) = decision.stop {
                    tracing::info!("{reason}");
                    metrics.stopped_early = Some(reason);
                    break;
                }
            }
            Ok(())
        })?;
        progress.finish();

        stage(metrics, "test", |metrics| {
            if p.splits.test.is_empty() {
                tracing::warn!("the test split is empty: no test metrics");
                return Ok(());
            }
            let (outputs, test_loss) = predict_split(&mut p.model, &p.splits.test, eval_batch, p.device, p.loss)?;
            let (full, flat) = report(&outputs, &p.splits.test.y, test_loss, p.info.task, &class_names)?;
            let line: Vec<String> = flat.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
            tracing::info!("test: {}", line.join(", "));
            trackers.log_metrics(metrics.epochs_completed as u64, "test", &flat);
            metrics.test = Some(full);
            Ok(())
        })?;

        stage(metrics, "save_model", |_| {
            let tensors = p.fitted_tensors()?;
            let meta = HashMap::from([
                ("format".to_string(), "gymnos-model-1".to_string()),
                ("task".to_string(), format!("{:?}", p.info.task).to_lowercase()),
                ("class_names".to_string(), serde_json::to_string(&class_names)?),
            ]);
            checkpoint::save(&self.run_dir.join(record::MODEL), &tensors, meta)
        })?;
        Ok(())
    }

    /// Checkpoint: model, optimizer and preprocessor tensors; epoch, callback state and metric
    /// history in the metadata.
    fn save_checkpoint(&self, p: &Prepared, file: &str, epoch: u32, metrics: &Metrics) -> Result<()> {
        let mut tensors = p.fitted_tensors()?;
        tensors.extend(p.optimizer.state().into_iter().map(|(n, t)| (format!("optim.{n}"), t)));
        let meta = HashMap::from([
            ("format".to_string(), "gymnos-checkpoint-1".to_string()),
            ("epoch".to_string(), epoch.to_string()),
            ("optimizer_steps".to_string(), p.optimizer.steps.to_string()),
            ("callbacks".to_string(), serde_json::to_string(&p.callbacks)?),
            ("loss_scaler".to_string(), serde_json::to_string(&p.scaler)?),
            ("history".to_string(), serde_json::to_string(&metrics.history)?),
        ]);
        checkpoint::save(&self.run_dir.join(record::CHECKPOINTS).join(file), &tensors, meta)
    }
}
