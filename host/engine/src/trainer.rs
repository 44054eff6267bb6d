//! The training loop, in the order it runs: [`Trainer::fit`] runs the epochs; an epoch is
//! [`Trainer::train_epoch`] (batches from the loader, each a [`Learner::train_step`]) then
//! [`Trainer::end_epoch`] (validation, the callbacks' decision, the checkpoints due); after the
//! last epoch come [`Trainer::test`] and [`Trainer::final_model`].
//!
//! The loop writes nothing itself: it emits events (see `events`) to the run's observers, and
//! ends with an [`Outcome`].

use std::{collections::BTreeMap, rc::Rc, sync::Arc, time::Instant};

use anyhow::{bail, Result};
use gymnos_host::{
    experiment::Training,
    record::{BestCheckpoint, EpochMetrics, TaskName},
};
use gymnos_plugin_api::{rng::derive_seed, DatasetInfo, Task};

use crate::{
    callbacks::{scheduled_lr, CallbackState},
    checkpoint::{self, Checkpoint, CheckpointState, EpochPosition},
    components::{Augmentors, IndexedDataset, Preprocessors},
    data::Splits,
    distributed::DataParallel,
    evaluation::{Evaluation, Running},
    events::{CheckpointDue, EpochEnd, Event, FinalModel, Flow, Observers, Slot, StepEnd},
    fingerprint::DataFingerprint,
    generator,
    learner::{seed_torch, Learner},
    loader::{Loader, LoaderSettings, Shard},
    outcome::Outcome,
};

mod first_batch;

pub use first_batch::FirstBatch;

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

/// How an epoch's training pass ended.
enum Pass {
    Done(TrainedEpoch),
    /// Interrupted after this many steps.
    Interrupted(usize),
    /// Checkpointed and stopped after this many steps (a preemption).
    Preempted(usize),
}

/// Everything the epochs need, prepared by the session. It has no run folder: what it does
/// reaches the folder through the observers.
pub struct Trainer<'s> {
    pub settings: &'s Training,
    /// `tracking.log_every_n_steps`: on a GPU the loss is read only at the steps that log it.
    pub log_every: u32,
    pub seed: u64,
    pub info: DatasetInfo,
    pub class_names: Vec<String>,
    pub splits: Splits,
    /// Fitted (or restored); a streamed split applies them to each batch it reads.
    pub preprocessors: Arc<Preprocessors>,
    /// The data set the splits stream from; none when they are in memory.
    pub streamed_from: Option<Arc<IndexedDataset>>,
    pub augmentors: Augmentors,
    pub learner: Learner,
    pub callbacks: CallbackState,
    /// The first epoch to run (0-based): after the checkpoint's, when resuming.
    pub first_epoch: u32,
    /// The per-epoch metrics so far, which checkpoints carry.
    pub history: BTreeMap<String, Vec<f64>>,
    /// What the data was when the run started, which checkpoints carry.
    pub data_fingerprint: DataFingerprint,
    /// The other ranks, in a data-parallel run.
    pub parallel: Option<Rc<DataParallel>>,
    /// Where the first epoch resumes, when the checkpoint was taken in its middle, and the
    /// random generators' states saved with it.
    pub resume_at: Option<(EpochPosition, Vec<(String, tch::Tensor)>)>,
}

