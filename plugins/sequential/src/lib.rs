//! `sequential`: a model written entirely in the experiment, as a list of layers.
//!
//! ```json
//! "model": { "plugin": "sequential", "config": { "layers": [
//!     { "type": "conv2d", "filters": 16, "kernel_size": 3 }, { "type": "batch_norm" }, { "type": "relu" },
//!     { "type": "max_pool2d", "size": 2 },
//!     { "type": "residual", "layers": [{ "type": "conv2d", "filters": 16, "kernel_size": 3 }, { "type": "relu" }] },
//!     { "type": "global_avg_pool" }, { "type": "dropout", "rate": 0.2 }
//! ] } }
//! ```
//!
//! Layer types and fields (see [`schema`]): `dense {units}`, `conv2d {filters, kernel_size,
//! stride = 1, padding = "same" | "valid" | pixels}`, `max_pool2d {size, stride = size}`,
//! `avg_pool2d {size, stride = size}`, `global_avg_pool`, `batch_norm`, `dropout {rate}`,
//! `flatten`, `relu`, `gelu`, `tanh`, `sigmoid`, `residual {layers}` (adds its input to the
//! output of its layers, which must keep the input's shape).
//!
//! **The output layer is added for you**: unless the last layer is a `dense` layer with as many
//! units as the model has outputs, a `dense` layer to the outputs (named `head`) is appended,
//! after a flatten when the last output is not a vector. The model's output is always logits
//! (classification) or predictions (regression): no softmax, the loss takes logits.
//!
//! `build` checks the list against its JSON Schema (the one `gymnos-host schema` shows), then
//! walks it from the input shape, computing each layer's output shape; the first layer that
//! cannot take its input is refused with its index path and the shapes:
//! `layers[3] (conv2d): input [16, 2, 2] is smaller than the kernel 3x3`,
//! `layers[4] (residual): its layers turn [32, 14, 14] into [64, 7, 7]`.

pub mod layers;
pub mod schema;

use gymnos_plugin_sdk::{
    numel,
    serde_json::Value,
    tch::{nn, nn::Module, Tensor},
    Config, Configurable, Context, Model, PluginError, Result,
};

use crate::layers::{Op, Spec};

/// The configuration of `sequential`.
#[derive(Config)]
pub struct SequentialConfig {
    /// The layers in order, each an object with a `type` (dense, conv2d, max_pool2d, avg_pool2d,
    /// global_avg_pool, batch_norm, dropout, flatten, relu, gelu, tanh, sigmoid, residual) and
    /// its fields; a dense layer to the outputs is appended unless the last layer is one
    #[config(schema = crate::schema::layers_schema)]
    pub layers: Value,
}

pub struct Sequential {
    vs: nn::VarStore,
    layers: Vec<Op>,
    /// The appended output layer, and whether a flatten precedes it.
    head: Option<(bool, nn::Linear)>,
}

/// Reads `layers`: the schema's checks (every problem, joined), then the typed layers.
pub fn parse_layers(layers: &Value) -> Result<Vec<Spec>> {
    let mut problems = Vec::new();
    schema::check(&schema::layer_list(schema::nesting(layers)), layers, "layers", &mut problems);
    if !problems.is_empty() {
        return Err(PluginError::config(problems.join("; ")));
    }
    layers::parse(layers, "layers")
}

impl Configurable for Sequential {
    const NAME: &'static str = "sequential";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "A network written in the experiment as a list of layers (dense, conv2d, pooling, batch_norm, dropout, activations, residual), with its shapes checked at build";
    type Config = SequentialConfig;

    fn build(config: SequentialConfig, ctx: &Context) -> Result<Self> {
        let specs = parse_layers(&config.layers)?;
        if ctx.input_shape.is_empty() || ctx.num_outputs <= 0 {
            return Err(PluginError::config(
                "sequential needs the input shape and the number of outputs from the host",
            ));
        }
        // Every shape and size first, nothing allocated; then the layers.
        let mut tally = gymnos_plugin_sdk::memory::Tally::default();
        let shape = layers::plan(&specs, &ctx.input_shape, "layers", &mut tally)?;
        let ends_in_output = matches!(specs.last(), Some(Spec::Dense { units }) if *units == ctx.num_outputs);
        let head_features = if ends_in_output { None } else { Some(numel(&shape)?) };
        if let Some(features) = head_features {
            let outputs = ctx.num_outputs;
            let what = || match specs.len().checked_sub(1) {
                Some(last) => format!(
                    "layers[{last}] (the network up to the output layer appended after it, of {features} x {outputs} \
                     weights)"
                ),
                None => format!("layers (the output layer appended, of {features} x {outputs} weights)"),
            };
            tally.add(what, &[&[features, outputs], &[outputs, 2]])?;
        }
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let (layers, shape) = layers::build(&specs, &ctx.input_shape, "layers", &root)?;
        let head = head_features.map(|features| {
            (shape.len() != 1, nn::linear(&root / "head", features, ctx.num_outputs, Default::default()))
        });
        Ok(Self { vs, layers, head })
    }
}

impl Model for Sequential {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        let y = layers::run(&self.layers, input, train);
        Ok(match &self.head {
            Some((true, head)) => head.forward(&y.flatten(1, -1)),
            Some((false, head)) => head.forward(&y),
            None => y,
        })
    }
}

gymnos_plugin_sdk::export_plugin!(model(Sequential));

#[cfg(test)]
mod tests;
