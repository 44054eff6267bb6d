//! What takes a gradient step: the model, its optimizer and loss, on the device.

use std::rc::Rc;

use anyhow::Result;
use gymnos_host::experiment::Precision;
use tch::{Device, Kind, Tensor};

use crate::{
    autocast::{autocast, LowPrecision},
    components::Model,
    data::Samples,
    distributed::{DataParallel, GradientSync},
    evaluation::LossFn,
    optim::{LossScaler, Optimizer},
};

/// Seeds libtorch's generators (CPU and CUDA), which initialisation and dropout draw from.
pub fn seed_torch(seed: u64) {
    // libtorch takes a signed 64-bit seed.
    tch::manual_seed((seed >> 1) as i64);
}

pub struct Learner {
    pub model: Model,
    pub optimizer: Optimizer,
    pub loss: LossFn,
    pub device: Device,
    pub precision: Precision,
    pub grad_clip_norm: Option<f64>,
    /// Dynamic loss scaling, with `fp16` only.
    pub scaler: Option<LossScaler>,
    /// The other ranks, in a data-parallel run.
    pub replicas: Option<Replicas>,
}

/// The other ranks' copies of the model, in a data-parallel run: the gradients they average,
/// and the buffers (batch norm's statistics) that rank 0 gives them before each forward pass,
/// as PyTorch's DDP does by default.
pub struct Replicas {
    pub parallel: Rc<DataParallel>,
    pub gradients: GradientSync,
    /// The names of the model's tensors that are no parameters.
    buffers: Vec<String>,
    /// Whether the model's `state()` hands out its own tensors (the SDK's do); else a broadcast
    /// is loaded back with `load_state`.
    live_state: bool,
}

impl Replicas {
    /// Gives every rank rank 0's whole model (parameters and buffers), and prepares the
    /// gradients' buckets.
    pub fn new(parallel: Rc<DataParallel>, model: &mut Model, parameters: &[(String, Tensor)]) -> Result<Self> {
        let state = model.state()?;
        let again = model.state()?;
        let live_state = state.iter().zip(&again).all(|((_, a), (_, b))| a.data_ptr() == b.data_ptr());
        let names: std::collections::HashSet<&str> = parameters.iter().map(|(n, _)| n.as_str()).collect();
        let buffers = state.iter().filter(|(n, _)| !names.contains(n.as_str())).map(|(n, _)| n.clone()).collect();
        let replicas = Replicas {
            gradients: GradientSync::new(parameters.iter().map(|(_, t)| t.shallow_clone()).collect()),
            parallel,
            buffers,
            live_state,
        };
        replicas.broadcast(model, state)?;
        Ok(replicas)
    }

    /// Copies rank 0's `tensors` (of `model`'s state) into every rank's model.
    fn broadcast(&self, model: &mut Model, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let handles: Vec<Tensor> = tensors.iter().map(|(_, t)| t.shallow_clone()).collect();
        self.parallel.broadcast_from_root(&handles)?;
        if !self.live_state && !self.parallel.is_root() {
            // The broadcast went into copies: load them, with the rest of the state as it is.
            let mut state = model.state()?;
            for (name, t) in state.iter_mut() {
                if let Some((_, received)) = tensors.iter().find(|(n, _)| n == name) {
                    *t = received.shallow_clone();
                }
            }
            model.load_state(state)?;
        }
        Ok(())
    }

    fn broadcast_buffers(&self, model: &mut Model) -> Result<()> {
        if self.buffers.is_empty() {
            return Ok(());
        }
        let buffers = model.state()?.into_iter().filter(|(n, _)| self.buffers.contains(n)).collect();
        self.broadcast(model, buffers)
    }
}

/// One step's results, still on the device.
pub struct Step {
    pub loss: Tensor,
    pub output: Tensor,
}

impl Learner {
    /// Forward, loss, backward, in a data-parallel run the gradients averaged across the ranks
    /// (`share`: this rank's part of the global batch), and (unless the loss scaler skips it) an
    /// optimizer step.
    pub fn train_step(&mut self, batch: &Samples, lr: f64, share: f64) -> Result<Step> {
        self.optimizer.zero_grad();
        if let Some(replicas) = &self.replicas {
            replicas.broadcast_buffers(&mut self.model)?;
        }
        // A rank whose every sample of the slice was skipped by the data set still takes part
        // in the step, with no gradient of its own.
        let (loss, output) = match (batch.is_empty(), &self.replicas) {
            (true, Some(_)) => {
                (Tensor::zeros([], (Kind::Float, self.device)), Tensor::zeros([0, 0], (Kind::Float, self.device)))
            }
            _ => {
                let output = self.forward_train(&batch.x)?;
                let loss = self.loss.compute(&output.to_kind(Kind::Float), &batch.y);
                match &self.scaler {
                    Some(scaler) => (&loss * scaler.scale).backward(),
                    None => loss.backward(),
                }
                (loss, output)
            }
        };
        if let Some(replicas) = &self.replicas {
            // Scaled gradients are reduced as they are: an overflow on any rank is then an
            // overflow on every rank, which all skip alike.
            replicas.gradients.reduce(&replicas.parallel, share)?;
        }
        let gradients_finite = match &mut self.scaler {
            Some(scaler) => scaler.unscale(&self.optimizer),
            None => true,
        };
        if gradients_finite {
            if let Some(max_norm) = self.grad_clip_norm {
                self.optimizer.clip_grad_norm(max_norm);
            }
            self.optimizer.step(lr);
        }
        Ok(Step { loss, output })
    }

    pub(crate) fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
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
