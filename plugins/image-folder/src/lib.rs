//! `image-folder`: an image classification data set read from a tree of PNG and JPEG files, one
//! folder per class. Exports the component `image-folder`, an indexed data set (SDK 1.2): the
//! file list is made when the component is created, and images are decoded in `read`, batch by
//! batch, in the host's loader threads, so memory holds the batches in flight, not the data set.
//!
//! Layouts (class folders are the sorted names of the subfolders; files are found recursively
//! in each class folder, sorted by path; names starting with `.` are ignored), chosen by
//! `layout`:
//! - `classes`: `root/<class>/*.png|jpg|jpeg`, every folder a class whatever its name; every
//!   image is a sample the host splits;
//! - `splits`: `root/train/<class>/...`, optionally `root/val/<class>/...` (or `valid/`,
//!   `validation/`) and `root/test/<class>/...` (split folders only; names in any case): `train`
//!   is split by the host, `test` is the shipped test split, and both `val` and `test` may use
//!   only classes that `train` has. The plugin API has no validation part, so `val`'s images
//!   join `train`'s in the samples the host splits into training and validation (the run's
//!   notes say so: `merged_into_samples`);
//! - `auto` (the default): `classes`, except that a root holding `train/` (and `test/`) only is
//!   read as `splits`; a root with other split-like folders (`val`, `test` without `train`, or
//!   split names beside class names) is refused with a message asking to choose `layout`.
//!
//! There must be at least 2 classes. Class folders must have UTF-8 names (class names are
//! text); a folder whose name is not is refused, named with U+FFFD for its undecodable bytes.
//!
//! Sizes are checked before anything is allocated: `height` × `width` (and every image's size,
//! read from its header before it is decoded) at most `max_pixels`, so a decompression bomb (a
//! small file declaring a huge image) is refused naming the file and its size; one image, a
//! batch, and with `in_memory` the whole data set, must fit in the machine's memory.
//!
//! Features are float32 `[n, channels, height, width]` in `[0, 1]` (a byte value over 255),
//! channels 3 (`color` = `rgb`, the default) or 1 (`grayscale`); targets int64 class indices.
//! Without `height` and `width`, every image must have the size of the first image of the
//! first class (checked up front for the first image of each class, and for every image when it
//! is read); with them, each image is resized to that size (bilinear, the triangle filter).
//! Since 1.1 an image is first turned upright as its EXIF orientation says (photos from cameras
//! and phones), and its size is the upright one.
//!
//! An image that cannot be read (missing permissions, not a PNG or JPEG, truncated or corrupt,
//! of the wrong size) stops the run with an error naming the file, or, with `on_error` =
//! `skip`, is left out of the batch and reported in the run's notes: `{"skipped": count,
//! "skipped_files": ["path: reason", ...]}` (the first 20, by path).
//!
//! `read_inputs` (prediction) takes an image file, a folder (its images, recursively, sorted
//! by path) or a `.txt` list of image paths (one a line, relative to the list's folder; blank
//! lines and lines starting with `#` are ignored), and encodes them as `read` does.

use std::{
    collections::BTreeMap,
    ffi::OsStr,
    fs,
    io::Cursor,
    path::{Path, PathBuf},
    sync::Mutex,
};

use gymnos_plugin_sdk::{
    memory,
    serde_json::{json, Value},
    tch::{Kind, Tensor},
    Config, Configurable, Context, DataPart, DatasetInfo, Description, IndexedDataset, PluginError, Result,
};
use image::{
    imageops::FilterType, metadata::Orientation, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits,
};
use walkdir::WalkDir;

/// Extensions a configuration may list: the formats this plugin decodes.
const KNOWN_EXTENSIONS: [&str; 5] = ["png", "jpg", "jpeg", "jpe", "jfif"];
/// Skipped files listed by path in the notes (all are counted).
const LISTED_SKIPS: usize = 20;
/// What the decoder may allocate at least, whatever `max_pixels` says (the `image` crate's default).
const MIN_DECODER_ALLOC: u64 = 512 << 20;

