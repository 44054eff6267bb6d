//! Named tensors in safetensors files, with a string map of metadata, written atomically:
//! a crash or a full disk leaves the previous file whole.

use std::{collections::HashMap, path::Path};

use anyhow::{anyhow, bail, Context, Result};
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

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

/// Writes `tensors` and `metadata` to `path` through a temporary file in the same folder.
pub fn save(path: &Path, tensors: &[(String, Tensor)], metadata: HashMap<String, String>) -> Result<()> {
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
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    write_atomically(path, &bytes)
}

/// Reads every tensor (on the CPU) and the metadata.
pub fn load(path: &Path) -> Result<(Vec<(String, Tensor)>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let bad = |e: safetensors::SafeTensorError| anyhow!("{}: not a valid safetensors file: {e}", path.display());
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let file = SafeTensors::deserialize(&bytes).map_err(bad)?;
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
    tensors.iter().filter_map(|(n, t)| n.strip_prefix(prefix).map(|rest| (rest.to_string(), t.shallow_clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_tensors_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.safetensors");
        let a = Tensor::from_slice(&[1.5f32, -2.0, 3.25]).view([3, 1]);
        let b = Tensor::from_slice(&[7i64, 8]);
        let meta = HashMap::from([("epoch".to_string(), "3".to_string())]);
        save(&path, &[("a".into(), a.shallow_clone()), ("b".into(), b.shallow_clone())], meta.clone()).unwrap();
        let (tensors, got) = load(&path).unwrap();
        assert_eq!(got, meta);
        assert!(tensors[0].1.equal(&a) && tensors[1].1.equal(&b));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load(&path).unwrap_err().to_string().contains("not a valid safetensors file"));
    }
}
