//! `gaussian-noise`: add normal noise to the features.

use gymnos_plugin_sdk::{tch::Tensor, Config, Configurable, Context, DataAugmentor, PluginError, Result, Rng};

use crate::{draw_selection, require_float, sample_mask};

/// The configuration of `gaussian-noise`.
#[derive(Config)]
pub struct GaussianNoiseConfig {
    /// Standard deviation of the noise added to every feature value
    #[config(default = 0.1, min = 0.0)]
    pub std: f64,
    /// Probability that a sample gets noise (the others are left as they are)
    #[config(default = 1.0, range = 0.0..=1.0)]
    pub p: f64,
}

pub struct GaussianNoise {
    std: f64,
    p: f64,
}

impl Configurable for GaussianNoise {
    const NAME: &'static str = "gaussian-noise";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Adds N(0, std^2) noise to float features [n, ...], per sample with probability p";
    type Config = GaussianNoiseConfig;

    fn build(config: GaussianNoiseConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self { std: config.std, p: config.p })
    }
}

impl DataAugmentor for GaussianNoise {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        if features.dim() == 0 {
            return Err(PluginError::data(format!(
                "gaussian-noise needs a batch [n, ...], got shape {:?}",
                features.size()
            )));
        }
        require_float(Self::NAME, &features)?;
        if self.p == 0.0 || self.std == 0.0 {
            return Ok((features, targets));
        }
        let selected = draw_selection(rng, features.size()[0], self.p);
        let noise = rng.normal(&features.size()).to_kind(features.kind()) * self.std;
        let out = (&features + noise).where_self(&sample_mask(&selected, features.dim()), &features);
        Ok((out, targets))
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json, tch::Kind, Rng};

    use super::*;
    use crate::testing::{counting, labels, make};

    #[test]
    fn meets_the_augmentor_contract_and_refuses_bad_configs() {
        let x = Rng::new(1).normal(&[8, 3, 4, 4]);
        harness::check_augmentor::<GaussianNoise>(json!({ "std": 0.3, "p": 0.5 }), &x, &labels(8)).unwrap();
        let tabular = Rng::new(2).normal(&[8, 5]);
        harness::check_augmentor::<GaussianNoise>(json!({}), &tabular, &labels(8)).unwrap();
        let err = harness::check_augmentor::<GaussianNoise>(json!({ "std": -1 }), &x, &labels(8)).unwrap_err();
        assert_eq!(err, "create: configuration error: std: -1 is not >= 0");
    }

    #[test]
    fn the_noise_has_the_configured_std_and_zero_mean() {
        let x = counting(&[32, 1, 32, 32]) * 0.001;
        let noise: GaussianNoise = make(json!({ "std": 0.25 }), 0);
        let (out, y) = noise.augment(x.shallow_clone(), labels(32), &mut Rng::new(4)).unwrap();
        assert!(y.equal(&labels(32)));
        let added = (&out - &x).to_kind(Kind::Double);
        let std = added.std(true).double_value(&[]);
        let mean = added.mean(Kind::Double).double_value(&[]);
        assert!((std - 0.25).abs() < 0.25 * 0.02, "std {std}");
        assert!(mean.abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn only_the_chosen_samples_get_noise() {
        let x = counting(&[40, 3, 2, 2]);
        let half: GaussianNoise = make(json!({ "std": 1, "p": 0.5 }), 0);
        let (out, _) = half.augment(x.shallow_clone(), labels(40), &mut Rng::new(5)).unwrap();
        let mut noisy = 0;
        for i in 0..40 {
            let changed = out.get(i).ne_tensor(&x.get(i)).sum(Kind::Int64).int64_value(&[]);
            assert!(changed == 0 || changed == 12, "sample {i}: {changed} of 12 values changed");
            noisy += (changed == 12) as i64;
        }
        assert!((10..=30).contains(&noisy), "{noisy} of 40 noisy with p = 0.5");
        for config in [json!({ "p": 0 }), json!({ "std": 0 })] {
            let none: GaussianNoise = make(config, 0);
            assert!(none.augment(x.shallow_clone(), labels(40), &mut Rng::new(5)).unwrap().0.equal(&x));
        }
    }

    #[test]
    fn the_seed_decides_the_batch_and_integers_are_refused() {
        let noise: GaussianNoise = make(json!({}), 0);
        let x = counting(&[4, 6]);
        let run = |seed| noise.augment(x.shallow_clone(), labels(4), &mut Rng::new(seed)).unwrap().0;
        assert!(run(5).equal(&run(5)));
        assert!(!run(5).equal(&run(6)));
        let err = noise.augment(labels(4), labels(4), &mut Rng::new(1)).err().unwrap();
        assert_eq!(err.to_string(), "data error: gaussian-noise needs float features, got Int64 of shape [4]");
    }
}
