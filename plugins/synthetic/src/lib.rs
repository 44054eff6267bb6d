//! `synthetic`: generated data of any size, for tests and benchmarks without disk. Exports the
//! component `synthetic`, an indexed data set (SDK 1.2) whose samples are never held in memory:
//! sample `i` of a part is a function of (`seed`, part, `i`) alone, so reads in any order and
//! grouping agree, and describing ten million samples costs nothing.
//!
//! Each sample draws from its own SplitMix64 stream (`gymnos_plugin_api::rng`), seeded with
//! `derive_seed(seed, "synthetic/<part>", &[])` mixed with `i`. Noise is approximately standard
//! normal: the sum of four 16-bit uniforms of one draw, scaled to unit variance.
//! - classification: the class is drawn uniformly; features are the class's prototype (a fixed
//!   standard normal vector per class, from the seed) plus `noise` times the sample's noise;
//! - regression: features are the sample's noise (unit variance); targets are a fixed random
//!   linear map of them (weights normal with variance 1 / features, so targets have unit
//!   variance) plus `noise` times more noise.
//!
//! Features are float32 `[n, ...shape]`; targets int64 class indices (`class_0`...) or float32
//! `[n, outputs]`. `read_inputs` reads a CSV file: one sample a line, its features flattened in
//! row-major order, comma-separated.
//!
//! Sizes are checked before anything is allocated: `samples` and `test_samples` are counts the
//! host handles as signed 64-bit numbers (at most 2^53, the largest a JSON number holds exactly;
//! together within `i64`), `shape`'s product is computed with checked arithmetic, and a batch
//! that would not fit in memory is refused before its buffer is made.

use std::path::Path;

use gymnos_plugin_sdk::{
    api::rng::{derive_seed, SplitMix64},
    memory, shape,
    tch::Tensor,
    Config, Configurable, Context, DataPart, DatasetInfo, Description, IndexedDataset, PluginError, Result, Rng,
};

/// Most values the prototypes (classes × features) or the weights (features × outputs) may hold.
const MAX_PARAMETERS: u64 = 1 << 26;
/// Most features per sample.
const MAX_FEATURES: u64 = 1 << 24;
/// Most samples of a part: the largest integer a JSON number (a double) holds exactly.
const MAX_SAMPLES: u64 = 1 << 53;

/// The configuration of `synthetic`.
#[derive(Config)]
pub struct SyntheticConfig {
    /// Task: classification (features scattered around one prototype per class) or regression
    /// (targets a fixed linear map of the features)
    #[config(default = "classification", one_of = ["classification", "regression"])]
    pub task: String,
    /// Number of samples the host splits (generated when read, never held: up to 2^53)
    #[config(default = 10000, min = 1, max = MAX_SAMPLES)]
    pub samples: u64,
    /// Number of samples of a shipped test split (0: none; up to 2^53)
    #[config(default = 0, min = 0, max = MAX_SAMPLES)]
    pub test_samples: u64,
    /// Shape of one sample's features
    #[config(default = [32], min = 1, non_empty, max_len = 8)]
    pub shape: Vec<i64>,
    /// Number of classes (classification)
    #[config(default = 10, min = 2)]
    pub classes: i64,
    /// Number of target values per sample (regression)
    #[config(default = 1, min = 1)]
    pub outputs: i64,
    /// Standard deviation of the noise: around the class prototypes (classification), or added
    /// to the targets (regression)
    #[config(default = 0.5, min = 0)]
    pub noise: f64,
    /// Seed of the generated data
    #[config(default = 0, min = 0)]
    pub seed: u64,
}

pub struct Synthetic {
    regression: bool,
    len: u64,
    test_len: u64,
    shape: Vec<i64>,
    /// Features per sample.
    numel: usize,
    classes: i64,
    outputs: i64,
    noise: f32,
    /// Classification: `[classes, numel]` prototypes; regression: `[numel, outputs]` weights.
    params: Vec<f32>,
    /// Base seeds of the two parts' sample streams.
    streams: [u64; 2],
}

/// An approximately standard normal value from 64 random bits: the sum of four 16-bit
/// uniforms (Irwin-Hall), centred and scaled to unit variance.
#[inline]
fn gaussian(bits: u64) -> f32 {
    const SCALE: f32 = 1.732_050_8 / 65536.0; // sqrt(3): the sum of 4 uniforms has variance 1/3.
    let sum = (bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) + ((bits >> 32) & 0xFFFF) + (bits >> 48);
    (sum as f32 + 2.0 - 2.0 * 65536.0) * SCALE
}

