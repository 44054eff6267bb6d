//! `mlp`: a multilayer perceptron over the flattened features.

use gymnos_plugin_sdk::{
    key,
    tch::{nn, nn::ModuleT, Tensor},
    Component, Config, ConfigType, Context, Model, PluginError, Result,
};

pub struct Mlp {
    vs: nn::VarStore,
    net: nn::SequentialT,
}

impl Component for Mlp {
    const NAME: &'static str = "mlp";
    const VERSION: &'static str = "1.0.0";
    const DESCRIPTION: &'static str = "Multilayer perceptron: flattened input, hidden layers with activation and dropout";

    fn config_keys() -> Vec<gymnos_plugin_sdk::api::ConfigKey> {
        vec![
            key("hidden", ConfigType::IntegerList, vec![256, 128], "Sizes of the hidden layers"),
            key("activation", ConfigType::String, "relu", "relu, gelu or tanh"),
            key("dropout", ConfigType::Number, 0.1, "Dropout probability after each hidden layer"),
        ]
    }

    fn create(config: &Config, ctx: &Context) -> Result<Self> {
        let hidden: Vec<i64> = config.get("hidden")?;
        let activation: String = config.get("activation")?;
        let dropout: f64 = config.get("dropout")?;
        if hidden.iter().any(|&h| h <= 0) {
            return Err(PluginError::config(format!("hidden sizes must be positive, got {hidden:?}")));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(PluginError::config(format!("dropout must be in [0, 1), got {dropout}")));
        }
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
        let mut width: i64 = ctx.input_shape.iter().product();
        for (i, &h) in hidden.iter().enumerate() {
            net = net
                .add(nn::linear(&root / format!("fc{i}"), width, h, Default::default()))
                .add_fn(move |x| act(x))
                .add_fn_t(move |x, train| x.dropout(dropout, train));
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
        let err = harness::check_model::<super::Mlp>(json!({ "hidden": [0] }), &[4], 3).unwrap_err();
        assert_eq!(err, "create: configuration error: hidden sizes must be positive, got [0]");
    }
}
