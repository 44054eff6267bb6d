//! `cnn`: a convolutional network for small images `[n, channels, h, w]`: blocks of
//! (conv k×k + batch norm + ReLU) + pooling (max or average, 2×2), then a dense head.
//!
//! Version 1.1 adds `kernel_size`, `pooling` and `batch_norm`; their defaults (3, `max`,
//! `true`) build the network of 1.0, with the same parameters, so 1.0 configurations and
//! their saved weights give the same model. Version 1.2 adds `channels_last` (on by default):
//! the same network and parameters, stored in the memory order libtorch's CPU convolutions run
//! fastest in.

use gymnos_plugin_sdk::{
    layout, memory,
    tch::{nn, nn::ModuleT, Tensor},
    Config, Configurable, Context, Model, PluginError, Result,
};

/// The configuration of `cnn`.
#[derive(Config)]
pub struct CnnConfig {
    /// Output channels of each block (each block halves height and width)
    #[config(default = [32, 64], min = 1, non_empty)]
    pub channels: Vec<i64>,
    /// Side of each block's square convolution kernel (odd, so that the padding keeps the size)
    #[config(default = 3, one_of = [1, 3, 5, 7])]
    pub kernel_size: i64,
    /// Pooling after each block: max or avg (2x2, stride 2)
    #[config(default = "max", one_of = ["max", "avg"])]
    pub pooling: String,
    /// Batch normalization after each convolution (without it the convolutions learn a bias)
    #[config(default = true)]
    pub batch_norm: bool,
    /// Width of the dense layer before the output
    #[config(default = 128, min = 1)]
    pub hidden: i64,
    /// Dropout before the output layer
    #[config(default = 0.3, range = 0.0..1.0)]
    pub dropout: f64,
    /// Keep convolution weights and activations channels-last (NHWC) in memory: the same
    /// results up to rounding, about twice as fast on the CPU
    #[config(default = true)]
    pub channels_last: bool,
}

pub struct Cnn {
    vs: nn::VarStore,
    net: nn::SequentialT,
    channels_last: bool,
}

/// One block's convolution, batch norm (when asked) and ReLU. Parameter names are those of 1.0.
fn conv_block(path: nn::Path, c_in: i64, c_out: i64, kernel: i64, batch_norm: bool) -> nn::SequentialT {
    let conv = nn::ConvConfig { padding: kernel / 2, bias: !batch_norm, ..Default::default() };
    let mut block = nn::seq_t().add(nn::conv2d(&path / "conv", c_in, c_out, kernel, conv));
    if batch_norm {
        block = block.add(nn::batch_norm2d(&path / "bn", c_out, Default::default()));
    }
    block.add_fn(|x| x.relu())
}

/// Refuses, before anything is allocated, a network that would not fit in memory: per block
/// the convolution's weights, batch norm's four vectors, and one sample's outputs of the
/// convolution, batch norm, ReLU and pooling; then the dense head.
fn check_sizes(
    channels: &[i64],
    kernel: i64,
    batch_norm: bool,
    hidden: i64,
    [c, h, w]: [i64; 3],
    num_outputs: i64,
) -> Result<()> {
    let mut tally = memory::Tally::default();
    let (mut c_in, mut h, mut w) = (c, h, w);
    for (i, &c_out) in channels.iter().enumerate() {
        let what = || format!("channels[{i}] (the network up to block {i}: {c_in} to {c_out} channels at {h}x{w})");
        let outputs = if batch_norm { 3 } else { 2 };
        tally.add(
            what,
            &[&[c_out, c_in, kernel, kernel], &[c_out, 4], &[outputs, c_out, h, w], &[c_out, h / 2, w / 2]],
        )?;
        (c_in, h, w) = (c_out, h / 2, w / 2);
    }
    let last = channels.len().saturating_sub(1);
    let what = || {
        format!(
            "hidden (the network up to its dense layer from channels[{last}]: {c_in}x{h}x{w} features x {hidden} \
             weights)"
        )
    };
    tally.add(what, &[&[c_in, h, w, hidden], &[hidden, 4]])?;
    let what = || format!("hidden (the network up to its output layer of {hidden} x {num_outputs} weights)");
    tally.add(what, &[&[hidden, num_outputs], &[num_outputs, 2]])
}

impl Configurable for Cnn {
    const NAME: &'static str = "cnn";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Convolutional network for small images: conv-BN-ReLU blocks with pooling, then a dense head";
    type Config = CnnConfig;

