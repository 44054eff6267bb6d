//! `{{name}}`: a gymnos dataset plugin. The example generates labelled clusters ("blobs");
//! replace `load` with the reading of your data.

use std::path::Path;

use gymnos_plugin_sdk::{
    api::abi_stable::std_types::RVec,
    key,
    tch::{Kind, Tensor},
    Component, Config, ConfigType, Context, Dataset, DatasetInfo, Loaded, PluginError, Result, Rng, Task,
};

pub struct {{Type}} {
    samples: i64,
    features: i64,
    classes: i64,
    spread: f64,
    seed: u64,
}

impl Component for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Labelled Gaussian clusters, one per class";

    fn config_keys() -> Vec<gymnos_plugin_sdk::api::ConfigKey> {
        vec![
            key("samples", ConfigType::Integer, 600, "Number of samples"),
            key("features", ConfigType::Integer, 4, "Features per sample"),
            key("classes", ConfigType::Integer, 3, "Number of classes (clusters)"),
            key("spread", ConfigType::Number, 0.5, "Standard deviation of each cluster"),
            key("seed", ConfigType::Integer, 0, "Seed of the generated data"),
        ]
    }

    fn create(config: &Config, _ctx: &Context) -> Result<Self> {
        let this = Self {
            samples: config.get("samples")?,
            features: config.get("features")?,
            classes: config.get("classes")?,
            spread: config.get("spread")?,
            seed: config.get("seed")?,
        };
        if this.samples < this.classes || this.features < 1 || this.classes < 2 {
            return Err(PluginError::config("need features >= 1, classes >= 2 and at least one sample per class"));
        }
        Ok(this)
    }
}

impl Dataset for {{Type}} {
    fn load(&mut self) -> Result<Loaded> {
        let mut rng = Rng::new(self.seed);
        let centers = rng.normal(&[self.classes, self.features]) * 3.0;
        let labels: Vec<i64> = (0..self.samples).map(|i| i % self.classes).collect();
        let targets = Tensor::from_slice(&labels);
        let features = centers.index_select(0, &targets) + rng.normal(&[self.samples, self.features]) * self.spread;
        Ok(Loaded {
            info: DatasetInfo {
                task: Task::Classification,
                feature_shape: RVec::from(vec![self.features]),
                num_outputs: self.classes,
                class_names: (0..self.classes).map(|c| format!("cluster_{c}").into()).collect(),
            },
            features: features.to_kind(Kind::Float),
            targets,
            test: None,
        })
    }

    /// New samples: a CSV file of `features` numbers per line.
    fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        let text = std::fs::read_to_string(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
        let mut values = Vec::new();
        for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let row: Vec<f32> = line.split(',').map(|c| c.trim().parse::<f32>()).collect::<std::result::Result<_, _>>()
                .map_err(|_| PluginError::data(format!("{} line {}: not numbers", path.display(), i + 1)))?;
            if row.len() as i64 != self.features {
                return Err(PluginError::data(format!("{} line {}: {} values, expected {}", path.display(), i + 1, row.len(), self.features)));
            }
            values.extend(row);
        }
        Ok(Tensor::from_slice(&values).view([-1, self.features]))
    }
}

gymnos_plugin_sdk::export_plugin!(dataset({{Type}}));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    #[test]
    fn meets_the_dataset_contract() {
        assert_eq!(harness::check_dataset::<super::{{Type}}>(json!({ "samples": 90 })).unwrap(), (90, 0));
    }
}
