//! `gymnos-idx-to-images`: writes the images of gzipped (or plain) IDX files, as Fashion-MNIST
//! and MNIST ship them, as a class-per-folder tree of PNG or JPEG files, `OUT/<class>/<index>.<ext>`
//! (the index zero-padded to one width, so that names sort in index order): the layout the
//! `image-folder` data set reads.
//!
//! ```text
//! gymnos-idx-to-images --images train-images-idx3-ubyte.gz --labels train-labels-idx1-ubyte.gz \
//!     --out data/train [--format png|jpeg] [--quality 90] [--limit N] [--class-names a,b,...]
//! ```
//!
//! The tree is written into `OUT.tmp`, then renamed to `OUT`, with a record of the conversion
//! (`OUT/.idx-to-images`): an interrupted run leaves no `OUT` and is simply run again, and a run
//! whose `OUT` already holds the same conversion does nothing.

use std::{
    fs::{self, File},
    io::{BufReader, Read},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, ValueEnum};
use flate2::read::GzDecoder;
use image::{
    codecs::{
        jpeg::JpegEncoder,
        png::{CompressionType, FilterType, PngEncoder},
    },
    ExtendedColorType, ImageEncoder,
};

/// Fashion-MNIST's classes, as folder names.
const FASHION_MNIST: [&str; 10] =
    ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"];
/// The record of a finished conversion, in the output folder.
const RECORD: &str = ".idx-to-images";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Png,
    Jpeg,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
        }
    }
}

/// Writes the images of IDX files as OUT/<class>/<index>.png (or .jpg), for the image-folder data set.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// IDX file of unsigned-byte images [n, rows, cols], gzipped or not
    #[arg(long)]
    images: PathBuf,
    /// IDX file of unsigned-byte labels [n], gzipped or not
    #[arg(long)]
    labels: PathBuf,
    /// Folder to create, holding one folder per class
    #[arg(long)]
    out: PathBuf,
    /// Image format
    #[arg(long, value_enum, default_value = "png")]
    format: Format,
    /// JPEG quality (1 to 100)
    #[arg(long, default_value_t = 90, value_parser = clap::value_parser!(u8).range(1..=100))]
    quality: u8,
    /// Convert only the first N images
    #[arg(long)]
    limit: Option<usize>,
    /// Class names in label order, comma-separated (default: Fashion-MNIST's when the labels are
    /// below 10, else the label numbers)
    #[arg(long, value_delimiter = ',')]
    class_names: Option<Vec<String>>,
    /// Threads that encode and write (default: the available cores)
    #[arg(long)]
    threads: Option<usize>,
}

/// What a run did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Wrote(usize),
    AlreadyComplete(usize),
}

/// An IDX array of unsigned bytes.
struct Idx {
    dims: Vec<usize>,
    data: Vec<u8>,
}

fn read_idx(path: &Path) -> Result<Idx> {
    let file = File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut reader = BufReader::new(file);
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes).with_context(|| format!("{}", path.display()))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut plain)
            .with_context(|| format!("{}: gzip", path.display()))?;
        bytes = plain;
    }
    let bad = |why: &str| anyhow::anyhow!("{}: not an IDX file of bytes: {why}", path.display());
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("bad magic number"));
    }
    if bytes[2] != 0x08 {
        return Err(bad(&format!("element type 0x{:02x} is not unsigned byte", bytes[2])));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    ensure!(bytes.len() >= header, bad("truncated header"));
    let dims: Vec<usize> =
        (0..ndim).map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().unwrap()) as usize).collect();
    let expected = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| bad("dimensions overflow"))?;
    ensure!(
        bytes.len() - header == expected,
        bad(&format!("dimensions {dims:?} need {expected} bytes, found {}", bytes.len() - header))
    );
    bytes.drain(..header);
    Ok(Idx { dims, data: bytes })
}

/// The class names: given (one per label at least, usable as folder names) or the default.
fn class_names(given: Option<&[String]>, labels: &[u8]) -> Result<Vec<String>> {
    let top = labels.iter().copied().max().map_or(0, usize::from);
    let names: Vec<String> = match given {
        Some(names) => names.iter().map(|n| n.trim().to_string()).collect(),
        None if top < FASHION_MNIST.len() => FASHION_MNIST.iter().map(|n| n.to_string()).collect(),
        None => (0..=top).map(|l| l.to_string()).collect(),
    };
    ensure!(top < names.len(), "label {top} has no class name ({} given)", names.len());
    for (i, name) in names.iter().enumerate() {
        ensure!(
            !name.is_empty() && name != "." && name != ".." && !name.starts_with('.') && !name.contains(['/', '\\']),
            "class name `{name}` cannot be a folder name"
        );
        ensure!(!names[..i].contains(name), "class name `{name}` is given twice");
    }
    Ok(names)
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    out.with_file_name(name)
}

