//! `normalize`: per channel, subtracts a mean and divides by a standard deviation.

use gymnos_plugin_sdk::{
    fit_whole,
    fitting::Moments,
    tch::{Kind, Tensor},
    Config, Configurable, Context, IncrementalPreprocessor, PluginError, Preprocessor, Result,
};

use crate::{
    bad_shape, batch_before_begin, check_finite, named_state, no_samples, not_fitted, state_before_fit, Shared,
};

const NAME: &str = "normalize";

/// The configuration of `normalize`.
#[derive(Config)]
pub struct NormalizeConfig {
    /// Per-channel means to subtract, used as given with `std` (null: computed on the training
    /// split)
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviations to divide by, all above 0, used as given with `mean`
    /// (null: computed on the training split)
    // Declared, so that `validate` refuses what `build` does: a std of 0 would divide by zero.
    #[config(above = 0.0)]
    pub std: Option<Vec<f64>>,
}

/// Normalizes each channel (dim 1) of `[n, c, ...]` features: `(x - mean[c]) / std[c]`. With
/// `mean` and `std` given, uses them exactly and fitting changes nothing; otherwise fits them on
/// the training split: the mean and the population standard deviation (divided by the count) of
/// every value of the channel, merged batch by batch exactly in `f64`. A channel constant in
/// training (std 0) is only centered. Computes in `f64`, returns `float32`. State: `mean` and `std` (`float64 [c]`).
pub struct Normalize {
    /// The given `(mean, std)`, if any.
    given: Option<(Vec<f64>, Vec<f64>)>,
    /// Between `begin_fit` and `end_fit`: the moments so far (`None` before the first sample).
    running: Shared<Option<Option<Moments>>>,
    /// `(mean, std)`, `float64 [c]`.
    fitted: Shared<Option<(Tensor, Tensor)>>,
}

impl Configurable for Normalize {
    const NAME: &'static str = NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Normalizes each channel with a given or training-split mean and standard deviation";
    type Config = NormalizeConfig;

    fn build(config: NormalizeConfig, _ctx: &Context) -> Result<Self> {
        let given = match (config.mean, config.std) {
            (None, None) => None,
            (Some(mean), Some(std)) => {
                if mean.is_empty() || mean.len() != std.len() {
                    return Err(PluginError::config(format!(
                        "{NAME}: `mean` and `std` need one value per channel, got {} and {}",
                        mean.len(),
                        std.len()
                    )));
                }
                if let Some(bad) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(PluginError::config(format!("{NAME}: `std` values must be above 0, got {bad}")));
                }
                if let Some(bad) = mean.iter().find(|m| !m.is_finite()) {
                    return Err(PluginError::config(format!("{NAME}: `mean` values must be finite, got {bad}")));
                }
                Some((mean, std))
            }
            _ => return Err(PluginError::config(format!("{NAME}: give both `mean` and `std`, or neither"))),
        };
        let fitted = given.as_ref().map(|(m, s)| (Tensor::from_slice(m), Tensor::from_slice(s)));
        Ok(Self { given, running: Shared::new(None), fitted: Shared::new(fitted) })
    }
}

fn check_rank(x: &Tensor) -> Result<()> {
    if x.dim() >= 2 {
        Ok(())
    } else {
        Err(bad_shape(NAME, "features [n, c, ...]", &x.size()))
    }
}

fn check_channels(channels: i64, x: &Tensor, what: &str) -> Result<()> {
    check_rank(x)?;
    if x.size()[1] == channels {
        Ok(())
    } else {
        Err(PluginError::data(format!("{NAME}: {what} {channels} channels, got features of shape {:?}", x.size())))
    }
}

/// `t` (`[c]`) shaped to broadcast over features of `rank` dimensions: `[1, c, 1, ...]`.
fn per_channel(t: &Tensor, rank: usize) -> Tensor {
    let mut shape = vec![1i64; rank];
    shape[1] = t.size()[0];
    t.view(shape.as_slice())
}

impl Preprocessor for Normalize {
    fn fit(&mut self, features: &Tensor, targets: &Tensor) -> Result<()> {
        fit_whole(self, features, targets)
    }