impl Synthetic {
    fn part_len(&self, part: DataPart) -> Result<u64> {
        match part {
            DataPart::Samples => Ok(self.len),
            DataPart::Test if self.test_len > 0 => Ok(self.test_len),
            DataPart::Test => Err(PluginError::data("no test split (test_samples is 0)")),
        }
    }

    /// The random stream of sample `i` of a part.
    fn stream(&self, part: DataPart, i: u64) -> SplitMix64 {
        let base = self.streams[usize::from(part == DataPart::Test)];
        SplitMix64::new(derive_seed(base, "", &[i]))
    }

    fn batch_shape(&self, n: usize) -> Vec<i64> {
        std::iter::once(n as i64).chain(self.shape.iter().copied()).collect()
    }
}

impl Configurable for Synthetic {
    const NAME: &'static str = "synthetic";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Generated classification or regression data of any size, made when read";
    type Config = SyntheticConfig;

    fn build(config: SyntheticConfig, _ctx: &Context) -> Result<Self> {
        // The host counts samples as signed 64-bit numbers: a count beyond would wrap negative.
        for (key, count) in [("samples", config.samples), ("test_samples", config.test_samples)] {
            if count > MAX_SAMPLES {
                return Err(PluginError::config(format!(
                    "{key}: {count} is more than {MAX_SAMPLES} samples, the most a count may be (2^53, the largest \
                     integer a JSON number holds exactly)"
                )));
            }
        }
        if let Some(d) = config.shape.iter().find(|&&d| d < 1) {
            return Err(PluginError::config(format!(
                "shape: {:?} has a dimension of {d}; each must be >= 1",
                config.shape
            )));
        }
        let numel =
            shape::numel(&config.shape).ok().map(|n| n as u64).filter(|&n| n <= MAX_FEATURES).ok_or_else(|| {
                PluginError::config(format!("shape: {:?} has more than {MAX_FEATURES} features", config.shape))
            })?;
        let regression = config.task == "regression";
        let (rows, cols, what) = match regression {
            false => (config.classes as u64, numel, "classes × features (the class prototypes)"),
            true => (numel, config.outputs as u64, "features × outputs (the weights)"),
        };
        if rows.saturating_mul(cols) > MAX_PARAMETERS {
            return Err(PluginError::config(format!(
                "{what} is {rows} × {cols}, more than {MAX_PARAMETERS} values; use a smaller shape"
            )));
        }
        let mut rng = Rng::new(derive_seed(config.seed, "synthetic/parameters", &[]));
        let mut params = Vec::<f32>::try_from(rng.normal(&[rows as i64, cols as i64]).flatten(0, -1))
            .map_err(|e| PluginError::runtime(format!("parameters: {e}")))?;
        if regression {
            let scale = 1.0 / (numel as f32).sqrt();
            params.iter_mut().for_each(|w| *w *= scale);
        }
        Ok(Self {
            regression,
            len: config.samples,
            test_len: config.test_samples,
            shape: config.shape,
            numel: numel as usize,
            classes: config.classes,
            outputs: config.outputs,
            noise: config.noise as f32,
            params,
            streams: [
                derive_seed(config.seed, "synthetic/samples", &[]),
                derive_seed(config.seed, "synthetic/test", &[]),
            ],
        })
    }
}

impl IndexedDataset for Synthetic {
    fn describe(&self) -> Result<Description> {
        let info = match self.regression {
            false => DatasetInfo::classification(
                self.shape.clone(),
                (0..self.classes).map(|c| format!("class_{c}")).collect(),
            ),
            true => DatasetInfo::regression(self.shape.clone(), self.outputs),
        };
        Ok(Description {
            info,
            len: self.len,
            test_len: (self.test_len > 0).then_some(self.test_len),
            concurrent_reads: true,
        })
    }

