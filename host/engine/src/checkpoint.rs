//! What a run saves: checkpoints (`checkpoints/last.safetensors`, `best.safetensors`) and the
//! final model (`model.safetensors`), as named tensors in safetensors files with typed
//! metadata, written atomically: a crash or a full disk leaves the previous file whole.
//!
//! The checkpoint's metadata is one [`CheckpointState`], saved and restored here; nothing
//! else reads or writes its keys.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
};

use anyhow::{anyhow, bail, Context, Result};
use gymnos_host::record::TaskName;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::{callbacks::CallbackState, optim::LossScaler};

/// The metadata key of a file's format tag.
const FORMAT_KEY: &str = "format";
/// The metadata key of a checkpoint's [`CheckpointState`] (JSON).
const STATE_KEY: &str = "state";
const CHECKPOINT_FORMAT: &str = "gymnos-checkpoint-2";
/// Checkpoints of gymnos-host 0.1, with each field of the state under its own key.
const CHECKPOINT_FORMAT_1: &str = "gymnos-checkpoint-1";
const MODEL_FORMAT: &str = "gymnos-model-1";

/// A safetensors file's string metadata.
pub type Metadata = HashMap<String, String>;

fn dtype(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => bail!("tensors of kind {other:?} cannot be saved"),
    })
}

fn kind(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => bail!("unsupported dtype {other:?}"),
    })
}

/// Where training stood when a checkpoint was written, besides its tensors.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointState {
    /// Epochs completed.
    pub epoch: u32,
    pub optimizer_steps: u64,
    pub callbacks: CallbackState,
    pub loss_scaler: Option<LossScaler>,
    /// The run's per-epoch metrics so far (`metrics.json`'s `history`).
    pub history: BTreeMap<String, Vec<f64>>,
    /// Where training stood within epoch `epoch + 1` (0-based `epoch`), when the checkpoint was
    /// taken in the middle of it (a preemption); none at an epoch's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<EpochPosition>,
    /// The data the run started on; `resume` refuses other data. None in checkpoints from
    /// before fingerprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<crate::fingerprint::DataFingerprint>,
}

/// How far an epoch had come: its steps done and its running sums, so that the rest of it
/// gives the epoch's metrics as if it had not stopped. The random generators' states go with
/// the checkpoint's tensors (`rng.<rank>`, `rng.cuda.<rank>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochPosition {
    /// Global training batches done.
    pub steps: usize,
    pub loss_sum: f64,
    pub correct: i64,
    pub samples: i64,
    pub train_seconds: f64,
    pub data_wait_seconds: f64,
    /// The processes the run had when the checkpoint was taken (their generators' states).
    pub world_size: u32,
}

/// A checkpoint: the model (`model.*`), fitted preprocessors (`preprocessors.<i>.*`) and
/// optimizer (`optim.*`) tensors, and the state.
pub struct Checkpoint {
    pub tensors: Vec<(String, Tensor)>,
    pub state: CheckpointState,
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<()> {
        let metadata = HashMap::from([
            (FORMAT_KEY.to_string(), CHECKPOINT_FORMAT.to_string()),
            (STATE_KEY.to_string(), serde_json::to_string(&self.state)?),
        ]);
        save(path, &self.tensors, metadata)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let (tensors, metadata) = load(path)?;
        let invalid = |e: serde_json::Error| anyhow!("{}: invalid checkpoint state: {e}", path.display());
        let state = match metadata.get(FORMAT_KEY).map(String::as_str) {
            Some(CHECKPOINT_FORMAT) => {
                let text = metadata.get(STATE_KEY).ok_or_else(|| anyhow!("{}: no checkpoint state", path.display()))?;
                serde_json::from_str(text).map_err(invalid)?
            }
            Some(CHECKPOINT_FORMAT_1) => {
                // Each field under its own key, numbers as text, the rest as JSON.
                let mut fields = serde_json::Map::new();
                for (key, value) in &metadata {
                    if key != FORMAT_KEY {
                        let parsed = serde_json::from_str(value).map_err(invalid)?;
                        fields.insert(key.clone(), parsed);
                    }
                }
                serde_json::from_value(fields.into()).map_err(invalid)?
            }
            other => bail!("{}: not a gymnos-host checkpoint (format {other:?})", path.display()),
        };
        Ok(Self { tensors, state })
    }
}

/// The final model: the model's and the fitted preprocessors' tensors, with the task and class
/// names in the metadata so the file describes itself.
pub fn save_model(path: &Path, tensors: &[(String, Tensor)], task: TaskName, class_names: &[String]) -> Result<()> {
    let metadata = HashMap::from([
        (FORMAT_KEY.to_string(), MODEL_FORMAT.to_string()),
        ("task".to_string(), serde_json::to_value(task)?.as_str().unwrap_or_default().to_string()),
        ("class_names".to_string(), serde_json::to_string(class_names)?),
    ]);
    save(path, tensors, metadata)
}

/// The tensors of a checkpoint or model file, without its metadata.
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    Ok(load(path)?.0)
}

