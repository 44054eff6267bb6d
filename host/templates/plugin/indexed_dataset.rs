//! `{{name}}`: a gymnos dataset plugin read by index (plugin API 1.2). The example generates
//! labelled clusters ("blobs"), each sample from its index alone; replace `describe` and `read`
//! with the reading of your data.
//!
//! The host never holds the data set in memory: its loader threads ask `read` for batches of
//! samples by index, so the data set may be larger than memory. `describe` says how many
//! samples there are and what they look like; `read_inputs` reads new samples for `predict`.
//! (For small data, `plugins new --kind dataset` without `--streaming` gives a data set that
//! `load`s everything at once.)

use std::path::Path;

use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    Config, Configurable, Context, DataPart, DatasetInfo, Description, IndexedDataset, PluginError, Result, Rng,
};

/// The configuration: each field is a key of the experiment's `config` object, its doc comment
/// the key's description. The host checks the types, defaults and rules before anything runs.
/// A folder the data set reads would be a `PathBuf` with `#[config(exists = "dir")]`.
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
    /// One center per class: the part of the data set that is small enough to keep.
    centers: Vec<Vec<f32>>,
}

impl Configurable for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Labelled Gaussian clusters, one per class, read by index";
    type Config = {{Type}}Config;

    fn build(config: {{Type}}Config, _ctx: &Context) -> Result<Self> {
        // Each key's own rules are checked before `build`; rules between keys are checked here.
        if config.samples < config.classes {
            return Err(PluginError::config("need at least one sample per class"));
        }
        let centers = Rng::new(config.seed).normal(&[config.classes, config.features]) * 3.0;
        let centers = (0..config.classes)
            .map(|c| Vec::<f32>::try_from(&centers.get(c).to_kind(Kind::Float)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| PluginError::runtime(format!("centers: {e}")))?;
        Ok(Self { config, centers })
    }
}

impl IndexedDataset for {{Type}} {
    fn describe(&self) -> Result<Description> {
        let class_names = (0..self.config.classes).map(|c| format!("cluster_{c}")).collect();
        Ok(Description {
            info: DatasetInfo::classification(vec![self.config.features], class_names),
            len: self.config.samples as u64,
            test_len: None,
            // `read` only reads `self`: the host may call it from several threads at once.
            concurrent_reads: true,
        })
    }

    /// Sample `i` is its class's center plus noise drawn from a seed of its own, so any
    /// batch, in any order, on any thread, reads the same samples.
    fn read(&self, _part: DataPart, indices: &[u64]) -> Result<(Tensor, Tensor)> {
        let {{Type}}Config { samples, features, classes, spread, seed } = self.config;
        let mut values = Vec::with_capacity(indices.len() * features as usize);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= samples as u64 {
                return Err(PluginError::data(format!("sample {i} of {samples}")));
            }
            let class = (i % classes as u64) as usize;
            let noise = Rng::new(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).normal(&[features]) * spread;
            let noise = Vec::<f32>::try_from(&noise.to_kind(Kind::Float))
                .map_err(|e| PluginError::runtime(format!("noise: {e}")))?;
            values.extend(self.centers[class].iter().zip(noise).map(|(c, n)| c + n));
            labels.push(class as i64);
        }
        Ok((Tensor::from_slice(&values).view([-1, features]), Tensor::from_slice(&labels)))
    }

    /// New samples: a CSV file of `features` numbers per line.
    fn read_inputs(&self, path: &Path) -> Result<Tensor> {
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

gymnos_plugin_sdk::export_plugin!(indexed_dataset({{Type}}));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    #[test]
    fn meets_the_indexed_dataset_contract() {
        assert_eq!(harness::check_indexed_dataset::<super::{{Type}}>(json!({ "samples": 90 })).unwrap(), (90, 0));
        let err = harness::check_indexed_dataset::<super::{{Type}}>(json!({ "classes": 1 })).unwrap_err();
        assert_eq!(err, "create: configuration error: classes: 1 is not >= 2");
    }
}