    fn read(&self, part: DataPart, indices: &[u64]) -> Result<(Tensor, Tensor)> {
        let len = self.part_len(part)?;
        if let Some(&i) = indices.iter().find(|&&i| i >= len) {
            return Err(PluginError::data(format!("index {i} is out of range: {part:?} has {len} samples")));
        }
        let (n, d) = (indices.len(), self.numel);
        // Features, and targets as wide as the outputs (or one label).
        let batch = memory::bytes_of(&[n as u64, d as u64 + self.outputs.max(2) as u64], 4);
        if batch.is_none_or(|b| b > u128::from(memory::limit_bytes())) {
            memory::ensure_bytes_fit(&format!("a batch of {n} samples of shape {:?}", self.shape), batch)?;
        }
        let mut features = vec![0f32; n * d];
        if self.regression {
            let outputs = self.outputs as usize;
            let mut targets = vec![0f32; n * outputs];
            for ((&i, x), y) in indices.iter().zip(features.chunks_exact_mut(d)).zip(targets.chunks_exact_mut(outputs))
            {
                let mut rng = self.stream(part, i);
                x.iter_mut().for_each(|v| *v = gaussian(rng.next_u64()));
                // Row by row in f64, so that a sample's target does not depend on its batch.
                for (o, t) in y.iter_mut().enumerate() {
                    let dot: f64 = x
                        .iter()
                        .zip(self.params[o..].iter().step_by(outputs))
                        .map(|(&a, &w)| f64::from(a) * f64::from(w))
                        .sum();
                    *t = (dot + f64::from(self.noise * gaussian(rng.next_u64()))) as f32;
                }
            }
            let targets = Tensor::from_slice(&targets).view([n as i64, self.outputs]);
            return Ok((Tensor::from_slice(&features).view(self.batch_shape(n).as_slice()), targets));
        }
        let mut labels = vec![0i64; n];
        for ((&i, x), label) in indices.iter().zip(features.chunks_exact_mut(d)).zip(labels.iter_mut()) {
            let mut rng = self.stream(part, i);
            let class = rng.below(self.classes as u64) as usize;
            *label = class as i64;
            let prototype = &self.params[class * d..(class + 1) * d];
            for (v, &p) in x.iter_mut().zip(prototype) {
                *v = p + self.noise * gaussian(rng.next_u64());
            }
        }
        Ok((Tensor::from_slice(&features).view(self.batch_shape(n).as_slice()), Tensor::from_slice(&labels)))
    }

    /// A CSV file: one sample a line, its features flattened in row-major order.
    fn read_inputs(&self, path: &Path) -> Result<Tensor> {
        let text = std::fs::read_to_string(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
        let mut values = Vec::new();
        let mut rows = 0;
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let at = || format!("{} line {}", path.display(), i + 1);
            let row: Vec<f32> = line
                .split(',')
                .map(|c| c.trim().parse::<f32>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|_| PluginError::data(format!("{}: not comma-separated numbers", at())))?;
            if row.len() != self.numel {
                return Err(PluginError::data(format!(
                    "{}: {} values, expected {} (shape {:?})",
                    at(),
                    row.len(),
                    self.numel,
                    self.shape
                )));
            }
            values.extend(row);
            rows += 1;
        }
        if rows == 0 {
            return Err(PluginError::data(format!("{}: no samples", path.display())));
        }
        Ok(Tensor::from_slice(&values).view(self.batch_shape(rows).as_slice()))
    }
}

