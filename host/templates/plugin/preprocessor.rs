//! `{{name}}`: a gymnos preprocessor plugin. The example scales each feature to [0, 1] with the
//! training split's minimum and maximum.
//!
//! It fits batch by batch (`IncrementalPreprocessor`), so that it also fits on the training
//! split of a data set too large for memory; `fit` (the whole split at once) is the same fit
//! given one batch.

use gymnos_plugin_sdk::{
    fitting::Shared,
    tch::{Kind, Tensor},
    Config, Configurable, Context, IncrementalPreprocessor, PluginError, Preprocessor, Result,
};

/// The configuration: each field is a key of the experiment's `config` object, its doc comment
/// the key's description. The host checks the types, defaults and rules before anything runs.
#[derive(Config)]
pub struct {{Type}}Config {
    /// Added to each range to avoid dividing by zero
    #[config(default = 1e-8, min = 0)]
    pub epsilon: f64,
}

pub struct {{Type}} {
    epsilon: f64,
    /// tch tensors may move between threads but not be shared by them, and `transform` runs on
    /// several loader threads at once: the tensors sit behind a lock, held only to take
    /// shallow copies (no data is copied).
    state: Shared<State>,
}

#[derive(Default)]
struct State {
    /// (minimum, maximum) per feature over the batches seen so far, while fitting.
    seen: Option<(Tensor, Tensor)>,
    /// (minimum, range) per feature, once fitted.
    fitted: Option<(Tensor, Tensor)>,
}

impl {{Type}} {
    fn fitted(&self) -> Result<(Tensor, Tensor)> {
        self.state.read(|state| match &state.fitted {
            Some((min, range)) => Ok((min.shallow_clone(), range.shallow_clone())),
            None => Err(PluginError::runtime("not fitted yet")),
        })
    }
}

impl Configurable for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Scales each feature to [0, 1] using the training split's range";
    type Config = {{Type}}Config;

    fn build(config: {{Type}}Config, _ctx: &Context) -> Result<Self> {
        Ok(Self { epsilon: config.epsilon, state: Shared::new(State::default()) })
    }
}

impl IncrementalPreprocessor for {{Type}} {
    fn begin_fit(&mut self) -> Result<()> {
        self.state.get_mut().seen = None;
        Ok(())
    }

    fn fit_batch(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
        let x = features.to_kind(Kind::Float);
        let (min, max) = (x.amin(0, true), x.amax(0, true));
        let state = self.state.get_mut();
        state.seen = Some(match state.seen.take() {
            Some((lo, hi)) => (lo.minimum(&min), hi.maximum(&max)),
            None => (min, max),
        });
        Ok(())
    }

    fn end_fit(&mut self) -> Result<()> {
        let epsilon = self.epsilon;
        let state = self.state.get_mut();
        let (min, max) = state.seen.take().ok_or_else(|| PluginError::data("fit saw no samples"))?;
        let range = max - &min + epsilon;
        state.fitted = Some((min, range));
        Ok(())
    }
}

impl Preprocessor for {{Type}} {
    fn fit(&mut self, features: &Tensor, targets: &Tensor) -> Result<()> {
        gymnos_plugin_sdk::fit_whole(self, features, targets)
    }

    fn transform(&self, features: &Tensor) -> Result<Tensor> {
        let (min, range) = self.fitted()?;
        Ok((features.to_kind(Kind::Float) - min) / range)
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let (min, range) = self.fitted()?;
        Ok(vec![("min".into(), min), ("range".into(), range)])
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let find = |name: &str| state.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone());
        match (find("min"), find("range")) {
            (Some(min), Some(range)) => {
                self.state.get_mut().fitted = Some((min, range));
                Ok(())
            }
            _ => Err(PluginError::data("state needs `min` and `range`")),
        }
    }
}

gymnos_plugin_sdk::export_plugin!(incremental_preprocessor({{Type}}));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{Device, Kind, Tensor},
        Rng,
    };

    #[test]
    fn meets_the_preprocessor_contract() {
        let x = Rng::new(1).normal(&[32, 3]);
        let y = Tensor::zeros([32], (Kind::Int64, Device::Cpu));
        harness::check_incremental_preprocessor::<super::{{Type}}>(json!({}), &x, &y, 5).unwrap();
    }
}
