//! `mlp`: a multilayer perceptron over the flattened features.

use gymnos_plugin_sdk::{
    memory,
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
        let features = gymnos_plugin_sdk::numel(&ctx.input_shape)?;
        check_sizes(&hidden, features, ctx.num_outputs)?;
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let mut net = nn::seq_t();
        let mut width = features;
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

/// float32 values: what every parameter and activation takes.
const BYTES_EACH: u64 = 4;

/// Refuses, before anything is allocated, a network whose parameters and one sample's layer
/// outputs would not fit in this machine's memory, naming the first layer at which the total
/// (counted with checked arithmetic) exceeds it: `hidden[1] (...): needs 4.0 TB (...)`.
pub fn check_sizes(hidden: &[i64], features: i64, num_outputs: i64) -> Result<()> {
    let mut total: Option<u128> = Some(0);
    let mut width = features;
    let layers = hidden.iter().enumerate().map(|(i, &h)| (Some(i), h)).chain([(None, num_outputs)]);
    for (i, units) in layers {
        // weights + bias + the layer's output (its activation and dropout keep one each).
        let weights = memory::bytes_of(&[width as u64, units as u64], BYTES_EACH);
        let rest = memory::bytes_of(&[units as u64, 3], BYTES_EACH);
        total = total.and_then(|t| t.checked_add(weights?)?.checked_add(rest?));
        let what = match (i, hidden.len().checked_sub(1)) {
            (Some(i), _) => format!("hidden[{i}] (the network up to this layer of {width} x {units} weights)"),
            (None, Some(last)) => {
                format!("hidden[{last}] (the network up to its output layer of {width} x {units} weights)")
            }
            (None, None) => format!("the output layer of {width} features x {units} outputs"),
        };
        memory::ensure_bytes_fit(&what, total)?;
        width = units;
    }
    Ok(())
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
    use gymnos_plugin_sdk::{harness, memory, serde_json::json, ConfigSchema, Configurable, Context};
    use proptest::prelude::*;

    use super::{check_sizes, Mlp, MlpConfig};

    #[test]
    fn meets_the_model_contract() {
        harness::check_model::<Mlp>(json!({ "hidden": [16, 8], "activation": "gelu" }), &[1, 6, 6], 3).unwrap();
        let err = harness::check_model::<Mlp>(json!({ "hidden": [0], "dropout": 1.0 }), &[4], 3).unwrap_err();
        assert_eq!(err, "create: configuration error: dropout: 1.0 is not in [0, 1); hidden: item 0: 0 is not >= 1");
        let err = harness::check_model::<Mlp>(json!({ "activation": "swish" }), &[4], 3).unwrap_err();
        assert_eq!(err, "create: configuration error: activation: \"swish\" is not one of relu, gelu, tanh");
    }

    #[test]
    fn sizes_that_cannot_fit_are_refused_before_anything_is_allocated_naming_the_layer() {
        let machine = memory::human(u128::from(memory::limit_bytes()));
        let err = harness::check_model::<Mlp>(json!({ "hidden": [1000000, 1000000] }), &[13], 3).unwrap_err();
        assert_eq!(
            err,
            format!(
                "create: configuration error: hidden[1] (the network up to this layer of 1000000 x 1000000 weights): \
                 needs 4.0 TB (4000076000000 bytes), and this machine has {machine} of memory"
            )
        );
        let err = harness::check_model::<Mlp>(json!({ "hidden": [1000000000000i64] }), &[13], 3).unwrap_err();
        assert!(
            err.starts_with("create: configuration error: hidden[0] (the network up to this layer of 13 x"),
            "{err}"
        );
        // Products past 128 bits are said as such, still naming the layer.
        let err = check_sizes(&[i64::MAX, i64::MAX, i64::MAX], i64::MAX, 3).unwrap_err().to_string();
        assert!(err.starts_with("configuration error: hidden[0] ("), "{err}");
        let err = check_sizes(&[], 1 << 62, 1 << 40).unwrap_err().to_string();
        assert!(err.starts_with("configuration error: the output layer of 4611686018427387904 features x"), "{err}");
        check_sizes(&[256, 128], 784, 10).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any list of layer sizes, small or absurd: create builds the network or refuses it with
        /// a configuration error naming a field; it never panics or asks libtorch for the memory.
        #[test]
        fn create_builds_or_names_the_field(
            hidden in prop::collection::vec(prop_oneof![1i64..24, Just(1 << 20), Just(1i64 << 40), Just(i64::MAX)], 0..5),
            features in prop_oneof![1i64..16, Just(1 << 21)],
            outputs in 1i64..5,
        ) {
            // Only sizes that are small or far beyond any machine: what builds, builds quickly.
            let big = |h: &i64| *h >= 1 << 20;
            prop_assume!(hidden.windows(2).any(|w| big(&w[0]) && big(&w[1])) || hidden.iter().filter(|h| big(h)).count() <= 1);
            prop_assume!(features < 1 << 21 || hidden.first().is_none_or(|h| *h < 1 << 20));
            let ctx = Context { input_shape: vec![features], num_outputs: outputs, ..Context::standalone() };
            let config = MlpConfig::from_json(json!({ "hidden": hidden })).unwrap();
            match Mlp::build(config, &ctx) {
                Ok(_) => {}
                Err(e) => {
                    let text = e.to_string();
                    prop_assert!(text.starts_with("configuration error: hidden["), "{}", text);
                    prop_assert!(text.contains(": needs "), "{}", text);
                }
            }
        }
    }
}