/// The configuration of `image-folder`.
#[derive(Config)]
pub struct ImageFolderConfig {
    /// Folder of images: root/<class>/*.png (or .jpg, .jpeg), or root/train/<class>/... with
    /// root/test/<class>/... as the shipped test split (see layout)
    #[config(exists = "dir")]
    pub root: PathBuf,
    /// How root is laid out: classes (every folder a class), splits (train/, optionally val/ or
    /// valid/ or validation/, and test/, each holding class folders; val joins the samples the host
    /// splits), or auto (classes, or splits when root holds only train/ and test/; other split-like
    /// folders are refused until layout says which)
    #[config(default = "auto", one_of = ["auto", "classes", "splits"])]
    pub layout: String,
    /// Height every image is resized to (null: no resizing, and all images must have one size;
    /// set together with width)
    #[config(min = 1, max = 65535)]
    pub height: Option<u32>,
    /// Width every image is resized to (null: no resizing; set together with height)
    #[config(min = 1, max = 65535)]
    pub width: Option<u32>,
    /// Channels of the features: rgb (3) or grayscale (1)
    #[config(default = "rgb", one_of = ["rgb", "grayscale"])]
    pub color: String,
    /// An image that cannot be read: fail the run, or skip it (counted in the run's notes)
    #[config(default = "fail", one_of = ["fail", "skip"])]
    pub on_error: String,
    /// Decode every image once and keep the data set in memory, instead of decoding batch by batch
    #[config(default = false)]
    pub in_memory: bool,
    /// Extensions of the image files (case-insensitive): png, jpg, jpeg, jpe, jfif
    #[config(default = ["png", "jpg", "jpeg"], non_empty)]
    pub extensions: Vec<String>,
    /// Most pixels (width × height) an image may have, as stored or resized to: a larger one is
    /// refused before it is decoded (a decompression bomb); the default is 2^27 (11585 × 11585)
    #[config(default = 134217728, min = 1)]
    pub max_pixels: u64,
}

/// The images of one part, and their class indices.
struct Split {
    files: Vec<PathBuf>,
    labels: Vec<i64>,
}

pub struct ImageFolder {
    root: PathBuf,
    classes: Vec<String>,
    train: Split,
    test: Option<Split>,
    /// Height and width of the features.
    size: (u32, u32),
    /// Resize to `size` (else an image of another size is an error).
    resize: bool,
    /// The image whose size the others must have, when not resizing.
    size_source: PathBuf,
    grayscale: bool,
    skip: bool,
    in_memory: bool,
    extensions: Vec<String>,
    max_pixels: u64,
    /// The split folders whose images joined the samples (`val`...).
    merged: Vec<String>,
    /// Images skipped so far (`on_error` = `skip`), by path, with the reason.
    skipped: Mutex<BTreeMap<PathBuf, String>>,
}

/// Refuses what `counts` values of `bytes_each` bytes would need when this machine lacks it,
/// with `hint` after the sizes.
fn fits(what: impl FnOnce() -> String, counts: &[u64], bytes_each: u64, hint: &str) -> Result<()> {
    let bytes = memory::bytes_of(counts, bytes_each);
    if bytes.is_some_and(|b| b <= u128::from(memory::limit_bytes())) {
        return Ok(());
    }
    memory::ensure_bytes_fit(&what(), bytes).map_err(|e| PluginError::config(format!("{}{hint}", e.message)))
}

fn hidden(name: &OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

/// Sorted names of the (non-hidden) folders in `dir`, following symbolic links.
fn subfolders(dir: &Path) -> Result<Vec<String>> {
    let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", dir.display()));
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if hidden(&entry.file_name()) {
            continue;
        }
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(_) => {
                    return Err(PluginError::data(format!(
                        "{}: the folder name is not UTF-8 (shown with \u{FFFD} for its undecodable bytes); class and \
                         split names are text: rename it",
                        path.display()
                    )))
                }
            },
            Ok(_) => {}
            Err(e) => return Err(PluginError::io(format!("{}: {e}", path.display()))),
        }
    }
    names.sort();
    Ok(names)
}

