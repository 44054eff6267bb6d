//! The batches of a pass over a split, made off the training thread.
//!
//! Three paths, chosen per split:
//! - **device-resident**: with no batch transform (no augmentor) and an in-memory training
//!   split that fits in `device_cache_mib`, the split lives on the device and each batch is one
//!   `index_select` there;
//! - **slices**: an in-memory split walked in order (evaluation) is cut into slices on the
//!   training thread, which costs nothing;
//! - **background workers**: otherwise, `num_workers` threads gather batches from the
//!   [`BatchSource`] (for a streaming data set: read and preprocess them), apply the transform to
//!   each (seeded per batch) and pin them, `prefetch_batches` ahead of the model. Batch `i`
//!   always comes from worker `i % num_workers` and its seed depends only on the epoch and `i`,
//!   so the batches, and the run, do not depend on thread scheduling. Memory is bounded by the
//!   batches in flight, not by the size of the split.
//!
//! The loader knows nothing of plugins: the transform is any function from a batch and a seed to
//! a batch (the engine passes the augmentors, which are called once per batch, never per sample).

use std::sync::{
    mpsc::{sync_channel, Receiver},
    Arc,
};

use anyhow::{anyhow, Result};
use gymnos_plugin_api::rng::derive_seed;
use tch::{Device, Tensor};

use crate::data::{permutation, BatchRanges, BatchSource, Order, Samples, Shuffle};

/// What a worker applies to each batch it gathers: the batch and its seed in, the batch out.
pub trait BatchTransform: Sync {
    fn apply(&self, batch: Samples, seed: u64) -> Result<Samples>;
}

impl<F: Fn(Samples, u64) -> Result<Samples> + Sync> BatchTransform for F {
    fn apply(&self, batch: Samples, seed: u64) -> Result<Samples> {
        self(batch, seed)
    }
}

/// This process's part of every pass in a data-parallel run: rank `rank` of `size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: u32,
    pub size: u32,
}

