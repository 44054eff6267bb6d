//! `mlp`: a multilayer perceptron over the flattened features.

use gymnos_plugin_sdk::{
    tch::{nn, nn::ModuleT, Tensor},
    Config, Configurable, Context, Model, PluginError, Result,
};

/// The configuration of `mlp`.
#[derive(Config)]
pub struct MlpConfig {
    /// Sizes of the hidden layers
    #[config(default = [256, 128], min = 1)]
    pub hidden: Vec<i64>,
    /// relu, gelu or tanh
    #[config(default = "relu", one_of = ["relu", "gelu", "tanh"])]
    pub activation: String,
    /// Dropout probability after each hidden layer
    #[config(default = 0.1, range = 0.0..1.0)]
    pub dropout: f64,
}

pub struct Mlp {
    vs: nn::VarStore,
    net: nn::SequentialT,
}

impl Configurable for Mlp {
    const NAME: &'static str = "mlp";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Multilayer perceptron: flattened input, hidden layers with activation and dropout";
    type Config = MlpConfig;

    fn build(config: MlpConfig, ctx: &Context) -> Result<Self> {
        let MlpConfig { hidden, activation, dropout } = config;
        let act: fn(&Tensor) -> Tensor = match activation.as_str() {
            "relu" => Tensor::relu,
            "gelu" => |x| x.gelu("none"),
            "tanh" => Tensor::tanh,
            other => return Err(PluginError::config(format!("activation `{other}` is not relu, gelu or tanh"))),
        };
        if ctx.input_shape.is_empty() || ctx.num_outputs <= 0 {
            return Err(PluginError::config("mlp needs the input shape and the number of outputs from the host"));
        }
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let mut net = nn::seq_t();
        let mut width = gymnos_plugin_sdk::numel(&ctx.input_shape)?;
        for (i, &h) in hidden.iter().enumerate() {
            net = net
                .add(nn::linear(&root / format!("fc{i}"), width, h, Default::default()))
                .add_fn(act)
                .add_fn_t(move |x, train| gymnos_plugin_sdk::nn::dropout(x, dropout, train));
            width = h;
        }
        net = net.add(nn::linear(&root / "out", width, ctx.num_outputs, Default::default()));
        Ok(Self { vs, net })
    }
}

impl Model for Mlp {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.net.forward_t(&input.flatten(1, -1), train))
    }
}

gymnos_plugin_sdk::export_plugin!(model(Mlp));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    #[test]
    fn meets_the_model_contract() {
        harness::check_model::<super::Mlp>(json!({ "hidden": [16, 8], "activation": "gelu" }), &[1, 6, 6], 3).unwrap();
        let err = harness::check_model::<super::Mlp>(json!({ "hidden": [0], "dropout": 1.0 }), &[4], 3).unwrap_err();
        assert_eq!(err, "create: configuration error: dropout: 1.0 is not in [0, 1); hidden: item 0: 0 is not >= 1");
        let err = harness::check_model::<super::Mlp>(json!({ "activation": "swish" }), &[4], 3).unwrap_err();
        assert_eq!(err, "create: configuration error: activation: \"swish\" is not one of relu, gelu, tanh");
    }
}
