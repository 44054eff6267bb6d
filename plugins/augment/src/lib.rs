//! `gymnos-augment`: data augmentors for training batches, each a batched tensor operation over
//! the whole batch with all randomness drawn from the host's per-batch [`Rng`]:
//!
//! - `random-crop`: pads images and crops them back to their size at a random offset;
//! - `random-rotation`: rotates images by a random angle (bilinear, zero fill);
//! - `color-jitter`: scales brightness and contrast by random factors;
//! - `random-erasing`: fills a random rectangle of each image with a value;
//! - `gaussian-noise`: adds normal noise to the features;
//! - `mixup`: blends samples with a permuted partner, returning mixed (soft) targets;
//! - `cutmix`: pastes a box from a permuted partner, returning soft targets weighted by area.
//!
//! Images are `[n, c, h, w]` or `[n, h, w]` float CPU tensors. Per-sample probabilities `p`
//! leave the samples not drawn exactly as they were.

use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    PluginError, Result, Rng,
};

mod crop;
mod erasing;
mod jitter;
mod mix;
mod noise;
mod rotation;

pub use crop::{RandomCrop, RandomCropConfig};
pub use erasing::{RandomErasing, RandomErasingConfig};
pub use jitter::{ColorJitter, ColorJitterConfig};
pub use mix::{Cutmix, CutmixConfig, Mixup, MixupConfig};
pub use noise::{GaussianNoise, GaussianNoiseConfig};
pub use rotation::{RandomRotation, RandomRotationConfig};

gymnos_plugin_sdk::export_plugin!(
    data_augmentor(RandomCrop),
    data_augmentor(RandomRotation),
    data_augmentor(ColorJitter),
    data_augmentor(RandomErasing),
    data_augmentor(GaussianNoise),
    data_augmentor(Mixup),
    data_augmentor(Cutmix),
);

/// An image batch as `[n, c, h, w]`, remembering whether it came as `[n, h, w]`.
pub(crate) struct Images {
    pub x: Tensor,
    squeezed: bool,
}

impl Images {
    /// Accepts `[n, c, h, w]` or `[n, h, w]`; anything else is a data error naming `name`.
    pub fn new(name: &str, x: Tensor) -> Result<Self> {
        match x.dim() {
            4 => Ok(Self { x, squeezed: false }),
            3 => Ok(Self { x: x.unsqueeze(1), squeezed: true }),
            _ => Err(PluginError::data(format!(
                "{name} needs images [n, c, h, w] or [n, h, w], got shape {:?}",
                x.size()
            ))),
        }
    }

    /// `[n, c, h, w]`.
    pub fn dims(&self) -> [i64; 4] {
        let s = self.x.size();
        [s[0], s[1], s[2], s[3]]
    }

    /// A result of the same layout, given back in the caller's shape.
    pub fn restore(&self, y: Tensor) -> Tensor {
        if self.squeezed {
            y.squeeze_dim(1)
        } else {
            y
        }
    }
}

/// Refuses integer (or boolean) features, naming the augmentor.
pub(crate) fn require_float(name: &str, x: &Tensor) -> Result<()> {
    if x.is_floating_point() {
        Ok(())
    } else {
        Err(PluginError::data(format!("{name} needs float features, got {:?} of shape {:?}", x.kind(), x.size())))
    }
}

/// For each of `n` samples, whether it is augmented (probability `p`).
pub(crate) fn draw_selection(rng: &mut Rng, n: i64, p: f64) -> Vec<bool> {
    (0..n).map(|_| rng.next_f64() < p).collect()
}

/// A boolean `[n, 1, ..., 1]` mask of `dim` dimensions that broadcasts over a batch.
pub(crate) fn sample_mask(selected: &[bool], dim: usize) -> Tensor {
    let mut shape = vec![1i64; dim.max(1)];
    shape[0] = selected.len() as i64;
    Tensor::from_slice(selected).view(shape.as_slice())
}

