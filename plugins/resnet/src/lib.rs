//! `resnet`: a residual network (He et al., 2015) for images `[channels, height, width]` from
//! 8x8 up, sized for 28x28 to 224x224.
//!
//! - stem: `small` (3x3 conv, stride 1: images up to 64 pixels a side keep their resolution) or
//!   `large` (7x7 conv stride 2 + 3x3 max-pool stride 2: ImageNet-size images, a quarter of the
//!   side from the start); `auto` takes `small` when both sides are at most 64 pixels;
//! - stages of BasicBlocks (conv3x3-BN-ReLU-conv3x3-BN, plus the block's input, then ReLU), as
//!   many blocks per stage as `depth` says; stage `i` has `width * 2^i` channels, and every
//!   stage but the first starts with a stride-2 block whose shortcut is a 1x1 stride-2
//!   convolution with batch norm (a projection);
//! - global average pooling, dropout, a linear layer to the outputs.
//!
//! Version 1.1 adds `channels_last` (on by default): the same network and parameters, stored in
//! the memory order libtorch's CPU convolutions run fastest in.

use gymnos_plugin_sdk::{
    layout, memory,
    tch::{nn, nn::Module, nn::ModuleT, Tensor},
    Config, Configurable, Context, Model, PluginError, Result,
};

/// The largest number of channels a stage may have (`width * 2^(stages - 1)`).
const MAX_CHANNELS: i64 = 1 << 16;
/// Images smaller than this a side are refused: the stride-2 stages would shrink them to
/// single pixels before they start.
const MIN_SIDE: i64 = 8;
/// `auto` takes the small stem up to this many pixels a side.
const SMALL_STEM_MAX_SIDE: i64 = 64;

/// The configuration of `resnet`.
#[derive(Config)]
pub struct ResnetConfig {
    /// Residual blocks per stage; each stage after the first halves height and width and doubles the channels
    #[config(default = [2, 2, 2], min = 1, max = 64, non_empty, max_len = 8)]
    pub depth: Vec<i64>,
    /// Channels of the first stage (doubled by each following stage)
    #[config(default = 32, min = 1, max = 4096)]
    pub width: i64,
    /// small (3x3 conv, stride 1; images up to 64 px), large (7x7 conv stride 2 + max-pool; ImageNet-size), or auto (small when both sides are at most 64 px)
    #[config(default = "auto", one_of = ["auto", "small", "large"])]
    pub stem: String,
    /// Dropout before the output layer
    #[config(default = 0.0, range = 0.0..1.0)]
    pub dropout: f64,
    /// Keep convolution weights and activations channels-last (NHWC) in memory: the same
    /// results up to rounding, faster on the CPU
    #[config(default = true)]
    pub channels_last: bool,
}

/// conv3x3-BN-ReLU-conv3x3-BN, plus the input (or its projection), then ReLU.
#[derive(Debug)]
struct BasicBlock {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    /// 1x1 convolution with the block's stride, and batch norm, when the shape changes.
    projection: Option<(nn::Conv2D, nn::BatchNorm)>,
}

fn conv(path: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> nn::Conv2D {
    let config = nn::ConvConfig { stride, padding: kernel / 2, bias: false, ..Default::default() };
    nn::conv2d(path, c_in, c_out, kernel, config)
}

fn bn(path: nn::Path, channels: i64) -> nn::BatchNorm {
    nn::batch_norm2d(path, channels, Default::default())
}

impl BasicBlock {
    fn new(path: nn::Path, c_in: i64, c_out: i64, stride: i64) -> Self {
        let projection = (stride != 1 || c_in != c_out)
            .then(|| (conv(&path / "shortcut" / "conv", c_in, c_out, 1, stride), bn(&path / "shortcut" / "bn", c_out)));
        Self {
            conv1: conv(&path / "conv1", c_in, c_out, 3, stride),
            bn1: bn(&path / "bn1", c_out),
            conv2: conv(&path / "conv2", c_out, c_out, 3, 1),
            bn2: bn(&path / "bn2", c_out),
            projection,
        }
    }
}

impl ModuleT for BasicBlock {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let y = y.apply(&self.conv2).apply_t(&self.bn2, train);
        let shortcut = match &self.projection {
            Some((conv, bn)) => x.apply(conv).apply_t(bn, train),
            None => x.shallow_clone(),
        };
        (y + shortcut).relu()
    }
}

pub struct Resnet {
    vs: nn::VarStore,
    stem: nn::SequentialT,
    blocks: Vec<BasicBlock>,
    dropout: f64,
    head: nn::Linear,
    channels_last: bool,
}

