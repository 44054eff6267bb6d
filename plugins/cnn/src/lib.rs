//! `cnn`: a convolutional network for small images `[n, channels, h, w]`: blocks of
//! (conv 3x3 + batch norm + ReLU) x2 + max-pool, then a dense head.

use gymnos_plugin_sdk::{
    key,
    tch::{nn, nn::ModuleT, Tensor},
    Component, Config, ConfigType, Context, Model, PluginError, Result,
};

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

impl Component for Cnn {
    const NAME: &'static str = "cnn";
    const VERSION: &'static str = "1.0.0";
    const DESCRIPTION: &'static str = "Convolutional network for small images: conv-BN-ReLU blocks with max-pooling, then a dense head";

    fn config_keys() -> Vec<gymnos_plugin_sdk::api::ConfigKey> {
        vec![
            key("channels", ConfigType::IntegerList, vec![32, 64], "Output channels of each block (each block halves height and width)"),
            key("hidden", ConfigType::Integer, 128, "Width of the dense layer before the output"),
            key("dropout", ConfigType::Number, 0.3, "Dropout before the output layer"),
        ]
    }

    fn create(config: &Config, ctx: &Context) -> Result<Self> {
        let channels: Vec<i64> = config.get("channels")?;
        let hidden: i64 = config.get("hidden")?;
        let dropout: f64 = config.get("dropout")?;
        let &[c, h, w] = ctx.input_shape.as_slice() else {
            return Err(PluginError::config(format!("cnn needs images [channels, height, width], got input shape {:?}", ctx.input_shape)));
        };
        if channels.is_empty() || channels.iter().any(|&c| c <= 0) || hidden <= 0 {
            return Err(PluginError::config("channels must be a non-empty list of positive sizes, hidden positive"));
        }
        if h >> channels.len() == 0 || w >> channels.len() == 0 {
            return Err(PluginError::config(format!("{} blocks halve {h}x{w} images to nothing", channels.len())));
        }
        if !(0.0..1.0).contains(&dropout) {
            return Err(PluginError::config(format!("dropout must be in [0, 1), got {dropout}")));
        }
        let vs = nn::VarStore::new(ctx.device);
        let root = vs.root();
        let mut net = nn::seq_t();
        let mut c_in = c;
        for (i, &c_out) in channels.iter().enumerate() {
            net = net.add(conv_bn_relu(&root / format!("block{i}"), c_in, c_out)).add_fn(|x| x.max_pool2d_default(2));
            c_in = c_out;
        }
        let flat = c_in * (h >> channels.len()) * (w >> channels.len());
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
        assert_eq!(err, "create: configuration error: cnn needs images [channels, height, width], got input shape [144]");
    }
}
