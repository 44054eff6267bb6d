//! The samples of a run: features and targets ([`Samples`]), where a split's samples come from
//! ([`BatchSource`]: in memory, or read by index from a streaming data set), the reproducible
//! split into train, validation and test, and the batch ranges an epoch walks.

use anyhow::{bail, Result};
use gymnos_host::experiment::Split as SplitFractions;
use gymnos_plugin_api::rng::{derive_seed, mix64, SplitMix64};
use tch::{Device, Tensor};

/// Features and targets, samples along dim 0: a split, or a batch of one.
pub struct Samples {
    pub x: Tensor,
    pub y: Tensor,
}

impl Samples {
    pub fn len(&self) -> i64 {
        self.x.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn select(&self, indices: &Tensor) -> Samples {
        Samples { x: self.x.index_select(0, indices), y: self.y.index_select(0, indices) }
    }

    pub fn narrow(&self, start: i64, len: i64) -> Samples {
        Samples { x: self.x.narrow(0, start, len), y: self.y.narrow(0, start, len) }
    }

    pub fn to_device(&self, device: Device) -> Samples {
        Samples { x: self.x.to_device(device), y: self.y.to_device(device) }
    }

    /// Bytes the features and targets take.
    pub fn bytes(&self) -> i64 {
        let size = |t: &Tensor| t.numel() as i64 * t.kind().elt_size_in_bytes() as i64;
        size(&self.x) + size(&self.y)
    }

    pub fn shallow_clone(&self) -> Samples {
        Samples { x: self.x.shallow_clone(), y: self.y.shallow_clone() }
    }
}

/// A split's samples, gathered a batch at a time. Each loader thread gathers through its own
/// [`BatchSource::fork`] (tensors may move between threads but not be shared by them).
pub trait BatchSource: Send {
    /// Number of samples.
    fn len(&self) -> i64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples at `positions` (each below `len`), on the CPU, ready for the model. A
    /// streaming data set that skips unreadable samples may return fewer.
    fn gather(&self, positions: &[i64]) -> Result<Samples>;

    /// The whole split, when it is in memory.
    fn in_memory(&self) -> Option<&Samples>;

    /// Another handle on the same samples (no copy), for another thread.
    fn fork(&self) -> Box<dyn BatchSource>;
}

impl BatchSource for Samples {
    fn len(&self) -> i64 {
        Samples::len(self)
    }

    fn gather(&self, positions: &[i64]) -> Result<Samples> {
        Ok(self.select(&Tensor::from_slice(positions)))
    }

    fn in_memory(&self) -> Option<&Samples> {
        Some(self)
    }

    fn fork(&self) -> Box<dyn BatchSource> {
        Box::new(self.shallow_clone())
    }
}

/// The train, validation and test splits.
pub struct Splits {
    pub train: Box<dyn BatchSource>,
    pub val: Box<dyn BatchSource>,
    pub test: Box<dyn BatchSource>,
}

/// Which samples of a data set's `n` (indices) each split takes.
#[derive(Debug, PartialEq)]
pub struct SplitIndices {
    pub train: Vec<i64>,
    pub val: Vec<i64>,
    /// Empty when the data set ships its test split.
    pub test: Vec<i64>,
}

/// A seeded permutation of `0..n` computed one index at a time, in constant memory: a
/// four-round Feistel network over the smallest domain of an even number of bits that holds
/// `n`, cycle-walked back into `0..n` (fewer than four steps on average). Streaming data sets
/// split and shuffle with it, so that no list of their samples' indices is ever held.
#[derive(Clone, Copy, Debug)]
pub struct Shuffle {
    n: u64,
    half_bits: u32,
    keys: [u64; 4],
}

impl Shuffle {
    pub fn new(n: u64, seed: u64) -> Self {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let mut rng = SplitMix64::new(seed);
        let keys = [rng.next_u64(), rng.next_u64(), rng.next_u64(), rng.next_u64()];
        Self { n, half_bits: bits.div_ceil(2), keys }
    }

    /// The image of `i` (below `n`).
    pub fn at(&self, i: u64) -> u64 {
        debug_assert!(i < self.n);
        let mut x = i;
        loop {
            x = self.round_trip(x);
            if x < self.n {
                return x;
            }
        }
    }

