//! The model: a plugin's network, run through the ABI once per batch.

use anyhow::{bail, Result};
use gymnos_host::experiment::ResolvedPlugin;
use gymnos_plugin_api::ModelBox;
use gymnos_plugin_sdk::{from_handle, from_named, to_handle, to_named};
use tch::Tensor;

use super::{call, named};

pub struct Model {
    pub plugin: ResolvedPlugin,
    inner: ModelBox,
    num_outputs: i64,
}

impl Model {
    pub(super) fn new(plugin: ResolvedPlugin, inner: ModelBox, num_outputs: i64) -> Self {
        Self { plugin, inner, num_outputs }
    }

    /// `model 'mlp@1.1.0' (model)`, for messages.
    pub fn label(&self) -> String {
        named(&self.plugin)
    }

    /// Runs the model; checks the output is `[n, num_outputs]` so that the loss never sees a
    /// shape it would fail on.
    pub fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        let n = x.size()[0];
        let out = from_handle(call(&self.plugin, "forward", self.inner.forward(to_handle(x.shallow_clone()), train))?);
        if out.size() != [n, self.num_outputs] {
            bail!(
                "{} forward returned shape {:?}, expected [{n}, {}]",
                named(&self.plugin),
                out.size(),
                self.num_outputs
            );
        }
        Ok(out)
    }

    /// The trainable tensors, sorted by name: shallow handles sharing storage and gradients.
    pub fn parameters(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(from_named(call(&self.plugin, "parameters", self.inner.parameters())?))
    }

    /// Every tensor of the model (parameters and buffers, such as batch norm's statistics).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(from_named(call(&self.plugin, "state", self.inner.state())?))
    }

    pub fn load_state(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        call(&self.plugin, "load_state", self.inner.load_state(to_named(tensors)))
    }
}