    fn build(config: CnnConfig, ctx: &Context) -> Result<Self> {
        let CnnConfig { channels, kernel_size, pooling, batch_norm, hidden, dropout, channels_last } = config;
        let &[c, h, w] = ctx.input_shape.as_slice() else {
            return Err(PluginError::config(format!(
                "cnn needs images [channels, height, width], got input shape {:?}",
                ctx.input_shape
            )));
        };
        let pool: fn(&Tensor) -> Tensor = match pooling.as_str() {
            "max" => |x| x.max_pool2d_default(2),
            // Not `avg_pool2d_default`: tch 0.24's passes a divisor of 1, which sums instead.
            "avg" => |x| x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None),
            other => return Err(PluginError::config(format!("pooling `{other}` is not max or avg"))),
        };
        if kernel_size < 1 || kernel_size % 2 == 0 {
            return Err(PluginError::config(format!("kernel_size {kernel_size} is not an odd number")));
        }
        // Each block halves the image; a shift by the block count, checked (64 blocks or more
        // halve anything to nothing).
        let halved = |side: i64| u32::try_from(channels.len()).ok().and_then(|n| side.checked_shr(n)).unwrap_or(0);
        let (h_out, w_out) = (halved(h), halved(w));
        if h_out == 0 || w_out == 0 {
            let most = (h.min(w).max(1)).ilog2();
            return Err(PluginError::config(format!(
                "channels: {} blocks halve {h}x{w} images to nothing (these images take at most {most})",
                channels.len()
            )));
        }
        check_sizes(&channels, kernel_size, batch_norm, hidden, [c, h, w], ctx.num_outputs)?;
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let mut net = nn::seq_t();
        let mut c_in = c;
        for (i, &c_out) in channels.iter().enumerate() {
            net = net.add(conv_block(&root / format!("block{i}"), c_in, c_out, kernel_size, batch_norm)).add_fn(pool);
            c_in = c_out;
        }
        let flat = gymnos_plugin_sdk::numel(&[c_in, h_out, w_out])?;
        net = net
            .add_fn(|x| x.flatten(1, -1))
            .add(nn::linear(&root / "fc", flat, hidden, Default::default()))
            .add_fn(|x| x.relu())
            .add_fn_t(move |x, train| x.dropout(dropout, train))
            .add(nn::linear(&root / "out", hidden, ctx.num_outputs, Default::default()));
        if channels_last {
            layout::var_store_to_channels_last(&vs);
        }
        Ok(Self { vs, net, channels_last })
    }
}

impl Model for Cnn {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        match self.channels_last {
            true => Ok(self.net.forward_t(&layout::to_channels_last(input), train)),
            false => Ok(self.net.forward_t(input, train)),
        }
    }
}

