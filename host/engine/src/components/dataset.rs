//! The data set, in the form its plugin gave: loaded whole (the 1.0 contract) or read by index
//! (API 1.2), and a split of a streaming data set read and preprocessed a batch at a time.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use anyhow::{anyhow, bail, Result};
use gymnos_host::experiment::ResolvedPlugin;
use gymnos_plugin_api::{
    abi_stable::std_types::{RSlice, RStr},
    DataPart, DatasetBox, DatasetInfo, IndexedDatasetBox, IndexedDescription, Task,
};
use gymnos_plugin_sdk::{contract, from_handle};
use tch::Tensor;

use super::{call, from_abi, named, Preprocessors};
use crate::data::{BatchSource, Order, Samples};

/// The run's data set, in the form its plugin gave.
pub enum DatasetForm {
    /// Loaded into memory at once (the 1.0 contract).
    Whole(Box<WholeDataset>),
    /// Read by index, a batch at a time (API 1.2).
    Indexed(Arc<IndexedDataset>),
}

impl DatasetForm {
    /// Features of new samples for `predict`.
    pub fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        match self {
            DatasetForm::Whole(d) => d.read_inputs(path),
            DatasetForm::Indexed(d) => d.read_inputs(path),
        }
    }
}

/// A data set that hands over every sample at once.
pub struct WholeDataset {
    pub plugin: ResolvedPlugin,
    inner: DatasetBox,
}

/// A data set loaded into memory: the ABI's `LoadedData`, as tensors.
pub struct LoadedData {
    pub info: DatasetInfo,
    pub samples: Samples,
    /// The test split the data set ships, if it ships one.
    pub test: Option<Samples>,
}

impl WholeDataset {
    pub(super) fn new(plugin: ResolvedPlugin, inner: DatasetBox) -> Self {
        Self { plugin, inner }
    }

    /// Loads every sample; checks the data set's contract once here, so that the loss never
    /// sees bad targets.
    pub fn load(&mut self) -> Result<LoadedData> {
        let loaded = call(&self.plugin, "load", self.inner.load())?;
        let data = LoadedData {
            info: loaded.info,
            samples: from_abi(loaded.samples),
            test: loaded.test.into_option().map(from_abi),
        };
        let parts = std::iter::once(("samples", &data.samples)).chain(data.test.iter().map(|t| ("test split", t)));
        for (name, part) in parts {
            contract::check_split(&data.info, &part.x, &part.y, name)
                .map_err(|e| anyhow!("{} broke the dataset contract: {e}", named(&self.plugin)))?;
        }
        Ok(data)
    }

    /// Features of new samples for `predict`.
    pub fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        let handle =
            call(&self.plugin, "read_inputs", self.inner.read_inputs(RStr::from_str(&path.to_string_lossy())))?;
        Ok(from_handle(handle))
    }
}

/// A data set read by index, shared by the loader threads.
pub struct IndexedDataset {
    pub plugin: ResolvedPlugin,
    inner: IndexedDatasetBox,
    pub description: IndexedDescription,
    /// Held during each read when the data set does not allow concurrent reads.
    serial: Option<Mutex<()>>,
}

impl IndexedDataset {
    pub(super) fn new(plugin: ResolvedPlugin, inner: IndexedDatasetBox) -> Result<Self> {
        let description = call(&plugin, "describe", inner.describe())?;
        if description.len == 0 {
            bail!("{} describes a data set of no samples", named(&plugin));
        }
        if description.test_len.into_option() == Some(0) {
            bail!("{} describes a shipped test split of no samples", named(&plugin));
        }
        // Positions are 64-bit signed in libtorch: a count beyond that would wrap.
        for (what, len) in [("samples", Some(description.len)), ("test samples", description.test_len.into_option())] {
            if len.is_some_and(|n| i64::try_from(n).is_err()) {
                bail!(
                    "{} describes {} {what}, more than 64-bit positions count (2^63 - 1)",
                    named(&plugin),
                    len.unwrap_or(0)
                );
            }
        }
        let info = &description.info;
        if info.task == Task::Classification && info.class_names.len() as i64 != info.num_outputs {
            bail!(
                "{} broke the dataset contract: {} class names for {} classes",
                named(&plugin),
                info.class_names.len(),
                info.num_outputs
            );
        }
        let serial = (!description.concurrent_reads).then(|| Mutex::new(()));
        Ok(Self { plugin, inner, description, serial })
    }

    pub fn info(&self) -> &DatasetInfo {
        &self.description.info
    }

    /// The samples of `part` at `indices`, checked against the data set's contract.
    pub fn read(&self, part: DataPart, indices: &[u64]) -> Result<Samples> {
        let _one_at_a_time = self.serial.as_ref().map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
        let samples = call(&self.plugin, "read", self.inner.read(part, RSlice::from_slice(indices)))?;
        let batch = from_abi(samples);
        let n = batch.len();
        if n == 0 && batch.y.size().first() == Some(&0) {
            return Ok(batch); // every sample of the batch was skipped, as configured
        }
        let broke = |e: String| anyhow!("{} broke the dataset contract: {e}", named(&self.plugin));
        if n > indices.len() as i64 {
            return Err(broke(format!("read returned {n} samples for {} indices", indices.len())));
        }
        contract::check_split(self.info(), &batch.x, &batch.y, "read").map_err(broke)?;
        Ok(batch)
    }

    /// What the reads noted (skipped samples...), a JSON object for the record.
    pub fn notes(&self) -> Result<serde_json::Value> {
        let text = call(&self.plugin, "notes", self.inner.notes())?;
        let notes: serde_json::Value = serde_json::from_str(text.as_str())
            .map_err(|e| anyhow!("{} notes are not JSON: {e}", named(&self.plugin)))?;
        match notes.is_object() {
            true => Ok(notes),
            false => bail!("{} notes are not a JSON object", named(&self.plugin)),
        }
    }

    pub fn read_inputs(&self, path: &Path) -> Result<Tensor> {
        let handle =
            call(&self.plugin, "read_inputs", self.inner.read_inputs(RStr::from_str(&path.to_string_lossy())))?;
        Ok(from_handle(handle))
    }
}

/// A split of a streaming data set, read and preprocessed per batch: the samples at positions
/// `start..start + len` of the data set's split order (a [`crate::data::Shuffle`], so that no
/// list of indices is held, whatever the size).
#[derive(Clone)]
pub struct StreamedSplit {
    pub dataset: Arc<IndexedDataset>,
    pub part: DataPart,
    pub order: Order,
    pub start: i64,
    pub len: i64,
    /// Applied to each batch read; none while the preprocessors are being fitted.
    pub preprocessors: Option<Arc<Preprocessors>>,
}

impl BatchSource for StreamedSplit {
    fn len(&self) -> i64 {
        self.len
    }

    fn gather(&self, positions: &[i64]) -> Result<Samples> {
        let indices: Vec<u64> = positions.iter().map(|&p| self.order.at(self.start + p) as u64).collect();
        let batch = self.dataset.read(self.part, &indices)?;
        match (&self.preprocessors, batch.is_empty()) {
            (Some(p), false) => p.transform_samples(batch),
            _ => Ok(batch),
        }
    }

    fn in_memory(&self) -> Option<&Samples> {
        None
    }

    fn fork(&self) -> Box<dyn BatchSource> {
        Box::new(self.clone())
    }
}
