//! Splitting the data set, and the batch pipeline of the training loop.
//!
//! Two paths, chosen per run:
//! - **device-resident**: with no augmentor and a data set that fits in `device_cache_mib`, the
//!   training split lives on the device and each batch is one `index_select` there;
//! - **background workers**: otherwise, `num_workers` threads gather batches on the CPU, run
//!   the augmentors on them (seeded per batch) and pin them, `prefetch_batches` ahead of the
//!   model. Batch `i` always comes from worker `i % num_workers`, so the order, and the run,
//!   do not depend on thread scheduling.
//!
//! Augmentors are called once per batch, never per sample.

use std::sync::mpsc::{sync_channel, Receiver};

use anyhow::{bail, Result};
use gymnos_host::experiment::Split as SplitFractions;
use tch::{Device, Tensor};

use crate::{
    pipeline::Augmentors,
    seeds::{derive, permutation},
};

/// Features and targets of one split, samples along dim 0.
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

pub struct Splits {
    pub train: Samples,
    pub val: Samples,
    pub test: Samples,
}

fn take(all: &Samples, order: &[i64]) -> Samples {
    all.select(&Tensor::from_slice(order))
}

/// Splits reproducibly from `seed`. When the data set ships a test split, `fractions.test` is
/// not used and train/val share `all` in proportion.
pub fn split(all: Samples, shipped_test: Option<Samples>, fractions: &SplitFractions, shuffle: bool, seed: u64) -> Result<Splits> {
    let n = all.len() as usize;
    let order: Vec<i64> = if shuffle { permutation(n, derive(seed, "split", &[])) } else { (0..n as i64).collect() };
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

/// Index ranges of the batches of one epoch. A trailing batch of one sample is dropped in
/// training (batch normalisation cannot train on it).
pub fn batch_ranges(n: i64, batch_size: i64, training: bool) -> Vec<(i64, i64)> {
    let mut ranges: Vec<(i64, i64)> = (0..n).step_by(batch_size as usize).map(|s| (s, batch_size.min(n - s))).collect();
    if training && ranges.len() > 1 && ranges.last().is_some_and(|r| r.1 == 1) {
        ranges.pop();
    }
    ranges
}

/// How training batches are produced.
pub struct Loader {
    train: Samples,
    device: Device,
    resident: bool,
    batch_size: i64,
    workers: usize,
    prefetch: usize,
    seed: u64,
}

/// One epoch's batches, in order.
pub enum EpochBatches {
    Resident { data: Samples, order: Tensor, ranges: std::vec::IntoIter<(i64, i64)> },
    Workers { receivers: Vec<Receiver<Result<Samples>>>, next: usize, total: usize, device: Device },
}

impl Loader {
    pub fn new(train: Samples, device: Device, augmenting: bool, settings: &gymnos_host::experiment::Training, seed: u64) -> Self {
        let fits = train.bytes() <= settings.device_cache_mib as i64 * 1024 * 1024;
        let resident = !augmenting && fits;
        let train = if resident { train.to_device(device) } else { train };
        Self {
            train,
            device,
            resident,
            batch_size: settings.batch_size as i64,
            workers: settings.num_workers as usize,
            prefetch: settings.prefetch_batches as usize,
            seed,
        }
    }

    pub fn is_device_resident(&self) -> bool {
        self.resident
    }

    pub fn num_samples(&self) -> i64 {
        self.train.len()
    }

    pub fn num_batches(&self) -> usize {
        batch_ranges(self.train.len(), self.batch_size, true).len()
    }

    /// Starts epoch `epoch`: shuffles with a seed derived from it, and (on the worker path)
    /// starts the threads, which stop when the returned batches are dropped.
    pub fn epoch<'scope, 'env>(&'env self, epoch: u32, augmentors: &'env Augmentors, scope: &'scope std::thread::Scope<'scope, 'env>) -> EpochBatches {
        let order = permutation(self.train.len() as usize, derive(self.seed, "epoch", &[epoch as u64]));
        let ranges = batch_ranges(self.train.len(), self.batch_size, true);
        if self.resident {
            let order = Tensor::from_slice(&order).to_device(self.device);
            return EpochBatches::Resident { data: self.train.shallow_clone(), order, ranges: ranges.into_iter() };
        }
        // `num_workers: 0` still uses one thread: batches are always made off the training thread.
        let workers = self.workers.max(1);
        let total = ranges.len();
        let per_worker = (self.prefetch / workers).max(1);
        let order = std::sync::Arc::new(order);
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(per_worker);
            receivers.push(rx);
            let data = self.train.shallow_clone();
            let order = order.clone();
            let ranges = ranges.clone();
            let (seed, device) = (self.seed, self.device);
            let job = move || {
                for (i, &(start, len)) in ranges.iter().enumerate().skip(w).step_by(workers) {
                    let idx = Tensor::from_slice(&order[start as usize..(start + len) as usize]);
                    let augment_seed = derive(seed, "augment", &[epoch as u64, i as u64]);
                    let result = augmentors.apply(data.select(&idx), augment_seed).map(|b| match device.is_cuda() {
                        true => Samples { x: b.x.pin_memory(device), y: b.y.pin_memory(device) },
                        false => b,
                    });
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        return; // the epoch was abandoned, or this batch failed: stop
                    }
                }
            };
            scope.spawn(job);
        }
        EpochBatches::Workers { receivers, next: 0, total, device: self.device }
    }
}

