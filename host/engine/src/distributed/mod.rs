//! Data-parallel training on libtorch's own c10d: every process (a rank) holds the whole model,
//! trains on its slice of every global batch, and takes the same optimizer step from gradients
//! averaged across the ranks. Nothing here is a transport of our own: c10d's TCPStore is where
//! the ranks meet and leave small messages (rank 0 serves it), and its process groups (Gloo on
//! the CPU, NCCL on CUDA) carry the collectives.
//!
//! [`DataParallel`] is a rank's handle on the others: the collectives the loop needs
//! (gradients, the agreement on how to go on, metric sums, broadcasts), the messages of the
//! start (`coordination`), and the diagnosis of a failed collective (which rank stopped, and
//! why). A run of one process has none: every path it takes is the single-process one.

pub(crate) mod c10d;
mod coordination;
mod gradients;

use std::{rc::Rc, time::Duration};

use anyhow::{anyhow, Result};
use gymnos_host::distributed::World;
use tch::{Device, Kind, Tensor};

pub use c10d::{nccl_built, Backend, C10dError, Reduce};
pub use coordination::{Coordinator, Fingerprint};
pub use gradients::GradientSync;

use crate::events::Flow;

/// How a data-parallel run was asked to communicate.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long a rank waits for the others, at the start and in any collective, before the
    /// run fails naming the ranks that did not answer.
    pub timeout: Duration,
    /// Gloo or NCCL; by default NCCL for CUDA and Gloo for the CPU.
    pub backend: Option<Backend>,
}

/// A rank's handle on a data-parallel run.
pub struct DataParallel {
    pub world: World,
    pub backend: Backend,
    group: c10d::ProcessGroup,
    pub coordinator: Coordinator,
    /// Where small values (sums, agreements) are reduced: NCCL takes CUDA tensors only.
    values_device: Device,
}

impl DataParallel {
    /// Brings up the process group for `device`, once every rank of `coordinator` is ready to
    /// (a rank missing here would keep the others waiting for the whole timeout).
    pub fn start(coordinator: Coordinator, device: Device, settings: &Settings) -> Result<Rc<DataParallel>> {
        let world = coordinator.world().clone();
        let backend = settings.backend.unwrap_or(if device.is_cuda() { Backend::Nccl } else { Backend::Gloo });
        if backend == Backend::Nccl && !device.is_cuda() {
            anyhow::bail!("--dist-backend nccl reduces CUDA tensors, and this run trains on the CPU (use gloo)");
        }
        let index = match device {
            Device::Cuda(i) => i,
            _ => 0,
        };
        let group = c10d::ProcessGroup::new(
            coordinator.store(),
            "gymnos/group/",
            backend,
            world.rank,
            world.world_size,
            settings.timeout,
            index,
        )
        .map_err(|e| anyhow!("rank {}: the {} process group could not be created: {e}", world.rank, backend.name()))?;
        tracing::info!("data-parallel: {world}, backend {}", backend.name());
        let values_device = if backend == Backend::Nccl { device } else { Device::Cpu };
        Ok(Rc::new(DataParallel { world, backend, group, coordinator, values_device }))
    }

    pub fn rank(&self) -> u32 {
        self.world.rank
    }

    pub fn size(&self) -> u32 {
        self.world.world_size
    }

    pub fn is_root(&self) -> bool {
        self.world.rank == 0
    }

    /// The error a failed collective becomes: c10d's message, then which rank stopped and why,
    /// as far as the store tells.
    fn failed(&self, what: &str, e: C10dError) -> anyhow::Error {
        let cause = e.0.lines().next().unwrap_or_default().to_string();
        anyhow!("rank {}: {what} failed: {cause}; {}", self.rank(), self.coordinator.diagnose())
    }

    /// Sums `t` (dense, on the device this group reduces on) over the ranks, in place.
    pub fn sum(&self, t: &Tensor) -> Result<()> {
        self.group.all_reduce(t, Reduce::Sum).map_err(|e| self.failed("a sum", e))
    }

    /// Sums `values` over the ranks (float64: exact for counts up to 2^53).
    pub fn sum_values(&self, values: &mut [f64]) -> Result<()> {
        let t = Tensor::from_slice(values).to_device(self.values_device);
        self.sum(&t)?;
        let summed = Vec::<f64>::try_from(&t.to_device(Device::Cpu)).map_err(|e| anyhow!("reading a sum: {e}"))?;
        values.copy_from_slice(&summed);
        Ok(())
    }