fn walk_error(e: walkdir::Error) -> PluginError {
    let path = e.path().map(|p| p.display().to_string()).unwrap_or_default();
    if let Some(ancestor) = e.loop_ancestor() {
        return PluginError::data(format!("{path}: symbolic link loop (it leads back to {})", ancestor.display()));
    }
    match e.io_error() {
        Some(io) => PluginError::io(format!("{path}: {io}")),
        None => PluginError::io(format!("{path}: {e}")),
    }
}

fn has_extension(path: &Path, extensions: &[String]) -> bool {
    path.extension().is_some_and(|e| extensions.iter().any(|x| e.to_string_lossy().eq_ignore_ascii_case(x)))
}

/// The image files under `dir`, recursively (following symbolic links, refusing loops), sorted.
fn image_files(dir: &Path, extensions: &[String]) -> Result<Vec<PathBuf>> {
    let walker = WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !hidden(e.file_name()));
    let mut files = Vec::new();
    for entry in walker {
        let entry = entry.map_err(walk_error)?;
        if entry.file_type().is_file() && has_extension(entry.path(), extensions) {
            files.push(entry.into_path());
        }
    }
    files.sort();
    Ok(files)
}

/// The images of `classes`' folders under `dir`, labelled with their index in `all_classes`.
fn split(dir: &Path, classes: &[String], all_classes: &[String], extensions: &[String]) -> Result<Split> {
    let mut out = Split { files: Vec::new(), labels: Vec::new() };
    for class in classes {
        let label = all_classes.iter().position(|c| c == class).expect("a known class") as i64;
        let class_dir = dir.join(class);
        let files = image_files(&class_dir, extensions)?;
        if files.is_empty() {
            return Err(PluginError::data(format!(
                "{}: no images (files ending in {})",
                class_dir.display(),
                extensions.iter().map(|e| format!(".{e}")).collect::<Vec<_>>().join(", ")
            )));
        }
        out.labels.extend(std::iter::repeat_n(label, files.len()));
        out.files.extend(files);
    }
    Ok(out)
}

/// Reads an image file whole; the error is one line, `path: reason`.
fn open(path: &Path) -> Result<(Vec<u8>, ImageFormat)> {
    let bytes = fs::read(path).map_err(|e| PluginError::io(format!("{}: {e}", path.display())))?;
    let format = ImageReader::new(Cursor::new(&bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.format())
        .filter(|f| matches!(f, ImageFormat::Png | ImageFormat::Jpeg))
        .ok_or_else(|| PluginError::data(format!("{}: not a PNG or JPEG image", path.display())))?;
    Ok((bytes, format))
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "PNG",
        _ => "JPEG",
    }
}

fn corrupt(path: &Path, format: ImageFormat, e: impl std::fmt::Display) -> PluginError {
    let reason = e.to_string().replace('\n', " ");
    PluginError::data(format!("{}: truncated or corrupt {}: {reason}", path.display(), format_name(format)))
}

/// A JPEG's entropy-coded data ends with the EOI marker (`FF D9`), possibly followed by padding
/// or trailing metadata; decoders fill a truncated scan with grey instead of failing.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    // The last start-of-scan marker, then an end-of-image marker after it.
    let sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    sos.is_some_and(|at| bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9]))
}

/// The decoder of an image and the turn its EXIF orientation asks for (cameras store a photo
/// as the sensor saw it and record how to turn it upright). Unreadable EXIF data is ignored:
/// the pixels are what matters. Only the header is read: an image of more than `max_pixels`
/// pixels is refused here, before its pixels are decoded, and the decoder may allocate no more
/// than such an image needs.
fn decoder<'b>(
    path: &Path,
    bytes: &'b [u8],
    format: ImageFormat,
    max_pixels: u64,
) -> Result<(impl ImageDecoder + 'b, Orientation)> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    // 8 bytes a pixel: 16-bit RGBA, the widest these formats decode to.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).max(MIN_DECODER_ALLOC));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| corrupt(path, format, e))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > max_pixels {
        return Err(PluginError::data(format!(
            "{}: image is {w}x{h} pixels ({pixels}), more than max_pixels ({max_pixels}); refused before decoding \
             (a decompression bomb?); raise max_pixels to read it",
            path.display()
        )));
    }
    if decoder.total_bytes() > memory::limit_bytes() {
        let what = format!("{}: image is {w}x{h} pixels; decoding it", path.display());
        let refused = memory::ensure_bytes_fit(&what, Some(u128::from(decoder.total_bytes())));
        return Err(PluginError::data(refused.err().map(|e| e.message.to_string()).unwrap_or(what)));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    Ok((decoder, orientation))
}

