//! The first training batch through the whole run — data set, preprocessors, augmentors,
//! model, loss and backward pass — and one evaluation batch, before the run folder exists.
//! `run` and `validate --deep` both call it, so a run refused here leaves nothing behind.
//!
//! It changes nothing: no optimizer step is taken, and the model's state (batch norm's
//! statistics) and the random generators (dropout's) are put back, so the run that follows is
//! the run that would have been without it.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::Trainer;
use crate::{
    data::{first_non_finite, Samples},
    generator,
    learner::Learner,
};

/// What the first batch showed.
#[derive(Clone, Copy, Debug)]
pub struct FirstBatch {
    /// Its loss.
    pub loss: f64,
}

impl Trainer<'_> {
    /// See the module's docs.
    pub fn check_first_batch(&mut self) -> Result<FirstBatch> {
        self.check_batch_norm_has_two_samples()?;
        let loader = self.loader();
        let transform = self.augmentors.as_transform();
        let batch = std::thread::scope(|scope| loader.epoch(0, transform, scope).next().transpose())?;
        let Some(batch) = batch else { bail!("the training split gives no batch") };
        if batch.is_empty() {
            bail!("every sample of the first training batch was skipped by the data set");
        }
        self.check_inputs(&batch)?;
        let saved = Saved::take(&self.learner)?;
        let loss = forward_backward(&mut self.learner, &batch);
        saved.put_back(&mut self.learner)?;
        let loss = loss?;
        // Evaluation runs in eval mode without gradients: it changes nothing.
        let check = if self.splits.val.is_empty() { &self.splits.test } else { &self.splits.val };
        if !check.is_empty() {
            self.evaluation(Some(1)).evaluate(&mut self.learner.model, check.fork())?;
        }
        Ok(FirstBatch { loss })
    }

    /// Batch normalisation cannot train on one sample (its variance is then undefined, and the
    /// statistics it keeps for evaluation turn NaN): a model with it and batches of one sample
    /// per process is refused, naming both.
    fn check_batch_norm_has_two_samples(&self) -> Result<()> {
        let global = self.loader().global_batches();
        let world = self.parallel.as_ref().map_or(1, |dp| dp.size() as i64);
        let smallest =
            [global.get(0), global.last().unwrap_or_default()].iter().map(|r| r.1).min().unwrap_or(0) / world;
        if global.is_empty() || smallest > 1 {
            return Ok(());
        }
        let state = self.learner.model.state()?;
        let Some((statistic, _)) = state.iter().find(|(name, _)| name.ends_with("running_var")) else {
            return Ok(());
        };
        let per = if world > 1 { format!(" per process (of {world})") } else { String::new() };
        bail!(
            "training.batch_size: {} trains on batches of {smallest} sample{per}, and its batch normalisation (`{statistic}`) needs at least 2: make the batches larger",
            self.learner.model.label()
        )
    }

    /// The batch's inputs are finite. A split in memory was checked stage by stage when it was
    /// preprocessed, so NaN here came from the augmentors; a streamed one's come from reading
    /// and preprocessing.
    fn check_inputs(&self, batch: &Samples) -> Result<()> {
        let Some((sample, feature)) = first_non_finite(&batch.x) else { return Ok(()) };
        let stage = match (self.splits.train.in_memory().is_some(), self.augmentors.is_empty()) {
            (true, false) => format!("after the augmentors ({}), and none before them", self.augmentors.labels()),
            _ => "as the data set and the preprocessors made it".to_string(),
        };
        bail!(
            "the first training batch holds NaN or infinite inputs (the first at sample {sample}, feature {feature}) {stage}: look at their configuration"
        )
    }
}

/// Forward, loss and backward on `batch`, the cause named when a value is not finite; the
/// gradients are cleared after.
fn forward_backward(learner: &mut Learner, batch: &Samples) -> Result<f64> {
    learner.optimizer.zero_grad();
    let output = learner.forward_train(&batch.x)?;
    if let Some((sample, output_index)) = first_non_finite(&output) {
        bail!(
            "{} gives NaN or infinite outputs for finite inputs (the first at sample {sample}, output {output_index} of the first training batch): look at its configuration and initialisation",
            learner.model.label()
        );
    }
    let loss = learner.loss.compute(&output.to_kind(Kind::Float), &batch.y);
    let value = loss.double_value(&[]);
    if !value.is_finite() {
        bail!(
            "the {:?} loss of the first training batch is {value} for finite model outputs: look at the targets the data set gives",
            learner.loss
        );
    }
    loss.backward();
    learner.optimizer.zero_grad();
    Ok(value)
}

/// What a training forward pass changes besides the gradients: the model's state and the
/// random generators.
struct Saved {
    model: Vec<(String, Tensor)>,
    generators: Vec<(Device, Tensor)>,
}

impl Saved {
    fn take(learner: &Learner) -> Result<Saved> {
        let model = learner.model.state()?.into_iter().map(|(name, t)| (name, t.detach().copy())).collect();
        let mut generators = vec![(Device::Cpu, generator::state(Device::Cpu).map_err(anyhow::Error::msg)?)];
        if learner.device.is_cuda() {
            generators.push((learner.device, generator::state(learner.device).map_err(anyhow::Error::msg)?));
        }
        Ok(Saved { model, generators })
    }

    fn put_back(self, learner: &mut Learner) -> Result<()> {
        learner.model.load_state(self.model)?;
        for (device, state) in &self.generators {
            generator::set_state(*device, state).map_err(anyhow::Error::msg)?;
        }
        Ok(())
    }
}
