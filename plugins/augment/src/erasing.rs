//! `random-erasing`: fill a random rectangle of each image with a value.

use gymnos_plugin_sdk::{
    tch::{Device, Kind, Tensor},
    Config, Configurable, Context, DataAugmentor, PluginError, Result, Rng,
};

use crate::{draw_selection, require_float, Images};

/// The configuration of `random-erasing`.
#[derive(Config)]
pub struct RandomErasingConfig {
    /// Probability that a sample gets a rectangle erased
    #[config(default = 0.5, range = 0.0..=1.0)]
    pub p: f64,
    /// Smallest area of the rectangle, as a fraction of the image's
    #[config(default = 0.02, range = 0.0..=1.0)]
    pub scale_min: f64,
    /// Largest area of the rectangle, as a fraction of the image's
    #[config(default = 0.33, range = 0.0..=1.0)]
    pub scale_max: f64,
    /// Smallest aspect ratio (height / width) of the rectangle (above 0: its logarithm is drawn)
    #[config(default = 0.3, above = 0.0)]
    pub ratio_min: f64,
    /// Largest aspect ratio (height / width) of the rectangle (above 0: its logarithm is drawn)
    #[config(default = 3.3, above = 0.0)]
    pub ratio_max: f64,
    /// The value written into the rectangle, in every channel
    #[config(default = 0.0)]
    pub value: f64,
}

pub struct RandomErasing {
    p: f64,
    scale: (f64, f64),
    log_ratio: (f64, f64),
    value: f64,
}

impl Configurable for RandomErasing {
    const NAME: &'static str = "random-erasing";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Fills a random rectangle of images [n, c, h, w] or [n, h, w] with a value, per sample with probability p";
    type Config = RandomErasingConfig;

    fn build(config: RandomErasingConfig, _ctx: &Context) -> Result<Self> {
        let c = &config;
        if c.scale_min > c.scale_max {
            return Err(PluginError::config(format!(
                "random-erasing: scale_min {} is above scale_max {}",
                c.scale_min, c.scale_max
            )));
        }
        if c.ratio_min <= 0.0 || c.ratio_min > c.ratio_max {
            return Err(PluginError::config(format!(
                "random-erasing: the aspect ratios need 0 < ratio_min <= ratio_max, got {} and {}",
                c.ratio_min, c.ratio_max
            )));
        }
        Ok(Self {
            p: c.p,
            scale: (c.scale_min, c.scale_max),
            log_ratio: (c.ratio_min.ln(), c.ratio_max.ln()),
            value: c.value,
        })
    }
}

/// A rectangle: top, left, height, width.
type Rect = (i64, i64, i64, i64);

impl RandomErasing {
    /// A rectangle of an `h x w` image as torchvision draws it: up to 10 tries at an area and an
    /// aspect ratio (log-uniform) that fit; `None` when none fits.
    fn draw_rect(&self, rng: &mut Rng, h: i64, w: i64) -> Option<Rect> {
        let area = (h * w) as f64;
        for _ in 0..10 {
            let target = area * rng.uniform(self.scale.0, self.scale.1);
            let ratio = rng.uniform(self.log_ratio.0, self.log_ratio.1).exp();
            let eh = (target * ratio).sqrt().round() as i64;
            let ew = (target / ratio).sqrt().round() as i64;
            if eh < 1 || ew < 1 || eh >= h || ew >= w {
                continue;
            }
            let top = rng.below((h - eh + 1) as u64) as i64;
            let left = rng.below((w - ew + 1) as u64) as i64;
            return Some((top, left, eh, ew));
        }
        None
    }
}

/// A boolean `[n, 1, h, w]` mask, true inside each sample's rectangle (none: all false).
pub(crate) fn rect_mask(rects: &[Option<Rect>], h: i64, w: i64) -> Tensor {
    let n = rects.len() as i64;
    let bounds = |f: fn(&Rect) -> i64| {
        let v: Vec<i64> = rects.iter().map(|r| r.as_ref().map_or(0, f)).collect();
        Tensor::from_slice(&v).view([n, 1, 1, 1])
    };
    let (top, left) = (bounds(|r| r.0), bounds(|r| r.1));
    let (bottom, right) = (bounds(|r| r.0 + r.2), bounds(|r| r.1 + r.3));
    let int = (Kind::Int64, Device::Cpu);
    let rows = Tensor::arange(h, int).view([1, 1, h, 1]);
    let cols = Tensor::arange(w, int).view([1, 1, 1, w]);
    rows.ge_tensor(&top)
        .logical_and(&rows.lt_tensor(&bottom))
        .logical_and(&cols.ge_tensor(&left).logical_and(&cols.lt_tensor(&right)))
}

