//! `idx`: image classification data in IDX files (MNIST, Fashion-MNIST), gzipped or not.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;
use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    Config, Configurable, Context, Dataset, DatasetInfo, LoadedData, PluginError, Result,
};

const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// The configuration of `idx`.
#[derive(Config)]
pub struct IdxConfig {
    /// Folder holding the IDX files
    #[config(exists = "dir")]
    pub path: PathBuf,
    /// Training images file
    #[config(default = "train-images-idx3-ubyte.gz", non_empty)]
    pub train_images: String,
    /// Training labels file
    #[config(default = "train-labels-idx1-ubyte.gz", non_empty)]
    pub train_labels: String,
    /// Test images file (empty: no fixed test split)
    #[config(default = "t10k-images-idx3-ubyte.gz")]
    pub test_images: String,
    /// Test labels file
    #[config(default = "t10k-labels-idx1-ubyte.gz")]
    pub test_labels: String,
    /// Class names in label order
    #[config(default = FASHION_MNIST_CLASSES, min_len = 1, max_len = 256)]
    pub class_names: Vec<String>,
    /// Keep only the first N samples of each file (0: all)
    #[config(default = 0, min = 0)]
    pub limit: u64,
}

pub struct IdxDataset {
    config: IdxConfig,
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
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} describe more bytes than fit in memory")))?;
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
            return Err(PluginError::data(format!(
                "{}: images must have 3 dimensions, found {:?}",
                path.display(),
                array.dims
            )));
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
            return Err(PluginError::data(format!(
                "{}: labels must have 1 dimension, found {:?}",
                path.display(),
                array.dims
            )));
        }
        let classes = self.config.class_names.len();
        if let Some(bad) = array.data.iter().find(|&&l| usize::from(l) >= classes) {
            return Err(PluginError::data(format!(
                "{}: label {bad} is not below the {classes} classes",
                path.display()
            )));
        }
        let n_kept = self.kept(array.dims[0] as i64) as usize;
        Ok(Tensor::from_slice(&array.data[..n_kept]).to_kind(Kind::Int64))
    }

    fn kept(&self, n: i64) -> i64 {
        match i64::try_from(self.config.limit) {
            Ok(limit) if limit > 0 => n.min(limit),
            _ => n,
        }
    }

    fn split(&self, images: &str, labels: &str) -> Result<(Tensor, Tensor)> {
        let dir = &self.config.path;
        let (x, y) = (self.images(&dir.join(images))?, self.labels(&dir.join(labels))?);
        if x.size()[0] != y.size()[0] {
            return Err(PluginError::data(format!(
                "{images} has {} images but {labels} has {} labels",
                x.size()[0],
                y.size()[0]
            )));
        }
        Ok((x, y))
    }
}

impl Configurable for IdxDataset {
    const NAME: &'static str = "idx";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Image classification data in IDX files (MNIST, Fashion-MNIST), gzipped or plain";
    type Config = IdxConfig;

    fn build(config: IdxConfig, _ctx: &Context) -> Result<Self> {
        Ok(Self { config })
    }
}

impl Dataset for IdxDataset {
    fn load(&mut self) -> Result<LoadedData> {
        let config = &self.config;
        let (features, targets) = self.split(&config.train_images, &config.train_labels)?;
        let test = match config.test_images.is_empty() {
            true => None,
            false => Some(self.split(&config.test_images, &config.test_labels)?),
        };
        let shape = features.size()[1..].to_vec();
        Ok(LoadedData { info: DatasetInfo::classification(shape, config.class_names.clone()), features, targets, test })
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
    fn a_missing_folder_is_refused_at_creation_and_a_missing_file_is_an_io_error_naming_it() {
        let err = harness::check_dataset::<super::IdxDataset>(json!({ "path": "/nonexistent" })).unwrap_err();
        assert_eq!(err, "create: configuration error: path: /nonexistent does not exist");

        let dir = std::env::temp_dir().join(format!("gymnos-idx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let err = harness::check_dataset::<super::IdxDataset>(json!({ "path": dir })).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        let missing = dir.join("train-images-idx3-ubyte.gz");
        assert_eq!(err, format!("load: I/O error: {}: No such file or directory (os error 2)", missing.display()));
    }

    #[test]
    fn class_names_and_limit_follow_their_rules() {
        let err = harness::check_dataset::<super::IdxDataset>(
            json!({ "path": fashion_mnist(), "class_names": [], "limit": -1 }),
        )
        .unwrap_err();
        assert_eq!(err, "create: configuration error: class_names: must not be empty; limit: -1 is not >= 0");
    }
}
