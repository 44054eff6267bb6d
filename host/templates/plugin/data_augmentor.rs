//! `{{name}}`: a gymnos data augmentor plugin. The example adds Gaussian noise to the features.
//! Augmentors run on training batches in several threads at once: take all randomness from
//! the `rng` the host seeds for each batch.

use gymnos_plugin_sdk::{tch::Tensor, Config, Configurable, Context, DataAugmentor, Result, Rng};

/// The configuration: each field is a key of the experiment's `config` object, its doc comment
/// the key's description. The host checks the types, defaults and rules before anything runs.
#[derive(Config)]
pub struct {{Type}}Config {
    /// Standard deviation of the noise
    #[config(default = 0.05, min = 0)]
    pub std: f64,
}

pub struct {{Type}} {
    std: f64,
}

impl Configurable for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Adds Gaussian noise to training features";
    type Config = {{Type}}Config;

    fn build(config: {{Type}}Config, _ctx: &Context) -> Result<Self> {
        Ok(Self { std: config.std })
    }
}

impl DataAugmentor for {{Type}} {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let noise = rng.normal(&features.size()).to_kind(features.kind()) * self.std;
        Ok((features + noise, targets))
    }
}

gymnos_plugin_sdk::export_plugin!(data_augmentor({{Type}}));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{Device, Kind, Tensor},
        Rng,
    };

    #[test]
    fn meets_the_augmentor_contract() {
        let x = Rng::new(1).normal(&[8, 3]);
        let y = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        harness::check_augmentor::<super::{{Type}}>(json!({ "std": 0.1 }), &x, &y).unwrap();
        let err = harness::check_augmentor::<super::{{Type}}>(json!({ "std": -1 }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: std: -1 is not >= 0");
    }
}