impl DataAugmentor for RandomErasing {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        require_float(Self::NAME, &features)?;
        let images = Images::new(Self::NAME, features)?;
        let [n, _, h, w] = images.dims();
        if self.p == 0.0 {
            return Ok((images.restore(images.x.shallow_clone()), targets));
        }
        let selected = draw_selection(rng, n, self.p);
        let rects: Vec<Option<Rect>> =
            selected.iter().map(|&chosen| if chosen { self.draw_rect(rng, h, w) } else { None }).collect();
        let out = images.x.masked_fill(&rect_mask(&rects, h, w), self.value);
        Ok((images.restore(out), targets))
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json, Rng};

    use super::*;
    use crate::testing::{counting, labels, make, values};

    #[test]
    fn meets_the_augmentor_contract_and_refuses_bad_configs() {
        let x = Rng::new(1).normal(&[8, 3, 8, 8]);
        harness::check_augmentor::<RandomErasing>(json!({ "p": 0.7, "value": 0.5 }), &x, &labels(8)).unwrap();
        let err =
            harness::check_augmentor::<RandomErasing>(json!({ "scale_min": 0.5, "scale_max": 0.4 }), &x, &labels(8))
                .unwrap_err();
        assert_eq!(err, "create: configuration error: random-erasing: scale_min 0.5 is above scale_max 0.4");
        let err = harness::check_augmentor::<RandomErasing>(json!({ "ratio_min": 0 }), &x, &labels(8)).unwrap_err();
        assert_eq!(err, "create: configuration error: ratio_min: 0 is not > 0");
        let err = harness::check_augmentor::<RandomErasing>(json!({ "ratio_min": 4 }), &x, &labels(8)).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: random-erasing: the aspect ratios need 0 < ratio_min <= ratio_max, got 4 \
             and 3.3"
        );
        let err = harness::check_augmentor::<RandomErasing>(json!({ "scale_max": 1.5 }), &x, &labels(8)).unwrap_err();
        assert_eq!(err, "create: configuration error: scale_max: 1.5 is not in [0, 1]");
    }

    #[test]
    fn erases_exactly_one_rectangle_of_the_drawn_size_with_the_value() {
        let (n, c, h, w) = (16, 2, 10, 12);
        let x = counting(&[n, c, h, w]);
        let erase: RandomErasing = make(json!({ "p": 1.0, "value": -2.5 }), 0);
        let (out, y) = erase.augment(x.shallow_clone(), labels(n), &mut Rng::new(9)).unwrap();
        assert!(y.equal(&labels(n)));
        assert_eq!(out.size(), [n, c, h, w]);
        let mut erased_samples = 0;
        for i in 0..n {
            let before = values(&x.get(i));
            let after = values(&out.get(i));
            let changed: Vec<(i64, i64, i64)> = (0..c)
                .flat_map(|ch| (0..h).flat_map(move |r| (0..w).map(move |col| (ch, r, col))))
                .filter(|&(ch, r, col)| {
                    let k = ((ch * h + r) * w + col) as usize;
                    after[k] != before[k]
                })
                .collect();
            for &(ch, r, col) in &changed {
                assert_eq!(after[((ch * h + r) * w + col) as usize], -2.5);
            }
            if changed.is_empty() {
                continue;
            }
            erased_samples += 1;
            let (r0, r1) = (changed.iter().map(|p| p.1).min().unwrap(), changed.iter().map(|p| p.1).max().unwrap());
            let (c0, c1) = (changed.iter().map(|p| p.2).min().unwrap(), changed.iter().map(|p| p.2).max().unwrap());
            let (eh, ew) = (r1 - r0 + 1, c1 - c0 + 1);
            assert_eq!(
                changed.len() as i64,
                c * eh * ew,
                "sample {i}: the erased pixels fill a rectangle, all channels"
            );
            let fraction = (eh * ew) as f64 / (h * w) as f64;
            // The rounding of the sides to whole pixels moves the area a little.
            assert!((0.02 * 0.5..=0.33 * 1.5).contains(&fraction), "sample {i}: area fraction {fraction}");
            let ratio = eh as f64 / ew as f64;
            assert!((0.3 / 2.0..=3.3 * 2.0).contains(&ratio), "sample {i}: aspect ratio {ratio}");
        }
        assert!(erased_samples >= n - 2, "{erased_samples} of {n} samples erased with p = 1");
    }

    #[test]
    fn a_known_rectangle() {
        let mask = rect_mask(&[Some((1, 2, 2, 1)), None], 3, 4);
        let expected: Vec<f64> =
            [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]].iter().flatten().map(|&v| v as f64).collect();
        assert_eq!(values(&mask.get(0)), expected);
        assert_eq!(values(&mask.get(1)), vec![0.0; 12]);
    }

    #[test]
    fn p_zero_leaves_the_batch_and_about_p_of_the_samples_are_erased() {
        let x = counting(&[40, 8, 8]);
        let never: RandomErasing = make(json!({ "p": 0 }), 0);
        assert!(never.augment(x.shallow_clone(), labels(40), &mut Rng::new(1)).unwrap().0.equal(&x));
        let half: RandomErasing = make(json!({}), 0);
        let (out, _) = half.augment(x.shallow_clone(), labels(40), &mut Rng::new(1)).unwrap();
        assert_eq!(out.size(), [40, 8, 8]);
        let erased = (0..40).filter(|&i| !out.get(i).equal(&x.get(i))).count();
        assert!((10..=30).contains(&erased), "{erased} of 40 erased with p = 0.5");
    }

    #[test]
    fn the_seed_decides_the_batch() {
        let erase: RandomErasing = make(json!({ "p": 1 }), 0);
        let x = counting(&[8, 1, 8, 8]);
        let run = |seed| erase.augment(x.shallow_clone(), labels(8), &mut Rng::new(seed)).unwrap().0;
        assert!(run(5).equal(&run(5)));
        assert!(!run(5).equal(&run(6)));
    }
}