/// Per-sample values as a `[n, 1, ..., 1]` tensor of `kind` that broadcasts over a batch.
pub(crate) fn per_sample(values: &[f64], dim: usize, kind: Kind) -> Tensor {
    let mut shape = vec![1i64; dim.max(1)];
    shape[0] = values.len() as i64;
    Tensor::from_slice(values).view(shape.as_slice()).to_kind(kind)
}

/// A standard normal draw (Box-Muller).
pub(crate) fn standard_normal(rng: &mut Rng) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// `ln X` for `X ~ Gamma(shape, 1)`, `shape > 0`: Marsaglia and Tsang's method, boosted by
/// `U^(1/shape)` below 1 (kept in logs so that small shapes do not underflow to 0).
pub(crate) fn ln_gamma_draw(rng: &mut Rng, shape: f64) -> f64 {
    if shape < 1.0 {
        let boost = rng.next_f64().max(f64::MIN_POSITIVE).ln() / shape;
        return ln_gamma_draw(rng, shape + 1.0) + boost;
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let z = standard_normal(rng);
        let v = 1.0 + c * z;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = rng.next_f64().max(f64::MIN_POSITIVE);
        if u.ln() < 0.5 * z * z + d - d * v + d * v.ln() {
            return (d * v).ln();
        }
    }
}

/// A draw of `Beta(alpha, alpha)`, `alpha > 0`, as `G1 / (G1 + G2)` of two gamma draws.
pub(crate) fn beta_draw(rng: &mut Rng, alpha: f64) -> f64 {
    let a = ln_gamma_draw(rng, alpha);
    let b = ln_gamma_draw(rng, alpha);
    // G1 / (G1 + G2) = 1 / (1 + exp(ln G2 - ln G1)), exact at the extremes too.
    1.0 / (1.0 + (b - a).exp())
}

/// A uniformly random permutation of `0..n` (Fisher-Yates).
pub(crate) fn permutation(rng: &mut Rng, n: i64) -> Vec<i64> {
    let mut perm: Vec<i64> = (0..n).collect();
    for i in (1..perm.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

#[cfg(test)]
pub(crate) mod testing {
    use gymnos_plugin_sdk::{
        serde_json::Value,
        tch::{Device, Kind, Tensor},
        ConfigSchema, Configurable, Context,
    };

    /// Builds a component as the host would, with `num_outputs` classes.
    pub fn make<T: Configurable>(config: Value, num_outputs: i64) -> T {
        let ctx = Context { num_outputs, ..Context::standalone() };
        T::build(T::Config::from_json(config).unwrap(), &ctx).unwrap()
    }

    /// `[n, c, h, w]` float32 holding `1, 2, 3, ...`: every value distinct and non-zero.
    pub fn counting(shape: &[i64]) -> Tensor {
        let total: i64 = shape.iter().product();
        Tensor::arange_start(1, total + 1, (Kind::Float, Device::Cpu)).view(shape)
    }

    /// `0..n` as int64 labels.
    pub fn labels(n: i64) -> Tensor {
        Tensor::arange(n, (Kind::Int64, Device::Cpu))
    }

    /// A tensor's values as a flat `Vec<f64>`.
    pub fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_draws_have_the_beta_mean_and_variance() {
        for alpha in [0.2, 1.0, 2.5] {
            let mut rng = Rng::new(11);
            let draws: Vec<f64> = (0..20_000).map(|_| beta_draw(&mut rng, alpha)).collect();
            assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)), "alpha {alpha}: a draw outside [0, 1]");
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
            let expected_var = 1.0 / (4.0 * (2.0 * alpha + 1.0));
            assert!((mean - 0.5).abs() < 0.01, "alpha {alpha}: mean {mean}");
            assert!((var - expected_var).abs() < 0.05 * expected_var, "alpha {alpha}: var {var} vs {expected_var}");
        }
    }

    #[test]
    fn gamma_draws_have_the_gamma_mean() {
        for shape in [0.3, 4.0] {
            let mut rng = Rng::new(5);
            let mean = (0..20_000).map(|_| ln_gamma_draw(&mut rng, shape).exp()).sum::<f64>() / 20_000.0;
            assert!((mean - shape).abs() < 0.03 * shape.max(1.0), "shape {shape}: mean {mean}");
        }
    }

    #[test]
    fn permutations_are_permutations_and_depend_on_the_seed() {
        let p = permutation(&mut Rng::new(1), 50);
        let mut sorted = p.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_eq!(p, permutation(&mut Rng::new(1), 50));
        assert_ne!(p, permutation(&mut Rng::new(2), 50));
        assert_ne!(p, sorted);
    }

    #[test]
    fn shapes_other_than_images_are_refused_with_one_line() {
        let err = Images::new("random-crop", Tensor::zeros([2, 3], (Kind::Float, gymnos_plugin_sdk::tch::Device::Cpu)))
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "data error: random-crop needs images [n, c, h, w] or [n, h, w], got shape [2, 3]");
        let images = Images::new("x", testing::counting(&[2, 3, 4])).unwrap();
        assert_eq!(images.dims(), [2, 1, 3, 4]);
        assert_eq!(images.restore(images.x.shallow_clone()).size(), [2, 3, 4]);
    }
}

