//! `{{name}}`: a gymnos model plugin. Replace the example network with yours.

use gymnos_plugin_sdk::{
    key,
    tch::{nn, nn::ModuleT, Tensor},
    Component, Config, ConfigType, Context, Model, PluginError, Result,
};

pub struct {{Type}} {
    vs: nn::VarStore,
    net: nn::SequentialT,
}

impl Component for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "A one-hidden-layer network over the flattened input";

    fn config_keys() -> Vec<gymnos_plugin_sdk::api::ConfigKey> {
        vec![key("hidden", ConfigType::Integer, 64, "Width of the hidden layer")]
    }

    fn create(config: &Config, ctx: &Context) -> Result<Self> {
        let hidden: i64 = config.get("hidden")?;
        if hidden <= 0 {
            return Err(PluginError::config(format!("hidden must be positive, got {hidden}")));
        }
        // The host says what the inputs look like (after preprocessing) and how many outputs.
        let inputs: i64 = ctx.input_shape.iter().product();
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let net = nn::seq_t()
            .add_fn(|x| x.flatten(1, -1))
            .add(nn::linear(&root / "hidden", inputs, hidden, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "out", hidden, ctx.num_outputs, Default::default()));
        Ok(Self { vs, net })
    }
}

impl Model for {{Type}} {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.net.forward_t(input, train))
    }
}

gymnos_plugin_sdk::export_plugin!(model({{Type}}));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    #[test]
    fn meets_the_model_contract() {
        harness::check_model::<super::{{Type}}>(json!({ "hidden": 16 }), &[1, 8, 8], 3).unwrap();
    }
}
