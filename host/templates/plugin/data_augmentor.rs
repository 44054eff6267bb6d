//! `{{name}}`: a gymnos data augmentor plugin. The example adds Gaussian noise to the features.
//! Augmentors run on training batches in several threads at once: take all randomness from
//! the `rng` the host seeds for each batch.

use gymnos_plugin_sdk::{key, tch::Tensor, Component, Config, ConfigType, Context, DataAugmentor, PluginError, Result, Rng};

pub struct {{Type}} {
    std: f64,
}

impl Component for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Adds Gaussian noise to training features";

    fn config_keys() -> Vec<gymnos_plugin_sdk::api::ConfigKey> {
        vec![key("std", ConfigType::Number, 0.05, "Standard deviation of the noise")]
    }

    fn create(config: &Config, _ctx: &Context) -> Result<Self> {
        let std: f64 = config.get("std")?;
        if !(std >= 0.0) {
            return Err(PluginError::config(format!("std must be non-negative, got {std}")));
        }
        Ok(Self { std })
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
    use gymnos_plugin_sdk::{harness, serde_json::json, tch::{Device, Kind, Tensor}, Rng};

    #[test]
    fn meets_the_augmentor_contract() {
        let x = Rng::new(1).normal(&[8, 3]);
        let y = Tensor::arange(8, (Kind::Int64, Device::Cpu));
        harness::check_augmentor::<super::{{Type}}>(json!({ "std": 0.1 }), &x, &y).unwrap();
    }
}