/// The size of an image upright, from its header.
fn dimensions(path: &Path, max_pixels: u64) -> Result<(u32, u32)> {
    let (bytes, format) = open(path)?;
    let (decoder, orientation) = decoder(path, &bytes, format, max_pixels)?;
    let (w, h) = decoder.dimensions();
    let quarter_turn = matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    );
    Ok(if quarter_turn { (h, w) } else { (w, h) })
}

impl ImageFolder {
    fn channels(&self) -> i64 {
        if self.grayscale {
            1
        } else {
            3
        }
    }

    fn part(&self, part: DataPart) -> Result<&Split> {
        match part {
            DataPart::Samples => Ok(&self.train),
            DataPart::Test => self.test.as_ref().ok_or_else(|| {
                PluginError::data(format!(
                    "{}: no test split (it would be the folder test, next to train)",
                    self.root.display()
                ))
            }),
        }
    }

    /// Decodes one image into `out` as channel-major bytes (`[c, h, w]`).
    fn decode_into(&self, path: &Path, out: &mut Vec<u8>) -> Result<()> {
        let (bytes, format) = open(path)?;
        if format == ImageFormat::Jpeg && !jpeg_is_complete(&bytes) {
            return Err(corrupt(path, format, "the data ends before the end-of-image marker"));
        }
        let (decoder, orientation) = decoder(path, &bytes, format, self.max_pixels)?;
        let mut image = DynamicImage::from_decoder(decoder).map_err(|e| corrupt(path, format, e))?;
        image.apply_orientation(orientation);
        let (w, h) = (image.width(), image.height());
        let (th, tw) = self.size;
        if !self.resize && (w, h) != (tw, th) {
            return Err(PluginError::data(format!(
                "{}: image is {w}x{h} pixels but {} is {tw}x{th} (set height and width to resize images to one size)",
                path.display(),
                self.size_source.display()
            )));
        }
        let resize = |image: DynamicImage| match (w, h) == (tw, th) {
            true => image,
            false => image.resize_exact(tw, th, FilterType::Triangle),
        };
        let (pixels, c) = if self.grayscale {
            (resize(DynamicImage::ImageLuma8(image.to_luma8())).into_luma8().into_raw(), 1)
        } else {
            (resize(DynamicImage::ImageRgb8(image.to_rgb8())).into_rgb8().into_raw(), 3)
        };
        let plane = (tw * th) as usize;
        if c == 1 {
            out.extend_from_slice(&pixels);
        } else {
            let start = out.len();
            out.resize(start + 3 * plane, 0);
            for (p, rgb) in pixels.chunks_exact(3).enumerate() {
                for (ch, &v) in rgb.iter().enumerate() {
                    out[start + ch * plane + p] = v;
                }
            }
        }
        Ok(())
    }

    /// Features `[n, c, h, w]` in `[0, 1]` from channel-major bytes.
    fn features(&self, bytes: &[u8], n: i64) -> Tensor {
        let (h, w) = self.size;
        Tensor::from_slice(bytes).view([n, self.channels(), h as i64, w as i64]).to_kind(Kind::Float) / 255.0
    }