gymnos_plugin_sdk::export_plugin!(indexed_dataset(Synthetic));

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use gymnos_plugin_sdk::{
        harness,
        serde_json::{json, Value},
        tch::{Kind, Tensor},
        ConfigSchema, Configurable, Context, DataPart, IndexedDataset,
    };

    use super::{Synthetic, SyntheticConfig};

    fn dataset(config: Value) -> Synthetic {
        Synthetic::build(SyntheticConfig::from_json(config).unwrap(), &Context::standalone()).unwrap()
    }

    fn read(d: &Synthetic, part: DataPart, indices: &[u64]) -> (Tensor, Tensor) {
        d.read(part, indices).unwrap()
    }

    #[test]
    fn meets_the_indexed_dataset_contract_for_both_tasks() {
        let config = json!({ "samples": 50, "test_samples": 20, "shape": [2, 3], "classes": 4 });
        assert_eq!(harness::check_indexed_dataset::<Synthetic>(config).unwrap(), (50, 20));
        let config = json!({ "task": "regression", "samples": 30, "outputs": 3 });
        assert_eq!(harness::check_indexed_dataset::<Synthetic>(config).unwrap(), (30, 0));
        let err = harness::check_indexed_dataset::<Synthetic>(json!({ "task": "ranking", "classes": 1 })).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: classes: 1 is not >= 2; task: \"ranking\" is not one of classification, \
             regression"
        );
    }

    #[test]
    fn a_sample_is_the_same_whatever_batch_reads_it() {
        for task in ["classification", "regression"] {
            let d = dataset(json!({ "task": task, "samples": 1000, "test_samples": 10, "shape": [3, 4] }));
            let (x, y) = read(&d, DataPart::Samples, &[5, 999, 17, 5]);
            assert_eq!(x.size(), [4, 3, 4]);
            let (x1, y1) = read(&d, DataPart::Samples, &[17]);
            assert!(x1.equal(&x.narrow(0, 2, 1)) && y1.equal(&y.narrow(0, 2, 1)), "{task}");
            assert!(x.get(0).equal(&x.get(3)) && y.get(0).equal(&y.get(3)), "{task}");
            let again = dataset(json!({ "task": task, "samples": 1000, "test_samples": 10, "shape": [3, 4] }));
            assert!(read(&again, DataPart::Samples, &[999]).0.equal(&x.narrow(0, 1, 1)), "{task}: a fresh instance");
            let (test, _) = read(&d, DataPart::Test, &[5]);
            assert!(!test.equal(&x.narrow(0, 0, 1)), "{task}: the test split is other samples");
        }
    }

    #[test]
    fn ten_million_samples_describe_at_once_and_read_at_the_end() {
        let start = Instant::now();
        let d = dataset(json!({ "samples": 10_000_000u64, "shape": [784] }));
        let description = d.describe().unwrap();
        assert!(start.elapsed() < Duration::from_millis(100), "took {:?}", start.elapsed());
        assert_eq!((description.len, description.test_len), (10_000_000, None));
        let (x, y) = read(&d, DataPart::Samples, &[9_999_999, 0]);
        assert_eq!((x.size(), y.size()), (vec![2, 784], vec![2]));
        assert_eq!(
            d.read(DataPart::Samples, &[10_000_000]).err().unwrap().to_string(),
            "data error: index 10000000 is out of range: Samples has 10000000 samples"
        );
        assert_eq!(
            d.read(DataPart::Test, &[0]).err().unwrap().to_string(),
            "data error: no test split (test_samples is 0)"
        );

        // A batch of 128 samples of 784 features: the benchmarks read one per training step.
        let indices: Vec<u64> = (0..128).map(|i| i * 78_125).collect();
        let mut times: Vec<Duration> = (0..50)
            .map(|_| {
                let start = Instant::now();
                let _ = read(&d, DataPart::Samples, &indices);
                start.elapsed()
            })
            .collect();
        times.sort();
        eprintln!("a batch of 128×784: fastest {:?}, median {:?}", times[0], times[25]);
        // The fastest of 50: other tests share the cores.
        assert!(times[0] < Duration::from_millis(2), "fastest {:?}", times[0]);
    }

    #[test]
    fn seeds_give_other_data_and_labels_stay_within_the_classes() {
        let indices: Vec<u64> = (0..2000).collect();
        let a = read(&dataset(json!({ "samples": 2000, "classes": 7, "seed": 1 })), DataPart::Samples, &indices);
        let b = read(&dataset(json!({ "samples": 2000, "classes": 7, "seed": 2 })), DataPart::Samples, &indices);
        assert!(!a.0.equal(&b.0) && !a.1.equal(&b.1));
        for (_, y) in [&a, &b] {
            assert_eq!(y.kind(), Kind::Int64);
            let counts = y.bincount(None::<Tensor>, 0);
            assert_eq!(counts.size(), [7], "every class drawn, none beyond");
            assert!(counts.min().int64_value(&[]) > 200, "roughly balanced: {counts}");
        }
    }

    #[test]
    fn the_data_is_learnable() {
        // Classification: class means estimated on 3000 samples classify 1000 others.
        let d = dataset(json!({ "samples": 4000, "classes": 5, "shape": [16], "noise": 1.0, "seed": 3 }));
        let (x, y) = read(&d, DataPart::Samples, &(0..4000).collect::<Vec<_>>());
        let (train_x, train_y) = (x.narrow(0, 0, 3000), y.narrow(0, 0, 3000));
        let one_hot = train_y.one_hot(5).to_kind(Kind::Float);
        let means = one_hot.tr().matmul(&train_x) / one_hot.sum_dim_intlist(0, false, Kind::Float).unsqueeze(1);
        let differences = x.narrow(0, 3000, 1000).unsqueeze(1) - means.unsqueeze(0);
        let distances = differences.square().sum_dim_intlist(2, false, Kind::Float);
        let accuracy = distances
            .argmin(1, false)
            .eq_tensor(&y.narrow(0, 3000, 1000))
            .to_kind(Kind::Float)
            .mean(Kind::Float)
            .double_value(&[]);
        assert!(accuracy > 0.9, "accuracy {accuracy}");

        // Regression: least squares on 3000 samples explains most of the variance of 1000 others
        // (noise 0.5 on unit-variance targets: R² about 0.8).
        let d = dataset(json!({ "task": "regression", "samples": 4000, "shape": [8], "outputs": 2 }));
        let (x, y) = read(&d, DataPart::Samples, &(0..4000).collect::<Vec<_>>());
        assert_eq!((x.size(), y.size(), y.kind()), (vec![4000, 8], vec![4000, 2], Kind::Float));
        let (w, _, _, _) = x.narrow(0, 0, 3000).linalg_lstsq(&y.narrow(0, 0, 3000), None, "gelsd");
        let (test_x, test_y) = (x.narrow(0, 3000, 1000), y.narrow(0, 3000, 1000));
        let residual = (test_x.matmul(&w) - &test_y).square().mean(Kind::Float).double_value(&[]);
        let variance = test_y.var(false).double_value(&[]);
        let r2 = 1.0 - residual / variance;
        assert!((0.7..0.9).contains(&r2), "R² {r2}");
    }

    #[test]
    fn read_inputs_reads_a_csv_of_flattened_features() {
        let dir = tempfile::tempdir().unwrap();
        let d = dataset(json!({ "shape": [2, 2] }));
        let csv = dir.path().join("x.csv");
        std::fs::write(&csv, "1, 2, 3, 4\n\n0.5,0,0,-1\n").unwrap();
        let x = d.read_inputs(&csv).unwrap();
        assert_eq!(x.size(), [2, 2, 2]);
        assert_eq!(Vec::<f32>::try_from(x.flatten(0, -1)).unwrap(), [1.0, 2.0, 3.0, 4.0, 0.5, 0.0, 0.0, -1.0]);
        std::fs::write(&csv, "1,2,3\n").unwrap();
        assert_eq!(
            d.read_inputs(&csv).err().unwrap().to_string(),
            format!("data error: {} line 1: 3 values, expected 4 (shape [2, 2])", csv.display())
        );
        std::fs::write(&csv, "1,2,3,4\n1,2,x,4\n").unwrap();
        assert_eq!(
            d.read_inputs(&csv).err().unwrap().to_string(),
            format!("data error: {} line 2: not comma-separated numbers", csv.display())
        );
    }

    #[test]
    fn counts_beyond_what_the_host_counts_are_refused_naming_the_field() {
        let err = harness::check_indexed_dataset::<Synthetic>(json!({ "samples": u64::MAX })).unwrap_err();
        assert_eq!(err, "create: configuration error: samples: 18446744073709551615 is not <= 9007199254740992");
        let err = harness::check_indexed_dataset::<Synthetic>(json!({ "test_samples": 1u64 << 60 })).unwrap_err();
        assert_eq!(err, "create: configuration error: test_samples: 1152921504606846976 is not <= 9007199254740992");
        // Past the declared rules (a host that did not check them), the plugin refuses too.
        let mut config = SyntheticConfig::from_json(json!({})).unwrap();
        config.samples = u64::MAX;
        let err = Synthetic::build(config, &Context::standalone()).err().unwrap().to_string();
        assert_eq!(
            err,
            "configuration error: samples: 18446744073709551615 is more than 9007199254740992 samples, the most a \
             count may be (2^53, the largest integer a JSON number holds exactly)"
        );
        let d = dataset(json!({ "samples": 1u64 << 53 }));
        assert_eq!(d.describe().unwrap().len, 1 << 53);
        assert_eq!(read(&d, DataPart::Samples, &[(1 << 53) - 1]).0.size(), [1, 32]);
    }

    #[test]
    fn a_batch_larger_than_memory_is_refused_before_it_is_allocated() {
        let d = dataset(json!({ "samples": 10, "shape": [4096, 4096], "classes": 2 }));
        let err = d.read(DataPart::Samples, &vec![0; 1 << 22]).err().unwrap().to_string();
        assert!(
            err.starts_with(
                "configuration error: a batch of 4194304 samples of shape [4096, 4096]: needs 281.5 TB (281475010265088 \
                 bytes), and this machine has "
            ),
            "{err}"
        );
    }

    #[test]
    fn oversized_shapes_are_refused() {
        let config = SyntheticConfig::from_json(json!({ "shape": [100000, 1000], "classes": 10 })).unwrap();
        let err = Synthetic::build(config, &Context::standalone()).err().unwrap().to_string();
        assert_eq!(err, "configuration error: shape: [100000, 1000] has more than 16777216 features");
        let config = SyntheticConfig::from_json(json!({ "shape": [4294967296i64, 4294967296i64] })).unwrap();
        let err = Synthetic::build(config, &Context::standalone()).err().unwrap().to_string();
        assert_eq!(err, "configuration error: shape: [4294967296, 4294967296] has more than 16777216 features");
        let config = SyntheticConfig::from_json(json!({ "shape": [1000000], "classes": 100 })).unwrap();
        let err = Synthetic::build(config, &Context::standalone()).err().unwrap().to_string();
        assert_eq!(
            err,
            "configuration error: classes × features (the class prototypes) is 100 × 1000000, more than 67108864 \
             values; use a smaller shape"
        );
    }
}
