//! The samples of a run in memory: features and targets ([`Examples`]), their reproducible
//! split into train, validation and test, and the batch ranges an epoch walks.

use anyhow::{bail, Result};
use gymnos_host::experiment::Split as SplitFractions;
use gymnos_plugin_api::rng::{derive_seed, SplitMix64};
use tch::{Device, Tensor};

/// Features and targets, samples along dim 0: a split, or a batch of one.
pub struct Examples {
    pub x: Tensor,
    pub y: Tensor,
}

impl Examples {
    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn select(&self, indices: &Tensor) -> Examples {
        Examples { x: self.x.index_select(0, indices), y: self.y.index_select(0, indices) }
    }

    pub fn narrow(&self, start: i64, len: i64) -> Examples {
        Examples { x: self.x.narrow(0, start, len), y: self.y.narrow(0, start, len) }
    }

    pub fn to_device(&self, device: Device) -> Examples {
        Examples { x: self.x.to_device(device), y: self.y.to_device(device) }
    }

    /// Bytes the features and targets take.
    pub fn bytes(&self) -> i64 {
        let size = |t: &Tensor| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        size(&self.x) + size(&self.y)
    }

    pub fn shallow_clone(&self) -> Examples {
        Examples { x: self.x.shallow_clone(), y: self.y.shallow_clone() }
    }
}

pub struct Splits {
    pub train: Examples,
    pub val: Examples,
    pub test: Examples,
}

/// A permutation of `0..n` (Fisher-Yates over the shared SplitMix64 stream).
pub fn permutation(n: usize, seed: u64) -> Vec<i64> {
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<i64> = (0..n as i64).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order
}

fn take(all: &Examples, order: &[i64]) -> Examples {
    all.select(&Tensor::from_slice(order))
}

/// Splits reproducibly from `seed`. When the data set ships a test split, `fractions.test` is
/// not used and train/val share `all` in proportion.
pub fn split(
    all: Examples,
    shipped_test: Option<Examples>,
    fractions: &SplitFractions,
    shuffle: bool,
    seed: u64,
) -> Result<Splits> {
    let n = all.len() as usize;
    let order: Vec<i64> =
        if shuffle { permutation(n, derive_seed(seed, "split", &[])) } else { (0..n as i64).collect() };
    let (n_train, n_val) = match &shipped_test {
        Some(_) => {
            let share = fractions.val / (fractions.train + fractions.val);
            let n_val = (n as f64 * share).round() as usize;
            (n - n_val, n_val)
        }
        None => {
            let n_train = (n as f64 * fractions.train).round() as usize;
            let n_val = ((n as f64 * fractions.val).round() as usize).min(n - n_train);
            (n_train, n_val)
        }
    };
    if n_train == 0 {
        bail!("dataset.split: the training split of {n} samples is empty");
    }
    let train = take(&all, &order[..n_train]);
    let val = take(&all, &order[n_train..n_train + n_val]);
    let test = match shipped_test {
        Some(test) => test,
        None => take(&all, &order[n_train + n_val..]),
    };
    Ok(Splits { train, val, test })
}

/// Index ranges `(start, len)` of the batches of one pass, at most `limit` of them. A trailing
/// batch of one sample is dropped in training (batch normalisation cannot train on it).
pub fn batch_ranges(n: i64, batch_size: i64, training: bool, limit: Option<u32>) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = (0..n).step_by(batch_size as usize).map(|s| (s, batch_size.min(n - s))).collect();
    if training && ranges.len() > 1 && ranges.last().is_some_and(|r| r.1 == 1) {
        ranges.pop();
    }
    if let Some(limit) = limit {
        ranges.truncate(limit as usize);
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn batch_ranges_cover_every_sample_drop_a_lone_trailing_sample_in_training_and_honour_the_limit() {
        assert_eq!(batch_ranges(10, 4, false, None), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(batch_ranges(9, 4, true, None), vec![(0, 4), (4, 4)]);
        assert_eq!(batch_ranges(9, 4, false, None), vec![(0, 4), (4, 4), (8, 1)]);
        assert_eq!(batch_ranges(1, 4, true, None), vec![(0, 1)]);
        assert_eq!(batch_ranges(10, 4, false, Some(2)), vec![(0, 4), (4, 4)]);
    }

    #[test]
    fn permutations_are_permutations_and_depend_on_the_seed() {
        let mut p = permutation(1000, 3);
        assert_ne!(p, permutation(1000, 4));
        assert_eq!(p, permutation(1000, 3));
        assert_ne!(p[..10], (0..10).collect::<Vec<i64>>()[..]);
        p.sort();
        assert_eq!(p, (0..1000).collect::<Vec<i64>>());
    }

    #[test]
    fn split_is_reproducible_and_uses_the_shipped_test_split() {
        let all = Examples {
            x: Tensor::arange(100, (Kind::Float, Device::Cpu)).view([100, 1]),
            y: Tensor::arange(100, (Kind::Int64, Device::Cpu)),
        };
        let fractions = SplitFractions { train: 0.7, val: 0.2, test: 0.1 };
        let a = split(all.shallow_clone(), None, &fractions, true, 5).unwrap();
        let b = split(all.shallow_clone(), None, &fractions, true, 5).unwrap();
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (70, 20, 10));
        assert!(a.train.y.equal(&b.train.y) && a.test.y.equal(&b.test.y));
        let every: Tensor = Tensor::cat(&[&a.train.y, &a.val.y, &a.test.y], 0).sort(0, false).0;
        assert!(every.equal(&all.y));
        let shipped = Examples {
            x: Tensor::zeros([5, 1], (Kind::Float, Device::Cpu)),
            y: Tensor::zeros([5], (Kind::Int64, Device::Cpu)),
        };
        let c = split(all, Some(shipped), &fractions, false, 5).unwrap();
        assert_eq!((c.train.len(), c.val.len(), c.test.len()), (78, 22, 5));
    }
}