fn record(args: &Args, count: usize, names: &[String]) -> Result<String> {
    let file = |p: &Path| -> Result<String> {
        let size = fs::metadata(p).with_context(|| format!("{}", p.display()))?.len();
        Ok(format!("{} ({size} bytes)", p.file_name().unwrap_or_default().to_string_lossy()))
    };
    let quality = match args.format {
        Format::Png => String::new(),
        Format::Jpeg => format!(" quality {}", args.quality),
    };
    Ok(format!(
        "images: {}\nlabels: {}\nformat: {:?}{quality}\ncount: {count}\nclasses: {}\n",
        file(&args.images)?,
        file(&args.labels)?,
        args.format,
        names.join(",")
    ))
}

fn encode(format: Format, quality: u8, pixels: &[u8], cols: u32, rows: u32, out: &mut Vec<u8>) -> Result<()> {
    out.clear();
    match format {
        Format::Png => PngEncoder::new_with_quality(&mut *out, CompressionType::Fast, FilterType::Sub).write_image(
            pixels,
            cols,
            rows,
            ExtendedColorType::L8,
        )?,
        Format::Jpeg => {
            JpegEncoder::new_with_quality(&mut *out, quality).write_image(pixels, cols, rows, ExtendedColorType::L8)?
        }
    }
    Ok(())
}

