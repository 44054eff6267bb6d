//! `cnn`: a convolutional network for small images `[n, channels, h, w]`: blocks of
//! (conv 3x3 + batch norm + ReLU) x2 + max-pool, then a dense head.

use gymnos_plugin_sdk::{
    tch::{nn, nn::ModuleT, Tensor},
    Config, Configurable, Context, Model, PluginError, Result,
};

/// The configuration of `cnn`.
#[derive(Config)]
pub struct CnnConfig {
    /// Output channels of each block (each block halves height and width)
    #[config(default = [32, 64], min = 1, non_empty)]
    pub channels: Vec<i64>,
    /// Width of the dense layer before the output
    #[config(default = 128, min = 1)]
    pub hidden: i64,
    /// Dropout before the output layer
    #[config(default = 0.3, range = 0.0..1.0)]
    pub dropout: f64,
}

pub struct Cnn {
    vs: nn::VarStore,
    net: nn::SequentialT,
}

fn conv_bn_relu(path: nn::Path, c_in: i64, c_out: i64) -> nn::SequentialT {
    let conv = nn::ConvConfig { padding: 1, bias: false, ..Default::default() };
    nn::seq_t()
        .add(nn::conv2d(&path / "conv", c_in, c_out, 3, conv))
        .add(nn::batch_norm2d(&path / "bn", c_out, Default::default()))
        .add_fn(|x| x.relu())
}

impl Configurable for Cnn {
    const NAME: &'static str = "cnn";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Convolutional network for small images: conv-BN-ReLU blocks with max-pooling, then a dense head";
    type Config = CnnConfig;

    fn build(config: CnnConfig, ctx: &Context) -> Result<Self> {
        let CnnConfig { channels, hidden, dropout } = config;
        let &[c, h, w] = ctx.input_shape.as_slice() else {
            return Err(PluginError::config(format!(
                "cnn needs images [channels, height, width], got input shape {:?}",
                ctx.input_shape
            )));
        };
        // Each block halves the image; a shift by the block count, checked (64 blocks or more
        // halve anything to nothing).
        let halved = |side: i64| u32::try_from(channels.len()).ok().and_then(|n| side.checked_shr(n)).unwrap_or(0);
        let (h_out, w_out) = (halved(h), halved(w));
        if h_out == 0 || w_out == 0 {
            return Err(PluginError::config(format!("{} blocks halve {h}x{w} images to nothing", channels.len())));
        }
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let mut net = nn::seq_t();
        let mut c_in = c;
        for (i, &c_out) in channels.iter().enumerate() {
            net = net.add(conv_bn_relu(&root / format!("block{i}"), c_in, c_out)).add_fn(|x| x.max_pool2d_default(2));
            c_in = c_out;
        }
        let flat = gymnos_plugin_sdk::numel(&[c_in, h_out, w_out])?;
        net = net
            .add_fn(|x| x.flatten(1, -1))
            .add(nn::linear(&root / "fc", flat, hidden, Default::default()))
            .add_fn(|x| x.relu())
            .add_fn_t(move |x, train| x.dropout(dropout, train))
            .add(nn::linear(&root / "out", hidden, ctx.num_outputs, Default::default()));
        Ok(Self { vs, net })
    }
}

impl Model for Cnn {
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn forward(&self, input: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.net.forward_t(input, train))
    }
}

gymnos_plugin_sdk::export_plugin!(model(Cnn));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    #[test]
    fn meets_the_model_contract() {
        harness::check_model::<super::Cnn>(json!({ "channels": [4, 8], "hidden": 16 }), &[1, 12, 12], 10).unwrap();
        let err = harness::check_model::<super::Cnn>(json!({}), &[144], 10).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: cnn needs images [channels, height, width], got input shape [144]"
        );
        let err =
            harness::check_model::<super::Cnn>(json!({ "channels": [], "hidden": 0 }), &[1, 12, 12], 10).unwrap_err();
        assert_eq!(err, "create: configuration error: channels: must not be empty; hidden: 0 is not >= 1");
        let err =
            harness::check_model::<super::Cnn>(json!({ "channels": [4, 4, 4, 4] }), &[1, 12, 12], 10).unwrap_err();
        assert_eq!(err, "create: configuration error: 4 blocks halve 12x12 images to nothing");
    }
}
