//! The augmentors, in order; shared by the loader threads, which call them once per training
//! batch (never per sample).

use anyhow::{anyhow, Result};
use gymnos_host::experiment::ResolvedPlugin;
use gymnos_plugin_api::{rng::derive_seed, AugmentorBox, Task};
use gymnos_plugin_sdk::contract;

use super::{call, from_abi, named, to_abi};
use crate::{data::Samples, loader::BatchTransform};

pub struct Augmentors {
    list: Vec<(ResolvedPlugin, AugmentorBox)>,
    task: Task,
    num_outputs: i64,
}

impl Augmentors {
    pub(super) fn new(list: Vec<(ResolvedPlugin, AugmentorBox)>, task: Task, num_outputs: i64) -> Self {
        Self { list, task, num_outputs }
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// `augmentor 'mixup@1.0.0' (data_augmentors[0]), ...`, for messages.
    pub fn labels(&self) -> String {
        self.list.iter().map(|(plugin, _)| named(plugin)).collect::<Vec<_>>().join(", ")
    }

    /// What the loader applies to each training batch; none without augmentors.
    pub fn as_transform(&self) -> Option<&dyn BatchTransform> {
        (!self.is_empty()).then_some(self as &dyn BatchTransform)
    }
}

impl BatchTransform for Augmentors {
    /// Applies every augmentor to one batch, each with its own seed derived from `seed`.
    fn apply(&self, batch: Samples, seed: u64) -> Result<Samples> {
        let mut current = batch;
        for (i, (plugin, a)) in self.list.iter().enumerate() {
            let n = current.len();
            let out =
                call(plugin, "augment", a.augment(to_abi(&current), derive_seed(seed, "augmentor", &[i as u64])))?;
            current = from_abi(out);
            contract::check_augmented(self.task, self.num_outputs, n, &current.x, &current.y)
                .map_err(|e| anyhow!("{} augment {e}", named(plugin)))?;
        }
        Ok(current)
    }
}