fn convert(args: &Args) -> Result<Outcome> {
    let labels = read_idx(&args.labels)?;
    ensure!(labels.dims.len() == 1, "{}: labels must have 1 dimension, found {:?}", args.labels.display(), labels.dims);
    let total = labels.dims[0];
    let count = args.limit.map_or(total, |l| l.min(total));
    let labels = &labels.data[..count];
    let names = class_names(args.class_names.as_deref(), labels)?;
    let record = record(args, count, &names)?;
    if args.out.exists() {
        let done = fs::read_to_string(args.out.join(RECORD)).unwrap_or_default();
        ensure!(
            done == record,
            "{} exists but holds another conversion, or an unfinished one: remove it to convert again",
            args.out.display()
        );
        return Ok(Outcome::AlreadyComplete(count));
    }

    let images = read_idx(&args.images)?;
    ensure!(
        images.dims.len() == 3,
        "{}: images must have 3 dimensions [n, rows, cols], found {:?}",
        args.images.display(),
        images.dims
    );
    let (n, rows, cols) = (images.dims[0], images.dims[1], images.dims[2]);
    ensure!(n == total, "{} has {n} images but {} has {total} labels", args.images.display(), args.labels.display());
    ensure!(count > 0, "no images to convert");

    let tmp = sibling(&args.out, ".tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("removing an unfinished {}", tmp.display()))?;
    }
    let mut present = vec![false; names.len()];
    labels.iter().for_each(|&l| present[usize::from(l)] = true);
    for (name, _) in names.iter().zip(&present).filter(|(_, &p)| p) {
        let dir = tmp.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    }

    let width = (count - 1).to_string().len();
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = threads.clamp(1, count);
    let stop = AtomicBool::new(false);
    let plane = rows * cols;
    let (rows, cols) = (u32::try_from(rows)?, u32::try_from(cols)?);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, names, tmp, data) = (&stop, &names, &tmp, &images.data);
                scope.spawn(move || -> Result<()> {
                    let mut buffer = Vec::new();
                    for i in (t..count).step_by(threads) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let pixels = &data[i * plane..(i + 1) * plane];
                        let name = format!("{i:0width$}.{}", args.format.extension());
                        let path = tmp.join(&names[usize::from(labels[i])]).join(name);
                        let written = encode(args.format, args.quality, pixels, cols, rows, &mut buffer)
                            .and_then(|()| fs::write(&path, &buffer).map_err(Into::into))
                            .with_context(|| format!("{}", path.display()));
                        if written.is_err() {
                            stop.store(true, Ordering::Relaxed);
                            return written;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for worker in workers {
            worker.join().map_err(|_| anyhow::anyhow!("a writer thread panicked"))??;
        }
        Ok(())
    })?;
    fs::write(tmp.join(RECORD), &record).with_context(|| format!("{}", tmp.join(RECORD).display()))?;
    if args.out.exists() {
        bail!("{} appeared while converting; left the images in {}", args.out.display(), tmp.display());
    }
    fs::rename(&tmp, &args.out).with_context(|| format!("renaming {} to {}", tmp.display(), args.out.display()))?;
    Ok(Outcome::Wrote(count))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let start = Instant::now();
    match convert(&args)? {
        Outcome::Wrote(n) => {
            println!("wrote {n} images to {} in {:.2} s", args.out.display(), start.elapsed().as_secs_f64())
        }
        Outcome::AlreadyComplete(n) => println!("{} already holds the {n} images; nothing to do", args.out.display()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::{write::GzEncoder, Compression};

    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
        bytes.extend(data);
        bytes
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Five 3×2 images (pixel (x, y) of image i is 40 i + 10 y + x) labelled 0, 1, 0, 2, 1: the
    /// images gzipped, the labels plain.
    fn inputs(dir: &Path) -> Args {
        let pixels: Vec<u8> =
            (0..5u8).flat_map(|i| (0..2u8).flat_map(move |y| (0..3u8).map(move |x| 40 * i + 10 * y + x))).collect();
        fs::write(dir.join("images.gz"), gzip(&idx(&[5, 2, 3], &pixels))).unwrap();
        fs::write(dir.join("labels"), idx(&[5], &[0, 1, 0, 2, 1])).unwrap();
        Args {
            images: dir.join("images.gz"),
            labels: dir.join("labels"),
            out: dir.join("out"),
            format: Format::Png,
            quality: 90,
            limit: None,
            class_names: None,
            threads: Some(2),
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut found: Vec<String> =
            walk(dir).iter().map(|p| p.strip_prefix(dir).unwrap().display().to_string()).collect();
        found.sort();
        found
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .flat_map(|e| {
                let path = e.unwrap().path();
                if path.is_dir() {
                    walk(&path)
                } else {
                    vec![path]
                }
            })
            .collect()
    }

    #[test]
    fn converts_a_tiny_idx_file_to_pngs_with_exact_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let args = inputs(dir.path());
        assert_eq!(convert(&args).unwrap(), Outcome::Wrote(5));
        assert_eq!(
            files(&args.out),
            [
                ".idx-to-images",
                "pullover/3.png",
                "t-shirt_top/0.png",
                "t-shirt_top/2.png",
                "trouser/1.png",
                "trouser/4.png"
            ]
        );
        let image = image::open(args.out.join("pullover/3.png")).unwrap();
        assert_eq!(image.color(), image::ColorType::L8);
        assert_eq!(image.into_luma8().into_raw(), [120, 121, 122, 130, 131, 132]);
        assert!(!sibling(&args.out, ".tmp").exists());

        // Done already: nothing is rewritten.
        fs::remove_file(args.out.join("trouser/4.png")).unwrap();
        assert_eq!(convert(&args).unwrap(), Outcome::AlreadyComplete(5));
        assert!(!args.out.join("trouser/4.png").exists());
        // Another conversion into the same folder is refused.
        let other = Args { limit: Some(2), ..args.clone() };
        assert_eq!(
            convert(&other).unwrap_err().to_string(),
            format!(
                "{} exists but holds another conversion, or an unfinished one: remove it to convert again",
                args.out.display()
            )
        );
    }

    #[test]
    fn an_interrupted_run_is_run_again_and_jpeg_names_and_limits_apply() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args {
            format: Format::Jpeg,
            limit: Some(4),
            class_names: Some(vec!["zero".into(), "one".into(), "two".into()]),
            ..inputs(dir.path())
        };
        let stale = sibling(&args.out, ".tmp").join("zero/left-over.jpg");
        fs::create_dir_all(stale.parent().unwrap()).unwrap();
        fs::write(&stale, b"half written").unwrap();
        assert_eq!(convert(&args).unwrap(), Outcome::Wrote(4));
        assert_eq!(files(&args.out), [".idx-to-images", "one/1.jpg", "two/3.jpg", "zero/0.jpg", "zero/2.jpg"]);
        let image = image::open(args.out.join("two/3.jpg")).unwrap();
        assert_eq!((image.width(), image.height()), (3, 2));
        assert!(!sibling(&args.out, ".tmp").exists());
    }

    #[test]
    fn inconsistent_inputs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let args = Args { class_names: Some(vec!["a".into(), "b".into()]), ..inputs(dir.path()) };
        assert_eq!(convert(&args).unwrap_err().to_string(), "label 2 has no class name (2 given)");
        let args = Args { class_names: Some(vec!["a".into(), "a/b".into(), "c".into()]), ..inputs(dir.path()) };
        assert_eq!(convert(&args).unwrap_err().to_string(), "class name `a/b` cannot be a folder name");
        fs::write(dir.path().join("labels"), idx(&[6], &[0, 1, 0, 2, 1, 1])).unwrap();
        let args = inputs_keeping_labels(dir.path());
        assert_eq!(
            convert(&args).unwrap_err().to_string(),
            format!("{} has 5 images but {} has 6 labels", args.images.display(), args.labels.display())
        );
        fs::write(dir.path().join("labels"), b"\x00\x00\x0d\x01").unwrap();
        assert_eq!(
            convert(&args).unwrap_err().to_string(),
            format!("{}: not an IDX file of bytes: element type 0x0d is not unsigned byte", args.labels.display())
        );
        assert!(!args.out.exists() && !sibling(&args.out, ".tmp").exists());
    }

    fn inputs_keeping_labels(dir: &Path) -> Args {
        let labels = fs::read(dir.join("labels")).unwrap();
        let args = inputs(dir);
        fs::write(dir.join("labels"), labels).unwrap();
        args
    }
}