    fn round_trip(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (x >> self.half_bits, x & mask);
        for key in self.keys {
            (left, right) = (right, left ^ (mix64(right ^ key) & mask));
        }
        (left << self.half_bits) | right
    }
}

/// The order in which a pass takes a split's samples: position `j` of the pass is sample
/// `order.at(j)` of the split.
#[derive(Clone, Debug)]
pub enum Order {
    Identity,
    /// A permutation held as a list (in-memory splits: Fisher-Yates, see [`permutation`]).
    Listed(std::sync::Arc<Vec<i64>>),
    /// A permutation computed per index (streaming splits).
    Shuffled(Shuffle),
}

impl Order {
    pub fn at(&self, j: i64) -> i64 {
        match self {
            Order::Identity => j,
            Order::Listed(order) => order[j as usize],
            Order::Shuffled(shuffle) => shuffle.at(j as u64) as i64,
        }
    }
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

/// How many of `n` samples go to training and to validation (the rest is the test split,
/// unless the data set ships one). When it does, `fractions.test` is not used and train/val
/// share the `n` samples in proportion.
pub fn split_sizes(n: usize, ships_test: bool, fractions: &SplitFractions) -> Result<(usize, usize)> {
    let (n_train, n_val) = match ships_test {
        true => {
            let share = fractions.val / (fractions.train + fractions.val);
            let n_val = (n as f64 * share).round() as usize;
            (n - n_val, n_val)
        }
        false => {
            let n_train = (n as f64 * fractions.train).round() as usize;
            let n_val = ((n as f64 * fractions.val).round() as usize).min(n - n_train);
            (n_train, n_val)
        }
    };
    if n_train == 0 {
        bail!("dataset.split: the training split of {n} samples is empty");
    }
    Ok((n_train, n_val))
}

/// Splits the indices `0..n` of a data set in memory reproducibly from `seed` (see
/// [`split_sizes`]). A streaming data set takes the same sizes over a [`Shuffle`].
pub fn split_indices(
    n: usize,
    ships_test: bool,
    fractions: &SplitFractions,
    shuffle: bool,
    seed: u64,
) -> Result<SplitIndices> {
    let order: Vec<i64> =
        if shuffle { permutation(n, derive_seed(seed, "split", &[])) } else { (0..n as i64).collect() };
    let (n_train, n_val) = split_sizes(n, ships_test, fractions)?;
    let test = if ships_test { Vec::new() } else { order[n_train + n_val..].to_vec() };
    Ok(SplitIndices { train: order[..n_train].to_vec(), val: order[n_train..n_train + n_val].to_vec(), test })
}

/// The splits of a data set in memory (see [`split_indices`]).
pub fn split(
    all: Samples,
    shipped_test: Option<Samples>,
    fractions: &SplitFractions,
    shuffle: bool,
    seed: u64,
) -> Result<(Samples, Samples, Samples)> {
    let indices = split_indices(all.len() as usize, shipped_test.is_some(), fractions, shuffle, seed)?;
    let take = |order: &[i64]| all.select(&Tensor::from_slice(order));
    let test = match shipped_test {
        Some(test) => test,
        None => take(&indices.test),
    };
    Ok((take(&indices.train), take(&indices.val), test))
}

/// Where `x` first holds a NaN or an infinite value, as (sample, flat feature index); `None`
/// when every value is finite (or `x` is not floating point).
pub fn first_non_finite(x: &Tensor) -> Option<(i64, i64)> {
    if !x.is_floating_point() || x.numel() == 0 || x.dim() == 0 {
        return None;
    }
    let bad = x.isfinite().logical_not();
    if bad.any().int64_value(&[]) == 0 {
        return None;
    }
    let flat = bad.reshape([x.size()[0], -1]);
    let at = flat.nonzero().get(0);
    Some((at.int64_value(&[0]), at.int64_value(&[1])))
}

/// The batches of one pass as index ranges `(start, len)`, at most `limit` of them, computed
/// when asked: a pass over billions of samples holds no list of them. A trailing batch of one
/// sample is dropped in training (batch normalisation cannot train on it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchRanges {
    n: i64,
    size: i64,
    count: usize,
}

impl BatchRanges {
    pub fn new(n: i64, batch_size: i64, training: bool, limit: Option<u32>) -> Self {
        let (n, size) = (n.max(0), batch_size.max(1));
        let mut ranges = Self { n, size, count: (n as u64).div_ceil(size as u64) as usize };
        if training && ranges.count > 1 && ranges.last().is_some_and(|r| r.1 == 1) {
            ranges.count -= 1;
        }
        if let Some(limit) = limit {
            ranges.count = ranges.count.min(limit as usize);
        }
        ranges
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Batch `i` (< `len()`).
    pub fn get(&self, i: usize) -> (i64, i64) {
        let start = i as i64 * self.size;
        (start, self.size.min(self.n - start))
    }

    pub fn last(&self) -> Option<(i64, i64)> {
        self.count.checked_sub(1).map(|i| self.get(i))
    }

    /// The same without its last batch.
    pub fn without_last(self) -> Self {
        Self { count: self.count.saturating_sub(1), ..self }
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        (0..self.count).map(|i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    proptest::proptest! {
        /// Computed when asked, the ranges are those a list of every batch would hold (the
        /// trailing lone sample dropped in training, then the limit), for any sizes.
        #[test]
        fn batch_ranges_are_the_listed_ranges(n in 0i64..5000, size in 1i64..600, training: bool, limit in proptest::option::of(0u32..40)) {
            let mut listed: Vec<(i64, i64)> = (0..n).step_by(size as usize).map(|s| (s, size.min(n - s))).collect();
            if training && listed.len() > 1 && listed.last().is_some_and(|r| r.1 == 1) {
                listed.pop();
            }
            if let Some(limit) = limit {
                listed.truncate(limit as usize);
            }
            let ranges = BatchRanges::new(n, size, training, limit);
            proptest::prop_assert_eq!(ranges.len(), listed.len());
            proptest::prop_assert_eq!(ranges.iter().collect::<Vec<_>>(), listed);
        }
    }

    #[test]
    fn the_first_non_finite_value_is_found_by_sample_and_feature() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, f32::NAN, 6.0]).reshape([2, 3]);
        assert_eq!(first_non_finite(&x), Some((1, 1)));
        assert_eq!(first_non_finite(&Tensor::from_slice(&[1.0f32, f32::INFINITY])), Some((1, 0)));
        assert_eq!(first_non_finite(&Tensor::ones([4, 2], (Kind::Float, Device::Cpu))), None);
        assert_eq!(first_non_finite(&Tensor::from_slice(&[1i64, 2])), None);
    }

