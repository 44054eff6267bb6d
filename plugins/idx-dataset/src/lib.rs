//! `idx`: image classification data in IDX files (MNIST, Fashion-MNIST), gzipped or not.
//!
//! A file's header is read first and its dimensions checked (checked arithmetic, against the
//! file's size, and against memory) before its data is: a header declaring more than the file
//! holds, or more than memory holds, is refused naming the file, and a gzipped file is never
//! decompressed past what its header declares. The training labels must hold at least 2
//! classes.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::{Path, PathBuf},
};

use flate2::read::GzDecoder;
use gymnos_plugin_sdk::{
    memory,
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

/// Refuses `what` of `path` when it would not fit in memory.
fn fits(path: &Path, what: &str, counts: &[u64], bytes_each: u64) -> Result<()> {
    memory::ensure_fits(what, counts, bytes_each)
        .map_err(|e| PluginError::data(format!("{}: {}", path.display(), e.message)))
}

fn read_idx(path: &Path) -> Result<IdxArray> {
    let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(io)?;
    let gzipped = path.extension().is_some_and(|e| e == "gz");
    let file_len = file.metadata().map_err(io)?.len();
    let mut reader: Box<dyn Read> =
        if gzipped { Box::new(GzDecoder::new(BufReader::new(file))) } else { Box::new(BufReader::new(file)) };
    let bad = |why: String| PluginError::data(format!("{}: not an IDX file: {why}", path.display()));
    // Reads exactly `buf.len()` bytes; `false` when the data ends first.
    let mut read_exact = |buf: &mut [u8]| match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io(e)),
    };
    let mut magic = [0u8; 4];
    if !read_exact(&mut magic)? || magic[0] != 0 || magic[1] != 0 {
        return Err(bad("bad magic number".into()));
    }
    if magic[2] != 0x08 {
        return Err(bad(format!("element type 0x{:02x} is not unsigned byte", magic[2])));
    }
    let ndim = magic[3] as usize;
    let header = 4 + 4 * ndim;
    let mut raw_dims = vec![0u8; 4 * ndim];
    if !read_exact(&mut raw_dims)? {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> =
        raw_dims.chunks_exact(4).map(|d| u32::from_be_bytes(d.try_into().expect("4 bytes")) as usize).collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} describe more bytes than fit in memory")))?;
    let mismatch = |found: u64| bad(format!("dimensions {dims:?} need {expected} bytes, found {found}"));
    if !gzipped && file_len.saturating_sub(header as u64) != expected as u64 {
        return Err(mismatch(file_len.saturating_sub(header as u64)));
    }
    fits(path, &format!("dimensions {dims:?}"), &[expected as u64], 1)?;
    // Never more than the header declares (and one byte to tell a longer file).
    let mut data = Vec::with_capacity(if gzipped { 0 } else { expected });
    reader.take(expected as u64 + 1).read_to_end(&mut data).map_err(io)?;
    if data.len() != expected {
        return Err(match gzipped && data.len() > expected {
            true => bad(format!("dimensions {dims:?} need {expected} bytes, found more")),
            false => mismatch(data.len() as u64),
        });
    }
    Ok(IdxArray { dims, data })
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
        fits(
            path,
            &format!("{n_kept} images of {rows}×{cols} as float32"),
            &[n_kept as u64, rows as u64, cols as u64],
            4,
        )?;
        let images = Tensor::from_slice(&array.data[..(n_kept * rows * cols) as usize])
            .view([n_kept, 1, rows, cols])
            .to_kind(Kind::Float)
            / 255.0;
        Ok(images)
    }

    /// The labels, and how many distinct ones there are.
    fn labels(&self, path: &Path) -> Result<(Tensor, usize)> {
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
        let mut seen = [false; 256];
        array.data[..n_kept].iter().for_each(|&l| seen[usize::from(l)] = true);
        let distinct = seen.iter().filter(|&&s| s).count();
        Ok((Tensor::from_slice(&array.data[..n_kept]).to_kind(Kind::Int64), distinct))
    }

    fn kept(&self, n: i64) -> i64 {
        match i64::try_from(self.config.limit) {
            Ok(limit) if limit > 0 => n.min(limit),
            _ => n,
        }
    }

    /// A split's images and labels; `training` ones must hold at least 2 classes.
    fn split(&self, images: &str, labels: &str, training: bool) -> Result<(Tensor, Tensor)> {
        let dir = &self.config.path;
        let x = self.images(&dir.join(images))?;
        let (y, distinct) = self.labels(&dir.join(labels))?;
        if training && distinct < 2 {
            return Err(PluginError::data(format!(
                "{}: the training labels hold {distinct} class{}; classification needs at least 2",
                dir.join(labels).display(),
                if distinct == 1 { "" } else { "es" }
            )));
        }
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
        let (features, targets) = self.split(&config.train_images, &config.train_labels, true)?;
        let test = match config.test_images.is_empty() {
            true => None,
            false => Some(self.split(&config.test_images, &config.test_labels, false)?),
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

    /// An IDX file of unsigned bytes: `dims` in its header, then `data`.
    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
        bytes.extend(data);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// A folder with `train-images` (`images`) and `train-labels` (`labels`), plain or gzipped.
    fn folder(name: &str, images: Vec<u8>, labels: Vec<u8>, gz: bool) -> (std::path::PathBuf, serde_json::Value) {
        let dir = std::env::temp_dir().join(format!("gymnos-idx-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let suffix = if gz { ".gz" } else { "" };
        let wrap = |bytes: &[u8]| if gz { gzip(bytes) } else { bytes.to_vec() };
        std::fs::write(dir.join(format!("train-images{suffix}")), wrap(&images)).unwrap();
        std::fs::write(dir.join(format!("train-labels{suffix}")), wrap(&labels)).unwrap();
        let config = json!({
            "path": dir, "train_images": format!("train-images{suffix}"), "train_labels": format!("train-labels{suffix}"),
            "test_images": "", "class_names": ["a", "b", "c"],
        });
        (dir, config)
    }

    use gymnos_plugin_sdk::serde_json;

    #[test]
    fn a_header_is_checked_against_the_file_and_memory_before_the_data_is_read() {
        for gz in [false, true] {
            let labels = idx(&[4], &[0, 1, 2, 1]);
            let (dir, config) = folder("ok", idx(&[4, 2, 2], &[7; 16]), labels.clone(), gz);
            assert_eq!(harness::check_dataset::<super::IdxDataset>(config).unwrap(), (4, 0), "gz {gz}");
            // More declared than held; more held than declared.
            let (_, config) = folder("short", idx(&[4_000_000, 28, 28], &[7; 16]), labels.clone(), gz);
            let err = harness::check_dataset::<super::IdxDataset>(config).unwrap_err();
            let file = dir.join(if gz { "train-images.gz" } else { "train-images" });
            let file = file.display().to_string().replace("-ok-", "-short-");
            assert_eq!(
                err,
                format!("load: data error: {file}: not an IDX file: dimensions [4000000, 28, 28] need 3136000000 bytes, found 16"),
                "gz {gz}"
            );
            let (_, config) = folder("long", idx(&[2, 2, 2], &[7; 16]), labels.clone(), gz);
            let err = harness::check_dataset::<super::IdxDataset>(config).unwrap_err();
            let found = if gz { "more" } else { "16" };
            assert!(err.ends_with(&format!("dimensions [2, 2, 2] need 8 bytes, found {found}")), "{err}");
            // More than memory: refused from the header, nothing decompressed.
            let (_, config) = folder("huge", idx(&[1_000_000, 1_000_000, 1000], &[7; 16]), labels, gz);
            let err = harness::check_dataset::<super::IdxDataset>(config).unwrap_err();
            let expected = match gz {
                true => {
                    "dimensions [1000000, 1000000, 1000]: needs 1.0 PB (1000000000000000 bytes), and this machine has "
                }
                false => "dimensions [1000000, 1000000, 1000] need 1000000000000000 bytes, found 16",
            };
            assert!(err.contains(expected), "{err}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn training_labels_of_one_class_are_refused() {
        let (dir, config) = folder("one", idx(&[3, 2, 2], &[7; 12]), idx(&[3], &[1, 1, 1]), false);
        let err = harness::check_dataset::<super::IdxDataset>(config).unwrap_err();
        assert_eq!(
            err,
            format!(
                "load: data error: {}: the training labels hold 1 class; classification needs at least 2",
                dir.join("train-labels").display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
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
