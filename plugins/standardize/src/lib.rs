//! `standardize`: subtracts the training mean and divides by the training standard deviation.
//!
//! Exports one component, `standardize` ([`Standardize`]), an incremental preprocessor (SDK 1.2):
//! it fits batch by batch, so it also works on streaming data sets. State: `mean`, `std`.

use gymnos_plugin_sdk::{
    fit_whole,
    fitting::{Moments, Shared},
    tch::{Kind, Tensor},
    Config, Configurable, Context, IncrementalPreprocessor, PluginError, Preprocessor, Result,
};

/// The configuration of `standardize`.
#[derive(Config)]
pub struct StandardizeConfig {
    /// One mean/std per feature (true) or one for all values (false, for images)
    #[config(default = false)]
    pub per_feature: bool,
    /// Added to the standard deviation to avoid dividing by zero
    #[config(default = 1e-8, min = 0)]
    pub epsilon: f64,
}

/// Subtracts the training mean and divides by the training standard deviation (population,
/// divided by the count) plus `epsilon`: one mean/std per element of the feature shape
/// (`per_feature`) or one for all values. Fits batch by batch (SDK 1.2) with exact running
/// moments in `f64` (Chan et al.'s parallel update), so a streaming fit gives the state a fit on
/// the whole split gives. State: `mean` and `std` (`float32`, shaped `[1, ...feature_shape]`
/// with `per_feature`, else `[1]`; `std` includes `epsilon`).
pub struct Standardize {
    per_feature: bool,
    epsilon: f64,
    /// Between `begin_fit` and `end_fit`: the moments so far (`None` before the first sample).
    running: Shared<Option<Option<Running>>>,
    /// `(mean, std)`, shaped to broadcast over `[n, ...features]`; `None` until fitted.
    fitted: Shared<Option<(Tensor, Tensor)>>,
}

/// What the batches seen so far hold: their moments, `float64`, shaped `[1, ...features]`
/// (`per_feature`) or `[1]`.
struct Running {
    /// Samples seen (what the "at least 2 training samples" rule counts).
    samples: i64,
    /// The features' shape, to check that batches agree.
    feature_shape: Vec<i64>,
    moments: Moments,
}

impl Configurable for Standardize {
    const NAME: &'static str = "standardize";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Scales features to zero mean and unit variance, fitted on the training split";
    type Config = StandardizeConfig;

    fn build(config: StandardizeConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self {
            per_feature: config.per_feature,
            epsilon: config.epsilon,
            running: Shared::new(None),
            fitted: Shared::new(None),
        })
    }
}

impl Preprocessor for Standardize {
    fn fit(&mut self, features: &Tensor, targets: &Tensor) -> Result<()> {
        fit_whole(self, features, targets)
    }

    fn transform(&self, features: &Tensor) -> Result<Tensor> {
        let (mean, std) = self
            .fitted
            .read(|f| f.as_ref().map(|(m, s)| (m.shallow_clone(), s.shallow_clone())))
            .ok_or_else(|| PluginError::runtime("standardize: transform before fit"))?;
        let (fitted, shape) = (mean.size(), features.size());
        // A per-feature state ([1, ...features], more than one dimension) must match the features.
        if fitted.len() > 1 && (shape.len() != fitted.len() || shape[1..] != fitted[1..]) {
            return Err(PluginError::data(format!(
                "standardize: was fitted on features {:?}, got shape {shape:?}",
                &fitted[1..]
            )));
        }
        Ok((features.to_kind(Kind::Float) - mean) / std)
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.fitted
            .read(|f| {
                f.as_ref().map(|(m, s)| vec![("mean".into(), m.shallow_clone()), ("std".into(), s.shallow_clone())])
            })
            .ok_or_else(|| PluginError::runtime("standardize: state before fit"))
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let mut mean = None;
        let mut std = None;
        for (name, t) in state {
            match name.as_str() {
                "mean" => mean = Some(t),
                "std" => std = Some(t),
                other => return Err(PluginError::data(format!("standardize: unknown state tensor `{other}`"))),
            }
        }
        match (mean, std) {
            (Some(m), Some(s)) => {
                *self.fitted.get_mut() = Some((m, s));
                Ok(())
            }
            _ => Err(PluginError::data("standardize: state needs `mean` and `std`")),
        }
    }
}

