//! `idx`: image classification data in IDX files (MNIST, Fashion-MNIST), gzipped or not.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;
use gymnos_plugin_sdk::{
    api::abi_stable::std_types::RVec,
    key, required,
    tch::{Kind, Tensor},
    Component, Config, ConfigType, Context, Dataset, DatasetInfo, Loaded, PluginError, Result, Task,
};

const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

pub struct IdxDataset {
    dir: PathBuf,
    files: [String; 4],
    class_names: Vec<String>,
    limit: i64,
}

/// An IDX array: dimensions and raw bytes (only unsigned-byte data, as in the MNIST family).
struct IdxArray {
    dims: Vec<usize>,
    data: Vec<u8>,
}

fn read_idx(path: &Path) -> Result<IdxArray> {
    let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(io)?;
    let mut reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).map_err(io)?;
    let bad = |why: String| PluginError::data(format!("{}: not an IDX file: {why}", path.display()));
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("bad magic number".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!("element type 0x{:02x} is not unsigned byte", bytes[2])));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize)
        .collect();
    let expected: usize = dims.iter().product();
    if bytes.len() - header != expected {
        return Err(bad(format!("dimensions {dims:?} need {expected} bytes, found {}", bytes.len() - header)));
    }
    bytes.drain(..header);
    Ok(IdxArray { dims, data: bytes })
}

impl IdxDataset {
    /// Images as float32 in [0, 1], shaped `[n, 1, rows, cols]`.
    fn images(&self, path: &Path) -> Result<Tensor> {
        let array = read_idx(path)?;
        if array.dims.len() != 3 {
            return Err(PluginError::data(format!("{}: images must have 3 dimensions, found {:?}", path.display(), array.dims)));
        }
        let (n, rows, cols) = (array.dims[0] as i64, array.dims[1] as i64, array.dims[2] as i64);
        let n_kept = self.kept(n);
        let images = Tensor::from_slice(&array.data[..(n_kept * rows * cols) as usize])
            .view([n_kept, 1, rows, cols])
            .to_kind(Kind::Float)
            / 255.0;
        Ok(images)
    }

    fn labels(&self, path: &Path) -> Result<Tensor> {
        let array = read_idx(path)?;
        if array.dims.len() != 1 {
            return Err(PluginError::data(format!("{}: labels must have 1 dimension, found {:?}", path.display(), array.dims)));
        }
        let classes = self.class_names.len() as u8;
        if let Some(bad) = array.data.iter().find(|&&l| l >= classes) {
            return Err(PluginError::data(format!("{}: label {bad} is not below the {classes} classes", path.display())));
        }
        let n_kept = self.kept(array.dims[0] as i64) as usize;
        Ok(Tensor::from_slice(&array.data[..n_kept]).to_kind(Kind::Int64))
    }

    fn kept(&self, n: i64) -> i64 {
        if self.limit > 0 { n.min(self.limit) } else { n }
    }

    fn split(&self, images: &str, labels: &str) -> Result<(Tensor, Tensor)> {
        let (x, y) = (self.images(&self.dir.join(images))?, self.labels(&self.dir.join(labels))?);
        if x.size()[0] != y.size()[0] {
            return Err(PluginError::data(format!("{images} has {} images but {labels} has {} labels", x.size()[0], y.size()[0])));
        }
        Ok((x, y))
    }
}

impl Component for IdxDataset {
    const NAME: &'static str = "idx";
    const VERSION: &'static str = "1.0.0";
    const DESCRIPTION: &'static str = "Image classification data in IDX files (MNIST, Fashion-MNIST), gzipped or plain";

    fn config_keys() -> Vec<gymnos_plugin_sdk::api::ConfigKey> {
        vec![
            required("path", ConfigType::Path, "Folder holding the IDX files"),
            key("train_images", ConfigType::String, "train-images-idx3-ubyte.gz", "Training images file"),
            key("train_labels", ConfigType::String, "train-labels-idx1-ubyte.gz", "Training labels file"),
            key("test_images", ConfigType::String, "t10k-images-idx3-ubyte.gz", "Test images file (empty: no fixed test split)"),
            key("test_labels", ConfigType::String, "t10k-labels-idx1-ubyte.gz", "Test labels file"),
            key("class_names", ConfigType::StringList, FASHION_MNIST_CLASSES.to_vec(), "Class names in label order"),
            key("limit", ConfigType::Integer, 0, "Keep only the first N samples of each file (0: all)"),
        ]
    }

    fn create(config: &Config, ctx: &Context) -> Result<Self> {
        let class_names: Vec<String> = config.get("class_names")?;
        if class_names.is_empty() || class_names.len() > 256 {
            return Err(PluginError::config("class_names must list between 1 and 256 classes"));
        }
        Ok(Self {
            dir: config.path("path", ctx)?,
            files: ["train_images", "train_labels", "test_images", "test_labels"].map(|k| config.get(k).unwrap_or_default()),
            class_names,
            limit: config.get("limit")?,
        })
    }
}

impl Dataset for IdxDataset {
    fn load(&mut self) -> Result<Loaded> {
        let (features, targets) = self.split(&self.files[0], &self.files[1])?;
        let test = match self.files[2].is_empty() {
            true => None,
            false => Some(self.split(&self.files[2], &self.files[3])?),
        };
        let shape = features.size()[1..].to_vec();
        Ok(Loaded {
            info: DatasetInfo {
                task: Task::Classification,
                feature_shape: RVec::from(shape),
                num_outputs: self.class_names.len() as i64,
                class_names: self.class_names.iter().map(|s| s.as_str().into()).collect(),
            },
            features,
            targets,
            test,
        })
    }

    fn read_inputs(&mut self, path: &Path) -> Result<Tensor> {
        self.images(path)
    }
}

gymnos_plugin_sdk::export_plugin!(dataset(IdxDataset));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    fn fashion_mnist() -> String {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/fashion-mnist").to_string()
    }

    #[test]
    fn meets_the_dataset_contract_on_fashion_mnist() {
        let config = json!({ "path": fashion_mnist(), "limit": 300 });
        assert_eq!(harness::check_dataset::<super::IdxDataset>(config.clone()).unwrap(), (300, 300));
        let images = std::path::Path::new(&fashion_mnist()).join("t10k-images-idx3-ubyte.gz");
        assert_eq!(harness::check_dataset_inputs::<super::IdxDataset>(config, &images, &[1, 28, 28]).unwrap(), 300);
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let err = harness::check_dataset::<super::IdxDataset>(json!({ "path": "/nonexistent" })).unwrap_err();
        assert_eq!(err, "load: I/O error: /nonexistent/train-images-idx3-ubyte.gz: No such file or directory (os error 2)");
    }
}