    /// The images of a `read_inputs` path: an image, a folder of images, or a `.txt` list.
    fn input_files(&self, path: &Path) -> Result<Vec<PathBuf>> {
        let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", path.display()));
        if fs::metadata(path).map_err(io)?.is_dir() {
            let files = image_files(path, &self.extensions)?;
            if files.is_empty() {
                return Err(PluginError::data(format!("{}: no images", path.display())));
            }
            return Ok(files);
        }
        if !path.extension().is_some_and(|e| e.eq_ignore_ascii_case("txt")) {
            return Ok(vec![path.to_path_buf()]);
        }
        let base = path.parent().unwrap_or(Path::new(""));
        let files: Vec<PathBuf> = fs::read_to_string(path)
            .map_err(io)?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| base.join(l))
            .collect();
        if files.is_empty() {
            return Err(PluginError::data(format!("{}: lists no images", path.display())));
        }
        Ok(files)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Auto,
    Classes,
    Splits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Train,
    Validation,
    Test,
}

/// The part a folder of the `splits` layout is, by its name (in any case).
fn role(name: &str) -> Option<Role> {
    match name.to_ascii_lowercase().as_str() {
        "train" => Some(Role::Train),
        "val" | "valid" | "validation" => Some(Role::Validation),
        "test" => Some(Role::Test),
        _ => None,
    }
}

const LAYOUTS: &str = "expected root/<class>/ folders of images, or root/train/<class>/ with root/val/<class>/ and \
                       root/test/<class>/";

/// The class folders of `dir`, at least two.
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let classes = subfolders(dir)?;
    match classes.as_slice() {
        [] => Err(PluginError::data(format!("{}: no class folders ({LAYOUTS})", dir.display()))),
        [only] => Err(PluginError::data(format!(
            "{}: one class folder, `{only}`; classification needs at least 2 classes (a folder of images for each)",
            dir.display()
        ))),
        _ => Ok(classes),
    }
}

/// What a root holds.
struct Found {
    classes: Vec<String>,
    train: Split,
    test: Option<Split>,
    /// The split folders merged into `train` (`val`...).
    merged: Vec<String>,
}

/// Finds the classes and images under `root`.
fn scan(root: &Path, extensions: &[String], layout: Layout) -> Result<Found> {
    let top = subfolders(root)?;
    if top.is_empty() {
        return Err(PluginError::data(format!("{}: no class folders ({LAYOUTS})", root.display())));
    }
    let split_like: Vec<&String> = top.iter().filter(|n| role(n).is_some()).collect();
    let has_train = top.iter().any(|n| role(n) == Some(Role::Train));
    let as_splits = match layout {
        Layout::Classes => false,
        Layout::Splits => {
            if let Some(other) = top.iter().find(|n| role(n).is_none()) {
                return Err(PluginError::data(format!(
                    "{}: not a split folder; layout `splits` expects train/, and optionally val/ (or valid/, \
                     validation/) and test/, each holding class folders",
                    root.join(other).display()
                )));
            }
            if !has_train {
                return Err(PluginError::data(format!(
                    "{}: layout `splits` needs a train folder (root/train/<class>/...); it has: {}",
                    root.display(),
                    top.join(", ")
                )));
            }
            true
        }
        Layout::Auto => {
            let train_and_test = has_train && top.iter().all(|n| matches!(role(n), Some(Role::Train | Role::Test)));
            if !split_like.is_empty() && !train_and_test {
                let names = split_like.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
                return Err(PluginError::data(format!(
                    "{}: folder{} {names} look{} like splits, not classes (its folders: {}); set layout to `splits` \
                     to read root/train/<class>/ with val/ and test/ beside it, or to `classes` to take every folder \
                     as a class",
                    root.display(),
                    if split_like.len() == 1 { "" } else { "s" },
                    if split_like.len() == 1 { "s" } else { "" },
                    top.join(", ")
                )));
            }
            train_and_test
        }
    };
    if !as_splits {
        let classes = class_folders(root)?;
        let train = split(root, &classes, &classes, extensions)?;
        return Ok(Found { classes, train, test: None, merged: Vec::new() });
    }
    let train_dir = root.join(top.iter().find(|n| role(n) == Some(Role::Train)).expect("a train folder"));
    let classes = class_folders(&train_dir)?;
    let mut train = split(&train_dir, &classes, &classes, extensions)?;
    // The other splits may use the training classes only.
    let part = |name: &String| -> Result<Split> {
        let dir = root.join(name);
        let part_classes = subfolders(&dir)?;
        if part_classes.is_empty() {
            return Err(PluginError::data(format!("{}: no class folders ({LAYOUTS})", dir.display())));
        }
        if let Some(unknown) = part_classes.iter().find(|c| !classes.contains(c)) {
            return Err(PluginError::data(format!(
                "{}: class `{unknown}` has no folder in {} (the {name} split may only use the training classes)",
                dir.join(unknown).display(),
                train_dir.display()
            )));
        }
        split(&dir, &part_classes, &classes, extensions)
    };
    let mut merged = Vec::new();
    for name in top.iter().filter(|n| role(n) == Some(Role::Validation)) {
        let validation = part(name)?;
        train.files.extend(validation.files);
        train.labels.extend(validation.labels);
        merged.push(name.clone());
    }
    let test = top.iter().find(|n| role(n) == Some(Role::Test)).map(part).transpose()?;
    Ok(Found { classes, train, test, merged })
}