    #[test]
    fn batch_ranges_cover_every_sample_drop_a_lone_trailing_sample_in_training_and_honour_the_limit() {
        let ranges = |n, b, training, limit| BatchRanges::new(n, b, training, limit).iter().collect::<Vec<_>>();
        assert_eq!(ranges(10, 4, false, None), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(ranges(9, 4, true, None), vec![(0, 4), (4, 4)]);
        assert_eq!(ranges(9, 4, false, None), vec![(0, 4), (4, 4), (8, 1)]);
        assert_eq!(ranges(1, 4, true, None), vec![(0, 1)]);
        assert_eq!(ranges(3, 1, true, None), vec![(0, 1), (1, 1)]);
        assert_eq!(ranges(10, 4, false, Some(2)), vec![(0, 4), (4, 4)]);
        assert_eq!(ranges(0, 4, true, None), vec![]);
        // A pass over a trillion samples, two batches of it: nothing of the rest is held.
        let huge = BatchRanges::new(1_000_000_000_000, 8, true, Some(2));
        assert_eq!((huge.len(), huge.get(1)), (2, (8, 8)));
        assert_eq!(
            BatchRanges::new(i64::MAX, 4_294_967_295, true, None).last(),
            Some((i64::MAX - i64::MAX % 4_294_967_295, i64::MAX % 4_294_967_295))
        );
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
    fn a_shuffle_is_a_seeded_permutation_of_any_size() {
        for n in [1u64, 2, 3, 5, 16, 17, 1000, 4097] {
            let shuffle = Shuffle::new(n, 9);
            let mut seen: Vec<u64> = (0..n).map(|i| shuffle.at(i)).collect();
            if n >= 16 {
                assert_ne!(seen, (0..n).collect::<Vec<u64>>(), "n = {n}: shuffled");
                let other: Vec<u64> = (0..n).map(|i| Shuffle::new(n, 10).at(i)).collect();
                assert_ne!(seen, other, "n = {n}: depends on the seed");
            }
            seen.sort();
            assert_eq!(seen, (0..n).collect::<Vec<u64>>(), "n = {n}: a permutation");
        }
        // Ten billion samples: any index, at once, in range.
        let huge = Shuffle::new(10_000_000_000, 1);
        assert!((0..1000).map(|i| huge.at(i * 9_999_991)).all(|x| x < 10_000_000_000));
    }

    #[test]
    fn split_is_reproducible_and_uses_the_shipped_test_split() {
        let all = Samples {
            x: Tensor::arange(100, (Kind::Float, Device::Cpu)).view([100, 1]),
            y: Tensor::arange(100, (Kind::Int64, Device::Cpu)),
        };
        let fractions = SplitFractions { train: 0.7, val: 0.2, test: 0.1 };
        let a = split(all.shallow_clone(), None, &fractions, true, 5).unwrap();
        let b = split(all.shallow_clone(), None, &fractions, true, 5).unwrap();
        assert_eq!((a.0.len(), a.1.len(), a.2.len()), (70, 20, 10));
        assert!(a.0.y.equal(&b.0.y) && a.2.y.equal(&b.2.y));
        // A streaming data set's splits take the same indices.
        let indices = split_indices(100, false, &fractions, true, 5).unwrap();
        assert_eq!(Vec::<i64>::try_from(&a.0.y).unwrap(), indices.train);
        assert_eq!(Vec::<i64>::try_from(&a.1.y).unwrap(), indices.val);
        let every: Tensor = Tensor::cat(&[&a.0.y, &a.1.y, &a.2.y], 0).sort(0, false).0;
        assert!(every.equal(&all.y));
        let shipped = Samples {
            x: Tensor::zeros([5, 1], (Kind::Float, Device::Cpu)),
            y: Tensor::zeros([5], (Kind::Int64, Device::Cpu)),
        };
        let c = split(all, Some(shipped), &fractions, false, 5).unwrap();
        assert_eq!((c.0.len(), c.1.len(), c.2.len()), (78, 22, 5));
    }
}
