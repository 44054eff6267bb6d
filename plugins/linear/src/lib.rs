//! `linear`: logistic regression (classification) or linear regression: the flattened
//! features through one linear layer to the outputs.

use gymnos_plugin_sdk::{
    memory, numel,
    tch::{nn, nn::Module, Tensor},
    Config, Configurable, Context, Model, PluginError, Result,
};

/// The configuration of `linear`.
#[derive(Config)]
pub struct LinearConfig {
    /// Learn an intercept (a bias per output)
    #[config(default = true)]
    pub bias: bool,
}

pub struct Linear {
    vs: nn::VarStore,
    layer: nn::Linear,
}

impl Configurable for Linear {
    const NAME: &'static str = "linear";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Logistic or linear regression: the flattened input through one linear layer to the outputs";
    type Config = LinearConfig;

    fn build(config: LinearConfig, ctx: &Context) -> Result<Self> {
        if ctx.input_shape.is_empty() || ctx.num_outputs <= 0 {
            return Err(PluginError::config("linear needs the input shape and the number of outputs from the host"));
        }
        let features = numel(&ctx.input_shape)?;
        // Refused before anything is allocated: weights, bias and one sample's outputs, float32.
        let values = memory::bytes_of(&[features as u64, ctx.num_outputs as u64], 1)
            .and_then(|w| w.checked_add(2 * ctx.num_outputs as u128));
        let what = format!("the linear layer of {features} features x {} outputs", ctx.num_outputs);
        memory::ensure_bytes_fit(&what, values.and_then(|v| v.checked_mul(4)))?;
        let vs = nn::VarStore::new(ctx.device);
        let layer = nn::linear(
            vs.root() / "linear",
            features,
            ctx.num_outputs,
            nn::LinearConfig { bias: config.bias, ..Default::default() },
        );
        Ok(Self { vs, layer })
    }
}

impl Model for Linear {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&self, input: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(self.layer.forward(&input.flatten(1, -1)))
    }
}

gymnos_plugin_sdk::export_plugin!(model(Linear));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{Device, Kind, Tensor},
        ConfigSchema, Configurable, Context, Model,
    };

    use super::{Linear, LinearConfig};

    fn context(input_shape: &[i64], num_outputs: i64) -> Context {
        Context { input_shape: input_shape.to_vec(), num_outputs, ..Context::standalone() }
    }

    #[test]
    fn meets_the_model_contract() {
        harness::check_model::<Linear>(json!({}), &[13], 3).unwrap();
        harness::check_model::<Linear>(json!({ "bias": false }), &[1, 6, 6], 10).unwrap();
        let err = harness::check_model::<Linear>(json!({ "bias": 1 }), &[4], 3).unwrap_err();
        assert_eq!(err, "create: configuration error: bias: expected bool, found an integer");
        let err = harness::check_model::<Linear>(json!({}), &[1 << 40, 1 << 40], 3).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: shape [1099511627776, 1099511627776] has no element count that fits in 64 \
             bits"
        );
        // Features that fit in 64 bits, but not their weights in memory: refused before allocating.
        let err = harness::check_model::<Linear>(json!({}), &[1 << 20, 1 << 20], 3).unwrap_err();
        assert!(
            err.starts_with(
                "create: configuration error: the linear layer of 1099511627776 features x 3 outputs: needs 13.2 TB \
                 (13194139533336 bytes), and this machine has "
            ),
            "{err}"
        );
    }

    #[test]
    fn one_weight_per_feature_and_output_and_a_bias_only_when_asked() {
        let with = Linear::build(LinearConfig::from_json(json!({})).unwrap(), &context(&[2, 3], 4)).unwrap();
        let mut names: Vec<(String, Vec<i64>)> =
            with.var_store().variables().into_iter().map(|(n, t)| (n, t.size())).collect();
        names.sort();
        assert_eq!(names, [("linear.bias".to_string(), vec![4]), ("linear.weight".to_string(), vec![4, 6])]);
        let without =
            Linear::build(LinearConfig::from_json(json!({ "bias": false })).unwrap(), &context(&[2, 3], 4)).unwrap();
        assert_eq!(without.var_store().variables().len(), 1);
        // No bias: a zero input gives zero outputs.
        let out = without.forward(&Tensor::zeros([5, 2, 3], (Kind::Float, Device::Cpu)), false).unwrap();
        assert_eq!(out.size(), [5, 4]);
        assert_eq!(out.abs().sum(Kind::Float).double_value(&[]), 0.0);
    }
}