gymnos_plugin_sdk::export_plugin!(model(Cnn));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{self, Device, Kind, Tensor},
        ConfigSchema, Configurable, Context, Model,
    };
    use proptest::prelude::*;

    use super::{Cnn, CnnConfig};

    fn build(config: gymnos_plugin_sdk::serde_json::Value, input_shape: &[i64]) -> Cnn {
        let ctx = Context { input_shape: input_shape.to_vec(), num_outputs: 10, ..Context::standalone() };
        Cnn::build(CnnConfig::from_json(config).unwrap(), &ctx).unwrap()
    }

    fn variables(model: &Cnn) -> Vec<(String, Vec<i64>)> {
        let mut vars: Vec<(String, Vec<i64>)> =
            model.var_store().variables().into_iter().map(|(n, t)| (n, t.size())).collect();
        vars.sort();
        vars
    }

    #[test]
    fn meets_the_model_contract() {
        harness::check_model::<Cnn>(json!({ "channels": [4, 8], "hidden": 16 }), &[1, 12, 12], 10).unwrap();
        for config in [
            json!({ "channels": [4, 8], "hidden": 16, "kernel_size": 5, "pooling": "avg" }),
            json!({ "channels": [4], "hidden": 16, "kernel_size": 1, "batch_norm": false }),
            json!({ "channels": [3, 3, 3], "hidden": 8, "kernel_size": 7, "pooling": "avg", "batch_norm": false }),
        ] {
            harness::check_model::<Cnn>(config.clone(), &[2, 9, 11], 4).unwrap_or_else(|e| panic!("{config}: {e}"));
        }
        let err = harness::check_model::<Cnn>(json!({}), &[144], 10).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: cnn needs images [channels, height, width], got input shape [144]"
        );
        let err = harness::check_model::<Cnn>(json!({ "channels": [], "hidden": 0 }), &[1, 12, 12], 10).unwrap_err();
        assert_eq!(err, "create: configuration error: channels: must not be empty; hidden: 0 is not >= 1");
        let err = harness::check_model::<Cnn>(json!({ "channels": [4, 4, 4, 4] }), &[1, 12, 12], 10).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: channels: 4 blocks halve 12x12 images to nothing (these images take at most 3)"
        );
        let err =
            harness::check_model::<Cnn>(json!({ "kernel_size": 4, "pooling": "min" }), &[1, 12, 12], 10).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: kernel_size: 4 is not one of 1, 3, 5, 7; pooling: \"min\" is not one of \
             max, avg"
        );
    }

    #[test]
    fn sizes_that_cannot_fit_are_refused_before_anything_is_allocated_naming_the_field() {
        let refused = |config: gymnos_plugin_sdk::serde_json::Value, shape: &[i64]| {
            let err = harness::check_model::<Cnn>(config, shape, 2).unwrap_err();
            assert!(err.contains(": needs ") && err.contains(" bytes), and this machine has "), "{err}");
            err
        };
        let err = refused(json!({ "channels": [1000000] }), &[1, 28, 28]);
        assert!(
            err.starts_with(
                "create: configuration error: hidden (the network up to its dense layer from channels[0]: \
                 1000000x14x14 features x 128 weights): needs "
            ),
            "{err}"
        );
        let err = refused(json!({ "hidden": 100000000 }), &[1, 28, 28]);
        assert!(err.starts_with("create: configuration error: hidden (the network up to its dense layer from channels[1]: 64x7x7 features x 100000000 weights): needs "), "{err}");
        let err = refused(json!({ "channels": [4, 1099511627776i64] }), &[3, 28, 28]);
        assert!(
            err.starts_with(
                "create: configuration error: channels[1] (the network up to block 1: 4 to 1099511627776 channels at \
                 14x14): needs "
            ),
            "{err}"
        );
        let err = refused(json!({ "channels": [i64::MAX, 2] }), &[3, 28, 28]);
        assert!(err.starts_with("create: configuration error: channels[0] ("), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any channels, kernel and head, small or absurd: create builds the network or refuses it
        /// with a configuration error naming a field; never a panic or an allocation failure.
        #[test]
        fn create_builds_or_names_the_field(
            channels in prop::collection::vec(prop_oneof![1i64..8, Just(1i64 << 40), Just(i64::MAX)], 1..4),
            hidden in prop_oneof![1i64..32, Just(1i64 << 40), Just(i64::MAX)],
            kernel in prop::sample::select(vec![1i64, 3, 5, 7]),
            batch_norm in any::<bool>(),
            side in 1i64..20,
        ) {
            let config = json!({ "channels": channels, "hidden": hidden, "kernel_size": kernel, "batch_norm": batch_norm });
            let ctx = Context { input_shape: vec![2, side, side], num_outputs: 3, ..Context::standalone() };
            match Cnn::build(CnnConfig::from_json(config).unwrap(), &ctx) {
                Ok(_) => prop_assert!(channels.iter().chain([&hidden]).all(|&n| n < 1 << 40)),
                Err(e) => {
                    let text = e.to_string();
                    let named = ["channels[", "hidden (", "channels: "]
                        .iter()
                        .any(|field| text.starts_with(&format!("configuration error: {field}")));
                    prop_assert!(named, "{}", text);
                }
            }
        }
    }

    #[test]
    fn channels_last_computes_what_the_contiguous_order_computes() {
        let config = |channels_last: bool| json!({ "channels": [4, 8], "hidden": 16, "channels_last": channels_last });
        let mut fast = build(config(true), &[1, 12, 12]);
        let plain = build(config(false), &[1, 12, 12]);
        fast.vs.copy(&plain.vs).unwrap();
        let weight = &fast.var_store().variables()["block0.conv.weight"];
        assert!(gymnos_plugin_sdk::layout::is_channels_last(weight));
        let x = Tensor::randn([5, 1, 12, 12], (Kind::Float, Device::Cpu));
        let (a, b) = (fast.forward(&x, false).unwrap(), plain.forward(&x, false).unwrap());
        assert!(a.allclose(&b, 1e-5, 1e-5, false), "{a} vs {b}");
        harness::check_model::<Cnn>(config(true), &[3, 8, 8], 4).unwrap();
    }

    #[test]
    fn the_defaults_build_the_network_of_1_0() {
        // The parameters of 1.0's network for `{"channels": [4, 8], "hidden": 16}` on 1x12x12.
        let expected: Vec<(String, Vec<i64>)> = [
            ("block0.bn.bias", vec![4]),
            ("block0.bn.running_mean", vec![4]),
            ("block0.bn.running_var", vec![4]),
            ("block0.bn.weight", vec![4]),
            ("block0.conv.weight", vec![4, 1, 3, 3]),
            ("block1.bn.bias", vec![8]),
            ("block1.bn.running_mean", vec![8]),
            ("block1.bn.running_var", vec![8]),
            ("block1.bn.weight", vec![8]),
            ("block1.conv.weight", vec![8, 4, 3, 3]),
            ("fc.bias", vec![16]),
            ("fc.weight", vec![16, 72]),
            ("out.bias", vec![10]),
            ("out.weight", vec![10, 16]),
        ]
        .into_iter()
        .map(|(n, s)| (n.to_string(), s))
        .collect();
        let defaults = build(json!({ "channels": [4, 8], "hidden": 16 }), &[1, 12, 12]);
        assert_eq!(variables(&defaults), expected);
        // The same seed gives the same weights, written out or left to their defaults.
        tch::manual_seed(3);
        let implicit = build(json!({ "channels": [4, 8], "hidden": 16 }), &[1, 12, 12]);
        tch::manual_seed(3);
        let explicit = build(
            json!({ "channels": [4, 8], "hidden": 16, "kernel_size": 3, "pooling": "max", "batch_norm": true }),
            &[1, 12, 12],
        );
        let x = Tensor::randn([2, 1, 12, 12], (Kind::Float, Device::Cpu));
        assert!(implicit.forward(&x, false).unwrap().equal(&explicit.forward(&x, false).unwrap()));
    }

    #[test]
    fn kernel_size_pooling_and_batch_norm_change_what_they_say() {
        let model = build(json!({ "channels": [4], "hidden": 16, "kernel_size": 5, "batch_norm": false }), &[2, 8, 8]);
        assert_eq!(
            variables(&model),
            [
                ("block0.conv.bias".to_string(), vec![4]),
                ("block0.conv.weight".to_string(), vec![4, 2, 5, 5]),
                ("fc.bias".to_string(), vec![16]),
                ("fc.weight".to_string(), vec![16, 64]),
                ("out.bias".to_string(), vec![10]),
                ("out.weight".to_string(), vec![10, 16]),
            ]
        );
        // With every weight 1 and every bias 0, the output is the sum of the pooled image: for
        // 0/16..15/16 in 4x4, the windows' means sum to 1.875 and their maxima to 2.5.
        for (pooling, expected) in [("avg", 1.875), ("max", 2.5)] {
            let config =
                json!({ "channels": [1], "hidden": 1, "kernel_size": 1, "pooling": pooling, "batch_norm": false });
            let model = build(config, &[1, 4, 4]);
            tch::no_grad(|| {
                for (name, mut t) in model.var_store().variables() {
                    let _ = if name.ends_with("bias") { t.fill_(0.0) } else { t.fill_(1.0) };
                }
            });
            let x = Tensor::arange(16, (Kind::Float, Device::Cpu)).reshape([1, 1, 4, 4]) / 16.0;
            let out = model.forward(&x, false).unwrap();
            assert_eq!(out.size(), [1, 10]);
            assert!((out.double_value(&[0, 0]) - expected).abs() < 1e-6, "{pooling}: {out}");
        }
    }
}

