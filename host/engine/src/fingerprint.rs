//! What a run's data was when it started, kept in every checkpoint, so that `resume` tells a
//! data set that changed since (other features, other classes, other samples, other values)
//! before anything is restored, instead of training on one thing and recording another.
//!
//! A data set in memory is hashed whole (its raw values, before preprocessing: about 0.05 s
//! for Fashion-MNIST's 60,000 images); one read by index, which may be far larger than memory,
//! by its description and the samples at a few fixed positions.

use anyhow::{bail, Result};
use gymnos_plugin_api::{DataPart, DatasetInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::Tensor;

use crate::data::Samples;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// Samples, and those of a test split the data set ships.
    pub samples: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_samples: Option<u64>,
    /// One sample's input shape, as the data set gives it.
    pub input_shape: Vec<i64>,
    pub num_outputs: i64,
    pub class_names: Vec<String>,
    /// sha256 of the values hashed (see the module's docs).
    pub values: String,
}

/// Feeds a tensor's shape, type and bytes to `hash`.
fn hash_tensor(hash: &mut Sha256, t: &Tensor) {
    let t = t.to_device(tch::Device::Cpu).contiguous();
    hash.update(format!("{:?}{:?}", t.size(), t.kind()).as_bytes());
    let bytes = t.numel() * t.kind().elt_size_in_bytes();
    if bytes > 0 {
        // SAFETY: `t` is a contiguous CPU tensor of `bytes` bytes, alive for the borrow.
        let data = unsafe { std::slice::from_raw_parts(t.data_ptr() as *const u8, bytes) };
        hash.update(data);
    }
}

fn hex(hash: Sha256) -> String {
    format!("{:x}", hash.finalize())
}

impl DataFingerprint {
    /// A data set loaded whole: every value hashed.
    pub fn of_loaded(info: &DatasetInfo, samples: &Samples, test: Option<&Samples>) -> Self {
        let mut hash = Sha256::new();
        for part in std::iter::once(samples).chain(test) {
            hash_tensor(&mut hash, &part.x);
            hash_tensor(&mut hash, &part.y);
        }
        Self::new(info, samples.len() as u64, test.map(|t| t.len() as u64), &samples.x, hex(hash))
    }

    /// A data set read by index: the samples at its first, middle and last positions (and its
    /// test split's), read as the data set gives them.
    pub fn of_indexed(
        info: &DatasetInfo,
        samples: u64,
        test_samples: Option<u64>,
        read: impl Fn(DataPart, &[u64]) -> Result<Samples>,
    ) -> Result<Self> {
        let mut hash = Sha256::new();
        let positions = |n: u64| {
            let mut p = vec![0, n / 2, n.saturating_sub(1)];
            p.dedup();
            p
        };
        let first = read(DataPart::Samples, &positions(samples))?;
        hash_tensor(&mut hash, &first.x);
        hash_tensor(&mut hash, &first.y);
        if let Some(n) = test_samples {
            let test = read(DataPart::Test, &positions(n))?;
            hash_tensor(&mut hash, &test.x);
            hash_tensor(&mut hash, &test.y);
        }
        Ok(Self::new(info, samples, test_samples, &first.x, hex(hash)))
    }

    fn new(info: &DatasetInfo, samples: u64, test_samples: Option<u64>, x: &Tensor, values: String) -> Self {
        DataFingerprint {
            samples,
            test_samples,
            input_shape: x.size().get(1..).unwrap_or_default().to_vec(),
            num_outputs: info.num_outputs,
            class_names: info.class_names.iter().map(|c| c.to_string()).collect(),
            values,
        }
    }

    /// Refuses to continue a run whose data was `recorded` on data that is now `self`, saying
    /// what changed. A checkpoint from before fingerprints (`None`) is trusted.
    pub fn check_unchanged(&self, recorded: Option<&DataFingerprint>) -> Result<()> {
        let Some(was) = recorded else { return Ok(()) };
        let changed = if was.input_shape != self.input_shape {
            format!("its samples' shape is {:?}, and was {:?}", self.input_shape, was.input_shape)
        } else if was.class_names != self.class_names {
            format!(
                "it has {} classes ({}), and had {} ({})",
                self.class_names.len(),
                self.class_names.join(", "),
                was.class_names.len(),
                was.class_names.join(", ")
            )
        } else if was.num_outputs != self.num_outputs {
            format!("it has {} outputs, and had {}", self.num_outputs, was.num_outputs)
        } else if (was.samples, was.test_samples) != (self.samples, self.test_samples) {
            let count = |n: u64, test: Option<u64>| match test {
                Some(t) => format!("{n} samples and a test split of {t}"),
                None => format!("{n} samples"),
            };
            format!(
                "it has {}, and had {}",
                count(self.samples, self.test_samples),
                count(was.samples, was.test_samples)
            )
        } else if was.values != self.values {
            "its values are not those the run started with".to_string()
        } else {
            return Ok(());
        };
        bail!(
            "the data set changed since this run started: {changed}. A resumed run continues on the data it started with: restore that data, or start a new run with `gymnos-host run`"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn info(classes: &[&str]) -> DatasetInfo {
        DatasetInfo::classification(vec![13], classes.iter().map(|c| c.to_string()).collect())
    }

    fn samples(rows: i64, features: i64, scale: f64) -> Samples {
        let x = Tensor::arange(rows * features, (Kind::Float, tch::Device::Cpu)).reshape([rows, features]) * scale;
        Samples { x, y: Tensor::zeros([rows], (Kind::Int64, tch::Device::Cpu)) }
    }

    #[test]
    fn every_change_of_the_data_is_named_and_the_same_data_passes() {
        let classes = ["a", "b", "c"];
        let was = DataFingerprint::of_loaded(&info(&classes), &samples(10, 13, 1.0), None);
        let same = DataFingerprint::of_loaded(&info(&classes), &samples(10, 13, 1.0), None);
        same.check_unchanged(Some(&was)).unwrap();
        same.check_unchanged(None).unwrap();
        let said = |now: DataFingerprint| now.check_unchanged(Some(&was)).unwrap_err().to_string();
        let wider = said(DataFingerprint::of_loaded(&info(&classes), &samples(10, 14, 1.0), None));
        assert!(
            wider.starts_with("the data set changed since this run started: its samples' shape is [14], and was [13]."),
            "{wider}"
        );
        let more = said(DataFingerprint::of_loaded(&info(&["a", "b", "c", "d"]), &samples(10, 13, 1.0), None));
        assert!(more.contains("it has 4 classes (a, b, c, d), and had 3 (a, b, c)"), "{more}");
        let longer = said(DataFingerprint::of_loaded(&info(&classes), &samples(12, 13, 1.0), None));
        assert!(longer.contains("it has 12 samples, and had 10"), "{longer}");
        let scaled = said(DataFingerprint::of_loaded(&info(&classes), &samples(10, 13, 3.0), None));
        assert!(scaled.contains("its values are not those the run started with"), "{scaled}");
    }
}
