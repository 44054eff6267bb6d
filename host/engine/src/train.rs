//! The training loop, in the order it runs: [`Trainer::fit`] runs the epochs; an epoch is
//! [`Trainer::train_epoch`] (batches from the loader, each a [`Learner::train_step`]) then
//! [`Trainer::end_epoch`] (validation, callbacks, checkpoints, record, trackers); after the
//! last epoch come [`Trainer::test`] and [`Trainer::save_model`].

use std::{
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{bail, Result};
use gymnos_host::{
    experiment::{Precision, Tracking, Training},
    record::{self, BestCheckpoint, EpochMetrics, RunSummary},
};
use gymnos_plugin_api::{rng::derive_seed, DatasetInfo, Task};
use tch::{Device, Kind, Tensor};

use crate::{
    autocast::{autocast, LowPrecision},
    callbacks::{scheduled_lr, CallbackState},
    checkpoint::{self, Checkpoint, CheckpointState},
    components::{Augmentors, IndexedDataset, Model, Preprocessors, Trackers},
    data::{Examples, Splits},
    evaluation::{Evaluation, LossFn, Running},
    loader::{Loader, LoaderSettings},
    optim::{LossScaler, Optimizer},
    progress::Progress,
};

/// Ctrl-C: the training stops after the current batch; the run keeps its last checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("interrupted at epoch {epoch}, step {step}; continue with `gymnos-host resume {}`", run_dir.display())]
pub struct Interrupted {
    pub epoch: u32,
    pub step: usize,
    pub run_dir: PathBuf,
}

/// The run stopped at the end of an epoch because it was asked to (a sweep's early stopping);
/// its checkpoint is there and `resume` continues it.
#[derive(Debug, thiserror::Error)]
#[error("paused after epoch {epoch}, as asked; continue with `gymnos-host resume {}`", run_dir.display())]
pub struct Paused {
    pub epoch: u32,
    pub run_dir: PathBuf,
}

/// Seeds libtorch's generators (CPU and CUDA), which initialisation and dropout draw from.
pub fn seed_torch(seed: u64) {
    // libtorch takes a signed 64-bit seed.
    tch::manual_seed((seed >> 1) as i64);
}

/// What takes a gradient step: the model, its optimizer and loss, on the device.
pub struct Learner {
    pub model: Model,
    pub optimizer: Optimizer,
    pub loss: LossFn,
    pub device: Device,
    pub precision: Precision,
    pub grad_clip_norm: Option<f64>,
    /// Dynamic loss scaling, with `fp16` only.
    pub scaler: Option<LossScaler>,
}

/// One step's results, still on the device.
pub struct Step {
    pub loss: Tensor,
    pub output: Tensor,
}

impl Learner {
    /// Forward, loss, backward and (unless the loss scaler skips it) an optimizer step.
    pub fn train_step(&mut self, batch: &Examples, lr: f64) -> Result<Step> {
        self.optimizer.zero_grad();
        let output = self.forward_train(&batch.x)?;
        let loss = self.loss.compute(&output.to_kind(Kind::Float), &batch.y);
        let gradients_finite = match &mut self.scaler {
            Some(scaler) => {
                (&loss * scaler.scale).backward();
                scaler.unscale(&self.optimizer)
            }
            None => {
                loss.backward();
                true
            }
        };
        if gradients_finite {
            if let Some(max_norm) = self.grad_clip_norm {
                self.optimizer.clip_grad_norm(max_norm);
            }
            self.optimizer.step(lr);
        }
        Ok(Step { loss, output })
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        match self.autocast_dtype() {
            Some(dtype) => autocast(self.device, dtype, || self.model.forward(x, true))?,
            None => self.model.forward(x, true),
        }
    }

    /// The dtype the training forward pass autocasts to: fp16 on CUDA only (elsewhere it
    /// trains in fp32, as it always has), bf16 on any device.
    fn autocast_dtype(&self) -> Option<LowPrecision> {
        match self.precision {
            Precision::Fp32 => None,
            Precision::Fp16 => self.device.is_cuda().then_some(LowPrecision::Float16),
            Precision::Bf16 => Some(LowPrecision::BFloat16),
        }
    }
}

/// How fast the data pipeline alone makes training batches (`validate --deep --measure-data`).
#[derive(Debug, serde::Serialize)]
pub struct DataSpeed {
    pub batches: u32,
    pub samples: i64,
    pub seconds: f64,
    pub samples_per_second: f64,
}

/// An epoch's training pass, as its end needs it.
struct TrainedEpoch {
    epoch: u32,
    lr: f64,
    running: Running,
    started: Instant,
    train_seconds: f64,
    /// Time the training thread spent waiting for batches.
    data_wait_seconds: f64,
}

/// Everything the epochs need, prepared by the session.
pub struct Trainer<'s> {
    pub settings: &'s Training,
    pub tracking: &'s Tracking,
    pub seed: u64,
    /// The run folder; empty until the session creates it (a fresh run's folder exists only
    /// once everything up to the first epoch has worked).
    pub run_dir: PathBuf,
    /// Set by SIGINT/SIGTERM.
    pub stop: &'s AtomicBool,
    pub info: DatasetInfo,
    pub class_names: Vec<String>,
    pub splits: Splits,
    /// Fitted (or restored); a streamed split applies them to each batch it reads.
    pub preprocessors: std::sync::Arc<Preprocessors>,
    /// The data set the splits stream from; none when they are in memory.
    pub streamed_from: Option<std::sync::Arc<IndexedDataset>>,
    pub augmentors: Augmentors,
    pub learner: Learner,
    pub callbacks: CallbackState,
    /// The first epoch to run (0-based): after the checkpoint's, when resuming.
    pub first_epoch: u32,
    /// Stop, checkpointed, at the end of this epoch (a sweep's early stopping).
    pub stop_after_epoch: Option<u32>,
    pub progress: Progress,
}

