//! `random-crop`: pad, then crop back to the original size at a random offset.

use gymnos_plugin_sdk::{
    memory,
    tch::{Device, Kind, Tensor},
    Config, Configurable, Context, DataAugmentor, PluginError, Result, Rng,
};

use crate::{draw_selection, Images};

/// The configuration of `random-crop`.
#[derive(Config)]
pub struct RandomCropConfig {
    /// Pixels added on each side before cropping back to the original size
    #[config(default = 4, range = 0..=1024)]
    pub padding: i64,
    /// What the padding holds: zeros, a reflection of the image, or its edge pixels repeated
    #[config(default = "zeros", one_of = ["zeros", "reflect", "replicate"])]
    pub padding_mode: String,
    /// Probability that a sample is cropped (the others are left as they are)
    #[config(default = 1.0, range = 0.0..=1.0)]
    pub p: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PaddingMode {
    Zeros,
    Reflect,
    Replicate,
}

pub struct RandomCrop {
    padding: i64,
    mode: PaddingMode,
    p: f64,
}

impl Configurable for RandomCrop {
    const NAME: &'static str = "random-crop";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Pads images [n, c, h, w] or [n, h, w] and crops them back to h x w at a random offset per sample";
    type Config = RandomCropConfig;

    fn build(config: RandomCropConfig, _ctx: &Context) -> Result<Self> {
        let mode = match config.padding_mode.as_str() {
            "zeros" => PaddingMode::Zeros,
            "reflect" => PaddingMode::Reflect,
            "replicate" => PaddingMode::Replicate,
            other => return Err(PluginError::config(format!("random-crop: unknown padding_mode `{other}`"))),
        };
        Ok(Self { padding: config.padding, mode, p: config.p })
    }
}

impl RandomCrop {
    /// The `[n, c, h, w]` windows of `x` padded by `self.padding` whose top-left corners are at
    /// `offsets` (row, column) in the padded images.
    fn crop(&self, x: &Tensor, offsets: &[(i64, i64)]) -> Tensor {
        let [n, c, h, w] = <[i64; 4]>::try_from(x.size()).expect("[n, c, h, w]");
        let pad = self.padding;
        let padded = match self.mode {
            PaddingMode::Zeros => x.constant_pad_nd([pad, pad, pad, pad]),
            PaddingMode::Reflect => x.reflection_pad2d([pad, pad, pad, pad]),
            PaddingMode::Replicate => x.replication_pad2d([pad, pad, pad, pad]),
        };
        let int = (Kind::Int64, Device::Cpu);
        let tops: Vec<i64> = offsets.iter().map(|o| o.0).collect();
        let lefts: Vec<i64> = offsets.iter().map(|o| o.1).collect();
        let rows = Tensor::from_slice(&tops).view([n, 1, 1, 1]) + Tensor::arange(h, int).view([1, 1, h, 1]);
        let rows = rows.expand([n, c, h, w + 2 * pad], false);
        let cols = Tensor::from_slice(&lefts).view([n, 1, 1, 1]) + Tensor::arange(w, int).view([1, 1, 1, w]);
        let cols = cols.expand([n, c, h, w], false);
        padded.gather(2, &rows, false).gather(3, &cols, false)
    }
}

impl DataAugmentor for RandomCrop {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let images = Images::new(Self::NAME, features)?;
        let [n, _, h, w] = images.dims();
        let pad = self.padding;
        if pad == 0 || self.p == 0.0 {
            return Ok((images.restore(images.x.shallow_clone()), targets));
        }
        if self.mode == PaddingMode::Reflect && (pad >= h || pad >= w) {
            return Err(PluginError::data(format!(
                "random-crop: reflect padding of {pad} needs images larger than {pad} pixels each way, got shape {:?}",
                images.x.size()
            )));
        }
        // The padded batch, before libtorch is asked for it.
        let [_, c, ..] = images.dims();
        let padded = |side: i64| side.checked_add(2 * pad).and_then(|s| u64::try_from(s).ok());
        let what = format!("padding ({pad} pixels a side, for {n} images of {c}x{h}x{w})");
        let bytes = match (padded(h), padded(w)) {
            (Some(ph), Some(pw)) => {
                memory::bytes_of(&[n as u64, c as u64, ph, pw], images.x.kind().elt_size_in_bytes() as u64)
            }
            _ => None,
        };
        memory::ensure_bytes_fit(&what, bytes)?;
        let selected = draw_selection(rng, n, self.p);
        let span = 2 * pad as u64 + 1;
        let offsets: Vec<(i64, i64)> = selected
            .iter()
            .map(|&chosen| {
                let offset = (rng.below(span) as i64, rng.below(span) as i64);
                if chosen {
                    offset
                } else {
                    (pad, pad)
                }
            })
            .collect();
        let cropped = self.crop(&images.x, &offsets);
        Ok((images.restore(cropped), targets))
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json, Rng};

