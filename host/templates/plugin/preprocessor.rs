//! `{{name}}`: a gymnos preprocessor plugin. The example scales each feature to [0, 1] with the
//! training split's minimum and maximum.

use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    Config, Configurable, Context, PluginError, Preprocessor, Result,
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
    /// (minimum, range) per feature, once fitted.
    fitted: Option<(Tensor, Tensor)>,
}

impl Configurable for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Scales each feature to [0, 1] using the training split's range";
    type Config = {{Type}}Config;

    fn build(config: {{Type}}Config, _ctx: &Context) -> Result<Self> {
        Ok(Self { epsilon: config.epsilon, fitted: None })
    }
}

impl Preprocessor for {{Type}} {
    fn fit(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
        let x = features.to_kind(Kind::Float);
        let min = x.amin(0, true);
        let range = x.amax(0, true) - &min + self.epsilon;
        self.fitted = Some((min, range));
        Ok(())
    }

    fn transform(&self, features: &Tensor) -> Result<Tensor> {
        let (min, range) = self.fitted.as_ref().ok_or_else(|| PluginError::runtime("transform before fit"))?;
        Ok((features.to_kind(Kind::Float) - min) / range)
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let (min, range) = self.fitted.as_ref().ok_or_else(|| PluginError::runtime("state before fit"))?;
        Ok(vec![("min".into(), min.shallow_clone()), ("range".into(), range.shallow_clone())])
    }

    fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<()> {
        let find = |name: &str| state.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone());
        match (find("min"), find("range")) {
            (Some(min), Some(range)) => {
                self.fitted = Some((min, range));
                Ok(())
            }
            _ => Err(PluginError::data("state needs `min` and `range`")),
        }
    }
}

gymnos_plugin_sdk::export_plugin!(preprocessor({{Type}}));

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
        harness::check_preprocessor::<super::{{Type}}>(json!({}), &x, &y).unwrap();
    }
}