impl Trainer<'_> {
    /// Whether training stops, paused, at the end of epoch `done` (1-based) before its last.
    fn pauses_after(&self, done: u32) -> bool {
        self.stop_after_epoch == Some(done) && done < self.settings.epochs
    }

    fn classification(&self) -> bool {
        self.info.task == Task::Classification
    }

    fn evaluation(&self, limit: Option<u32>) -> Evaluation {
        Evaluation {
            loader: LoaderSettings {
                batch_size: self.settings.eval_batch_size as i64,
                workers: self.settings.num_workers as usize,
                prefetch: self.settings.prefetch_batches as usize,
                device_cache_bytes: 0,
                limit,
            },
            device: self.learner.device,
            loss: self.learner.loss,
            task: self.info.task,
            class_names: self.class_names.clone(),
        }
    }

    pub fn loader(&self) -> Loader {
        let settings = LoaderSettings {
            batch_size: self.settings.batch_size as i64,
            workers: self.settings.num_workers as usize,
            prefetch: self.settings.prefetch_batches as usize,
            device_cache_bytes: self.settings.device_cache_mib as i64 * 1024 * 1024,
            limit: self.settings.limit_train_batches,
        };
        let transforming = !self.augmentors.is_empty();
        Loader::new(self.splits.train.fork(), self.learner.device, transforming, settings, self.seed)
    }

    /// Restores a checkpoint's tensors and state; training continues after its epoch.
    pub fn restore(&mut self, checkpoint: Checkpoint, summary: &mut RunSummary) -> Result<()> {
        let Checkpoint { tensors, state } = checkpoint;
        self.learner.model.load_state(checkpoint::with_prefix(&tensors, "model."))?;
        self.learner.optimizer.load_state(&checkpoint::with_prefix(&tensors, "optim."), state.optimizer_steps)?;
        self.learner.scaler = state.loss_scaler;
        self.callbacks = state.callbacks;
        self.first_epoch = state.epoch;
        summary.history = state.history;
        summary.epochs_completed = state.epoch;
        Ok(())
    }

    /// Runs the epochs from `first_epoch`, until the last or until a callback stops them.
    pub fn fit(&mut self, summary: &mut RunSummary, trackers: &mut Trackers) -> Result<()> {
        let loader = self.loader();
        tracing::info!(
            "training on {} samples in {} batches per epoch ({})",
            loader.num_samples(),
            loader.num_batches(),
            match (loader.is_device_resident(), loader.is_in_memory()) {
                (true, _) => "data resident on the device",
                (false, true) => "batches from background workers",
                (false, false) => "batches read from the data set by background workers",
            }
        );
        for epoch in self.first_epoch..self.settings.epochs {
            let span = tracing::info_span!("epoch", number = epoch + 1);
            let _entered = span.enter();
            let trained = self.train_epoch(&loader, epoch, trackers)?;
            if let Some(reason) = self.end_epoch(trained, summary, trackers)? {
                tracing::info!("{reason}");
                summary.stopped_early = Some(reason);
                break;
            }
            if self.pauses_after(epoch + 1) {
                self.progress.finish();
                return Err(Paused { epoch: epoch + 1, run_dir: self.run_dir.clone() }.into());
            }
        }
        self.progress.finish();
        Ok(())
    }

    /// One pass over the training batches.
    fn train_epoch(&mut self, loader: &Loader, epoch: u32, trackers: &mut Trackers) -> Result<TrainedEpoch> {
        let started = Instant::now();
        let lr = scheduled_lr(&self.settings.lr_schedule, self.settings.optimizer.lr(), epoch, self.settings.epochs)
            * self.callbacks.lr_factor;
        seed_torch(derive_seed(self.seed, "epoch", &[epoch as u64]));
        self.progress.start_epoch(loader.num_batches());
        let classification = self.classification();
        let mut running = Running::new(self.learner.device);
        // On the CPU reading the loss costs nothing; on a GPU it waits for the step, so only
        // when it is logged.
        let read_every_step = !self.learner.device.is_cuda();
        let log_every = self.tracking.log_every_n_steps as u64;
        let transform = self.augmentors.as_transform();
        let mut data_wait = std::time::Duration::ZERO;
        std::thread::scope(|scope| -> Result<()> {
            let mut batches = loader.epoch(epoch, transform, scope).enumerate();
            loop {
                // How long the model waits for the loader: zero when loading keeps up.
                let waiting = Instant::now();
                let Some((i, batch)) = batches.next() else { break };
                data_wait += waiting.elapsed();
                if self.stop.load(Ordering::Relaxed) {
                    return Err(Interrupted { epoch: epoch + 1, step: i, run_dir: self.run_dir.clone() }.into());
                }
                let batch = batch?;
                if batch.is_empty() {
                    continue; // every sample of the batch was skipped by the data set, as configured
                }
                let step = self.learner.train_step(&batch, lr)?;
                let global_step = self.learner.optimizer.steps;
                let log_now = log_every > 0 && global_step.is_multiple_of(log_every);
                let value = (read_every_step || log_now).then(|| step.loss.double_value(&[]));
                if self.settings.callbacks.stop_on_nan {
                    let finite = value.map_or_else(|| step.loss.isfinite().int64_value(&[]) == 1, f64::is_finite);
                    if !finite {
                        let shown = value.map_or("non-finite".into(), |v| v.to_string());
                        bail!(
                            "the loss became {shown} at epoch {}, step {} (stop_on_nan); the last checkpoint holds the last good state",
                            epoch + 1,
                            i + 1
                        );
                    }
                }
                running.add(&step.loss, &step.output, &batch.y, classification);
                self.progress.batch(i + 1, batch.len() as u64, value);
                if let (true, Some(v)) = (log_now, value) {
                    trackers.log_metrics(global_step, "train_step", &[("loss".into(), v), ("lr".into(), lr)]);
                }
            }
            Ok(())
        })?;
        let data_wait_seconds = data_wait.as_secs_f64();
        Ok(TrainedEpoch {
            epoch,
            lr,
            running,
            started,
            train_seconds: started.elapsed().as_secs_f64(),
            data_wait_seconds,
        })
    }

    /// The end of an epoch: its metrics (validation included), the callbacks' decision,
    /// checkpoints, the record and the trackers. Returns why training stops early, if it does.
    fn end_epoch(
        &mut self,
        trained: TrainedEpoch,
        summary: &mut RunSummary,
        trackers: &mut Trackers,
    ) -> Result<Option<String>> {
        let TrainedEpoch { epoch, lr, running, started, train_seconds, data_wait_seconds } = trained;
        let mut metrics = EpochMetrics::new();
        metrics.insert("train_loss".into(), running.mean_loss());
        if self.classification() {
            metrics.insert("train_accuracy".into(), running.accuracy());
        }
        if !self.splits.val.is_empty() {
            let evaluation = self.evaluation(self.settings.limit_eval_batches);
            let report = evaluation.evaluate(&mut self.learner.model, self.splits.val.fork())?;
            metrics.extend(report.headline().into_iter().map(|(k, v)| (format!("val_{k}"), v)));
        }
        if self.settings.callbacks.stop_on_nan {
            if let Some((name, value)) = metrics.iter().find(|(k, v)| k.ends_with("loss") && !v.is_finite()) {
                bail!("{name} became {value} at epoch {} (stop_on_nan)", epoch + 1);
            }
        }
        metrics.insert("lr".into(), lr);
        metrics.insert("epoch_seconds".into(), started.elapsed().as_secs_f64());
        metrics.insert("train_samples_per_second".into(), running.samples as f64 / train_seconds.max(1e-9));
        metrics.insert("data_wait_seconds".into(), data_wait_seconds);

        let decision = self.callbacks.end_epoch(&self.settings.callbacks, &metrics, lr);
        summary.add_epoch(&metrics);
        let done = epoch + 1;
        let last = done == self.settings.epochs || decision.stop.is_some() || self.pauses_after(done);
        if done % self.settings.callbacks.checkpoint.every_n_epochs == 0 || last {
            self.save_checkpoint(record::LAST, done, summary)?;
        }
        if decision.save_best {
            self.save_checkpoint(record::BEST, done, summary)?;
            let monitor = &self.callbacks.best_checkpoint;
            summary.best = Some(BestCheckpoint { metric: monitor.metric.clone(), value: monitor.best, epoch: done });
        }
        summary.save(&self.run_dir)?;
        trackers.log_metrics(done as u64, "epoch", &metrics.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>());

        let shown: Vec<String> = ["train_loss", "val_loss", "val_accuracy", "val_mae"]
            .iter()
            .filter_map(|k| metrics.get(*k).map(|v| format!("{k} {v:.4}")))
            .collect();
        tracing::info!(
            "epoch {done}/{}: {} ({:.1}s)",
            self.settings.epochs,
            shown.join(", "),
            metrics["epoch_seconds"]
        );
        self.progress.end_epoch(&shown.join("  "));
        Ok(decision.stop)
    }

    /// The model's state (`model.*`) and the fitted preprocessors' (`preprocessors.<i>.*`):
    /// what `predict` needs.
    fn fitted_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        let model = self.learner.model.state()?.into_iter().map(|(n, t)| (format!("model.{n}"), t));
        let mut tensors: Vec<(String, Tensor)> = model.collect();
        tensors.extend(self.preprocessors.states()?);
        Ok(tensors)
    }

    fn save_checkpoint(&self, file: &str, epoch: u32, summary: &RunSummary) -> Result<()> {
        let mut tensors = self.fitted_tensors()?;
        tensors.extend(self.learner.optimizer.state().into_iter().map(|(n, t)| (format!("optim.{n}"), t)));
        let state = CheckpointState {
            epoch,
            optimizer_steps: self.learner.optimizer.steps,
            callbacks: self.callbacks.clone(),
            loss_scaler: self.learner.scaler.clone(),
            history: summary.history.clone(),
        };
        Checkpoint { tensors, state }.save(&self.run_dir.join(record::CHECKPOINTS).join(file))
    }

    /// The test split's report, into the record and the trackers.
    pub fn test(&mut self, summary: &mut RunSummary, trackers: &mut Trackers) -> Result<()> {
        if self.splits.test.is_empty() {
            tracing::warn!("the test split is empty: no test metrics");
            return Ok(());
        }
        let evaluation = self.evaluation(self.settings.limit_eval_batches);
        let report = evaluation.evaluate(&mut self.learner.model, self.splits.test.fork())?;
        let headline = report.headline();
        let line: Vec<String> = headline.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        tracing::info!("test: {}", line.join(", "));
        trackers.log_metrics(summary.epochs_completed as u64, "test", &headline);
        summary.test = Some(report);
        self.record_dataset_notes(summary)
    }

    /// What a streaming data set noted while it was read (skipped samples...), into the record.
    pub fn record_dataset_notes(&self, summary: &mut RunSummary) -> Result<()> {
        let (Some(dataset), Some(data)) = (&self.streamed_from, summary.data.as_mut()) else { return Ok(()) };
        let notes = dataset.notes()?;
        if notes.as_object().is_some_and(|o| !o.is_empty()) {
            tracing::info!("{}: {notes}", dataset.plugin.label());
            data.dataset_notes = Some(notes);
        }
        Ok(())
    }

    pub fn save_model(&self) -> Result<()> {
        let task = crate::session::task_name(self.info.task);
        checkpoint::save_model(&self.run_dir.join(record::MODEL), &self.fitted_tensors()?, task, &self.class_names)
    }

    /// `validate --deep --measure-data`: makes `batches` training batches (epoch after epoch
    /// when one has fewer) as training would, without the model, and times them.
    pub fn measure_data(&self, batches: u32) -> Result<DataSpeed> {
        let loader = self.loader();
        if loader.num_batches() == 0 {
            bail!("the training split gives no batch");
        }
        let transform = self.augmentors.as_transform();
        let (mut made, mut samples) = (0u32, 0i64);
        let started = Instant::now();
        std::thread::scope(|scope| -> Result<()> {
            for epoch in 0.. {
                for batch in loader.epoch(epoch, transform, scope) {
                    samples += batch?.len();
                    made += 1;
                    if made == batches {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(DataSpeed { batches: made, samples, seconds, samples_per_second: samples as f64 / seconds.max(1e-9) })
    }

    /// `validate --deep`: one training step on the first batch, and one evaluation batch, so
    /// that every component has run once. Returns the step's loss.
    pub fn try_one_step(&mut self) -> Result<f64> {
        let loader = self.loader();
        let transform = self.augmentors.as_transform();
        let batch = std::thread::scope(|scope| loader.epoch(0, transform, scope).next().transpose())?;
        let Some(batch) = batch else { bail!("the training split gives no batch") };
        if batch.is_empty() {
            bail!("every sample of the first training batch was skipped by the data set");
        }
        let step = self.learner.train_step(&batch, self.settings.optimizer.lr())?;
        let loss = step.loss.double_value(&[]);
        if !loss.is_finite() {
            bail!("the loss of the first batch is {loss}");
        }
        let check = if self.splits.val.is_empty() { &self.splits.test } else { &self.splits.val };
        if !check.is_empty() {
            self.evaluation(Some(1)).evaluate(&mut self.learner.model, check.fork())?;
        }
        Ok(loss)
    }
}