    use super::*;
    use crate::testing::{counting, labels, make, values};

    #[test]
    fn meets_the_augmentor_contract_and_refuses_bad_configs() {
        let x = Rng::new(1).normal(&[8, 3, 6, 6]);
        for mode in ["zeros", "reflect", "replicate"] {
            harness::check_augmentor::<RandomCrop>(json!({ "padding": 2, "padding_mode": mode }), &x, &labels(8))
                .unwrap();
        }
        let err = harness::check_augmentor::<RandomCrop>(json!({ "padding": -1 }), &x, &labels(8)).unwrap_err();
        assert_eq!(err, "create: configuration error: padding: -1 is not in [0, 1024]");
        let err = harness::check_augmentor::<RandomCrop>(json!({ "padding": 1000000000 }), &x, &labels(8)).unwrap_err();
        assert_eq!(err, "create: configuration error: padding: 1000000000 is not in [0, 1024]");
        let err =
            harness::check_augmentor::<RandomCrop>(json!({ "padding_mode": "wrap" }), &x, &labels(8)).unwrap_err();
        assert_eq!(err, "create: configuration error: padding_mode: \"wrap\" is not one of zeros, reflect, replicate");
    }

    /// The value the padded image holds at (row, col), in padded coordinates, by hand.
    fn padded_value(image: &[f64], h: i64, w: i64, pad: i64, mode: &str, row: i64, col: i64) -> f64 {
        let (r, c) = (row - pad, col - pad);
        let inside = |i: i64, size: i64| (0..size).contains(&i);
        let (r, c) = match mode {
            "zeros" if !inside(r, h) || !inside(c, w) => return 0.0,
            "reflect" => {
                let reflect = |i: i64, size: i64| {
                    if i < 0 {
                        -i
                    } else if i >= size {
                        2 * (size - 1) - i
                    } else {
                        i
                    }
                };
                (reflect(r, h), reflect(c, w))
            }
            "replicate" => (r.clamp(0, h - 1), c.clamp(0, w - 1)),
            _ => (r, c),
        };
        image[(r * w + c) as usize]
    }

    #[test]
    fn each_sample_is_a_window_of_its_padded_image_of_the_same_size() {
        let (n, h, w, pad) = (6, 5, 4, 2);
        let x = counting(&[n, 1, h, w]);
        for mode in ["zeros", "reflect", "replicate"] {
            let crop: RandomCrop = make(json!({ "padding": pad, "padding_mode": mode }), 0);
            let (out, y) = crop.augment(x.shallow_clone(), labels(n), &mut Rng::new(3)).unwrap();
            assert_eq!(out.size(), [n, 1, h, w]);
            assert!(y.equal(&labels(n)));
            let mut shifted = 0;
            for i in 0..n {
                let image = values(&x.get(i));
                let got = values(&out.get(i));
                let windows: Vec<(i64, i64)> = (0..=2 * pad)
                    .flat_map(|top| (0..=2 * pad).map(move |left| (top, left)))
                    .filter(|&(top, left)| {
                        (0..h).all(|r| {
                            (0..w).all(|c| {
                                got[(r * w + c) as usize] == padded_value(&image, h, w, pad, mode, top + r, left + c)
                            })
                        })
                    })
                    .collect();
                assert!(!windows.is_empty(), "{mode}: sample {i} is no window of its padded image: {got:?}");
                if !windows.contains(&(pad, pad)) {
                    shifted += 1;
                }
                if mode == "zeros" && windows[0] != (pad, pad) {
                    assert!(got.contains(&0.0), "zeros: a shifted window lets zeros in");
                }
            }
            assert!(shifted >= n / 2, "{mode}: only {shifted} of {n} samples moved");
        }
    }