/// Without resizing: the size of the first image of the first class, which the first image of
/// every other class must share (every image is checked again when read). With `skip`, an
/// unreadable image is passed over here (and skipped when read).
fn common_size(train: &Split, test: Option<&Split>, skip: bool, max_pixels: u64) -> Result<((u32, u32), PathBuf)> {
    let mut first: Option<((u32, u32), PathBuf)> = None;
    for part in std::iter::once(train).chain(test) {
        let mut label = None;
        for (file, &l) in part.files.iter().zip(&part.labels) {
            if label == Some(l) {
                continue;
            }
            let (w, h) = match dimensions(file, max_pixels) {
                Ok(size) => size,
                Err(_) if skip => continue,
                Err(e) => return Err(e),
            };
            label = Some(l);
            match &first {
                None => first = Some(((h, w), file.clone())),
                Some(((fh, fw), source)) if (h, w) != (*fh, *fw) => {
                    return Err(PluginError::data(format!(
                        "{}: image is {w}x{h} pixels but {} is {fw}x{fh} (set height and width to resize images to \
                         one size)",
                        file.display(),
                        source.display()
                    )))
                }
                Some(_) => {}
            }
        }
    }
    first.ok_or_else(|| PluginError::data("no readable image to take the images' size from"))
}

impl Configurable for ImageFolder {
    const NAME: &'static str = "image-folder";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Images (PNG, JPEG) in one folder per class, decoded batch by batch";
    type Config = ImageFolderConfig;

    fn build(config: ImageFolderConfig, _ctx: &Context) -> Result<Self> {
        let mut extensions = Vec::new();
        for ext in &config.extensions {
            let ext = ext.trim_start_matches('.').to_ascii_lowercase();
            if !KNOWN_EXTENSIONS.contains(&ext.as_str()) {
                return Err(PluginError::config(format!(
                    "extensions: `{ext}` is not a format this data set reads ({})",
                    KNOWN_EXTENSIONS.join(", ")
                )));
            }
            extensions.push(ext);
        }
        let skip = config.on_error == "skip";
        let layout = match config.layout.as_str() {
            "classes" => Layout::Classes,
            "splits" => Layout::Splits,
            _ => Layout::Auto,
        };
        let max_pixels = config.max_pixels;
        let Found { classes, train, test, merged } = scan(&config.root, &extensions, layout)?;
        let (size, resize, size_source) = match (config.height, config.width) {
            (Some(h), Some(w)) => {
                let pixels = u64::from(h) * u64::from(w);
                if pixels > max_pixels {
                    return Err(PluginError::config(format!(
                        "height × width: {h} × {w} is {pixels} pixels an image, more than max_pixels ({max_pixels}); \
                         resize to a smaller size (or raise max_pixels)"
                    )));
                }
                ((h, w), true, PathBuf::new())
            }
            (None, None) => {
                let (size, source) = common_size(&train, test.as_ref(), skip, max_pixels)?;
                (size, false, source)
            }
            _ => {
                return Err(PluginError::config(
                    "height and width go together: set both to resize, or neither (all images must then have one \
                     size)",
                ))
            }
        };
        let grayscale = config.color == "grayscale";
        let (h, w) = (u64::from(size.0), u64::from(size.1));
        let channels = if grayscale { 1 } else { 3 };
        // One image as float32 features, then (loaded whole) every image, bytes and floats.
        fits(
            || format!("height × width × channels ({h} × {w} × {channels}, one image as float32)"),
            &[h, w, channels],
            4,
            "; resize to a smaller size",
        )?;
        if config.in_memory {
            let images = train.files.len() as u64 + test.as_ref().map_or(0, |t| t.files.len() as u64);
            fits(
                || format!("in_memory: height × width × channels × images ({h} × {w} × {channels} × {images})"),
                &[h, w, channels, images],
                5,
                "; set in_memory to false to decode batch by batch, or resize to a smaller size",
            )?;
        }
        Ok(Self {
            root: config.root,
            classes,
            train,
            test,
            size,
            resize,
            size_source,
            grayscale,
            skip,
            in_memory: config.in_memory,
            extensions,
            max_pixels,
            merged,
            skipped: Mutex::new(BTreeMap::new()),
        })
    }
}

