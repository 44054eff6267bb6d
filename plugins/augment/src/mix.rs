//! `mixup` and `cutmix`: mix each sample with a partner drawn by a random permutation of the
//! batch, and mix the targets alike (one-hot rows for class labels: soft targets).

use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    Config, Configurable, Context, DataAugmentor, PluginError, Result, Rng,
};

use crate::{beta_draw, erasing::rect_mask, permutation, require_float, Images};

/// The configuration of `mixup`.
#[derive(Config)]
pub struct MixupConfig {
    /// Beta(alpha, alpha) gives the batch's mixing weight lambda (alpha > 0; small values mix little)
    #[config(default = 0.2, above = 0.0)]
    pub alpha: f64,
    /// Probability that a batch is mixed (class labels come back as one-hot rows either way)
    #[config(default = 1.0, range = 0.0..=1.0)]
    pub p: f64,
}

/// The configuration of `cutmix`.
#[derive(Config)]
pub struct CutmixConfig {
    /// Beta(alpha, alpha) gives the batch's share of each image kept; the box takes the rest (alpha > 0)
    #[config(default = 1.0, above = 0.0)]
    pub alpha: f64,
    /// Probability that a batch is mixed (class labels come back as one-hot rows either way)
    #[config(default = 1.0, range = 0.0..=1.0)]
    pub p: f64,
}

fn check_alpha(name: &str, alpha: f64) -> Result<f64> {
    if alpha > 0.0 {
        Ok(alpha)
    } else {
        Err(PluginError::config(format!("{name}: alpha must be > 0, got {alpha}")))
    }
}

/// Targets as float rows to mix: one-hot rows for int64 class labels `[n]`, float targets
/// (soft rows or regression values) as they are.
fn target_rows(name: &str, targets: &Tensor, n: i64, num_classes: i64) -> Result<Tensor> {
    if targets.size().first() != Some(&n) {
        return Err(PluginError::data(format!("{name}: {n} samples but targets of shape {:?}", targets.size())));
    }
    if targets.kind() == Kind::Int64 && targets.dim() == 1 {
        if num_classes < 1 {
            return Err(PluginError::data(format!(
                "{name} needs the number of classes to make soft targets from class labels, and the host gave none"
            )));
        }
        if n > 0 {
            let (lo, hi) = (targets.min().int64_value(&[]), targets.max().int64_value(&[]));
            if lo < 0 || hi >= num_classes {
                return Err(PluginError::data(format!("{name}: labels span [{lo}, {hi}] for {num_classes} classes")));
            }
        }
        Ok(targets.one_hot(num_classes).to_kind(Kind::Float))
    } else if targets.is_floating_point() {
        Ok(targets.shallow_clone())
    } else {
        Err(PluginError::data(format!(
            "{name} needs int64 class labels [n] or float targets [n, k], got {:?} of shape {:?}",
            targets.kind(),
            targets.size()
        )))
    }
}

/// `weight * t + (1 - weight) * t[perm]`, over dim 0.
fn blend(t: &Tensor, perm: &Tensor, weight: f64) -> Tensor {
    t * weight + t.index_select(0, perm) * (1.0 - weight)
}

/// Builds the partner indices of a batch of `n`.
fn draw_partners(rng: &mut Rng, n: i64) -> Tensor {
    Tensor::from_slice(&permutation(rng, n))
}

/// Blends samples with a permuted partner: `lambda ~ Beta(alpha, alpha)` is drawn once per batch.
pub struct Mixup {
    alpha: f64,
    p: f64,
    num_classes: i64,
}

impl Configurable for Mixup {
    const NAME: &'static str = "mixup";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Blends each sample with a permuted partner by one Beta(alpha, alpha) weight per batch; targets mixed alike";
    type Config = MixupConfig;

    fn build(config: MixupConfig, ctx: &Context) -> Result<Self> {
        Ok(Self { alpha: check_alpha(Self::NAME, config.alpha)?, p: config.p, num_classes: ctx.num_outputs })
    }
}

impl DataAugmentor for Mixup {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        if features.dim() == 0 {
            return Err(PluginError::data(format!("mixup needs a batch [n, ...], got shape {:?}", features.size())));
        }
        require_float(Self::NAME, &features)?;
        let n = features.size()[0];
        let rows = target_rows(Self::NAME, &targets, n, self.num_classes)?;
        if rng.next_f64() >= self.p {
            return Ok((features, rows));
        }
        let lambda = beta_draw(rng, self.alpha);
        let partners = draw_partners(rng, n);
        Ok((blend(&features, &partners, lambda), blend(&rows, &partners, lambda)))
    }
}