    /// Every rank's `t` (of one shape on every rank), in rank order, on `t`'s device.
    pub fn gather(&self, t: &Tensor) -> Result<Vec<Tensor>> {
        let staged = t.to_device(self.values_device).contiguous();
        let all = self.group.all_gather(&staged, self.size()).map_err(|e| self.failed("a gather", e))?;
        Ok(all.into_iter().map(|g| g.to_device(t.device())).collect())
    }

    /// Copies rank 0's `tensors` into every rank's, in place: one broadcast per dtype.
    pub fn broadcast_from_root(&self, tensors: &[Tensor]) -> Result<()> {
        let mut kinds: Vec<Kind> = tensors.iter().map(Tensor::kind).collect();
        kinds.sort_by_key(|k| format!("{k:?}"));
        kinds.dedup();
        for kind in kinds {
            let members: Vec<&Tensor> = tensors.iter().filter(|t| t.kind() == kind).collect();
            let flat: Vec<Tensor> = members.iter().map(|t| t.detach().reshape([-1])).collect();
            let bucket = Tensor::cat(&flat, 0);
            self.group.broadcast(&bucket, 0).map_err(|e| self.failed("a broadcast", e))?;
            if self.is_root() {
                continue;
            }
            let mut offset = 0;
            for t in members {
                let n = t.numel() as i64;
                let mut target = t.shallow_clone();
                tch::no_grad(|| target.copy_(&bucket.narrow(0, offset, n).view_as(t)));
                offset += n;
            }
        }
        Ok(())
    }

    /// What every rank answers, together, in one sum: the most severe flow, whether every
    /// rank's loss was finite (else the first rank whose was not), and the sum of `share`s
    /// (each rank's part of the global batch's mean loss).
    pub fn agree(&self, flow: Flow, finite: bool, share: f64) -> Result<Agreement> {
        let world = self.size() as usize;
        // [how many ranks ask to pause, to interrupt, to preempt; a non-finite flag per rank;
        // the loss shares]
        const FLOWS: [Flow; 3] = [Flow::Pause, Flow::Interrupt, Flow::Preempt];
        let mut values = vec![0.0; FLOWS.len() + world + 1];
        if let Some(i) = FLOWS.iter().position(|f| *f == flow) {
            values[i] = 1.0;
        }
        values[FLOWS.len() + self.rank() as usize] = if finite { 0.0 } else { 1.0 };
        values[FLOWS.len() + world] = if finite { share } else { 0.0 };
        self.sum_values(&mut values).map_err(|e| e.context("agreeing on how to go on"))?;
        let flow = FLOWS.iter().zip(&values).filter(|(_, n)| **n > 0.0).map(|(f, _)| *f).max().unwrap_or_default();
        let not_finite = (0..world).find(|&r| values[FLOWS.len() + r] > 0.0).map(|r| r as u32);
        Ok(Agreement { flow, not_finite, loss: values[FLOWS.len() + world] })
    }

    /// What a rank that fails before the training publishes, so the others name it.
    pub fn announce_failure(&self, line: &str) {
        self.coordinator.announce_failure(line);
    }
}

