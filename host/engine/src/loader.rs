//! The training batches of an epoch, made off the training thread.
//!
//! Two paths, chosen per run:
//! - **device-resident**: with no batch transform (no augmentor) and a training split that fits
//!   in `device_cache_mib`, the split lives on the device and each batch is one `index_select`
//!   there;
//! - **background workers**: otherwise, `num_workers` threads gather batches on the CPU, apply
//!   the transform to each (seeded per batch) and pin them, `prefetch_batches` ahead of the
//!   model. Batch `i` always comes from worker `i % num_workers` and its seed depends only on
//!   the epoch and `i`, so the batches, and the run, do not depend on thread scheduling.
//!
//! The loader knows nothing of plugins: the transform is any function from a batch and a seed to
//! a batch (the engine passes the augmentors, which are called once per batch, never per sample).

use std::sync::mpsc::{sync_channel, Receiver};

use anyhow::{anyhow, Result};
use gymnos_plugin_api::rng::derive_seed;
use tch::{Device, Tensor};

use crate::data::{batch_ranges, permutation, Examples};

/// What a worker applies to each batch it gathers: the batch and its seed in, the batch out.
pub trait BatchTransform: Sync {
    fn apply(&self, batch: Examples, seed: u64) -> Result<Examples>;
}

impl<F: Fn(Examples, u64) -> Result<Examples> + Sync> BatchTransform for F {
    fn apply(&self, batch: Examples, seed: u64) -> Result<Examples> {
        self(batch, seed)
    }
}

/// How batches are made.
#[derive(Clone, Copy, Debug)]
pub struct LoaderSettings {
    pub batch_size: i64,
    /// Worker threads; 0 still uses one (batches are never made on the training thread).
    pub workers: usize,
    /// Batches made ahead of the model, over all workers.
    pub prefetch: usize,
    /// A training split up to this size is kept on the device when nothing transforms it.
    pub device_cache_bytes: i64,
    /// At most this many batches per epoch.
    pub limit: Option<u32>,
}

/// Makes the training batches of each epoch.
pub struct Loader {
    train: Examples,
    device: Device,
    resident: bool,
    settings: LoaderSettings,
    seed: u64,
}

/// One epoch's batches, in order; dropping it stops the workers.
pub enum EpochBatches {
    Resident { data: Examples, order: Tensor, ranges: std::vec::IntoIter<(i64, i64)> },
    Workers { receivers: Vec<Receiver<Result<Examples>>>, next: usize, total: usize, device: Device },
}

impl Loader {
    pub fn new(train: Examples, device: Device, transforming: bool, settings: LoaderSettings, seed: u64) -> Self {
        let resident = !transforming && train.bytes() <= settings.device_cache_bytes;
        let train = if resident { train.to_device(device) } else { train };
        Self { train, device, resident, settings, seed }
    }

    pub fn is_device_resident(&self) -> bool {
        self.resident
    }

    pub fn num_samples(&self) -> i64 {
        self.train.len()
    }

    pub fn num_batches(&self) -> usize {
        self.ranges().len()
    }

    fn ranges(&self) -> Vec<(i64, i64)> {
        batch_ranges(self.train.len(), self.settings.batch_size, true, self.settings.limit)
    }

    /// Starts epoch `epoch`: shuffles with a seed derived from it and, on the worker path,
    /// starts the threads in `scope`, which stop when the returned batches are dropped or a
    /// transform fails.
    pub fn epoch<'scope, 'env>(
        &'env self,
        epoch: u32,
        transform: Option<&'env dyn BatchTransform>,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> EpochBatches {
        let order = permutation(self.train.len() as usize, derive_seed(self.seed, "epoch", &[epoch as u64]));
        let ranges = self.ranges();
        if self.resident {
            let order = Tensor::from_slice(&order).to_device(self.device);
            return EpochBatches::Resident { data: self.train.shallow_clone(), order, ranges: ranges.into_iter() };
        }
        let workers = self.settings.workers.max(1);
        let total = ranges.len();
        let per_worker = (self.settings.prefetch / workers).max(1);
        let order = std::sync::Arc::new(order);
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(per_worker);
            receivers.push(rx);
            let data = self.train.shallow_clone();
            let order = order.clone();
            let ranges = ranges.clone();
            let (seed, device) = (self.seed, self.device);
            scope.spawn(move || {
                for (i, &(start, len)) in ranges.iter().enumerate().skip(w).step_by(workers) {
                    let batch = data.select(&Tensor::from_slice(&order[start as usize..(start + len) as usize]));
                    let result = match transform {
                        Some(f) => f.apply(batch, derive_seed(seed, "augment", &[epoch as u64, i as u64])),
                        None => Ok(batch),
                    };
                    let result = result.map(|b| match device.is_cuda() {
                        true => Examples { x: b.x.pin_memory(device), y: b.y.pin_memory(device) },
                        false => b,
                    });
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        return; // the epoch was abandoned, or this batch failed: stop
                    }
                }
            });
        }
        EpochBatches::Workers { receivers, next: 0, total, device: self.device }
    }
}

