//! `color-jitter`: random brightness and contrast per image.

use gymnos_plugin_sdk::{tch::Tensor, Config, Configurable, Context, DataAugmentor, Result, Rng};

use crate::{draw_selection, per_sample, require_float, sample_mask, Images};

/// The configuration of `color-jitter`.
#[derive(Config)]
pub struct ColorJitterConfig {
    /// Brightness change: each image is multiplied by a factor drawn uniformly in [1 - brightness, 1 + brightness]
    #[config(default = 0.2, range = 0.0..=1.0)]
    pub brightness: f64,
    /// Contrast change: each image is blended with its mean by a factor drawn in [1 - contrast, 1 + contrast]
    #[config(default = 0.2, range = 0.0..=1.0)]
    pub contrast: f64,
    /// Probability that a sample is jittered (the others are left as they are)
    #[config(default = 1.0, range = 0.0..=1.0)]
    pub p: f64,
}

pub struct ColorJitter {
    brightness: f64,
    contrast: f64,
    p: f64,
}

impl Configurable for ColorJitter {
    const NAME: &'static str = "color-jitter";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Scales the brightness and contrast of images [n, c, h, w] or [n, h, w] by random factors per sample";
    type Config = ColorJitterConfig;

    fn build(config: ColorJitterConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self { brightness: config.brightness, contrast: config.contrast, p: config.p })
    }
}

/// Multiplies each image of `[n, c, h, w]` by its brightness factor, then blends it with its
/// own mean (over channels and pixels): `contrast * x + (1 - contrast) * mean`. No clamping:
/// features need not be in [0, 1].
pub(crate) fn jitter(x: &Tensor, brightness: &[f64], contrast: &[f64]) -> Tensor {
    let kind = x.kind();
    let bright = x * per_sample(brightness, 4, kind);
    let mean = bright.mean_dim([1i64, 2, 3].as_slice(), true, kind);
    let contrast = per_sample(contrast, 4, kind);
    &bright * &contrast + mean * (1.0 - contrast)
}

impl DataAugmentor for ColorJitter {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        require_float(Self::NAME, &features)?;
        let images = Images::new(Self::NAME, features)?;
        let [n, ..] = images.dims();
        if self.p == 0.0 {
            return Ok((images.restore(images.x.shallow_clone()), targets));
        }
        let selected = draw_selection(rng, n, self.p);
        let (mut brightness, mut contrast) = (Vec::with_capacity(n as usize), Vec::with_capacity(n as usize));
        for &chosen in &selected {
            let b = rng.uniform(1.0 - self.brightness, 1.0 + self.brightness);
            let c = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast);
            brightness.push(if chosen { b } else { 1.0 });
            contrast.push(if chosen { c } else { 1.0 });
        }
        let out = jitter(&images.x, &brightness, &contrast).where_self(&sample_mask(&selected, 4), &images.x);
        Ok((images.restore(out), targets))
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json, tch::Kind, Rng};

    use super::*;
    use crate::testing::{counting, labels, make, values};

    #[test]
    fn meets_the_augmentor_contract_and_refuses_bad_configs() {
        let x = Rng::new(1).normal(&[8, 3, 4, 4]);
        harness::check_augmentor::<ColorJitter>(json!({ "brightness": 0.5, "p": 0.5 }), &x, &labels(8)).unwrap();
        let err =
            harness::check_augmentor::<ColorJitter>(json!({ "contrast": -0.1, "p": 2 }), &x, &labels(8)).unwrap_err();
        assert_eq!(err, "create: configuration error: contrast: -0.1 is not in [0, 1]; p: 2 is not in [0, 1]");
    }

    #[test]
    fn no_brightness_or_contrast_change_is_identity() {
        let x = counting(&[4, 3, 4, 4]);
        let still: ColorJitter = make(json!({ "brightness": 0, "contrast": 0 }), 0);
        let (out, y) = still.augment(x.shallow_clone(), labels(4), &mut Rng::new(1)).unwrap();
        assert!(out.equal(&x));
        assert!(y.equal(&labels(4)));
        let never: ColorJitter = make(json!({ "brightness": 0.9, "contrast": 0.9, "p": 0 }), 0);
        assert!(never.augment(x.shallow_clone(), labels(4), &mut Rng::new(1)).unwrap().0.equal(&x));
    }

    #[test]
    fn brightness_scales_each_image_by_one_factor_within_bounds() {
        let x = counting(&[12, 2, 3, 3]);
        let bright: ColorJitter = make(json!({ "brightness": 0.3, "contrast": 0 }), 0);
        let (out, _) = bright.augment(x.shallow_clone(), labels(12), &mut Rng::new(2)).unwrap();
        let ratio = &out / &x;
        let factors = values(&ratio.amax([1i64, 2, 3].as_slice(), false));
        let lows = values(&ratio.amin([1i64, 2, 3].as_slice(), false));
        for (f, low) in factors.iter().zip(&lows) {
            assert!((f - low).abs() < 1e-5, "one factor per image: {low}..{f}");
            assert!((0.7..=1.3).contains(f), "factor {f} out of [0.7, 1.3]");
        }
        let spread =
            factors.iter().cloned().fold(f64::MIN, f64::max) - factors.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.1, "factors differ between images: {factors:?}");
    }

    #[test]
    fn contrast_keeps_the_mean_and_scales_deviations_within_bounds() {
        let x = counting(&[12, 1, 4, 4]);
        let contrast: ColorJitter = make(json!({ "brightness": 0, "contrast": 0.5 }), 0);
        let (out, _) = contrast.augment(x.shallow_clone(), labels(12), &mut Rng::new(3)).unwrap();
        let dims = [1i64, 2, 3];
        let mean_in = x.mean_dim(dims.as_slice(), true, Kind::Float);
        let mean_out = out.mean_dim(dims.as_slice(), true, Kind::Float);
        assert!(mean_out.allclose(&mean_in, 1e-5, 1e-4, false), "the mean is kept");
        let ratio = (&out - &mean_out) / (&x - &mean_in);
        let high = values(&ratio.amax(dims.as_slice(), false));
        let low = values(&ratio.amin(dims.as_slice(), false));
        for (h, l) in high.iter().zip(&low) {
            assert!((h - l).abs() < 1e-4 && (0.5..=1.5).contains(h), "factor {l}..{h}");
        }
    }

    #[test]
    fn a_known_blend() {
        let x = Tensor::from_slice(&[1.0f32, 3.0, 5.0, 7.0]).view([1, 1, 2, 2]);
        // Brightness 2: [2, 6, 10, 14], mean 8; contrast 0.5: halfway to 8.
        let out = jitter(&x, &[2.0], &[0.5]);
        assert_eq!(values(&out), [5.0, 7.0, 9.0, 11.0]);
    }

    #[test]
    fn the_seed_decides_the_batch() {
        let jitter: ColorJitter = make(json!({}), 0);
        let x = counting(&[6, 3, 4]);
        let run = |seed| jitter.augment(x.shallow_clone(), labels(6), &mut Rng::new(seed)).unwrap().0;
        assert_eq!(run(5).size(), [6, 3, 4]);
        assert!(run(5).equal(&run(5)));
        assert!(!run(5).equal(&run(6)));
    }
}