impl Shard {
    /// This rank's contiguous slice of a global batch `(start, len)`: the ranks' slices differ in
    /// length by at most one sample and together are the batch.
    pub fn slice(self, (start, len): (i64, i64)) -> (i64, i64) {
        let (r, w) = (self.rank as i64, self.size as i64);
        let (from, to) = (len * r / w, len * (r + 1) / w);
        (start + from, to - from)
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
    /// At most this many batches per pass.
    pub limit: Option<u32>,
    /// In a data-parallel run, the rank's part: a slice of every training batch, every
    /// `size`-th evaluation batch.
    pub shard: Option<Shard>,
}

/// The seeds of the training batches' augmentation.
#[derive(Clone, Copy)]
struct AugmentSeeds {
    seed: u64,
    shard: Option<Shard>,
}

impl AugmentSeeds {
    /// Batch `i` of `epoch` (and, in a data-parallel run, the rank: each augments its own slice).
    fn of(self, epoch: u32, i: usize) -> u64 {
        match self.shard {
            None => derive_seed(self.seed, "augment", &[epoch as u64, i as u64]),
            Some(shard) => derive_seed(self.seed, "augment", &[epoch as u64, i as u64, shard.rank as u64]),
        }
    }
}

/// Makes the batches of each pass over one split.
pub struct Loader {
    source: Box<dyn BatchSource>,
    /// The split on the device, when it is kept there.
    resident: Option<Samples>,
    device: Device,
    settings: LoaderSettings,
    seed: u64,
}

/// This process's batches of a pass, as index ranges computed when asked: in training one per
/// global batch (its slice of it), in evaluation the whole batches it takes.
#[derive(Clone, Copy, Debug)]
pub struct PassRanges {
    global: BatchRanges,
    shard: Option<Shard>,
    training: bool,
    len: usize,
}

impl PassRanges {
    fn new(global: BatchRanges, shard: Option<Shard>, training: bool) -> Self {
        let len = match (shard, training) {
            (Some(shard), false) => {
                let (rank, size) = (shard.rank as usize, shard.size as usize);
                global.len().saturating_sub(rank).div_ceil(size)
            }
            _ => global.len(),
        };
        Self { global, shard, training, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Range `i` (< `len()`).
    pub fn get(&self, i: usize) -> (i64, i64) {
        match (self.shard, self.training) {
            (None, _) => self.global.get(i),
            (Some(shard), true) => shard.slice(self.global.get(i)),
            (Some(shard), false) => self.global.get(i * shard.size as usize + shard.rank as usize),
        }
    }
}

/// One pass's batches, in order, on the device; dropping it stops the workers.
pub enum EpochBatches {
    Resident { data: Samples, order: Tensor, ranges: PassRanges, next: usize },
    Slices { data: Samples, ranges: PassRanges, next: usize, device: Device },
    Workers { receivers: Vec<Receiver<Result<Samples>>>, next: usize, total: usize, device: Device },
}

impl Loader {
    pub fn new(
        source: Box<dyn BatchSource>,
        device: Device,
        transforming: bool,
        settings: LoaderSettings,
        seed: u64,
    ) -> Self {
        let resident = match source.in_memory() {
            Some(data) if !transforming && data.bytes() <= settings.device_cache_bytes => Some(data.to_device(device)),
            _ => None,
        };
        Self { source, resident, device, settings, seed }
    }

    pub fn is_device_resident(&self) -> bool {
        self.resident.is_some()
    }

    pub fn is_in_memory(&self) -> bool {
        self.source.in_memory().is_some()
    }

    pub fn num_samples(&self) -> i64 {
        self.source.len()
    }

    /// Training batches per epoch (global batches, in a data-parallel run).
    pub fn num_batches(&self) -> usize {
        self.ranges(true).len()
    }

    /// The global training batches of an epoch (each rank trains on a slice of each in a
    /// data-parallel run).
    pub fn global_batches(&self) -> BatchRanges {
        let global = BatchRanges::new(self.source.len(), self.settings.batch_size, true, self.settings.limit);
        match self.settings.shard {
            // Every rank trains on at least two samples of every batch (batch normalisation
            // cannot train on one): a trailing batch too small for that is dropped, as a lone
            // trailing sample is in one process.
            Some(shard) if global.len() > 1 && global.last().is_some_and(|r| r.1 < 2 * shard.size as i64) => {
                global.without_last()
            }
            _ => global,
        }
    }

    /// This process's ranges of a pass: in training one per global batch (its slice of it), in
    /// evaluation the whole batches it takes.
    fn ranges(&self, training: bool) -> PassRanges {
        let global = match training {
            true => self.global_batches(),
            false => BatchRanges::new(self.source.len(), self.settings.batch_size, false, self.settings.limit),
        };
        PassRanges::new(global, self.settings.shard, training)
    }

    fn augment_seeds(&self) -> AugmentSeeds {
        AugmentSeeds { seed: self.seed, shard: self.settings.shard }
    }

    /// Starts training epoch `epoch`: shuffles with a seed derived from it and, on the worker
    /// path, starts the threads in `scope`, which stop when the returned batches are dropped or
    /// a batch fails.
    pub fn epoch<'scope, 'env>(
        &'env self,
        epoch: u32,
        transform: Option<&'env dyn BatchTransform>,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> EpochBatches {
        self.epoch_from(epoch, 0, transform, scope)
    }

    /// [`Loader::epoch`] from batch `skip` on: the batches an epoch stopped in the middle (a
    /// preemption) still has to make, the same as they would have been.
    pub fn epoch_from<'scope, 'env>(
        &'env self,
        epoch: u32,
        skip: usize,
        transform: Option<&'env dyn BatchTransform>,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> EpochBatches {
        let seed = derive_seed(self.seed, "epoch", &[epoch as u64]);
        let ranges = self.ranges(true);
        // A streamed split is shuffled per index, holding no list of its (maybe billions of)
        // positions; a split in memory keeps the Fisher-Yates order of earlier releases.
        if !self.is_in_memory() {
            let order = Order::Shuffled(Shuffle::new(self.source.len() as u64, seed));
            return self.workers(order, ranges, skip, Some((epoch, transform)), scope);
        }
        let order = permutation(self.source.len() as usize, seed);
        if let Some(data) = &self.resident {
            let order = Tensor::from_slice(&order).to_device(self.device);
            return EpochBatches::Resident { data: data.shallow_clone(), order, ranges, next: skip };
        }
        self.workers(Order::Listed(Arc::new(order)), ranges, skip, Some((epoch, transform)), scope)
    }

    /// Starts a pass over the split in order, untransformed, every sample (up to the limit) in
    /// a batch (evaluation, and the preprocessors' fit on a streaming split).
    pub fn in_order<'scope, 'env>(&'env self, scope: &'scope std::thread::Scope<'scope, 'env>) -> EpochBatches {
        let ranges = self.ranges(false);
        if let Some(data) = self.source.in_memory() {
            return EpochBatches::Slices { data: data.shallow_clone(), ranges, next: 0, device: self.device };
        }
        self.workers(Order::Identity, ranges, 0, None, scope)
    }

    /// Starts the worker threads of one pass from batch `skip` on: batch `i` takes the samples
    /// at `order[ranges[i]]` and, in training, the transform seeded by the epoch and `i`.
    fn workers<'scope, 'env>(
        &'env self,
        order: Order,
        ranges: PassRanges,
        skip: usize,
        training: Option<(u32, Option<&'env dyn BatchTransform>)>,
        scope: &'scope std::thread::Scope<'scope, 'env>,
    ) -> EpochBatches {
        let workers = self.settings.workers.max(1);
        let total = ranges.len().saturating_sub(skip);
        let per_worker = (self.settings.prefetch / workers).max(1);
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(per_worker);
            receivers.push(rx);
            let source = self.source.fork();
            let order = order.clone();
            let (seeds, device) = (self.augment_seeds(), self.device);
            scope.spawn(move || {
                for i in (skip + w..ranges.len()).step_by(workers) {
                    let (start, len) = ranges.get(i);
                    let positions: Vec<i64> = (start..start + len).map(|j| order.at(j)).collect();
                    let batch = source.gather(&positions);
                    let result = match (batch, training) {
                        (Ok(batch), Some((epoch, Some(f)))) if !batch.is_empty() => f.apply(batch, seeds.of(epoch, i)),
                        (batch, _) => batch,
                    };
                    let result = result.map(|b| match device.is_cuda() {
                        true => Samples { x: b.x.pin_memory(device), y: b.y.pin_memory(device) },
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
    type Item = Result<Samples>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            EpochBatches::Resident { data, order, ranges, next } => {
                let (start, len) = (*next < ranges.len()).then(|| ranges.get(*next))?;
                *next += 1;
                Some(Ok(data.select(&order.narrow(0, start, len))))
            }
            EpochBatches::Slices { data, ranges, next, device } => {
                let (start, len) = (*next < ranges.len()).then(|| ranges.get(*next))?;
                *next += 1;
                Some(Ok(data.narrow(start, len).to_device(*device)))
            }
            EpochBatches::Workers { receivers, next, total, device } => {
                if *next >= *total {
                    return None;
                }
                let received = receivers[*next % receivers.len()].recv();
                *next += 1;
                Some(match received {
                    Ok(Ok(batch)) => Ok(Samples {
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

    fn samples(n: i64) -> Samples {
        Samples {
            x: Tensor::arange(n, (Kind::Float, Device::Cpu)).view([n, 1]),
            y: Tensor::arange(n, (Kind::Int64, Device::Cpu)),
        }
    }

    fn data(n: i64) -> Box<dyn BatchSource> {
        Box::new(samples(n))
    }

    /// The same samples, gathered as a streaming data set's are (no whole split in memory).
    struct Streamed(Samples);

    impl BatchSource for Streamed {
        fn len(&self) -> i64 {
            self.0.len()
        }
        fn gather(&self, positions: &[i64]) -> Result<Samples> {
            self.0.gather(positions)
        }
        fn in_memory(&self) -> Option<&Samples> {
            None
        }
        fn fork(&self) -> Box<dyn BatchSource> {
            Box::new(Streamed(self.0.shallow_clone()))
        }
    }

    fn settings(workers: usize) -> LoaderSettings {
        LoaderSettings { batch_size: 8, workers, prefetch: 4, device_cache_bytes: 0, limit: None, shard: None }
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

    fn mark_seed(b: Samples, seed: u64) -> Result<Samples> {
        Ok(Samples { x: &b.x * 0.0 + (seed % 1000) as f64, y: b.y })
    }

    #[test]
    fn batches_and_their_seeds_do_not_depend_on_the_number_of_workers() {
        let one = Loader::new(data(100), Device::Cpu, true, settings(1), 7);
        let four = Loader::new(data(100), Device::Cpu, true, settings(4), 7);
        let streamed = |workers| Loader::new(Box::new(Streamed(samples(100))), Device::Cpu, true, settings(workers), 7);
        assert!(!streamed(1).is_in_memory());
        let a: Vec<_> = run_epoch(&one, 3, &mark_seed).into_iter().map(Result::unwrap).collect();
        let b: Vec<_> = run_epoch(&four, 3, &mark_seed).into_iter().map(Result::unwrap).collect();
        assert_eq!(a, b);
        // A streamed split is shuffled per index: its own order, as independent of the workers.
        let c: Vec<_> = run_epoch(&streamed(3), 3, &mark_seed).into_iter().map(Result::unwrap).collect();
        let d: Vec<_> = run_epoch(&streamed(1), 3, &mark_seed).into_iter().map(Result::unwrap).collect();
        assert_eq!(c, d);
        assert_ne!(a, c);
        let mut streamed_every: Vec<i64> = c.iter().flat_map(|(y, _)| y.clone()).collect();
        streamed_every.sort();
        assert_eq!(streamed_every, (0..100).collect::<Vec<i64>>());
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
        let failing = |b: Samples, _seed: u64| {
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
        let batches: Vec<Samples> =
            std::thread::scope(|scope| loader.epoch(0, None, scope).map(Result::unwrap).collect());
        assert_eq!(batches.iter().map(Samples::len).collect::<Vec<_>>(), vec![8, 8]);
    }

    #[test]
    fn an_in_order_pass_gives_every_sample_in_order_in_memory_or_streamed() {
        let every = LoaderSettings { batch_size: 8, limit: None, ..settings(2) };
        for source in [data(21), Box::new(Streamed(samples(21))) as Box<dyn BatchSource>] {
            let loader = Loader::new(source, Device::Cpu, false, every, 7);
            let batches: Vec<Samples> =
                std::thread::scope(|scope| loader.in_order(scope).map(Result::unwrap).collect());
            assert_eq!(batches.iter().map(Samples::len).collect::<Vec<_>>(), vec![8, 8, 5]);
            let ys: Vec<i64> = batches.iter().flat_map(|b| Vec::<i64>::try_from(&b.y).unwrap()).collect();
            assert_eq!(ys, (0..21).collect::<Vec<i64>>());
        }
    }
}