impl Trainer<'_> {
    /// The other ranks, when there are others: a data-parallel run of one process (`srun -n 1`)
    /// trains as a single process does, with the same batches, seeds and metrics.
    fn others(&self) -> Option<&DataParallel> {
        self.parallel.as_deref().filter(|dp| dp.size() > 1)
    }

    /// This rank's part of every pass, in a data-parallel run.
    fn shard(&self) -> Option<Shard> {
        self.others().map(|dp| Shard { rank: dp.rank(), size: dp.size() })
    }

    /// What every rank answers to an event: in one process, `flow` itself.
    fn agree(&self, flow: Flow) -> Result<Flow> {
        match &self.parallel {
            Some(dp) => Ok(dp.agree(flow, true, 0.0)?.flow),
            None => Ok(flow),
        }
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
                shard: self.shard(),
            },
            device: self.learner.device,
            loss: self.learner.loss,
            task: self.info.task,
            class_names: self.class_names.clone(),
            outputs: self.info.num_outputs,
            parallel: self.parallel.clone(),
        }
    }

    pub fn loader(&self) -> Loader {
        let settings = LoaderSettings {
            batch_size: self.settings.batch_size as i64,
            workers: self.settings.num_workers as usize,
            prefetch: self.settings.prefetch_batches as usize,
            device_cache_bytes: self.settings.device_cache_mib as i64 * 1024 * 1024,
            limit: self.settings.limit_train_batches,
            shard: self.shard(),
        };
        let transforming = !self.augmentors.is_empty();
        Loader::new(self.splits.train.fork(), self.learner.device, transforming, settings, self.seed)
    }

    /// Restores a checkpoint's tensors and state; training continues after its epoch.
    pub fn restore(&mut self, checkpoint: Checkpoint) -> Result<()> {
        let Checkpoint { tensors, state } = checkpoint;
        self.learner.model.load_state(checkpoint::with_prefix(&tensors, "model."))?;
        self.learner.optimizer.load_state(&checkpoint::with_prefix(&tensors, "optim."), state.optimizer_steps)?;
        self.learner.scaler = state.loss_scaler;
        self.callbacks = state.callbacks;
        self.first_epoch = state.epoch;
        self.history = state.history;
        self.resume_at = state.position.map(|p| (p, checkpoint::with_prefix(&tensors, "rng.")));
        Ok(())
    }

    /// Runs the epochs from `first_epoch`, until the last, until a callback stops them, or until
    /// an observer pauses or interrupts them. Never returns [`Outcome::Failed`]: an error is an
    /// error.
    pub fn fit(&mut self, observers: &mut Observers) -> Result<Outcome> {
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
            let resume_at = self.resume_at.take();
            let trained = match self.train_epoch(&loader, epoch, resume_at, observers)? {
                Pass::Done(trained) => trained,
                Pass::Interrupted(step) => return Ok(Outcome::Interrupted { epoch: epoch + 1, step }),
                Pass::Preempted(step) => return Ok(Outcome::Preempted { epoch: epoch + 1, step }),
            };
            if let Some(end) = self.end_epoch(trained, observers)? {
                return Ok(end);
            }
        }
        Ok(Outcome::Completed)
    }

    /// One pass over the training batches, from the start or from where a preempted run
    /// stopped.
    fn train_epoch(
        &mut self,
        loader: &Loader,
        epoch: u32,
        resume_at: Option<(EpochPosition, Vec<(String, tch::Tensor)>)>,
        observers: &mut Observers,
    ) -> Result<Pass> {
        let started = Instant::now();
        let lr = scheduled_lr(&self.settings.lr_schedule, self.settings.optimizer.lr(), epoch, self.settings.epochs)
            * self.callbacks.lr_factor;
        // Each rank draws its own dropout masks.
        match self.others() {
            None => seed_torch(derive_seed(self.seed, "epoch", &[epoch as u64])),
            Some(dp) => seed_torch(derive_seed(self.seed, "epoch", &[epoch as u64, dp.rank() as u64])),
        }
        let device = self.learner.device;
        let (mut running, skip, earlier_seconds, mut data_wait) = match &resume_at {
            None => (Running::new(device), 0, 0.0, std::time::Duration::ZERO),
            Some((position, generators)) => {
                self.restore_generators(position, generators)?;
                // The sums are the ranks' together: rank 0 carries them on.
                let running = match self.parallel.as_ref().is_some_and(|dp| !dp.is_root()) {
                    true => Running::new(device),
                    false => Running::restored(device, position.loss_sum, position.correct, position.samples),
                };
                let waited = std::time::Duration::from_secs_f64(position.data_wait_seconds.max(0.0));
                (running, position.steps, position.train_seconds, waited)
            }
        };
        let started_flow = observers.emit(&Event::EpochStarted { epoch, batches: loader.num_batches(), lr })?;
        let mut stopped = match self.agree(started_flow)? {
            flow if flow >= Flow::Interrupt => Some((skip, flow)),
            _ => None,
        };
        let classification = self.classification();
        // On the CPU reading the loss costs nothing; on a GPU it waits for the step, so only
        // when it is logged.
        let read_every_step = !device.is_cuda();
        let log_every = self.log_every as u64;
        let stop_on_nan = self.settings.callbacks.stop_on_nan;
        let transform = self.augmentors.as_transform();
        let learner = &mut self.learner;
        let parallel = self.parallel.as_deref();
        // Each rank's part of each global batch, for the mean gradient and loss.
        let global = loader.global_batches();
        if stopped.is_none() {
            stopped = std::thread::scope(|scope| -> Result<Option<(usize, Flow)>> {
                let batches = loader.epoch_from(epoch, skip, transform, scope);
                let mut batches = batches.enumerate().map(|(j, batch)| (j + skip, batch));
                loop {
                    // How long the model waits for the loader: zero when loading keeps up.
                    let waiting = Instant::now();
                    let Some((i, batch)) = batches.next() else { return Ok(None) };
                    data_wait += waiting.elapsed();
                    let batch = batch?;
                    if batch.is_empty() && parallel.is_none() {
                        continue; // every sample of the batch was skipped by the data set, as configured
                    }
                    let share = batch.len() as f64 / global.get(i).1.max(1) as f64;
                    let step = learner.train_step(&batch, lr, share)?;
                    let global_step = learner.optimizer.steps;
                    let log_now = log_every > 0 && global_step.is_multiple_of(log_every);
                    let read = read_every_step || log_now || parallel.is_some();
                    let value = read.then(|| if batch.is_empty() { 0.0 } else { step.loss.double_value(&[]) });
                    let finite = !(stop_on_nan || parallel.is_some())
                        || value.map_or_else(|| step.loss.isfinite().int64_value(&[]) == 1, f64::is_finite);
                    if stop_on_nan && !finite && parallel.is_none() {
                        let shown = value.map_or("non-finite".into(), |v| v.to_string());
                        bail!(
                            "the loss became {shown} at epoch {}, step {} (stop_on_nan), the learning rate {lr}: training diverged (a smaller training.optimizer.lr, or grad_clip_norm, may help); the last checkpoint holds the last good state",
                            epoch + 1,
                            i + 1
                        );
                    }
                    running.add(&step.loss, &step.output, &batch.y, classification);
                    let end = StepEnd { epoch, step: i, global_step, samples: batch.len(), loss: value, lr };
                    let mut flow = observers.emit(&Event::StepEnded(&end))?;
                    if let Some(dp) = parallel {
                        let agreed = dp.agree(flow, finite, value.unwrap_or(0.0) * share)?;
                        if let (true, Some(rank)) = (stop_on_nan, agreed.not_finite) {
                            bail!(
                                "the loss became non-finite on rank {rank} at epoch {}, step {} (stop_on_nan), the learning rate {lr}: training diverged (a smaller training.optimizer.lr, or grad_clip_norm, may help); the last checkpoint holds the last good state",
                                epoch + 1,
                                i + 1
                            );
                        }
                        dp.coordinator.set_step(global_step);
                        flow = agreed.flow;
                    }
                    if flow >= Flow::Interrupt {
                        return Ok(Some((i + 1, flow)));
                    }
                }
            })?;
        }
        let train_seconds = earlier_seconds + started.elapsed().as_secs_f64();
        match stopped {
            Some((steps, Flow::Preempt)) => {
                // The ranks' sums together, so that any number of ranks can carry them on.
                if let Some(dp) = self.others() {
                    running.reduce(dp)?;
                }
                let (loss_sum, correct, samples) = running.sums();
                let world_size = self.parallel.as_ref().map_or(1, |dp| dp.size());
                let data_wait_seconds = data_wait.as_secs_f64();
                let position =
                    EpochPosition { steps, loss_sum, correct, samples, train_seconds, data_wait_seconds, world_size };
                self.checkpoint_due(Slot::Last, epoch, None, Some(position), observers)?;
                Ok(Pass::Preempted(steps))
            }
            Some((steps, _)) => Ok(Pass::Interrupted(steps)),
            None => Ok(Pass::Done(TrainedEpoch {
                epoch,
                lr,
                running,
                started,
                train_seconds,
                data_wait_seconds: data_wait.as_secs_f64(),
            })),
        }
    }

    /// The random generators as they were where the epoch stopped: this rank's, when the run
    /// had as many processes then; else a warning (dropout then draws other masks than the
    /// uninterrupted run would have).
    fn restore_generators(&self, position: &EpochPosition, generators: &[(String, tch::Tensor)]) -> Result<()> {
        let (rank, world) = self.parallel.as_ref().map_or((0, 1), |dp| (dp.rank(), dp.size()));
        if position.world_size != world {
            tracing::warn!(
                "the checkpoint was taken in the middle of an epoch by {} processes, and this run has {world}: the rest of the epoch draws other random numbers than it would have",
                position.world_size
            );
            return Ok(());
        }
        let find = |name: String| generators.iter().find(|(n, _)| *n == name).map(|(_, t)| t);
        if let Some(state) = find(format!("{rank}")) {
            generator::set_state(tch::Device::Cpu, state)
                .map_err(|e| anyhow::anyhow!("restoring the CPU generator: {e}"))?;
        }
        if let (Some(state), true) = (find(format!("cuda.{rank}")), self.learner.device.is_cuda()) {
            generator::set_state(self.learner.device, state)
                .map_err(|e| anyhow::anyhow!("restoring the CUDA generator: {e}"))?;
        }
        Ok(())
    }

    /// The random generators' states of every rank (`<rank>`, `cuda.<rank>`), for a checkpoint
    /// taken in the middle of an epoch.
    fn generator_states(&self) -> Result<Vec<(String, tch::Tensor)>> {
        let device = self.learner.device;
        let mut mine = vec![("".to_string(), generator::state(tch::Device::Cpu).map_err(anyhow::Error::msg)?)];
        if device.is_cuda() {
            mine.push(("cuda.".to_string(), generator::state(device).map_err(anyhow::Error::msg)?));
        }
        let mut all = Vec::new();
        for (prefix, state) in mine {
            match &self.parallel {
                None => all.push((format!("rng.{prefix}0"), state)),
                Some(dp) => {
                    for (rank, state) in dp.gather(&state)?.into_iter().enumerate() {
                        all.push((format!("rng.{prefix}{rank}"), state));
                    }
                }
            }
        }
        Ok(all)
    }

    /// The end of an epoch: its metrics (validation included), the callbacks' decision, the
    /// checkpoints due and the event. Returns how training ends here, if it does.
    fn end_epoch(&mut self, trained: TrainedEpoch, observers: &mut Observers) -> Result<Option<Outcome>> {
        let TrainedEpoch { epoch, lr, mut running, started, train_seconds, data_wait_seconds } = trained;
        if let Some(dp) = &self.parallel {
            running.reduce(dp)?;
        }
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
                bail!(
                    "{name} became {value} at epoch {} (stop_on_nan), the learning rate {lr}: training diverged (a smaller training.optimizer.lr, or grad_clip_norm, may help)",
                    epoch + 1
                );
            }
        }
        metrics.insert("lr".into(), lr);
        metrics.insert("epoch_seconds".into(), started.elapsed().as_secs_f64());
        metrics.insert("train_samples_per_second".into(), running.samples as f64 / train_seconds.max(1e-9));
        metrics.insert("data_wait_seconds".into(), data_wait_seconds);

        let decision = self.callbacks.end_epoch(&self.settings.callbacks, &metrics, lr);
        for (name, value) in &metrics {
            self.history.entry(name.clone()).or_default().push(*value);
        }
        let (done, epochs) = (epoch + 1, self.settings.epochs);
        let last = done == epochs || decision.stop.is_some();
        let checkpointed = done % self.settings.callbacks.checkpoint.every_n_epochs == 0 || last;
        if checkpointed {
            self.checkpoint_due(Slot::Last, done, None, None, observers)?;
        }
        if decision.save_best {
            let monitor = &self.callbacks.best_checkpoint;
            let best = BestCheckpoint { metric: monitor.metric.clone(), value: monitor.best, epoch: done };
            self.checkpoint_due(Slot::Best, done, Some(best), None, observers)?;
        }
        let end = EpochEnd { epoch: done, epochs, metrics, stop: decision.stop };
        let flow = self.agree(observers.emit(&Event::EpochEnded(&end))?)?;
        if let Some(reason) = end.stop {
            return Ok(Some(Outcome::Stopped { reason }));
        }
        if flow >= Flow::Pause && done < epochs {
            // A run that stops here always leaves this epoch's checkpoint to resume from.
            if !checkpointed {
                self.checkpoint_due(Slot::Last, done, None, None, observers)?;
            }
            return Ok(Some(match flow {
                Flow::Preempt => Outcome::Preempted { epoch: done, step: 0 },
                Flow::Interrupt => Outcome::Interrupted { epoch: done, step: 0 },
                _ => Outcome::Paused { epoch: done },
            }));
        }
        Ok(None)
    }

    /// Asks for a checkpoint of `epoch` epochs done (and, in the middle of the next, of
    /// `position`).
    fn checkpoint_due(
        &self,
        slot: Slot,
        epoch: u32,
        best: Option<BestCheckpoint>,
        position: Option<EpochPosition>,
        observers: &mut Observers,
    ) -> Result<()> {
        let mut tensors = self.fitted_tensors()?;
        tensors.extend(self.learner.optimizer.state().into_iter().map(|(n, t)| (format!("optim.{n}"), t)));
        if position.is_some() {
            tensors.extend(self.generator_states()?);
        }
        let state = CheckpointState {
            epoch,
            optimizer_steps: self.learner.optimizer.steps,
            callbacks: self.callbacks.clone(),
            loss_scaler: self.learner.scaler.clone(),
            history: self.history.clone(),
            position,
            data: Some(self.data_fingerprint.clone()),
        };
        let due = CheckpointDue { slot, epoch, checkpoint: Checkpoint { tensors, state }, best };
        observers.emit(&Event::CheckpointDue(&due))?;
        Ok(())
    }

    /// The model's state (`model.*`) and the fitted preprocessors' (`preprocessors.<i>.*`):
    /// what `predict` needs.
    fn fitted_tensors(&self) -> Result<Vec<(String, tch::Tensor)>> {
        let model = self.learner.model.state()?.into_iter().map(|(n, t)| (format!("model.{n}"), t));
        let mut tensors: Vec<(String, tch::Tensor)> = model.collect();
        tensors.extend(self.preprocessors.states()?);
        Ok(tensors)
    }

    /// Evaluates the test split (and then reports what a streaming data set noted).
    pub fn test(&mut self, observers: &mut Observers) -> Result<()> {
        if self.splits.test.is_empty() {
            tracing::warn!("the test split is empty: no test metrics");
            return Ok(());
        }
        let evaluation = self.evaluation(self.settings.limit_eval_batches);
        let report = evaluation.evaluate(&mut self.learner.model, self.splits.test.fork())?;
        observers.emit(&Event::TestEnded(&report))?;
        if let Some(dataset) = &self.streamed_from {
            let notes = dataset.notes()?;
            if notes.as_object().is_some_and(|o| !o.is_empty()) {
                observers.emit(&Event::DatasetNotes { plugin: &dataset.plugin.label(), notes: &notes })?;
            }
        }
        Ok(())
    }

    /// The sha256 of the model's tensors: the same on every rank of a data-parallel run.
    pub fn model_digest(&self) -> Result<String> {
        let bytes = checkpoint::serialize(&self.learner.model.state()?, None)?;
        Ok(gymnos_host::hash::sha256_bytes(&bytes))
    }

    /// The trained model with the fitted preprocessors, for `model.safetensors`.
    pub fn final_model(&self) -> Result<FinalModel> {
        Ok(FinalModel {
            tensors: self.fitted_tensors()?,
            task: TaskName::from(self.info.task),
            class_names: self.class_names.clone(),
        })
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
}
