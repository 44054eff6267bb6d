//! `random-rotation`: rotate each image about its centre by a random angle.

use gymnos_plugin_sdk::{tch::Tensor, Config, Configurable, Context, DataAugmentor, Result, Rng};

use crate::{draw_selection, require_float, sample_mask, Images};

/// The configuration of `random-rotation`.
#[derive(Config)]
pub struct RandomRotationConfig {
    /// Largest angle in degrees: each angle is drawn uniformly in [-degrees, degrees]
    #[config(default = 15.0, range = 0.0..=180.0)]
    pub degrees: f64,
    /// Probability that a sample is rotated (the others are left as they are)
    #[config(default = 1.0, range = 0.0..=1.0)]
    pub p: f64,
}

pub struct RandomRotation {
    degrees: f64,
    p: f64,
}

impl Configurable for RandomRotation {
    const NAME: &'static str = "random-rotation";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Rotates images [n, c, h, w] or [n, h, w] by a uniform random angle per sample (bilinear, zero fill)";
    type Config = RandomRotationConfig;

    fn build(config: RandomRotationConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self { degrees: config.degrees, p: config.p })
    }
}

/// Rotates each image of `[n, c, h, w]` about its centre by its angle in degrees (positive:
/// counter-clockwise as displayed, like `rot90`), sampling bilinearly, zeros outside. The
/// rotation is in pixels, so non-square images are not stretched.
pub(crate) fn rotate(x: &Tensor, degrees: &[f64]) -> Tensor {
    let size = x.size();
    let (n, h, w) = (size[0], size[2] as f64, size[3] as f64);
    // Output pixel (u, v) (normalised to [-1, 1] per axis) reads the input at R(angle) (u, v),
    // with the rotation done in pixel units: hence the h/w and w/h factors.
    let theta: Vec<f64> = degrees
        .iter()
        .flat_map(|deg| {
            let (sin, cos) = deg.to_radians().sin_cos();
            [cos, -sin * h / w, 0.0, sin * w / h, cos, 0.0]
        })
        .collect();
    let theta = Tensor::from_slice(&theta).view([n, 2, 3]).to_kind(x.kind());
    let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
    // interpolation 0: bilinear; padding 0: zeros.
    x.grid_sampler(&grid, 0, 0, false)
}

impl DataAugmentor for RandomRotation {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        require_float(Self::NAME, &features)?;
        let images = Images::new(Self::NAME, features)?;
        let [n, ..] = images.dims();
        if self.p == 0.0 {
            return Ok((images.restore(images.x.shallow_clone()), targets));
        }
        let selected = draw_selection(rng, n, self.p);
        let angles: Vec<f64> = selected
            .iter()
            .map(|&chosen| {
                let angle = rng.uniform(-self.degrees, self.degrees);
                if chosen {
                    angle
                } else {
                    0.0
                }
            })
            .collect();
        let rotated = rotate(&images.x, &angles).where_self(&sample_mask(&selected, 4), &images.x);
        Ok((images.restore(rotated), targets))
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json, tch::Kind, Rng};

    use super::*;
    use crate::testing::{counting, labels, make, values};

    #[test]
    fn meets_the_augmentor_contract_and_refuses_bad_configs() {
        let x = Rng::new(1).normal(&[8, 3, 6, 6]);
        harness::check_augmentor::<RandomRotation>(json!({ "degrees": 30, "p": 0.7 }), &x, &labels(8)).unwrap();
        let err = harness::check_augmentor::<RandomRotation>(json!({ "degrees": 200 }), &x, &labels(8)).unwrap_err();
        assert_eq!(err, "create: configuration error: degrees: 200 is not in [0, 180]");
    }

    #[test]
    fn quarter_turns_match_rot90_and_zero_is_identity() {
        for size in [4, 5] {
            let x = counting(&[2, 3, size, size]);
            let ccw = rotate(&x, &[90.0, 90.0]);
            assert!(ccw.allclose(&x.rot90(1, [2, 3]), 1e-5, 1e-4, false), "{size}: +90 is rot90(1)");
            let cw = rotate(&x, &[-90.0, -90.0]);
            assert!(cw.allclose(&x.rot90(-1, [2, 3]), 1e-5, 1e-4, false), "{size}: -90 is rot90(-1)");
            let mixed = rotate(&x, &[0.0, 180.0]);
            assert!(mixed.get(0).allclose(&x.get(0), 1e-5, 1e-5, false), "{size}: 0 degrees is identity");
            assert!(mixed.get(1).allclose(&x.get(1).rot90(2, [1, 2]), 1e-5, 1e-4, false), "{size}: 180 is rot90(2)");
        }
    }

    #[test]
    fn non_square_images_turn_without_stretching() {
        // A single lit pixel one step right of the centre of a 5 x 7 image ends one step above it.
        let x = Tensor::zeros([1, 1, 5, 7], (Kind::Float, gymnos_plugin_sdk::tch::Device::Cpu));
        let _ = x.get(0).get(0).get(2).get(4).fill_(1.0);
        let out = values(&rotate(&x, &[90.0]));
        let mut expected = vec![0.0; 35];
        expected[7 + 3] = 1.0;
        for (got, want) in out.iter().zip(&expected) {
            assert!((got - want).abs() < 1e-5, "{out:?}");
        }
    }

    #[test]
    fn zero_degrees_or_p_zero_leave_the_batch() {
        let x = counting(&[4, 2, 5, 6]);
        let still: RandomRotation = make(json!({ "degrees": 0 }), 0);
        let (out, y) = still.augment(x.shallow_clone(), labels(4), &mut Rng::new(1)).unwrap();
        assert!(out.allclose(&x, 1e-6, 1e-5, false));
        assert!(y.equal(&labels(4)));
        let never: RandomRotation = make(json!({ "degrees": 90, "p": 0 }), 0);
        assert!(never.augment(x.shallow_clone(), labels(4), &mut Rng::new(1)).unwrap().0.equal(&x));
    }

    #[test]
    fn unchosen_samples_stay_exact_and_chosen_ones_turn_within_bounds() {
        let x = counting(&[16, 5, 5]);
        let half: RandomRotation = make(json!({ "degrees": 90, "p": 0.5 }), 0);
        let (out, _) = half.augment(x.shallow_clone(), labels(16), &mut Rng::new(4)).unwrap();
        assert_eq!(out.size(), [16, 5, 5]);
        let unchanged = (0..16).filter(|&i| out.get(i).equal(&x.get(i))).count();
        assert!((3..=13).contains(&unchanged), "{unchanged} of 16 unchanged");
        // Within [-90, 90] degrees, the centre pixel never moves.
        assert!(out.select(1, 2).select(1, 2).allclose(&x.select(1, 2).select(1, 2), 1e-5, 1e-4, false));
    }

    #[test]
    fn the_seed_decides_the_batch_and_integers_are_refused() {
        let rotation: RandomRotation = make(json!({}), 0);
        let x = counting(&[6, 1, 6, 6]);
        let run = |seed| rotation.augment(x.shallow_clone(), labels(6), &mut Rng::new(seed)).unwrap().0;
        assert!(run(5).equal(&run(5)));
        assert!(!run(5).equal(&run(6)));
        let err = rotation.augment(labels(8).view([2, 2, 2]), labels(2), &mut Rng::new(1)).err().unwrap();
        assert_eq!(err.to_string(), "data error: random-rotation needs float features, got Int64 of shape [2, 2, 2]");
    }
}
