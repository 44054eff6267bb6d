//! `random-flip`: flips training images left-right and/or upside down at random.

use gymnos_plugin_sdk::{tch::Tensor, Config, Configurable, Context, DataAugmentor, PluginError, Result, Rng};

/// The configuration of `random-flip`.
#[derive(Config)]
pub struct RandomFlipConfig {
    /// Probability of a left-right flip per sample
    #[config(default = 0.5, range = 0.0..=1.0)]
    pub horizontal: f64,
    /// Probability of an upside-down flip per sample
    #[config(default = 0.0, range = 0.0..=1.0)]
    pub vertical: f64,
}

pub struct RandomFlip {
    horizontal: f64,
    vertical: f64,
}

impl Configurable for RandomFlip {
    const NAME: &'static str = "random-flip";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Flips images [n, ..., h, w] horizontally and/or vertically with given probabilities";
    type Config = RandomFlipConfig;

    fn build(config: RandomFlipConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self { horizontal: config.horizontal, vertical: config.vertical })
    }
}

/// Flips `dim` of the samples selected by a random mask.
fn flip_some(x: Tensor, dim: i64, p: f64, rng: &mut Rng) -> Tensor {
    if p == 0.0 {
        return x;
    }
    let n = x.size()[0];
    let mut mask_shape = vec![1i64; x.dim()];
    mask_shape[0] = n;
    let mask = rng.bernoulli_mask(n, p).view(mask_shape.as_slice());
    x.flip([dim]).where_self(&mask, &x)
}

impl DataAugmentor for RandomFlip {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        if features.dim() < 3 {
            return Err(PluginError::data(format!(
                "random-flip needs image batches [n, ..., h, w], got shape {:?}",
                features.size()
            )));
        }
        let x = flip_some(features, -1, self.horizontal, rng);
        let x = flip_some(x, -2, self.vertical, rng);
        Ok((x, targets))
    }
}

gymnos_plugin_sdk::export_plugin!(data_augmentor(RandomFlip));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{Kind, Tensor},
        Rng,
    };

    #[test]
    fn meets_the_augmentor_contract() {
        let x = Rng::new(1).normal(&[16, 1, 4, 4]);
        let y = Tensor::arange(16, (Kind::Int64, gymnos_plugin_sdk::tch::Device::Cpu));
        harness::check_augmentor::<super::RandomFlip>(json!({ "horizontal": 0.5, "vertical": 0.5 }), &x, &y).unwrap();
        let err = harness::check_augmentor::<super::RandomFlip>(json!({ "horizontal": 2 }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: horizontal: 2 is not in [0, 1]");
    }
}