/// The channels of each stage: `width`, doubled per stage, checked.
fn stage_channels(width: i64, stages: usize) -> Result<Vec<i64>> {
    let mut channels = Vec::with_capacity(stages);
    let mut c = width;
    for i in 0..stages {
        if c > MAX_CHANNELS {
            return Err(PluginError::config(format!(
                "width {width} doubled over {stages} stages gives stage {i} more than {MAX_CHANNELS} channels"
            )));
        }
        channels.push(c);
        c = c.saturating_mul(2);
    }
    Ok(channels)
}

/// The side a 3x3 (or 7x7, padded 3) convolution or a 3x3 max-pool of stride 2 leaves.
fn halved(side: i64) -> i64 {
    (side - 1) / 2 + 1
}

/// Refuses, before anything is allocated, a network that would not fit in memory: the stem,
/// each BasicBlock (two 3x3 convolutions, their batch norms, the projection, and one sample's
/// outputs of each of its seven steps), and the head.
fn check_sizes(depth: &[i64], channels: &[i64], large: bool, [c, h, w]: [i64; 3], num_outputs: i64) -> Result<()> {
    let mut tally = memory::Tally::default();
    let width = channels[0];
    let (kernel, mut h, mut w) = if large { (7, halved(h), halved(w)) } else { (3, h, w) };
    let what = || format!("width (the stem of {width} channels at {h}x{w})");
    tally.add(what, &[&[width, c, kernel, kernel], &[width, 4], &[3, width, h, w]])?;
    if large {
        (h, w) = (halved(h), halved(w));
        tally.add(|| format!("width (the stem of {width} channels at {h}x{w})"), &[&[width, h, w]])?;
    }
    let mut c_in = width;
    for (stage, (&blocks, &c_out)) in depth.iter().zip(channels).enumerate() {
        for block in 0..blocks {
            if stage > 0 && block == 0 {
                (h, w) = (halved(h), halved(w));
            }
            let projection = if c_in != c_out || (stage > 0 && block == 0) { 1 } else { 0 };
            let what = || {
                format!(
                    "depth[{stage}] and width (the network up to block {block} of stage {stage}: {c_out} channels \
                     at {h}x{w})"
                )
            };
            tally.add(
                what,
                &[
                    &[c_out, c_in, 3, 3],
                    &[c_out, c_out, 3, 3],
                    &[projection, c_out, c_in + 4],
                    &[c_out, 8],
                    &[7 + 2 * projection, c_out, h, w],
                ],
            )?;
            c_in = c_out;
        }
    }
    let what = || format!("width (the network up to its head of {c_in} x {num_outputs} weights)");
    tally.add(what, &[&[c_in, num_outputs], &[num_outputs, 2]])
}

impl Configurable for Resnet {
    const NAME: &'static str = "resnet";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Residual network for images from 8x8 (sized for 28x28 to 224x224): BasicBlock stages, global average pooling, a linear head";
    type Config = ResnetConfig;

    fn build(config: ResnetConfig, ctx: &Context) -> Result<Self> {
        let ResnetConfig { depth, width, stem, dropout, channels_last } = config;
        let &[c, h, w] = ctx.input_shape.as_slice() else {
            return Err(PluginError::config(format!(
                "resnet needs images [channels, height, width], got input shape {:?}",
                ctx.input_shape
            )));
        };
        if c < 1 || h < MIN_SIDE || w < MIN_SIDE {
            return Err(PluginError::config(format!(
                "resnet needs images of at least {MIN_SIDE}x{MIN_SIDE} pixels with a channel, got input shape {:?}",
                ctx.input_shape
            )));
        }
        if ctx.num_outputs <= 0 {
            return Err(PluginError::config("resnet needs the number of outputs from the host"));
        }
        let large = match stem.as_str() {
            "auto" => h > SMALL_STEM_MAX_SIDE || w > SMALL_STEM_MAX_SIDE,
            "small" => false,
            "large" => true,
            other => return Err(PluginError::config(format!("stem `{other}` is not auto, small or large"))),
        };
        let channels = stage_channels(width, depth.len())?;
        check_sizes(&depth, &channels, large, [c, h, w], ctx.num_outputs)?;
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let stem = if large {
            nn::seq_t()
                .add(conv(&root / "stem" / "conv", c, width, 7, 2))
                .add(bn(&root / "stem" / "bn", width))
                .add_fn(|x| x.relu())
                .add_fn(|x| x.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false))
        } else {
            nn::seq_t()
                .add(conv(&root / "stem" / "conv", c, width, 3, 1))
                .add(bn(&root / "stem" / "bn", width))
                .add_fn(|x| x.relu())
        };
        let mut blocks = Vec::new();
        let mut c_in = width;
        for (stage, (&blocks_in_stage, &c_out)) in depth.iter().zip(&channels).enumerate() {
            for block in 0..blocks_in_stage {
                let stride = if stage > 0 && block == 0 { 2 } else { 1 };
                let path = &root / format!("stage{stage}") / format!("block{block}");
                blocks.push(BasicBlock::new(path, c_in, c_out, stride));
                c_in = c_out;
            }
        }
        let head = nn::linear(&root / "fc", c_in, ctx.num_outputs, Default::default());
        if channels_last {
            layout::var_store_to_channels_last(&vs);
        }
        Ok(Self { vs, stem, blocks, dropout, head, channels_last })
    }
}