    #[test]
    fn a_known_offset_shifts_in_zeros() {
        let crop: RandomCrop = make(json!({ "padding": 1 }), 0);
        let x = counting(&[1, 1, 3, 3]);
        // Window at (0, 2) of the padded image: one row down, one column left in the output.
        let out = crop.crop(&x, &[(0, 2)]);
        assert_eq!(values(&out), [0.0, 0.0, 0.0, 2.0, 3.0, 0.0, 5.0, 6.0, 0.0]);
        assert!(crop.crop(&x, &[(1, 1)]).equal(&x), "the centred window is the image");
    }

    #[test]
    fn p_zero_or_no_padding_leave_the_batch_and_three_dim_batches_work() {
        let x = counting(&[4, 2, 5, 5]);
        for config in [json!({ "p": 0.0 }), json!({ "padding": 0 })] {
            let crop: RandomCrop = make(config, 0);
            let (out, _) = crop.augment(x.shallow_clone(), labels(4), &mut Rng::new(1)).unwrap();
            assert!(out.equal(&x));
        }
        let crop: RandomCrop = make(json!({ "padding": 2 }), 0);
        let flat = counting(&[4, 5, 5]);
        let (out, _) = crop.augment(flat.shallow_clone(), labels(4), &mut Rng::new(1)).unwrap();
        assert_eq!(out.size(), [4, 5, 5]);
        let (as_4d, _) = crop.augment(flat.unsqueeze(1), labels(4), &mut Rng::new(1)).unwrap();
        assert!(out.equal(&as_4d.squeeze_dim(1)));
    }

    #[test]
    fn the_seed_decides_the_batch() {
        let crop: RandomCrop = make(json!({ "padding": 3 }), 0);
        let x = counting(&[8, 1, 6, 6]);
        let run = |seed| crop.augment(x.shallow_clone(), labels(8), &mut Rng::new(seed)).unwrap().0;
        assert!(run(5).equal(&run(5)));
        assert!(!run(5).equal(&run(6)));
    }

    #[test]
    fn a_padded_batch_that_cannot_fit_is_refused_before_allocating() {
        // Within the rule, but not for this batch: 2^15 images of 3x1x1 (expanded, not
        // allocated) padded by 1024 would take 2^15 * 3 * 2049^2 * 4 bytes.
        let crop: RandomCrop = make(json!({ "padding": 1024 }), 0);
        let n = (gymnos_plugin_sdk::memory::limit_bytes() / (3 * 2049 * 2049 * 4) + 1) as i64;
        let x = Tensor::zeros([1, 3, 1, 1], (Kind::Float, Device::Cpu)).expand([n, 3, 1, 1], false);
        let err = crop.augment(x, labels(n), &mut Rng::new(1)).err().unwrap().to_string();
        assert!(
            err.starts_with(&format!(
                "configuration error: padding (1024 pixels a side, for {n} images of 3x1x1): needs "
            )),
            "{err}"
        );
        assert!(err.contains(" bytes), and this machine has "), "{err}");
    }

    #[test]
    fn reflect_padding_wider_than_the_image_is_refused() {
        let crop: RandomCrop = make(json!({ "padding": 4, "padding_mode": "reflect" }), 0);
        let err = crop.augment(counting(&[2, 1, 4, 8]), labels(2), &mut Rng::new(1)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "data error: random-crop: reflect padding of 4 needs images larger than 4 pixels each way, got shape \
             [2, 1, 4, 8]"
        );
        let err = crop.augment(counting(&[2, 8]), labels(2), &mut Rng::new(1)).err().unwrap();
        assert_eq!(err.to_string(), "data error: random-crop needs images [n, c, h, w] or [n, h, w], got shape [2, 8]");
    }
}