    fn transform(&self, features: &Tensor) -> Result<Tensor> {
        check_rank(features)?;
        let (mean, std) = self
            .fitted
            .read(|f| f.as_ref().map(|(m, s)| (m.shallow_clone(), s.shallow_clone())))
            .ok_or_else(|| not_fitted(NAME))?;
        check_channels(mean.size()[0], features, "mean and std have")?;
        let divisor = std.where_self(&std.gt(0.0), &std.ones_like());
        let rank = features.dim();
        // In f64: a mean far from zero relative to the spread would lose digits in f32.
        Ok(((features.to_kind(Kind::Double) - per_channel(&mean, rank)) / per_channel(&divisor, rank))
            .to_kind(Kind::Float))
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        self.fitted
            .read(|f| f.as_ref().map(|(m, s)| vec![("mean".into(), m.copy()), ("std".into(), s.copy())]))
            .ok_or_else(|| state_before_fit(NAME))
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let [mean, std] = named_state(NAME, ["mean", "std"], state)?;
        if mean.dim() != 1 || mean.size() != std.size() || mean.numel() == 0 {
            return Err(PluginError::data(format!(
                "{NAME}: state `mean` {:?} and `std` {:?} are not one value per channel",
                mean.size(),
                std.size()
            )));
        }
        let (mean, std) = (mean.to_kind(Kind::Double), std.to_kind(Kind::Double));
        if std.lt(0.0).any().int64_value(&[]) == 1 {
            return Err(PluginError::data(format!("{NAME}: state `std` holds a negative value")));
        }
        *self.fitted.get_mut() = Some((mean, std));
        Ok(())
    }
}

impl IncrementalPreprocessor for Normalize {
    fn begin_fit(&mut self) -> Result<()> {
        if self.given.is_none() {
            *self.fitted.get_mut() = None;
            *self.running.get_mut() = Some(None);
        }
        Ok(())
    }

    fn fit_batch(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
        if let Some((mean, _)) = &self.given {
            // Nothing to fit; the batch is only checked, to report a mismatch early.
            return check_channels(mean.len() as i64, features, "the given mean and std have");
        }
        check_rank(features)?;
        let running = self.running.get_mut().as_mut().ok_or_else(|| batch_before_begin(NAME))?;
        if let Some(m) = running {
            check_channels(m.mean.size()[0], features, "earlier training batches had")?;
        }
        let c = features.size()[1];
        let x = features.to_kind(Kind::Double).transpose(0, 1).reshape([c, -1]);
        let count = x.size()[1];
        if count == 0 {
            return Ok(());
        }
        check_finite(NAME, &x)?;
        let mean = x.mean_dim(1, false, Kind::Double);
        let m2 = (&x - mean.unsqueeze(1)).square().sum_dim_intlist(1, false, Kind::Double);
        *running = Some(Moments::merged(running.take(), Moments { count, mean, m2 }));
        Ok(())
    }

    fn end_fit(&mut self) -> Result<()> {
        if self.given.is_some() {
            return Ok(());
        }
        let moments = self.running.get_mut().take().ok_or_else(|| batch_before_begin(NAME))?;
        let m = moments.ok_or_else(|| no_samples(NAME))?;
        let std = m.std();
        *self.fitted.get_mut() = Some((m.mean, std));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::{json, Value},
        tch::{Kind, Tensor},
        ConfigSchema, Configurable, Context, IncrementalPreprocessor, Preprocessor, Rng,
    };

    use super::{Normalize, NormalizeConfig};
    use crate::testing::{assert_close, targets, tensor, values};

    fn built(config: Value) -> Normalize {
        Normalize::build(NormalizeConfig::from_json(config).unwrap(), &Context::standalone()).unwrap()
    }

    /// Images whose channels have very different scales and offsets.
    fn images(n: i64) -> Tensor {
        let scale = Tensor::from_slice(&[1.0f32, 10.0, 0.01]).view([1, 3, 1, 1]);
        let offset = Tensor::from_slice(&[5.0f32, -300.0, 1000.0]).view([1, 3, 1, 1]);
        Rng::new(7).normal(&[n, 3, 5, 4]) * scale + offset
    }

