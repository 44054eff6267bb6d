//! `{{name}}`: a gymnos dataset plugin. The example generates labelled clusters ("blobs");
//! replace `load` with the reading of your data.
//!
//! The data set is held in memory: `load` returns every sample at once (and a fixed test split,
//! if the data ships with one); `read_inputs` reads new samples for `predict`.

use std::path::Path;

use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    Config, Configurable, Context, Dataset, DatasetInfo, LoadedData, PluginError, Result, Rng,
};

/// The configuration: each field is a key of the experiment's `config` object, its doc comment
/// the key's description. The host checks the types, defaults and rules before anything runs.
/// A file the data set reads would be a `PathBuf` with `#[config(exists = "file")]`.
#[derive(Config)]
pub struct {{Type}}Config {
    /// Number of samples
    #[config(default = 600, min = 1)]
    pub samples: i64,
    /// Features per sample
    #[config(default = 4, min = 1)]
    pub features: i64,
    /// Number of classes (clusters)
    #[config(default = 3, min = 2)]
    pub classes: i64,
    /// Standard deviation of each cluster
    #[config(default = 0.5, min = 0)]
    pub spread: f64,
    /// Seed of the generated data
    #[config(default = 0, min = 0)]
    pub seed: u64,
}

pub struct {{Type}} {
    config: {{Type}}Config,
}

impl Configurable for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Labelled Gaussian clusters, one per class";
    type Config = {{Type}}Config;

    fn build(config: {{Type}}Config, _ctx: &Context) -> Result<Self> {
        // Each key's own rules are checked before `build`; rules between keys are checked here.
        if config.samples < config.classes {
            return Err(PluginError::config("need at least one sample per class"));
        }
        Ok(Self { config })
    }
}

impl Dataset for {{Type}} {
    fn load(&mut self) -> Result<LoadedData> {
        let {{Type}}Config { samples, features, classes, spread, seed } = self.config;
        let mut rng = Rng::new(seed);
        let centers = rng.normal(&[classes, features]) * 3.0;
        let labels: Vec<i64> = (0..samples).map(|i| i % classes).collect();
        let targets = Tensor::from_slice(&labels);
        let features_tensor = centers.index_select(0, &targets) + rng.normal(&[samples, features]) * spread;
        let class_names = (0..classes).map(|c| format!("cluster_{c}")).collect();
        Ok(LoadedData {
            info: DatasetInfo::classification(vec![features], class_names),
            features: features_tensor.to_kind(Kind::Float),
            targets,
            test: None,
        })
    }

    /// New samples: a CSV file of `features` numbers per line.
    fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        let features = self.config.features;
        let text = std::fs::read_to_string(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
        let mut values = Vec::new();
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let at = || format!("{} line {}", path.display(), i + 1);
            let row: Vec<f32> = line
                .split(',')
                .map(|c| c.trim().parse::<f32>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| PluginError::data(format!("{}: not numbers", at())))?;
            if row.len() as i64 != features {
                return Err(PluginError::data(format!("{}: {} values, expected {features}", at(), row.len())));
            }
            values.extend(row);
        }
        Ok(Tensor::from_slice(&values).view([-1, features]))
    }
}

gymnos_plugin_sdk::export_plugin!(dataset({{Type}}));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    #[test]
    fn meets_the_dataset_contract() {
        assert_eq!(harness::check_dataset::<super::{{Type}}>(json!({ "samples": 90 })).unwrap(), (90, 0));
        let err = harness::check_dataset::<super::{{Type}}>(json!({ "classes": 1 })).unwrap_err();
        assert_eq!(err, "create: configuration error: classes: 1 is not >= 2");
    }
}