/// Pastes a box from a permuted partner into each image: one box per batch.
pub struct Cutmix {
    alpha: f64,
    p: f64,
    num_classes: i64,
}

impl Configurable for Cutmix {
    const NAME: &'static str = "cutmix";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Pastes a random box (one per batch) from a permuted partner into images; targets weighted by the box's area";
    type Config = CutmixConfig;

    fn build(config: CutmixConfig, ctx: &Context) -> Result<Self> {
        Ok(Self { alpha: check_alpha(Self::NAME, config.alpha)?, p: config.p, num_classes: ctx.num_outputs })
    }
}

/// The box (top, left, height, width) of an `h x w` image centred at (`cy`, `cx`) with sides
/// `sqrt(1 - lambda)` of the image's, clipped to the image (as torchvision's CutMix).
fn cut_box(lambda: f64, h: i64, w: i64, cy: i64, cx: i64) -> (i64, i64, i64, i64) {
    let half = 0.5 * (1.0 - lambda).max(0.0).sqrt();
    let (half_h, half_w) = ((half * h as f64) as i64, (half * w as f64) as i64);
    let (top, bottom) = ((cy - half_h).max(0), (cy + half_h).min(h));
    let (left, right) = ((cx - half_w).max(0), (cx + half_w).min(w));
    (top, left, bottom - top, right - left)
}

impl DataAugmentor for Cutmix {
    fn augment(&self, features: Tensor, targets: Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        require_float(Self::NAME, &features)?;
        let images = Images::new(Self::NAME, features)?;
        let [n, _, h, w] = images.dims();
        let rows = target_rows(Self::NAME, &targets, n, self.num_classes)?;
        if rng.next_f64() >= self.p {
            return Ok((images.restore(images.x.shallow_clone()), rows));
        }
        let lambda = beta_draw(rng, self.alpha);
        let (cy, cx) = (rng.below(h as u64) as i64, rng.below(w as u64) as i64);
        let partners = draw_partners(rng, n);
        let rect = cut_box(lambda, h, w, cy, cx);
        let pasted = images.x.index_select(0, &partners).where_self(&rect_mask(&[Some(rect)], h, w), &images.x);
        let kept = 1.0 - (rect.2 * rect.3) as f64 / (h * w) as f64;
        Ok((images.restore(pasted), blend(&rows, &partners, kept)))
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{Device, Kind, Tensor},
        Rng,
    };

    use super::*;
    use crate::testing::{labels, make, values};

    /// `[n, 1, h, w]` images whose every pixel is `i + 1` for sample `i`.
    fn constant_images(n: i64, h: i64, w: i64) -> Tensor {
        Tensor::arange_start(1, n + 1, (Kind::Float, Device::Cpu)).view([n, 1, 1, 1]).expand([n, 1, h, w], false).copy()
    }

    /// Per row of soft targets for labels `0..n`: the weight on its own label and its partner.
    fn weights_and_partners(soft: &Tensor) -> Vec<(f64, i64)> {
        let n = soft.size()[0];
        (0..n)
            .map(|i| {
                let row = values(&soft.get(i));
                let own = row[i as usize];
                let partner = (0..n).find(|&j| j != i && row[j as usize] > 0.0).unwrap_or(i);
                (own, partner)
            })
            .collect()
    }