#[cfg(test)]
mod speed {
    use gymnos_plugin_sdk::{
        serde_json::json,
        tch::{self, Device, Kind, Tensor},
        ConfigSchema, Configurable, Context, Model,
    };

    use super::{Cnn, CnnConfig};

    /// `cargo test --release -p gymnos-cnn -- --ignored --nocapture step_time`: forward and
    /// backward of a Fashion-MNIST batch, in each memory order.
    #[test]
    #[ignore]
    fn step_time() {
        tch::set_num_threads(2);
        let x = Tensor::randn([128, 1, 28, 28], (Kind::Float, Device::Cpu));
        let y = Tensor::randint(10, [128], (Kind::Int64, Device::Cpu));
        for round in 0..3 {
            for channels_last in [false, true] {
                let ctx = Context { input_shape: vec![1, 28, 28], num_outputs: 10, ..Context::standalone() };
                let config = CnnConfig::from_json(json!({ "channels_last": channels_last })).unwrap();
                let model = Cnn::build(config, &ctx).unwrap();
                let step = || {
                    let loss = model.forward(&x, true).unwrap().cross_entropy_for_logits(&y);
                    loss.backward();
                };
                (0..5).for_each(|_| step());
                let started = std::time::Instant::now();
                (0..40).for_each(|_| step());
                println!(
                    "round {round} channels_last {channels_last}: {:.1} ms",
                    started.elapsed().as_secs_f64() * 25.0
                );
            }
        }
    }
}