impl Iterator for EpochBatches {
    type Item = Result<Samples>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            EpochBatches::Resident { data, order, ranges } => {
                let (start, len) = ranges.next()?;
                Some(Ok(data.select(&order.narrow(0, start, len))))
            }
            EpochBatches::Workers { receivers, next, total, device } => {
                if *next >= *total {
                    return None;
                }
                let n = receivers.len();
                let received = receivers[*next % n].recv();
                *next += 1;
                Some(match received {
                    Ok(Ok(batch)) => Ok(Samples {
                        x: batch.x.to_device_(*device, batch.x.kind(), true, false),
                        y: batch.y.to_device_(*device, batch.y.kind(), true, false),
                    }),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(anyhow::anyhow!("a data loader thread stopped without a batch")),
                })
            }
        }
    }
}

/// Sequential batches for evaluation, moved to `device` one at a time.
pub fn eval_batches(data: &Samples, batch_size: i64, device: Device) -> impl Iterator<Item = Samples> + '_ {
    batch_ranges(data.len(), batch_size, false).into_iter().map(move |(start, len)| Samples {
        x: data.x.narrow(0, start, len).to_device(device),
        y: data.y.narrow(0, start, len).to_device(device),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn batch_ranges_cover_every_sample_and_drop_a_lone_trailing_sample_in_training() {
        assert_eq!(batch_ranges(10, 4, false), vec![(0, 4), (4, 4), (8, 2)]);
        assert_eq!(batch_ranges(9, 4, true), vec![(0, 4), (4, 4)]);
        assert_eq!(batch_ranges(9, 4, false), vec![(0, 4), (4, 4), (8, 1)]);
        assert_eq!(batch_ranges(1, 4, true), vec![(0, 1)]);
    }

    #[test]
    fn split_is_reproducible_and_uses_the_shipped_test_split() {
        let all = Samples { x: Tensor::arange(100, (Kind::Float, Device::Cpu)).view([100, 1]), y: Tensor::arange(100, (Kind::Int64, Device::Cpu)) };
        let fractions = SplitFractions { train: 0.7, val: 0.2, test: 0.1 };
        let a = split(all.shallow_clone(), None, &fractions, true, 5).unwrap();
        let b = split(all.shallow_clone(), None, &fractions, true, 5).unwrap();
        assert_eq!((a.train.len(), a.val.len(), a.test.len()), (70, 20, 10));
        assert!(a.train.y.equal(&b.train.y) && a.test.y.equal(&b.test.y));
        let every: Tensor = Tensor::cat(&[&a.train.y, &a.val.y, &a.test.y], 0).sort(0, false).0;
        assert!(every.equal(&all.y));
        let shipped = Samples { x: Tensor::zeros([5, 1], (Kind::Float, Device::Cpu)), y: Tensor::zeros([5], (Kind::Int64, Device::Cpu)) };
        let c = split(all, Some(shipped), &fractions, false, 5).unwrap();
        assert_eq!((c.train.len(), c.val.len(), c.test.len()), (78, 22, 5));
    }
}