    #[test]
    fn meets_the_incremental_contract() {
        harness::check_incremental_preprocessor::<Normalize>(json!({}), &images(29), &targets(29), 6).unwrap();
        let given = json!({ "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3] });
        harness::check_incremental_preprocessor::<Normalize>(given, &images(29), &targets(29), 6).unwrap();
        let table = Rng::new(8).normal(&[31, 4]) * 7.0 - 3.0;
        harness::check_incremental_preprocessor::<Normalize>(json!({}), &table, &targets(31), 9).unwrap();
    }

    #[test]
    fn fitted_gives_mean_0_and_std_1_per_channel_on_the_training_data() {
        let x = images(29);
        let mut p = built(json!({}));
        p.begin_fit().unwrap();
        for start in (0..29).step_by(4) {
            let len = 4.min(29 - start);
            p.fit_batch(&x.narrow(0, start, len), &targets(len)).unwrap();
        }
        p.end_fit().unwrap();
        let out = p.transform(&x).unwrap().to_kind(Kind::Double);
        let per_channel = out.transpose(0, 1).reshape([3, -1]);
        assert_close(&values(&per_channel.mean_dim(1, false, Kind::Double)), &[0.0; 3], 1e-5);
        assert_close(&values(&per_channel.std_dim(1, false, false)), &[1.0; 3], 1e-5);
        // The state is the exact population mean and std, computed at once in f64.
        let whole = x.to_kind(Kind::Double).transpose(0, 1).reshape([3, -1]);
        let state = p.state().unwrap();
        assert_eq!((state[0].0.as_str(), state[1].0.as_str()), ("mean", "std"));
        assert_close(&values(&state[0].1), &values(&whole.mean_dim(1, false, Kind::Double)), 1e-9);
        assert_close(&values(&state[1].1), &values(&whole.std_dim(1, false, false)), 1e-9);
    }

    #[test]
    fn uses_the_given_mean_and_std_exactly() {
        let mut p = built(json!({ "mean": [1.0, -2.0], "std": [2.0, 0.5] }));
        // Usable at once: nothing to fit.
        let x = tensor(&[3.0, 0.0, 1.0, -2.0, -1.0, -3.0], &[3, 2]);
        let out = p.transform(&x).unwrap();
        assert_close(&values(&out), &[1.0, 4.0, 0.0, 0.0, -1.0, -2.0], 0.0);
        p.fit(&(x.shallow_clone() * 100.0), &targets(3)).unwrap();
        assert_close(&values(&p.transform(&x).unwrap()), &[1.0, 4.0, 0.0, 0.0, -1.0, -2.0], 0.0);
        assert_close(&values(&p.state().unwrap()[1].1), &[2.0, 0.5], 0.0);
    }

    #[test]
    fn a_constant_channel_is_only_centered() {
        let x = tensor(&[1.0, 7.0, 3.0, 7.0], &[2, 2]);
        let mut p = built(json!({}));
        p.fit(&x, &targets(2)).unwrap();
        assert_close(&values(&p.transform(&x).unwrap()), &[-1.0, 0.0, 1.0, 0.0], 1e-6);
    }

    #[test]
    fn refuses_bad_configurations_shapes_and_calls() {
        let x = images(4);
        let y = targets(4);
        let check = |config: Value| harness::check_preprocessor::<Normalize>(config, &x, &y).unwrap_err();
        assert_eq!(
            check(json!({ "mean": [0.5] })),
            "create: configuration error: normalize: give both `mean` and `std`, or neither"
        );
        assert_eq!(
            check(json!({ "mean": [0.5, 0.5], "std": [1] })),
            "create: configuration error: normalize: `mean` and `std` need one value per channel, got 2 and 1"
        );
        // Declared, so that `validate` refuses it too.
        assert_eq!(
            check(json!({ "mean": [0.5], "std": [0] })),
            "create: configuration error: std: item 0: 0 is not > 0"
        );
        assert_eq!(
            check(json!({ "mean": [0.5, 1], "std": [1, -0.5] })),
            "create: configuration error: std: item 1: -0.5 is not > 0"
        );
        assert_eq!(
            check(json!({ "mean": [0.5, 0.5], "std": [1, 1] })),
            "fit: data error: normalize: the given mean and std have 2 channels, got features of shape [4, 3, 5, 4]"
        );
        let given = built(json!({ "mean": [0.5, 0.5], "std": [1, 1] }));
        assert_eq!(
            given.transform(&x).unwrap_err().to_string(),
            "data error: normalize: mean and std have 2 channels, got features of shape [4, 3, 5, 4]"
        );
        assert_eq!(
            given.transform(&x.view([-1])).unwrap_err().to_string(),
            "data error: normalize needs features [n, c, ...], got shape [240]"
        );

        let mut p = built(json!({}));
        assert_eq!(
            p.transform(&x).unwrap_err().to_string(),
            "runtime error: normalize: transform before fit (fit it on the training split or load its state)"
        );
        p.begin_fit().unwrap();
        p.fit_batch(&x, &y).unwrap();
        assert_eq!(
            p.fit_batch(&images(2).narrow(1, 0, 2), &targets(2)).unwrap_err().to_string(),
            "data error: normalize: earlier training batches had 3 channels, got features of shape [2, 2, 5, 4]"
        );
        p.begin_fit().unwrap();
        assert_eq!(p.end_fit().unwrap_err().to_string(), "data error: normalize: the fit saw no training samples");
        let err = p.load_state(vec![("mean".into(), Tensor::from_slice(&[0.0, 1.0]))]).unwrap_err();
        assert_eq!(err.to_string(), "data error: normalize: state needs `mean` and `std`");
    }
}
