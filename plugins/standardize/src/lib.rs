//! `standardize`: subtracts the training mean and divides by the training standard deviation.

use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    Config, Configurable, Context, PluginError, Preprocessor, Result,
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

pub struct Standardize {
    per_feature: bool,
    epsilon: f64,
    /// `(mean, std)`, shaped to broadcast over `[n, ...features]`; `None` until fitted.
    fitted: Option<(Tensor, Tensor)>,
}

impl Configurable for Standardize {
    const NAME: &'static str = "standardize";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Scales features to zero mean and unit variance, fitted on the training split";
    type Config = StandardizeConfig;

    fn build(config: StandardizeConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self { per_feature: config.per_feature, epsilon: config.epsilon, fitted: None })
    }
}

impl Preprocessor for Standardize {
    fn fit(&mut self, features: &Tensor, _targets: &Tensor) -> Result<()> {
        let x = features.to_kind(Kind::Double);
        if x.size().first().copied().unwrap_or(0) < 2 {
            return Err(PluginError::data("standardize needs at least 2 training samples"));
        }
        let (mean, std) = if self.per_feature {
            (x.mean_dim(0, true, Kind::Double), x.std_dim(0, false, true))
        } else {
            (x.mean(Kind::Double).reshape([1]), x.std(false).reshape([1]))
        };
        self.fitted = Some((mean.to_kind(Kind::Float), (std + self.epsilon).to_kind(Kind::Float)));
        Ok(())
    }

    fn transform(&self, features: &Tensor) -> Result<Tensor> {
        let (mean, std) =
            self.fitted.as_ref().ok_or_else(|| PluginError::runtime("standardize: transform before fit"))?;
        Ok((features.to_kind(Kind::Float) - mean) / std)
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let (mean, std) = self.fitted.as_ref().ok_or_else(|| PluginError::runtime("standardize: state before fit"))?;
        Ok(vec![("mean".into(), mean.shallow_clone()), ("std".into(), std.shallow_clone())])
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
                self.fitted = Some((m, s));
                Ok(())
            }
            _ => Err(PluginError::data("standardize: state needs `mean` and `std`")),
        }
    }
}

gymnos_plugin_sdk::export_plugin!(preprocessor(Standardize));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::json,
        tch::{Kind, Tensor},
        Rng,
    };

    #[test]
    fn meets_the_preprocessor_contract_and_standardizes() {
        let x = Rng::new(1).normal(&[64, 5]) * 3.0 + 2.0;
        let y = Tensor::zeros([64], (Kind::Int64, gymnos_plugin_sdk::tch::Device::Cpu));
        harness::check_preprocessor::<super::Standardize>(json!({}), &x, &y).unwrap();
        harness::check_preprocessor::<super::Standardize>(json!({ "per_feature": true }), &x, &y).unwrap();
    }
}