/// Writes `tensors` and `metadata` to `path` through a temporary file in the same folder.
fn save(path: &Path, tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Result<()> {
    let bytes = serialize(tensors, Some(metadata)).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    write_atomically(path, &bytes)
}

/// `tensors` as the bytes of a safetensors file (copied to the CPU, contiguous).
pub fn serialize(tensors: &[(String, Tensor)], metadata: Option<Metadata>) -> Result<Vec<u8>> {
    let mut owned = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let t = t.to_device(Device::Cpu).contiguous();
        let numel = t.numel();
        let mut bytes = vec![0u8; numel * t.kind().elt_size_in_bytes()];
        t.f_copy_data_u8(&mut bytes, numel).with_context(|| format!("reading tensor `{name}`"))?;
        let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
        owned.push((name.clone(), dtype(t.kind())?, shape, bytes));
    }
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(name, dt, shape, bytes)| Ok((name.clone(), TensorView::new(*dt, shape.clone(), bytes)?)))
        .collect::<Result<_, safetensors::SafeTensorError>>()?;
    Ok(safetensors::serialize(views, metadata)?)
}

/// Reads every tensor (on the CPU) and the metadata.
fn load(path: &Path) -> Result<(Vec<(String, Tensor)>, Metadata)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    deserialize(&bytes).with_context(|| path.display().to_string())
}

/// The tensors (on the CPU, sorted by name) and metadata of a safetensors file's bytes.
pub fn deserialize(bytes: &[u8]) -> Result<(Vec<(String, Tensor)>, Metadata)> {
    let bad = |e: safetensors::SafeTensorError| anyhow!("not a valid safetensors file: {e}");
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(bad)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(bytes).map_err(bad)?;
    let mut tensors = Vec::new();
    for (name, view) in file.tensors() {
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        tensors.push((name, Tensor::f_from_data_size(view.data(), &shape, kind(view.dtype())?)?));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((tensors, metadata))
}

/// Writes `bytes` to `path` so that `path` is either the old file or the complete new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    gymnos_host::fsio::write_atomically(path, bytes, 0o644).with_context(|| format!("{}: cannot write", path.display()))
}

/// The tensors whose names start with `prefix`, with the prefix removed (shallow clones).
pub fn with_prefix(tensors: &[(String, Tensor)], prefix: &str) -> Vec<(String, Tensor)> {
    tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix(prefix).map(|rest| (rest.to_string(), t.shallow_clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gymnos_host::experiment::Callbacks;

    fn state() -> CheckpointState {
        CheckpointState {
            epoch: 3,
            optimizer_steps: 120,
            callbacks: CallbackState::new(&Callbacks::default()),
            loss_scaler: Some(LossScaler::new()),
            history: BTreeMap::from([("train_loss".to_string(), vec![0.9, 0.5, 0.25])]),
            position: None,
            data: Some(crate::fingerprint::DataFingerprint {
                samples: 178,
                test_samples: None,
                input_shape: vec![13],
                num_outputs: 3,
                class_names: vec!["a".into(), "b".into(), "c".into()],
                values: "ab12".into(),
            }),
        }
    }

    #[test]
    fn a_checkpoint_round_trips_its_tensors_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25]).view([3, 1]);
        let b = Tensor::from_slice(&[7i64, 8]);
        let checkpoint = Checkpoint {
            tensors: vec![("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())],
            state: state(),
        };
        checkpoint.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert!(back.tensors[0].1.equal(&a) && back.tensors[1].1.equal(&b));
        assert_eq!(serde_json::to_value(&back.state).unwrap(), serde_json::to_value(state()).unwrap());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(format!("{:#}", Checkpoint::load(&path).err().unwrap()).contains("not a valid safetensors file"));
    }

    #[test]
    fn a_checkpoint_of_the_first_format_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.safetensors");
        let s = state();
        let metadata = HashMap::from([
            ("format".to_string(), CHECKPOINT_FORMAT_1.to_string()),
            ("epoch".to_string(), "3".to_string()),
            ("optimizer_steps".to_string(), "120".to_string()),
            ("callbacks".to_string(), serde_json::to_string(&s.callbacks).unwrap()),
            ("loss_scaler".to_string(), serde_json::to_string(&s.loss_scaler).unwrap()),
            ("history".to_string(), serde_json::to_string(&s.history).unwrap()),
        ]);
        save(&path, &[("a".into(), Tensor::from_slice(&[1.0f32]))], metadata).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        // The first format has no data fingerprint: a resume trusts the data.
        let s = CheckpointState { data: None, ..s };
        assert_eq!(serde_json::to_value(&back.state).unwrap(), serde_json::to_value(s).unwrap());
        let model = dir.path().join("model.safetensors");
        save_model(&model, &[("a".into(), Tensor::from_slice(&[1.0f32]))], TaskName::Regression, &[]).unwrap();
        assert!(Checkpoint::load(&model).err().unwrap().to_string().contains("not a gymnos-host checkpoint"));
    }
}