impl Iterator for EpochBatches {
    type Item = Result<Examples>;

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
                let received = receivers[*next % receivers.len()].recv();
                *next += 1;
                Some(match received {
                    Ok(Ok(batch)) => Ok(Examples {
                        x: batch.x.to_device_(*device, batch.x.kind(), true, false),
                        y: batch.y.to_device_(*device, batch.y.kind(), true, false),
                    }),
                    Ok(Err(e)) => {
                        *next = *total; // the epoch ends at its first failed batch
                        Err(e)
                    }
                    Err(_) => Err(anyhow!("a data loader thread stopped without a batch")),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn data(n: i64) -> Examples {
        Examples {
            x: Tensor::arange(n, (Kind::Float, Device::Cpu)).view([n, 1]),
            y: Tensor::arange(n, (Kind::Int64, Device::Cpu)),
        }
    }

    fn settings(workers: usize) -> LoaderSettings {
        LoaderSettings { batch_size: 8, workers, prefetch: 4, device_cache_bytes: 0, limit: None }
    }

    /// Each batch's targets, and the seed its transform got (added to the features).
    fn run_epoch(loader: &Loader, epoch: u32, transform: &dyn BatchTransform) -> Vec<Result<(Vec<i64>, f64)>> {
        std::thread::scope(|scope| {
            loader
                .epoch(epoch, Some(transform), scope)
                .map(|b| b.map(|b| (Vec::<i64>::try_from(&b.y).unwrap(), b.x.double_value(&[0, 0]))))
                .collect()
        })
    }

    fn mark_seed(b: Examples, seed: u64) -> Result<Examples> {
        Ok(Examples { x: &b.x * 0.0 + (seed % 1000) as f64, y: b.y })
    }

    #[test]
    fn batches_and_their_seeds_do_not_depend_on_the_number_of_workers() {
        let one = Loader::new(data(100), Device::Cpu, true, settings(1), 7);
        let four = Loader::new(data(100), Device::Cpu, true, settings(4), 7);
        let a: Vec<_> = run_epoch(&one, 3, &mark_seed).into_iter().map(Result::unwrap).collect();
        let b: Vec<_> = run_epoch(&four, 3, &mark_seed).into_iter().map(Result::unwrap).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 13);
        let mut every: Vec<i64> = a.iter().flat_map(|(y, _)| y.clone()).collect();
        every.sort();
        assert_eq!(every, (0..100).collect::<Vec<i64>>());
        let other_epoch: Vec<_> = run_epoch(&four, 4, &mark_seed).into_iter().map(Result::unwrap).collect();
        assert_ne!(a, other_epoch);
    }

    #[test]
    fn a_failing_transform_ends_the_epoch_with_its_error() {
        let loader = Loader::new(data(100), Device::Cpu, true, settings(3), 7);
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let failing = |b: Examples, _seed: u64| {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 2 {
                anyhow::bail!("bad batch")
            }
            Ok(b)
        };
        let results = run_epoch(&loader, 0, &failing);
        let first_error = results.iter().position(Result::is_err).expect("an error");
        assert_eq!(results.len(), first_error + 1, "nothing comes after the failed batch");
        assert_eq!(results[first_error].as_ref().unwrap_err().to_string(), "bad batch");
    }

    #[test]
    fn a_small_untransformed_split_stays_on_the_device_and_the_limit_caps_an_epoch() {
        let resident = LoaderSettings { device_cache_bytes: 1 << 20, limit: Some(2), ..settings(2) };
        let loader = Loader::new(data(100), Device::Cpu, false, resident, 7);
        assert!(loader.is_device_resident());
        assert_eq!(loader.num_batches(), 2);
        let batches: Vec<Examples> =
            std::thread::scope(|scope| loader.epoch(0, None, scope).map(Result::unwrap).collect());
        assert_eq!(batches.iter().map(Examples::len).collect::<Vec<_>>(), vec![8, 8]);
    }
}
