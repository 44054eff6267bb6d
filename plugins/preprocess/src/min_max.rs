//! `min-max`: scales features to `[low, high]` from the training minimum and maximum.

use gymnos_plugin_sdk::{
    fit_whole,
    tch::{Kind, Tensor},
    Config, Configurable, Context, IncrementalPreprocessor, PluginError, Preprocessor, Result,
};

use crate::{
    bad_shape, batch_before_begin, check_finite, named_state, no_samples, not_fitted, state_before_fit, Shared,
};

const NAME: &str = "min-max";

/// The configuration of `min-max`.
#[derive(Config)]
pub struct MinMaxConfig {
    /// What the training minimum maps to
    #[config(default = 0.0)]
    pub low: f64,
    /// What the training maximum maps to (above `low`)
    #[config(default = 1.0)]
    pub high: f64,
    /// One minimum and maximum per channel (dim 1) of [n, c, ...] data, instead of one per
    /// element of the feature shape
    #[config(default = false)]
    pub per_channel: bool,
}

/// The training minimum and maximum, `float64`, shaped to broadcast over the features:
/// `[1, ...feature_shape]`, or `[1, c, 1, ...]` per channel.
struct Range {
    min: Tensor,
    max: Tensor,
}

/// Scales each feature element (or each channel, `per_channel`) linearly so that its training
/// minimum becomes `low` and its training maximum `high`; a feature constant in training maps to
/// `low`. Values outside the training range map outside `[low, high]` (no clipping). Computes in
/// `f64`, returns `float32`. State: `min` and `max` (`float64`, shaped `[1, ...feature_shape]`,
/// or `[1, c, 1, ...]` per channel).
pub struct MinMax {
    low: f64,
    high: f64,
    per_channel: bool,
    /// Between `begin_fit` and `end_fit`: the running minimum and maximum (`None` before the
    /// first sample).
    running: Shared<Option<Option<Range>>>,
    fitted: Shared<Option<Range>>,
}

impl Configurable for MinMax {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Scales each feature (or channel) to [low, high] from its training minimum and maximum";
    type Config = MinMaxConfig;

    fn build(config: MinMaxConfig, _ctx: &Context) -> Result<Self> {
        if config.low >= config.high {
            return Err(PluginError::config(format!(
                "{NAME}: `low` ({}) must be below `high` ({})",
                config.low, config.high
            )));
        }
        if !(config.high - config.low).is_finite() {
            return Err(PluginError::config(format!(
                "{NAME}: `high` - `low` ({:e} - {:e}) is beyond a 64-bit float; the scaled features would be infinite",
                config.high, config.low
            )));
        }
        Ok(Self {
            low: config.low,
            high: config.high,
            per_channel: config.per_channel,
            running: Shared::new(None),
            fitted: Shared::new(None),
        })
    }
}

impl MinMax {
    /// Features this configuration can work on at all.
    fn check_rank(&self, x: &Tensor) -> Result<()> {
        match (self.per_channel, x.dim()) {
            (true, d) if d >= 2 => Ok(()),
            (true, _) => Err(bad_shape(NAME, "features [n, c, ...] with per_channel", &x.size())),
            (false, d) if d >= 1 => Ok(()),
            (false, _) => Err(bad_shape(NAME, "features [n, ...]", &x.size())),
        }
    }

    /// Whether `x` has the features `min` (the state's shape) was fitted on.
    fn check_fitted_shape(&self, min: &Tensor, x: &Tensor, what: &str) -> Result<()> {
        self.check_rank(x)?;
        let (fitted, shape) = (min.size(), x.size());
        let same = if self.per_channel {
            fitted.len() == shape.len() && fitted[1] == shape[1]
        } else {
            fitted[1..] == shape[1..]
        };
        if same {
            return Ok(());
        }
        let expected = if self.per_channel {
            let rest = vec!["_"; fitted.len() - 2].join(", ");
            format!("[n, {}, {rest}]", fitted[1])
        } else {
            let dims: Vec<String> = fitted[1..].iter().map(ToString::to_string).collect();
            format!("[n, {}]", dims.join(", "))
        };
        Err(PluginError::data(format!("{NAME}: {what} features {expected}, got shape {shape:?}")))
    }

