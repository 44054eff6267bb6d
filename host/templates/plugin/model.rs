//! `{{name}}`: a gymnos model plugin. Replace the example network with yours.

use gymnos_plugin_sdk::{
    tch::{nn, nn::ModuleT, Tensor},
    Config, Configurable, Context, Model, Result,
};

/// The configuration: each field is a key of the experiment's `config` object, its doc comment
/// the key's description. The host checks the types, defaults and rules before anything runs.
#[derive(Config)]
pub struct {{Type}}Config {
    /// Width of the hidden layer
    #[config(default = 64, min = 1)]
    pub hidden: i64,
}

pub struct {{Type}} {
    vs: nn::VarStore,
    net: nn::SequentialT,
}

impl Configurable for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "A one-hidden-layer network over the flattened input";
    type Config = {{Type}}Config;

    fn build(config: {{Type}}Config, ctx: &Context) -> Result<Self> {
        // The host says what the inputs look like (after preprocessing) and how many outputs.
        let inputs: i64 = ctx.input_shape.iter().product();
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let net = nn::seq_t()
            .add_fn(|x| x.flatten(1, -1))
            .add(nn::linear(&root / "hidden", inputs, config.hidden, Default::default()))
            .add_fn(|x| x.relu())
            .add(nn::linear(&root / "out", config.hidden, ctx.num_outputs, Default::default()));
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
        let err = harness::check_model::<super::{{Type}}>(json!({ "hidden": 0 }), &[4], 3).unwrap_err();
        assert_eq!(err, "create: configuration error: hidden: 0 is not >= 1");
    }
}