/// What the ranks agreed on after a step or an event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    pub flow: Flow,
    /// The first rank whose loss was NaN or infinite.
    pub not_finite: Option<u32>,
    /// The global batch's mean loss.
    pub loss: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use gymnos_host::distributed::Launcher;

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn world(rank: u32, size: u32, port: u16) -> World {
        World {
            rank,
            world_size: size,
            local_rank: rank,
            local_world_size: size,
            node_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            launcher: Launcher::Local,
        }
    }

    /// Runs `f` on `size` ranks, each a thread of this process with its own store connection
    /// and Gloo group, and returns their results in rank order.
    fn on_ranks<T: Send>(size: u32, f: impl Fn(Rc<DataParallel>) -> T + Sync) -> Vec<T> {
        let port = free_port();
        let settings = Settings { timeout: Duration::from_secs(20), backend: None };
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..size)
                .map(|rank| {
                    let (f, settings) = (&f, &settings);
                    scope.spawn(move || {
                        let coordinator = Coordinator::join(&world(rank, size, port), settings.timeout).unwrap();
                        f(DataParallel::start(coordinator, Device::Cpu, settings).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn gloo_sums_gathers_broadcasts_and_agrees_across_ranks() {
        let results = on_ranks(3, |dp| {
            let r = dp.rank() as f64;
            let mut values = [r, 1.0, r * r];
            dp.sum_values(&mut values).unwrap();
            let gathered: Vec<f64> =
                dp.gather(&Tensor::from_slice(&[r, -r])).unwrap().iter().map(|t| t.double_value(&[1])).collect();
            let shared = [Tensor::from_slice(&[r as f32, 7.0]), Tensor::from_slice(&[r as i64])];
            dp.broadcast_from_root(&shared).unwrap();
            let flow = if dp.rank() == 2 { Flow::Interrupt } else { Flow::Continue };
            let agreed = dp.agree(flow, dp.rank() != 1, 0.5).unwrap();
            (values, gathered, shared[0].double_value(&[0]), shared[1].int64_value(&[0]), agreed)
        });
        for (values, gathered, f, i, agreed) in results {
            assert_eq!(values, [3.0, 3.0, 5.0]);
            assert_eq!(gathered, [0.0, -1.0, -2.0]);
            assert_eq!((f, i), (0.0, 0), "rank 0's values everywhere");
            assert_eq!(agreed, Agreement { flow: Flow::Interrupt, not_finite: Some(1), loss: 1.0 });
        }
    }

    /// The gradients after `reduce` are those of the whole batch: each rank's share times its
    /// gradient, summed; a parameter only one rank reached gets a gradient everywhere.
    #[test]
    fn gradients_are_averaged_by_share_and_reach_every_rank() {
        let results = on_ranks(2, |dp| {
            let r = dp.rank() as f64;
            let a = Tensor::ones([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let b = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            let unused = Tensor::ones([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
            (&a * (r + 1.0)).sum(Kind::Float).backward();
            if dp.rank() == 1 {
                (&b * 4.0).sum(Kind::Float).backward();
            }
            let sync = GradientSync::new(vec![a.shallow_clone(), b.shallow_clone(), unused.shallow_clone()]);
            // Rank 0 has 1 sample of the batch, rank 1 has 3.
            sync.reduce(&dp, if dp.rank() == 0 { 0.25 } else { 0.75 }).unwrap();
            (
                Vec::<f32>::try_from(&a.grad()).unwrap(),
                Vec::<f32>::try_from(&b.grad().reshape([-1])).unwrap(),
                unused.grad().defined(),
            )
        });
        for (a, b, unused) in results {
            assert_eq!(a, [1.75; 3]); // 0.25 * 1 + 0.75 * 2
            assert_eq!(b, [3.0; 4]); // 0.75 * 4
            assert!(!unused, "no rank reached it: it stays without a gradient");
        }
    }

    #[test]
    fn a_question_answered_with_a_failure_names_the_rank_everywhere() {
        let results = on_ranks(2, |dp| {
            let mine =
                if dp.rank() == 1 { Err("the data set is missing".to_string()) } else { Ok("ready".to_string()) };
            dp.coordinator.ask("prepared", mine).map_err(|e| e.to_string())
        });
        assert!(results[0].as_ref().unwrap_err().starts_with("rank 1 ("), "{results:?}");
        assert!(results[0].as_ref().unwrap_err().ends_with("): the data set is missing"), "{results:?}");
        assert_eq!(results[1].as_ref().unwrap_err(), "the data set is missing");
    }

    /// Gloo's all-reduce between two ranks on this machine (loopback TCP, as two processes would
    /// use), for the gradients of the built-in ResNet and CNN (fashion-mnist-resnet.json,
    /// fashion-mnist-cnn.json) and a full 25 MiB bucket: the median time of 30 reductions after
    /// 5, the algorithm's bandwidth (bytes / time) and the bus bandwidth (2(n-1)/n of that, what
    /// a ring moves per rank). BENCHMARKS.md has the figures.
    /// `cargo test --release -p gymnos-engine --lib -- --ignored --nocapture allreduce_bandwidth`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn allreduce_bandwidth() {
        let sizes = [("resnet gradients", 174_970i64), ("cnn gradients", 421_738), ("a 25 MiB bucket", 25 << 18)];
        let timings = on_ranks(2, |dp| {
            sizes
                .iter()
                .map(|&(_, n)| {
                    let t = Tensor::ones([n], (Kind::Float, Device::Cpu));
                    for _ in 0..5 {
                        dp.sum(&t).unwrap();
                    }
                    let mut times: Vec<f64> = (0..30)
                        .map(|_| {
                            let started = std::time::Instant::now();
                            dp.sum(&t).unwrap();
                            started.elapsed().as_secs_f64()
                        })
                        .collect();
                    times.sort_by(f64::total_cmp);
                    times[times.len() / 2]
                })
                .collect::<Vec<f64>>()
        });
        for (i, (what, n)) in sizes.iter().enumerate() {
            let seconds = timings[0][i].max(timings[1][i]);
            let bytes = *n as f64 * 4.0;
            println!(
                "{what:>18}: {:6.2} MB in {:8.3} ms: {:6.2} GB/s algorithm, {:6.2} GB/s bus",
                bytes / 1e6,
                seconds * 1e3,
                bytes / seconds / 1e9,
                bytes / seconds / 1e9 // 2(n-1)/n = 1 for two ranks
            );
        }
    }
}