/// `gymnos-host validate` checks the rules each augmentor declares, without creating it;
/// `create` checks them again and may refuse more. Around every bound, what the declared rules
/// accept, create accepts, except what no single key's rule can say (two keys together).
#[cfg(test)]
mod declared_rules {
    use gymnos_plugin_sdk::{
        serde_json::{json, Value},
        ConfigSchema, Configurable, Context,
    };
    use proptest::prelude::*;

    use crate::{ColorJitter, Cutmix, GaussianNoise, Mixup, RandomCrop, RandomErasing, RandomRotation};

    /// What validate says (the declared keys and rules), and what create says.
    fn verdicts<T: Configurable>(config: &Value) -> (bool, Result<(), String>) {
        let declared = T::Config::from_json(config.clone());
        let accepted = declared.is_ok();
        let ctx = Context { num_outputs: 3, ..Context::standalone() };
        let created = declared.and_then(|c| T::build(c, &ctx)).map(drop).map_err(|e| e.to_string());
        (accepted, created)
    }

    /// Numbers at and around the bounds the rules use.
    fn near_bounds() -> impl Strategy<Value = f64> {
        prop::sample::select(vec![
            -1e308,
            -1.0,
            -1e-9,
            -0.0,
            0.0,
            1e-300,
            1e-9,
            0.5,
            1.0,
            1.0 + 1e-9,
            2.0,
            180.0,
            181.0,
            1024.0,
            1e308,
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn mixing(alpha in near_bounds(), p in near_bounds()) {
            let config = json!({ "alpha": alpha, "p": p });
            let (accepted, created) = verdicts::<Mixup>(&config);
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
            let (accepted, created) = verdicts::<Cutmix>(&config);
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
        }

        #[test]
        fn erasing(
            p in near_bounds(), scale_min in near_bounds(), scale_max in near_bounds(),
            ratio_min in near_bounds(), ratio_max in near_bounds(), value in near_bounds(),
        ) {
            // Cross-key, said by create only: the smaller bound not above the larger.
            prop_assume!(scale_min <= scale_max && ratio_min <= ratio_max);
            let config = json!({
                "p": p, "scale_min": scale_min, "scale_max": scale_max,
                "ratio_min": ratio_min, "ratio_max": ratio_max, "value": value,
            });
            let (accepted, created) = verdicts::<RandomErasing>(&config);
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
        }

        #[test]
        fn the_others(a in near_bounds(), b in near_bounds(), c in near_bounds(), padding in prop::sample::select(vec![-1i64, 0, 1, 1024, 1025, i64::MAX])) {
            let (accepted, created) = verdicts::<RandomCrop>(&json!({ "padding": padding, "p": a }));
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
            let (accepted, created) = verdicts::<RandomRotation>(&json!({ "degrees": a, "p": b }));
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
            let (accepted, created) = verdicts::<ColorJitter>(&json!({ "brightness": a, "contrast": b, "p": c }));
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
            let (accepted, created) = verdicts::<GaussianNoise>(&json!({ "std": a, "p": b }));
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
        }
    }
}