impl IncrementalPreprocessor for Standardize {
    fn begin_fit(&mut self) -> Result<()> {
        *self.fitted.get_mut() = None;
        *self.running.get_mut() = Some(None);
        Ok(())
    }

    fn fit_batch(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
        let running = self
            .running
            .get_mut()
            .as_mut()
            .ok_or_else(|| PluginError::runtime("standardize: fit_batch or end_fit before begin_fit"))?;
        let shape = features.size();
        if shape.is_empty() {
            return Err(PluginError::data("standardize needs features [n, ...], got shape []"));
        }
        if let Some(m) = running {
            if shape[1..] != m.feature_shape[..] {
                return Err(PluginError::data(format!(
                    "standardize: earlier training batches had features {:?}, got shape {shape:?}",
                    m.feature_shape
                )));
            }
        }
        let samples = shape[0];
        if samples == 0 {
            return Ok(());
        }
        let x = features.to_kind(Kind::Double);
        let batch = if self.per_feature {
            let mean = x.mean_dim(0, true, Kind::Double);
            let m2 = (&x - &mean).square().sum_dim_intlist(0, true, Kind::Double);
            Moments { count: samples, mean, m2 }
        } else {
            let mean = x.mean(Kind::Double).reshape([1]);
            let m2 = (&x - &mean).square().sum(Kind::Double).reshape([1]);
            Moments { count: x.numel() as i64, mean, m2 }
        };
        *running = Some(match running.take() {
            None => Running { samples, feature_shape: shape[1..].to_vec(), moments: batch },
            Some(a) => Running {
                samples: a.samples + samples,
                feature_shape: a.feature_shape,
                moments: a.moments.merge(batch),
            },
        });
        Ok(())
    }

    fn end_fit(&mut self) -> Result<()> {
        let running = self
            .running
            .get_mut()
            .take()
            .ok_or_else(|| PluginError::runtime("standardize: fit_batch or end_fit before begin_fit"))?;
        let m = match running {
            Some(m) if m.samples >= 2 => m,
            _ => return Err(PluginError::data("standardize needs at least 2 training samples")),
        };
        let std = (m.moments.std() + self.epsilon).to_kind(Kind::Float);
        // A feature constant in training with `epsilon` 0 (or small enough to vanish in float32)
        // would be divided by 0: NaN for every value. Refused here, naming the feature.
        let zero = std.eq(0.0).logical_or(&std.isfinite().logical_not());
        if zero.any().int64_value(&[]) == 1 {
            let first = zero.flatten(0, -1).nonzero().int64_value(&[0, 0]);
            let feature = match (self.per_feature, unravel(first, &m.feature_shape).as_slice()) {
                (false, _) => "the data (one statistic for all values)".to_string(),
                (true, [one]) => format!("feature {one}"),
                (true, many) => format!("feature {many:?} (of features {:?})", m.feature_shape),
            };
            let std_value = std.flatten(0, -1).double_value(&[first]);
            let epsilon = match self.epsilon {
                0.0 => "`epsilon` is 0".to_string(),
                e => format!("`epsilon` ({e:e}) vanishes in float32"),
            };
            return Err(PluginError::data(if std_value == 0.0 {
                format!(
                    "standardize: {feature} is constant in the training split (standard deviation 0) and {epsilon}: \
                     dividing by 0 gives NaN; set `epsilon` above 0 (the default is 1e-8), or leave the feature out"
                )
            } else {
                format!(
                    "standardize: {feature} has standard deviation {std_value} in the training split: its values \
                     are not finite (NaN or infinite) or overflow float32"
                )
            }));
        }
        *self.fitted.get_mut() = Some((m.moments.mean.to_kind(Kind::Float), std));
        Ok(())
    }
}