impl IndexedDataset for ImageFolder {
    fn describe(&self) -> Result<Description> {
        let (h, w) = self.size;
        Ok(Description {
            info: DatasetInfo::classification(vec![self.channels(), h as i64, w as i64], self.classes.clone()),
            len: self.train.files.len() as u64,
            test_len: self.test.as_ref().map(|t| t.files.len() as u64),
            concurrent_reads: true,
        })
    }

    fn read(&self, part: DataPart, indices: &[u64]) -> Result<(Tensor, Tensor)> {
        let split = self.part(part)?;
        let (h, w) = self.size;
        let c = self.channels() as u64;
        let n = indices.len() as u64;
        fits(
            || format!("a batch of {n} images of {c} × {h} × {w}"),
            &[n, c, u64::from(h), u64::from(w)],
            5,
            "; use a smaller batch size or image size",
        )?;
        let mut bytes = Vec::with_capacity(indices.len() * (c as usize) * (h as usize) * (w as usize));
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            let (file, label) = usize::try_from(i)
                .ok()
                .and_then(|i| Some((split.files.get(i)?, split.labels[i])))
                .ok_or_else(|| {
                    PluginError::data(format!("index {i} is out of range: {part:?} has {} images", split.files.len()))
                })?;
            let start = bytes.len();
            match self.decode_into(file, &mut bytes) {
                Ok(()) => labels.push(label),
                Err(e) if self.skip => {
                    bytes.truncate(start);
                    let reason = e.message.as_str();
                    let prefix = format!("{}: ", file.display());
                    let reason = reason.strip_prefix(&prefix).unwrap_or(reason).to_string();
                    self.skipped.lock().unwrap_or_else(|p| p.into_inner()).insert(file.clone(), reason);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((self.features(&bytes, labels.len() as i64), Tensor::from_slice(&labels)))
    }

    fn read_inputs(&self, path: &Path) -> Result<Tensor> {
        let files = self.input_files(path)?;
        let (h, w) = self.size;
        let (c, n) = (self.channels() as u64, files.len() as u64);
        fits(
            || format!("{n} images of {c} × {h} × {w} to predict"),
            &[n, c, u64::from(h), u64::from(w)],
            5,
            "; predict fewer images at once",
        )?;
        let mut bytes = Vec::new();
        for file in &files {
            self.decode_into(file, &mut bytes)?;
        }
        Ok(self.features(&bytes, files.len() as i64))
    }

    fn notes(&self) -> Result<Value> {
        let skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        let listed: Vec<String> =
            skipped.iter().take(LISTED_SKIPS).map(|(path, why)| format!("{}: {why}", path.display())).collect();
        let mut notes = json!({ "skipped": skipped.len(), "skipped_files": listed });
        if !self.merged.is_empty() {
            notes["merged_into_samples"] = json!(self.merged);
        }
        Ok(notes)
    }

    fn streams(&self) -> bool {
        !self.in_memory
    }
}

gymnos_plugin_sdk::export_plugin!(indexed_dataset(ImageFolder));

#[cfg(test)]
mod tests;