    /// The dimensions a batch is reduced over.
    fn reduced_dims(&self, rank: usize) -> Vec<i64> {
        if self.per_channel {
            (0..rank as i64).filter(|&d| d != 1).collect()
        } else {
            vec![0]
        }
    }
}

impl Preprocessor for MinMax {
    fn fit(&mut self, features: &Tensor, targets: &Tensor) -> Result<()> {
        fit_whole(self, features, targets)
    }

    fn transform(&self, features: &Tensor) -> Result<Tensor> {
        self.check_rank(features)?;
        let (min, max) = self
            .fitted
            .read(|f| f.as_ref().map(|r| (r.min.shallow_clone(), r.max.shallow_clone())))
            .ok_or_else(|| not_fitted(NAME))?;
        self.check_fitted_shape(&min, features, "was fitted on")?;
        let range = &max - &min;
        // A constant feature (or a range so small that its scale overflows) maps to `low`.
        let scale = range.reciprocal() * (self.high - self.low);
        let scale = scale.where_self(&range.gt(0.0).logical_and(&scale.isfinite()), &range.zeros_like());
        Ok(((features.to_kind(Kind::Double) - min) * scale + self.low).to_kind(Kind::Float))
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.fitted
            .read(|f| f.as_ref().map(|r| vec![("min".into(), r.min.copy()), ("max".into(), r.max.copy())]))
            .ok_or_else(|| state_before_fit(NAME))
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let [min, max] = named_state(NAME, ["min", "max"], state)?;
        let shape = min.size();
        let layout = if self.per_channel {
            shape.len() >= 2 && shape.iter().enumerate().all(|(d, &s)| d == 1 || s == 1)
        } else {
            shape.first() == Some(&1)
        };
        if max.size() != shape || !layout {
            return Err(PluginError::data(format!(
                "{NAME}: state `min` {shape:?} and `max` {:?} are not one range shaped [1, ...] for this \
                 configuration",
                max.size()
            )));
        }
        let (min, max) = (min.to_kind(Kind::Double), max.to_kind(Kind::Double));
        if min.gt_tensor(&max).any().int64_value(&[]) == 1 {
            return Err(PluginError::data(format!("{NAME}: state `min` is above `max`")));
        }
        *self.fitted.get_mut() = Some(Range { min, max });
        Ok(())
    }
}

impl IncrementalPreprocessor for MinMax {
    fn begin_fit(&mut self) -> Result<()> {
        *self.fitted.get_mut() = None;
        *self.running.get_mut() = Some(None);
        Ok(())
    }

    fn fit_batch(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
        self.check_rank(features)?;
        let dims = self.reduced_dims(features.dim());
        let earlier = match self.running.get_mut() {
            None => return Err(batch_before_begin(NAME)),
            Some(range) => range.as_ref().map(|r| r.min.shallow_clone()),
        };
        if let Some(min) = &earlier {
            self.check_fitted_shape(min, features, "earlier training batches had")?;
        }
        if features.numel() == 0 {
            return Ok(());
        }
        let x = features.to_kind(Kind::Double);
        check_finite(NAME, &x)?;
        let (batch_min, batch_max) = (x.amin(dims.as_slice(), true), x.amax(dims.as_slice(), true));
        let running = self.running.get_mut().as_mut().expect("checked above");
        *running = Some(match running.take() {
            Some(r) => Range { min: r.min.minimum(&batch_min), max: r.max.maximum(&batch_max) },
            None => Range { min: batch_min, max: batch_max },
        });
        Ok(())
    }