impl Model for Resnet {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        let input = if self.channels_last { layout::to_channels_last(input) } else { input.shallow_clone() };
        let mut x = input.apply_t(&self.stem, train);
        for block in &self.blocks {
            x = x.apply_t(block, train);
        }
        let pooled = x.mean_dim([2i64, 3].as_slice(), false, None);
        Ok(self.head.forward(&pooled.dropout(self.dropout, train)))
    }
}

gymnos_plugin_sdk::export_plugin!(model(Resnet));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::{json, Value},
        tch::{Device, Kind, Tensor},
        ConfigSchema, Configurable, Context, Model,
    };
    use proptest::prelude::*;

    use super::{Resnet, ResnetConfig};

    fn build(config: Value, input_shape: &[i64]) -> gymnos_plugin_sdk::Result<Resnet> {
        let ctx = Context { input_shape: input_shape.to_vec(), num_outputs: 10, ..Context::standalone() };
        Resnet::build(ResnetConfig::from_json(config)?, &ctx)
    }

    fn shapes(model: &Resnet, prefix: &str) -> Vec<(String, Vec<i64>)> {
        let mut vars = Vec::new();
        for (name, t) in model.var_store().variables() {
            if name.starts_with(prefix) {
                vars.push((name, t.size()));
            }
        }
        vars.sort();
        vars
    }

    #[test]
    fn meets_the_model_contract() {
        harness::check_model::<Resnet>(json!({ "depth": [1, 1], "width": 4 }), &[1, 28, 28], 10).unwrap();
        harness::check_model::<Resnet>(json!({ "depth": [1, 2, 1], "width": 4, "dropout": 0.2 }), &[3, 9, 13], 5)
            .unwrap();
        harness::check_model::<Resnet>(json!({ "depth": [1, 1], "width": 4, "stem": "large" }), &[3, 8, 8], 2).unwrap();
        harness::check_model::<Resnet>(json!({ "depth": [1], "width": 2 }), &[3, 96, 80], 3).unwrap();
    }

    #[test]
    fn channels_last_computes_what_the_contiguous_order_computes() {
        let config = |channels_last: bool| json!({ "depth": [1, 1], "width": 4, "channels_last": channels_last });
        let mut fast = build(config(true), &[1, 12, 12]).unwrap();
        let plain = build(config(false), &[1, 12, 12]).unwrap();
        fast.vs.copy(&plain.vs).unwrap();
        assert!(gymnos_plugin_sdk::layout::is_channels_last(&fast.var_store().variables()["stem.conv.weight"]));
        let x = Tensor::randn([5, 1, 12, 12], (Kind::Float, Device::Cpu));
        let (a, b) = (fast.forward(&x, false).unwrap(), plain.forward(&x, false).unwrap());
        assert!(a.allclose(&b, 1e-5, 1e-5, false), "{a} vs {b}");
    }

    #[test]
    fn refuses_what_it_cannot_take_naming_the_shape() {
        let err = harness::check_model::<Resnet>(json!({}), &[13], 3).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: resnet needs images [channels, height, width], got input shape [13]"
        );
        let err = harness::check_model::<Resnet>(json!({}), &[1, 28, 7], 3).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: resnet needs images of at least 8x8 pixels with a channel, got input shape \
             [1, 28, 7]"
        );
        let err = harness::check_model::<Resnet>(json!({ "depth": [], "width": 0, "stem": "tiny" }), &[1, 28, 28], 3)
            .unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: depth: must not be empty; stem: \"tiny\" is not one of auto, small, large; \
             width: 0 is not >= 1"
        );
        let err = build(json!({ "depth": [1, 1, 1, 1, 1, 1, 1, 1], "width": 4096 }), &[1, 28, 28]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "configuration error: width 4096 doubled over 8 stages gives stage 5 more than 65536 channels"
        );
    }

    #[test]
    fn sizes_that_cannot_fit_are_refused_before_anything_is_allocated_naming_the_fields() {
        let err = build(json!({ "depth": [64, 64, 64, 64, 64, 64, 64, 64], "width": 512 }), &[3, 32, 32])
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("configuration error: depth["), "{err}");
        assert!(err.contains("] and width (the network up to block ") && err.contains(": needs "), "{err}");
        let err = build(json!({ "depth": [1], "width": 8 }), &[3, 1 << 20, 1 << 20]).err().unwrap().to_string();
        assert!(
            err.starts_with("configuration error: width (the stem of 8 channels at 524288x524288): needs "),
            "{err}"
        );
        let err = build(json!({ "depth": [1], "width": 8 }), &[3, i64::MAX, i64::MAX]).err().unwrap().to_string();
        assert!(err.starts_with("configuration error: width (the stem of 8 channels at "), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any depth, width, stem and image size, small or absurd: create builds the network or
        /// refuses it with a configuration error naming a field; never a panic or an allocation
        /// failure.
        #[test]
        fn create_builds_or_names_the_field(
            depth in prop::collection::vec(1i64..3, 1..9),
            width in prop_oneof![1i64..6, 2048i64..4097],
            stem in prop::sample::select(vec!["auto", "small", "large"]),
            side in prop_oneof![8i64..20, Just(1i64 << 20), Just(i64::MAX / 2)],
        ) {
            // Small networks build; wide ones are refused by the channel cap or for their memory.
            prop_assume!(width < 2048 || width << (depth.len() - 1) > 65536 || side > 20);
            let config = json!({ "depth": depth, "width": width, "stem": stem });
            match build(config, &[1, side, side]) {
                Ok(_) => prop_assert!(width < 2048 && side <= 20),
                Err(e) => {
                    let text = e.to_string();
                    let named = ["width", "depth["].iter().any(|f| text.starts_with(&format!("configuration error: {f}")));
                    prop_assert!(named, "{}", text);
                }
            }
        }
    }

    #[test]
    fn stages_double_the_channels_and_project_the_shortcut_when_the_shape_changes() {
        let model = build(json!({ "depth": [2, 1], "width": 8 }), &[3, 32, 32]).unwrap();
        assert_eq!(
            shapes(&model, "stem"),
            [
                ("stem.bn.bias".to_string(), vec![8]),
                ("stem.bn.running_mean".to_string(), vec![8]),
                ("stem.bn.running_var".to_string(), vec![8]),
                ("stem.bn.weight".to_string(), vec![8]),
                ("stem.conv.weight".to_string(), vec![8, 3, 3, 3]),
            ]
        );
        let names: Vec<String> = shapes(&model, "stage").into_iter().map(|(n, _)| n).collect();
        assert!(!names.iter().any(|n| n.starts_with("stage0") && n.contains("shortcut")), "{names:?}");
        assert_eq!(
            shapes(&model, "stage1.block0.shortcut.conv"),
            [("stage1.block0.shortcut.conv.weight".to_string(), vec![16, 8, 1, 1])]
        );
        assert_eq!(shapes(&model, "fc.weight"), [("fc.weight".to_string(), vec![10, 16])]);
        // The large stem: 7x7, stride 2.
        let model = build(json!({ "depth": [1], "width": 8 }), &[3, 65, 65]).unwrap();
        assert_eq!(shapes(&model, "stem.conv"), [("stem.conv.weight".to_string(), vec![8, 3, 7, 7])]);
        let model = build(json!({ "depth": [1], "width": 8, "stem": "small" }), &[3, 224, 224]).unwrap();
        assert_eq!(shapes(&model, "stem.conv"), [("stem.conv.weight".to_string(), vec![8, 3, 3, 3])]);
        let out = model.forward(&Tensor::zeros([2, 3, 224, 224], (Kind::Float, Device::Cpu)), false).unwrap();
        assert_eq!(out.size(), [2, 10]);
    }

    #[test]
    fn the_default_network_takes_28x28_and_224x224_images() {
        for side in [28, 224] {
            let model = build(json!({}), &[1, side, side]).unwrap();
            let x = Tensor::randn([2, 1, side, side], (Kind::Float, Device::Cpu));
            assert_eq!(model.forward(&x, true).unwrap().size(), [2, 10]);
        }
    }
}