/// The index of element `flat` of a row-major `shape`.
fn unravel(mut flat: i64, shape: &[i64]) -> Vec<i64> {
    let mut index = vec![0; shape.len()];
    for (i, &side) in shape.iter().enumerate().rev() {
        if side > 0 {
            index[i] = flat % side;
            flat /= side;
        }
    }
    index
}

gymnos_plugin_sdk::export_plugin!(incremental_preprocessor(Standardize));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::{json, Value},
        tch::{Device, Kind, Tensor},
        ConfigSchema, Configurable, Context, IncrementalPreprocessor, Preprocessor, Rng,
    };

    use super::{Standardize, StandardizeConfig};

    fn built(config: Value) -> Standardize {
        Standardize::build(StandardizeConfig::from_json(config).unwrap(), &Context::standalone()).unwrap()
    }

    fn targets(n: i64) -> Tensor {
        Tensor::zeros([n], (Kind::Int64, Device::Cpu))
    }

    #[test]
    fn meets_the_preprocessor_contract_and_standardizes() {
        let x = Rng::new(1).normal(&[64, 5]) * 3.0 + 2.0;
        let y = Tensor::zeros([64], (Kind::Int64, gymnos_plugin_sdk::tch::Device::Cpu));
        harness::check_preprocessor::<super::Standardize>(json!({}), &x, &y).unwrap();
        harness::check_preprocessor::<super::Standardize>(json!({ "per_feature": true }), &x, &y).unwrap();
    }

    #[test]
    fn meets_the_incremental_contract() {
        let x = Rng::new(2).normal(&[53, 5]) * 3.0 + 2.0;
        harness::check_incremental_preprocessor::<Standardize>(json!({}), &x, &targets(53), 8).unwrap();
        harness::check_incremental_preprocessor::<Standardize>(json!({ "per_feature": true }), &x, &targets(53), 8)
            .unwrap();
        let images = Rng::new(3).normal(&[21, 2, 3, 3]) * 50.0 + 100.0;
        harness::check_incremental_preprocessor::<Standardize>(
            json!({ "per_feature": true }),
            &images,
            &targets(21),
            4,
        )
        .unwrap();
    }

    #[test]
    fn a_batched_fit_gives_the_whole_split_moments_in_the_same_state() {
        // Large offsets relative to the spread: where naive sums of squares lose precision.
        let x = Rng::new(4).normal(&[101, 3]).to_kind(Kind::Double) * 0.01 + 1e4;
        for per_feature in [false, true] {
            let mut p = built(json!({ "per_feature": per_feature, "epsilon": 0 }));
            p.begin_fit().unwrap();
            for start in (0..101).step_by(10) {
                let len = 10.min(101 - start);
                p.fit_batch(&x.narrow(0, start, len), &targets(len)).unwrap();
            }
            p.end_fit().unwrap();
            let state = p.state().unwrap();
            assert_eq!((state[0].0.as_str(), state[1].0.as_str()), ("mean", "std"));
            let (mean, std) = if per_feature {
                (x.mean_dim(0, true, Kind::Double), x.std_dim(0, false, true))
            } else {
                (x.mean(Kind::Double).reshape([1]), x.std(false).reshape([1]))
            };
            assert_eq!(state[0].1.size(), mean.size());
            assert_eq!(state[0].1.kind(), Kind::Float);
            assert!(state[0].1.equal(&mean.to_kind(Kind::Float)), "per_feature {per_feature}: mean");
            let relative = ((&state[1].1.to_kind(Kind::Double) - &std) / &std).abs().max().double_value(&[]);
            assert!(relative < 1e-6, "per_feature {per_feature}: std off by {relative}");
        }
    }

    #[test]
    fn a_constant_feature_with_epsilon_0_is_refused_at_fit_naming_the_feature() {
        // Column 2 is constant: with epsilon 0 its standard deviation would divide by 0.
        let x = Tensor::from_slice(&[1.0f32, 5.0, 7.0, 2.0, 6.0, 7.0, 3.0, 4.0, 7.0]).view([3, 3]);
        let err =
            harness::check_preprocessor::<Standardize>(json!({ "per_feature": true, "epsilon": 0 }), &x, &targets(3))
                .unwrap_err();
        assert_eq!(
            err,
            "fit: data error: standardize: feature 2 is constant in the training split (standard deviation 0) and \
             `epsilon` is 0: dividing by 0 gives NaN; set `epsilon` above 0 (the default is 1e-8), or leave the \
             feature out"
        );
        // The default epsilon keeps it finite; so does one statistic over every value.
        harness::check_preprocessor::<Standardize>(json!({ "per_feature": true }), &x, &targets(3)).unwrap();
        harness::check_preprocessor::<Standardize>(json!({ "epsilon": 0 }), &x, &targets(3)).unwrap();
        // An epsilon that vanishes in float32, images, and one statistic for all values.
        let images = Tensor::ones([4, 2, 3, 3], (Kind::Float, Device::Cpu));
        let _ = images.narrow(0, 0, 1).narrow(1, 0, 1).fill_(2.0);
        let err = harness::check_preprocessor::<Standardize>(
            json!({ "per_feature": true, "epsilon": 1e-50 }),
            &images,
            &targets(4),
        )
        .unwrap_err();
        assert!(
            err.starts_with(
                "fit: data error: standardize: feature [1, 0, 0] (of features [2, 3, 3]) is constant in the training \
                 split (standard deviation 0) and `epsilon` (1e-50) vanishes in float32"
            ),
            "{err}"
        );
        let err = harness::check_preprocessor::<Standardize>(json!({ "epsilon": 0 }), &images.ones_like(), &targets(4))
            .unwrap_err();
        assert!(err.starts_with("fit: data error: standardize: the data (one statistic for all values) is constant"));
        let inf = Tensor::from_slice(&[1.0f32, f32::INFINITY, 2.0, 3.0]).view([2, 2]);
        let err =
            harness::check_preprocessor::<Standardize>(json!({ "per_feature": true }), &inf, &targets(2)).unwrap_err();
        assert_eq!(
            err,
            "fit: data error: standardize: feature 1 has standard deviation NaN in the training split: its values are \
             not finite (NaN or infinite) or overflow float32"
        );
    }

    #[test]
    fn refuses_too_few_samples_mismatched_batches_and_early_transforms() {
        let mut p = built(json!({ "per_feature": true }));
        assert_eq!(
            p.transform(&Rng::new(5).normal(&[2, 3])).unwrap_err().to_string(),
            "runtime error: standardize: transform before fit"
        );
        p.begin_fit().unwrap();
        p.fit_batch(&Rng::new(5).normal(&[1, 3]), &targets(1)).unwrap();
        assert_eq!(
            p.fit_batch(&Rng::new(5).normal(&[2, 4]), &targets(2)).unwrap_err().to_string(),
            "data error: standardize: earlier training batches had features [3], got shape [2, 4]"
        );
        assert_eq!(p.end_fit().unwrap_err().to_string(), "data error: standardize needs at least 2 training samples");
        p.fit(&Rng::new(5).normal(&[4, 3]), &targets(4)).unwrap();
        assert_eq!(
            p.transform(&Rng::new(5).normal(&[4, 2])).unwrap_err().to_string(),
            "data error: standardize: was fitted on features [3], got shape [4, 2]"
        );
        // A state saved by standardize 1.0 (same names, same meaning) still loads.
        let mut fresh = built(json!({}));
        fresh
            .load_state(vec![
                ("mean".into(), Tensor::from_slice(&[2.0f32])),
                ("std".into(), Tensor::from_slice(&[4.0f32])),
            ])
            .unwrap();
        let out = fresh.transform(&Tensor::from_slice(&[6.0f32, -2.0]).view([2, 1])).unwrap();
        assert!(out.equal(&Tensor::from_slice(&[1.0f32, -1.0]).view([2, 1])));
    }
}