    fn assert_probability_rows(soft: &Tensor) {
        gymnos_plugin_sdk::contract::check_soft_targets(soft).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn meet_the_augmentor_contract_and_refuse_bad_configs() {
        let x = Rng::new(1).normal(&[8, 3, 6, 6]);
        let y = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2, 2, 1]);
        harness::check_augmentor::<Mixup>(json!({}), &x, &y).unwrap();
        harness::check_augmentor::<Mixup>(json!({ "alpha": 1, "p": 0.5 }), &x.view([8, 108]), &y).unwrap();
        harness::check_augmentor::<Cutmix>(json!({}), &x, &y).unwrap();
        harness::check_augmentor::<Cutmix>(json!({ "alpha": 0.4 }), &x.select(1, 0), &y).unwrap();
        // `> 0` is declared, so that `validate` refuses alpha 0 as `create` does.
        let err = harness::check_augmentor::<Mixup>(json!({ "alpha": 0 }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: alpha: 0 is not > 0");
        let err = harness::check_augmentor::<Cutmix>(json!({ "alpha": -1 }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: alpha: -1 is not > 0");
        let rules = &<MixupConfig as gymnos_plugin_sdk::ConfigSchema>::keys()[0].rules;
        assert_eq!(rules.iter().map(|r| r.describe()).collect::<Vec<_>>(), ["> 0"]);
        let err = harness::check_augmentor::<Cutmix>(json!({ "p": 1.5 }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: p: 1.5 is not in [0, 1]");
    }

    #[test]
    fn mixup_blends_samples_and_one_hot_targets_by_one_lambda() {
        let n = 10;
        let x = constant_images(n, 2, 3);
        let mixup: Mixup = make(json!({ "alpha": 1.0 }), n);
        let (out, soft) = mixup.augment(x.shallow_clone(), labels(n), &mut Rng::new(3)).unwrap();
        assert_eq!((out.size(), soft.size(), soft.kind()), (vec![n, 1, 2, 3], vec![n, n], Kind::Float));
        assert_probability_rows(&soft);
        let rows = weights_and_partners(&soft);
        let lambda = rows.iter().find(|(own, _)| *own < 1.0).expect("some sample got a partner").0;
        assert!(lambda > 0.0 && lambda < 1.0, "lambda {lambda}");
        let mut partners: Vec<i64> = rows.iter().map(|r| r.1).collect();
        for (i, &(own, partner)) in rows.iter().enumerate() {
            let expected_own = if partner == i as i64 { 1.0 } else { lambda };
            assert!((own - expected_own).abs() < 1e-6, "row {i}: own weight {own}, lambda {lambda}");
            let mixed = lambda * (i + 1) as f64 + (1.0 - lambda) * (partner + 1) as f64;
            for v in values(&out.get(i as i64)) {
                assert!((v - mixed).abs() < 1e-5, "sample {i}: {v} is not {mixed}");
            }
        }
        partners.sort();
        assert_eq!(partners, (0..n).collect::<Vec<_>>(), "the partners are a permutation");
    }

    #[test]
    fn lambda_one_changes_nothing_but_the_target_encoding() {
        let x = constant_images(4, 2, 2);
        let rows = target_rows("mixup", &labels(4), 4, 5).unwrap();
        let partners = Tensor::from_slice(&[3i64, 2, 1, 0]);
        assert!(blend(&x, &partners, 1.0).equal(&x));
        let one_hot = blend(&rows, &partners, 1.0);
        assert_eq!(values(&one_hot.get(2)), [0.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(values(&blend(&rows, &partners, 0.25).get(0)), [0.25, 0.0, 0.0, 0.75, 0.0]);
        let never: Mixup = make(json!({ "p": 0 }), 5);
        let (out, soft) = never.augment(x.shallow_clone(), labels(4), &mut Rng::new(1)).unwrap();
        assert!(out.equal(&x));
        assert!(soft.equal(&labels(4).one_hot(5).to_kind(Kind::Float)));
    }

    #[test]
    fn mixup_mixes_regression_and_soft_targets_linearly() {
        let n = 8;
        let x = constant_images(n, 2, 2);
        // Targets that equal the features: they must stay equal after mixing.
        let values_per_sample = Tensor::arange_start(1, n + 1, (Kind::Float, Device::Cpu));
        let y = Tensor::stack(&[&values_per_sample, &(&values_per_sample * 2.0)], 1);
        let mixup: Mixup = make(json!({ "alpha": 1.0 }), 2);
        let (out, mixed) = mixup.augment(x.shallow_clone(), y.shallow_clone(), &mut Rng::new(2)).unwrap();
        assert_eq!(mixed.size(), [n, 2]);
        assert!(mixed.select(1, 0).allclose(&out.select(1, 0).select(1, 0).select(1, 0), 1e-5, 1e-5, false));
        assert!(mixed.select(1, 1).allclose(&(mixed.select(1, 0) * 2.0), 1e-5, 1e-5, false));
        assert!(!out.equal(&x), "the batch was mixed");

        let soft_in = Rng::new(4).uniform_tensor(&[n, 3], 0.1, 1.0);
        let soft_in = &soft_in / soft_in.sum_dim_intlist(1, true, Kind::Float);
        let (_, soft_out) = mixup.augment(x, soft_in.shallow_clone(), &mut Rng::new(2)).unwrap();
        assert_probability_rows(&soft_out);
        assert!(!soft_out.equal(&soft_in));
    }

    #[test]
    fn cutmix_pastes_one_box_and_weights_targets_by_its_area() {
        let (n, h, w) = (8, 8, 10);
        let x = constant_images(n, h, w);
        let cutmix: Cutmix = make(json!({}), n);
        let (out, soft) = cutmix.augment(x.shallow_clone(), labels(n), &mut Rng::new(6)).unwrap();
        assert_eq!(out.size(), [n, 1, h, w]);
        assert_probability_rows(&soft);
        let mut boxes = Vec::new();
        for (i, (own, partner)) in weights_and_partners(&soft).into_iter().enumerate() {
            let pixels = values(&out.get(i as i64));
            let (mine, theirs) = ((i + 1) as f64, (partner + 1) as f64);
            assert!(pixels.iter().all(|&v| v == mine || v == theirs), "sample {i}: only its own and partner's pixels");
            if partner == i as i64 {
                assert_eq!(own, 1.0);
                continue;
            }
            let pasted: Vec<usize> = (0..pixels.len()).filter(|&k| pixels[k] == theirs).collect();
            let fraction = pasted.len() as f64 / (h * w) as f64;
            assert!(((1.0 - own) - fraction).abs() < 1e-6, "sample {i}: weight {own}, pasted fraction {fraction}");
            boxes.push(pasted);
        }
        assert!(!boxes.is_empty() && !boxes[0].is_empty(), "something was pasted");
        assert!(boxes.iter().all(|b| *b == boxes[0]), "one box for the whole batch");
        let (rows, cols): (Vec<i64>, Vec<i64>) = boxes[0].iter().map(|&k| (k as i64 / w, k as i64 % w)).unzip();
        let height = rows.iter().max().unwrap() - rows.iter().min().unwrap() + 1;
        let width = cols.iter().max().unwrap() - cols.iter().min().unwrap() + 1;
        assert_eq!((height * width) as usize, boxes[0].len(), "the pasted pixels fill a rectangle");
    }

    #[test]
    fn cut_boxes_follow_lambda_and_stay_inside() {
        assert_eq!(cut_box(1.0, 8, 8, 3, 3), (3, 3, 0, 0), "lambda 1: nothing pasted");
        assert_eq!(cut_box(0.0, 8, 10, 4, 5), (0, 0, 8, 10), "lambda 0, centred: the whole image");
        assert_eq!(cut_box(0.75, 8, 8, 4, 4), (2, 2, 4, 4), "sides of sqrt(1 - lambda)");
        assert_eq!(cut_box(0.75, 8, 8, 0, 7), (0, 5, 2, 3), "clipped at the edges");
        let x = constant_images(3, 4, 4);
        let never: Cutmix = make(json!({ "p": 0 }), 3);
        let (out, soft) = never.augment(x.shallow_clone(), labels(3), &mut Rng::new(1)).unwrap();
        assert!(out.equal(&x));
        assert!(soft.equal(&labels(3).one_hot(3).to_kind(Kind::Float)));
    }

    #[test]
    fn the_seed_decides_the_batch() {
        let x = constant_images(8, 6, 6);
        let mixup: Mixup = make(json!({}), 8);
        let cutmix: Cutmix = make(json!({}), 8);
        let run_mixup = |seed| mixup.augment(x.shallow_clone(), labels(8), &mut Rng::new(seed)).unwrap();
        let run_cutmix = |seed| cutmix.augment(x.shallow_clone(), labels(8), &mut Rng::new(seed)).unwrap();
        for run in [&run_mixup as &dyn Fn(u64) -> (Tensor, Tensor), &run_cutmix] {
            let ((a, ya), (b, yb), (c, yc)) = (run(5), run(5), run(6));
            assert!(a.equal(&b) && ya.equal(&yb));
            assert!(!a.equal(&c) && !ya.equal(&yc));
        }
    }

    #[test]
    fn bad_targets_and_shapes_are_refused_with_one_line() {
        let x = constant_images(2, 2, 2);
        let no_classes: Mixup = make(json!({}), 0);
        let err = no_classes.augment(x.shallow_clone(), labels(2), &mut Rng::new(1)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "data error: mixup needs the number of classes to make soft targets from class labels, and the host \
             gave none"
        );
        let mixup: Mixup = make(json!({}), 1);
        let err = mixup.augment(x.shallow_clone(), labels(2), &mut Rng::new(1)).err().unwrap();
        assert_eq!(err.to_string(), "data error: mixup: labels span [0, 1] for 1 classes");
        let err = mixup.augment(x.shallow_clone(), labels(4).view([2, 2]), &mut Rng::new(1)).err().unwrap();
        assert_eq!(
            err.to_string(),
            "data error: mixup needs int64 class labels [n] or float targets [n, k], got Int64 of shape [2, 2]"
        );
        let cutmix: Cutmix = make(json!({}), 2);
        let err = cutmix.augment(x.view([2, 4]), labels(2), &mut Rng::new(1)).err().unwrap();
        assert_eq!(err.to_string(), "data error: cutmix needs images [n, c, h, w] or [n, h, w], got shape [2, 4]");
        let err = cutmix.augment(x, labels(3), &mut Rng::new(1)).err().unwrap();
        assert_eq!(err.to_string(), "data error: cutmix: 2 samples but targets of shape [3]");
    }
}