    fn end_fit(&mut self) -> Result<()> {
        let range = self.running.get_mut().take().ok_or_else(|| batch_before_begin(NAME))?;
        *self.fitted.get_mut() = Some(range.ok_or_else(|| no_samples(NAME))?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{Device, Kind, Tensor},
        IncrementalPreprocessor, Preprocessor, Rng,
    };

    use super::MinMax;
    use crate::testing::{assert_close, targets, tensor, values};

    fn built(config: gymnos_plugin_sdk::serde_json::Value) -> MinMax {
        use gymnos_plugin_sdk::{ConfigSchema, Configurable, Context};
        MinMax::build(super::MinMaxConfig::from_json(config).unwrap(), &Context::standalone()).unwrap()
    }

    #[test]
    fn meets_the_incremental_contract() {
        let x = Rng::new(1).normal(&[37, 5]) * 3.0 + 2.0;
        let y = targets(37);
        harness::check_incremental_preprocessor::<MinMax>(json!({}), &x, &y, 8).unwrap();
        harness::check_incremental_preprocessor::<MinMax>(json!({ "low": -1, "high": 1 }), &x, &y, 5).unwrap();
        let images = Rng::new(2).uniform_tensor(&[19, 3, 4, 4], 0.0, 255.0);
        harness::check_incremental_preprocessor::<MinMax>(json!({ "per_channel": true }), &images, &targets(19), 4)
            .unwrap();
        harness::check_incremental_preprocessor::<MinMax>(json!({}), &images, &targets(19), 6).unwrap();
    }

    #[test]
    fn maps_the_training_minimum_to_low_and_the_maximum_to_high() {
        // Column 0 ranges over [-2, 6], column 1 over [10, 30], column 2 is constant.
        let x = tensor(&[-2.0, 10.0, 5.0, 6.0, 30.0, 5.0, 2.0, 20.0, 5.0], &[3, 3]);
        let mut p = built(json!({ "low": -1, "high": 1 }));
        p.fit(&x, &targets(3)).unwrap();
        let out = p.transform(&x).unwrap();
        assert_eq!(out.kind(), Kind::Float);
        assert_close(&values(&out), &[-1.0, -1.0, -1.0, 1.0, 1.0, -1.0, 0.0, 0.0, -1.0], 1e-6);
        // Outside the training range: no clipping.
        let outside = p.transform(&tensor(&[10.0, 0.0, 7.0], &[1, 3])).unwrap();
        assert_close(&values(&outside), &[2.0, -2.0, -1.0], 1e-6);
        let state = p.state().unwrap();
        assert_eq!(state[0].0, "min");
        assert_close(&values(&state[0].1), &[-2.0, 10.0, 5.0], 0.0);
        assert_close(&values(&state[1].1), &[6.0, 30.0, 5.0], 0.0);
    }

    #[test]
    fn per_channel_uses_one_range_per_channel() {
        // Channel 0 holds 0..=7, channel 1 holds 100..=107, spread over two samples.
        let a = Tensor::arange(8, (Kind::Double, Device::Cpu)).view([2, 1, 2, 2]);
        let x = Tensor::cat(&[&a, &(&a + 100.0)], 1);
        let mut p = built(json!({ "per_channel": true }));
        p.fit(&x, &targets(2)).unwrap();
        let state = p.state().unwrap();
        assert_eq!(state[0].1.size(), [1, 2, 1, 1]);
        assert_close(&values(&state[0].1), &[0.0, 100.0], 0.0);
        assert_close(&values(&state[1].1), &[7.0, 107.0], 0.0);
        let out = p.transform(&x).unwrap();
        assert_close(&values(&out.narrow(0, 0, 1).narrow(1, 1, 1)), &[0.0, 1.0 / 7.0, 2.0 / 7.0, 3.0 / 7.0], 1e-6);
        assert_close(&values(&out.narrow(0, 1, 1).narrow(1, 0, 1)), &[4.0 / 7.0, 5.0 / 7.0, 6.0 / 7.0, 1.0], 1e-6);
    }

    #[test]
    fn transforms_alike_on_several_threads_at_once() {
        let x = Rng::new(9).normal(&[40, 6]);
        let mut p = built(json!({}));
        p.fit(&x, &targets(40)).unwrap();
        let alone = p.transform(&x).unwrap();
        let p = &p;
        let outs: Vec<Vec<f64>> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let x = x.copy();
                    s.spawn(move || values(&p.transform(&x).unwrap()))
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for out in outs {
            assert_close(&out, &values(&alone), 0.0);
        }
    }

    #[test]
    fn fitting_in_batches_gives_the_whole_split_state() {
        let x = Rng::new(3).normal(&[23, 4]);
        let mut whole = built(json!({}));
        whole.fit(&x, &targets(23)).unwrap();
        let mut batched = built(json!({}));
        batched.begin_fit().unwrap();
        for start in (0..23).step_by(7) {
            let len = 7.min(23 - start);
            batched.fit_batch(&x.narrow(0, start, len), &targets(len)).unwrap();
        }
        batched.fit_batch(&x.narrow(0, 0, 0), &targets(0)).unwrap();
        batched.end_fit().unwrap();
        for ((a, ta), (b, tb)) in whole.state().unwrap().iter().zip(&batched.state().unwrap()) {
            assert_eq!(a, b);
            assert!(ta.equal(tb), "{a} differs");
        }
    }

    #[test]
    fn refuses_bad_configurations_shapes_and_calls() {
        let x = Rng::new(4).normal(&[8, 3]);
        let y = targets(8);
        let err = harness::check_preprocessor::<MinMax>(json!({ "low": 1, "high": 1 }), &x, &y).unwrap_err();
        assert_eq!(err, "create: configuration error: min-max: `low` (1) must be below `high` (1)");
        let err = harness::check_preprocessor::<MinMax>(json!({ "low": -1e308, "high": 1e308 }), &x, &y).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: min-max: `high` - `low` (1e308 - -1e308) is beyond a 64-bit float; the \
             scaled features would be infinite"
        );
        let err = harness::check_preprocessor::<MinMax>(json!({ "per_channel": true }), &x.view([-1]), &targets(24))
            .unwrap_err();
        assert_eq!(err, "fit: data error: min-max needs features [n, c, ...] with per_channel, got shape [24]");

        let mut p = built(json!({}));
        assert_eq!(
            p.transform(&x).unwrap_err().to_string(),
            "runtime error: min-max: transform before fit (fit it on the training split or load its state)"
        );
        assert_eq!(
            p.fit_batch(&x, &y).unwrap_err().to_string(),
            "runtime error: min-max: fit_batch or end_fit before begin_fit"
        );
        p.begin_fit().unwrap();
        assert_eq!(p.end_fit().unwrap_err().to_string(), "data error: min-max: the fit saw no training samples");
        p.begin_fit().unwrap();
        p.fit_batch(&x, &y).unwrap();
        assert_eq!(
            p.fit_batch(&Rng::new(5).normal(&[2, 4]), &targets(2)).unwrap_err().to_string(),
            "data error: min-max: earlier training batches had features [n, 3], got shape [2, 4]"
        );
        let nan = Tensor::from_slice(&[f64::NAN, 1.0, 2.0]).view([1, 3]);
        assert_eq!(
            p.fit_batch(&nan, &targets(1)).unwrap_err().to_string(),
            "data error: min-max: the training features hold NaN or infinite values"
        );
        p.end_fit().unwrap();
        assert_eq!(
            p.transform(&Rng::new(5).normal(&[2, 3, 1])).unwrap_err().to_string(),
            "data error: min-max: was fitted on features [n, 3], got shape [2, 3, 1]"
        );

        let mut per_channel = built(json!({ "per_channel": true }));
        per_channel.fit(&Rng::new(6).normal(&[4, 3, 2, 2]), &targets(4)).unwrap();
        assert_eq!(
            per_channel.transform(&Rng::new(6).normal(&[4, 1, 2, 2])).unwrap_err().to_string(),
            "data error: min-max: was fitted on features [n, 3, _, _], got shape [4, 1, 2, 2]"
        );
        let err = per_channel
            .load_state(vec![
                ("min".into(), Tensor::zeros([3], (Kind::Double, Device::Cpu))),
                ("max".into(), Tensor::ones([3], (Kind::Double, Device::Cpu))),
            ])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "data error: min-max: state `min` [3] and `max` [3] are not one range shaped [1, ...] for this configuration"
        );
        let err = per_channel.load_state(vec![("lo".into(), Tensor::new())]).unwrap_err();
        assert_eq!(err.to_string(), "data error: min-max: unknown state tensor `lo`");
    }
}
