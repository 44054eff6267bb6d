use std::{
    fs,
    path::{Path, PathBuf},
};

use gymnos_plugin_sdk::{
    harness,
    serde_json::{json, Value},
    tch::{Kind, Tensor},
    ConfigSchema, Configurable, Context, DataPart, IndexedDataset,
};
use image::{GrayImage, Luma, Rgb, RgbImage};

use super::{ImageFolder, ImageFolderConfig};

fn dataset(config: Value) -> gymnos_plugin_sdk::Result<ImageFolder> {
    ImageFolder::build(ImageFolderConfig::from_json(config)?, &Context::standalone())
}

fn error(config: Value) -> String {
    match dataset(config) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A grayscale PNG of `w`×`h` whose pixel (x, y) is `seed + 10 y + x`.
fn gray(path: &Path, w: u32, h: u32, seed: u8) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_fn(w, h, |x, y| Luma([seed.wrapping_add((10 * y + x) as u8)])).save(path).unwrap();
}

/// A folder with classes `a` (3 images) and `b` (2 images), 4×3 grayscale PNGs.
fn two_classes(root: &Path) {
    for (i, name) in ["a/0.png", "a/1.png", "a/2.png", "b/0.png", "b/1.png"].iter().enumerate() {
        gray(&root.join(name), 4, 3, 20 * i as u8);
    }
}

fn read(d: &ImageFolder, part: DataPart, indices: &[u64]) -> (Tensor, Tensor) {
    d.read(part, indices).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

fn labels(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t).unwrap()
}

fn read_error(d: &ImageFolder, indices: &[u64]) -> String {
    d.read(DataPart::Samples, indices).expect_err("an error").to_string()
}

#[test]
fn meets_the_indexed_dataset_contract_in_both_colors() {
    let dir = tempfile::tempdir().unwrap();
    two_classes(dir.path());
    let config = json!({ "root": dir.path(), "color": "grayscale" });
    assert_eq!(harness::check_indexed_dataset::<ImageFolder>(config).unwrap(), (5, 0));
    let config = json!({ "root": dir.path() });
    assert_eq!(harness::check_indexed_dataset::<ImageFolder>(config).unwrap(), (5, 0));
    let d = dataset(json!({ "root": dir.path(), "color": "grayscale" })).unwrap();
    let description = d.describe().unwrap();
    assert_eq!(description.info.feature_shape.to_vec(), [1, 3, 4]);
    assert_eq!(description.info.class_names.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(description.concurrent_reads && d.streams());
    let d = dataset(json!({ "root": dir.path() })).unwrap();
    assert_eq!(d.describe().unwrap().info.feature_shape.to_vec(), [3, 3, 4], "rgb is the default");
    assert_eq!(labels(&read(&d, DataPart::Samples, &[4, 0, 2, 3]).1), [1, 0, 0, 1]);
}

#[test]
fn pixels_read_back_exactly_as_bytes_over_255() {
    let dir = tempfile::tempdir().unwrap();
    gray(&dir.path().join("g/0.png"), 4, 3, 7);
    let rgb = RgbImage::from_fn(2, 2, |x, y| Rgb([(x + 2 * y) as u8, 100 + (x + 2 * y) as u8, 250]));
    rgb.save(dir.path().join("g/1.png")).unwrap();
    gray(&dir.path().join("h/0.png"), 4, 3, 9);
    let d = dataset(json!({ "root": dir.path(), "color": "grayscale", "height": 3, "width": 4 })).unwrap();
    let (x, _) = read(&d, DataPart::Samples, &[0]);
    assert_eq!(x.kind(), Kind::Float);
    let expected: Vec<f32> = (0..3).flat_map(|y| (0..4).map(move |x| (7 + 10 * y + x) as f32 / 255.0)).collect();
    assert_eq!(values(&x), expected);

    let d = dataset(json!({ "root": dir.path(), "color": "rgb", "height": 2, "width": 2 })).unwrap();
    let (x, _) = read(&d, DataPart::Samples, &[1]);
    assert_eq!(x.size(), [1, 3, 2, 2]);
    let channels: Vec<f32> =
        [0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 102.0, 103.0, 250.0, 250.0, 250.0, 250.0].map(|v| v / 255.0).to_vec();
    assert_eq!(values(&x), channels, "channel-major [c, h, w]");
}

#[test]
fn grayscale_images_read_as_rgb_repeat_their_value_and_rgb_as_grayscale_has_one_channel() {
    let dir = tempfile::tempdir().unwrap();
    gray(&dir.path().join("a/0.png"), 2, 2, 40);
    RgbImage::from_pixel(2, 2, Rgb([90, 90, 90])).save(dir.path().join("a/1.png")).unwrap();
    gray(&dir.path().join("b/0.png"), 2, 2, 0);
    let rgb = dataset(json!({ "root": dir.path() })).unwrap();
    let (x, _) = read(&rgb, DataPart::Samples, &[0]);
    assert_eq!(x.size(), [1, 3, 2, 2]);
    assert!(x.get(0).get(0).equal(&x.get(0).get(2)));
    let gray = dataset(json!({ "root": dir.path(), "color": "grayscale" })).unwrap();
    let (x, _) = read(&gray, DataPart::Samples, &[1]);
    assert_eq!(values(&x), [90.0 / 255.0; 4]);
}

#[test]
fn a_train_and_test_layout_ships_a_test_split_over_the_training_classes() {
    let dir = tempfile::tempdir().unwrap();
    two_classes(&dir.path().join("train"));
    gray(&dir.path().join("test/b/x.png"), 4, 3, 1);
    gray(&dir.path().join("test/b/y.png"), 4, 3, 2);
    gray(&dir.path().join("test/b/nested/z.png"), 4, 3, 3);
    let config = json!({ "root": dir.path() });
    assert_eq!(harness::check_indexed_dataset::<ImageFolder>(config.clone()).unwrap(), (5, 3));
    let d = dataset(config).unwrap();
    assert_eq!(d.describe().unwrap().test_len, Some(3));
    assert_eq!(labels(&read(&d, DataPart::Test, &[0, 1, 2]).1), [1, 1, 1], "`b` is class 1 of train");

    gray(&dir.path().join("test/c/0.png"), 4, 3, 1);
    let test_c = dir.path().join("test/c");
    let train = dir.path().join("train");
    assert_eq!(
        error(json!({ "root": dir.path() })),
        format!(
            "data error: {}: class `c` has no folder in {} (the test split may only use the training classes)",
            test_c.display(),
            train.display()
        )
    );

    let plain = tempfile::tempdir().unwrap();
    two_classes(plain.path());
    let d = dataset(json!({ "root": plain.path() })).unwrap();
    assert_eq!(d.describe().unwrap().test_len, None);
    assert_eq!(
        d.read(DataPart::Test, &[0]).err().unwrap().to_string(),
        format!("data error: {}: no test split (it would be the folder test, next to train)", plain.path().display())
    );
    assert_eq!(read_error(&d, &[5]), "data error: index 5 is out of range: Samples has 5 images");
}

#[test]
fn images_are_resized_to_a_set_size_and_otherwise_must_share_one() {
    let dir = tempfile::tempdir().unwrap();
    gray(&dir.path().join("a/0.png"), 4, 3, 0);
    fs::create_dir_all(dir.path().join("b")).unwrap();
    GrayImage::from_pixel(8, 6, Luma([200])).save(dir.path().join("b/0.png")).unwrap();
    let config = json!({ "root": dir.path(), "height": 2, "width": 5, "color": "grayscale" });
    assert_eq!(harness::check_indexed_dataset::<ImageFolder>(config.clone()).unwrap(), (2, 0));
    let d = dataset(config).unwrap();
    let (x, _) = read(&d, DataPart::Samples, &[1, 0]);
    assert_eq!(x.size(), [2, 1, 2, 5]);
    assert_eq!(values(&x.get(0)), [200.0 / 255.0; 10], "a uniform image stays uniform");

    // Without a size, the first image of each class is checked when the data set is created...
    let (a0, b0) = (dir.path().join("a/0.png"), dir.path().join("b/0.png"));
    assert_eq!(
        error(json!({ "root": dir.path() })),
        format!(
            "data error: {}: image is 8x6 pixels but {} is 4x3 (set height and width to resize images to one size)",
            b0.display(),
            a0.display()
        )
    );
    // ... and every image when it is read.
    fs::remove_file(&b0).unwrap();
    gray(&dir.path().join("b/0.png"), 4, 3, 0);
    gray(&dir.path().join("b/1.png"), 3, 4, 0);
    let d = dataset(json!({ "root": dir.path() })).unwrap();
    assert_eq!(
        read_error(&d, &[0, 1, 2]),
        format!(
            "data error: {}: image is 3x4 pixels but {} is 4x3 (set height and width to resize images to one size)",
            dir.path().join("b/1.png").display(),
            a0.display()
        )
    );
    assert_eq!(
        error(json!({ "root": dir.path(), "height": 2 })),
        "configuration error: height and width go together: set both to resize, or neither (all images must then \
         have one size)"
    );
}

#[test]
fn files_are_found_recursively_by_extension_whatever_its_case_and_hidden_entries_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    gray(&dir.path().join("a/0.png"), 2, 2, 0);
    gray(&dir.path().join("a/deeper/1.PNG"), 2, 2, 0);
    fs::write(dir.path().join("a/notes.txt"), "not an image").unwrap();
    gray(&dir.path().join("a/.hidden.png"), 2, 2, 0);
    gray(&dir.path().join(".cache/0.png"), 2, 2, 0);
    gray(&dir.path().join("b/0.jpeg.PNG"), 2, 2, 0);
    let d = dataset(json!({ "root": dir.path() })).unwrap();
    assert_eq!(d.describe().unwrap().len, 3);
    assert_eq!(d.describe().unwrap().info.class_names.len(), 2);
    let only_jpeg = dataset(json!({ "root": dir.path(), "extensions": ["JPG"] }));
    assert_eq!(
        only_jpeg.err().unwrap().to_string(),
        format!("data error: {}: no images (files ending in .jpg)", dir.path().join("a").display())
    );
    assert_eq!(
        error(json!({ "root": dir.path(), "extensions": ["png", "gif"] })),
        "configuration error: extensions: `gif` is not a format this data set reads (png, jpg, jpeg, jpe, jfif)"
    );
}

#[test]
fn an_empty_root_or_class_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let expected = "expected root/<class>/ folders of images, or root/train/<class>/ with root/val/<class>/ and \
                    root/test/<class>/";
    assert_eq!(
        error(json!({ "root": root })),
        format!("data error: {}: no class folders ({expected})", root.display())
    );
    two_classes(root);
    fs::create_dir(root.join("c")).unwrap();
    assert_eq!(
        error(json!({ "root": root })),
        format!("data error: {}: no images (files ending in .png, .jpg, .jpeg)", root.join("c").display())
    );
    let err = harness::check_indexed_dataset::<ImageFolder>(json!({ "root": root.join("missing") })).unwrap_err();
    assert_eq!(err, format!("create: configuration error: root: {} does not exist", root.join("missing").display()));
}

/// Valid image bytes cut at 60%: within the compressed pixels, where the JPEG decoder would
/// fill the rest of the image with grey rather than fail.
fn truncated(bytes: Vec<u8>) -> Vec<u8> {
    bytes[..bytes.len() * 6 / 10].to_vec()
}

/// A 64×48 image with enough detail that its compressed pixels outweigh its headers.
fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let image =
        RgbImage::from_fn(64, 48, |x, y| Rgb([(x * 15) as u8, ((y * 20) ^ (x * 3)) as u8, ((x + y) * 7) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// Class `a`: three good 64×48 images, then `bad` (last by name); class `b`: one good image.
fn with_bad_file(root: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    for good in ["a/0.png", "a/1.png", "a/2.png", "b/0.png"] {
        let good = root.join(good);
        fs::create_dir_all(good.parent().unwrap()).unwrap();
        fs::write(&good, encoded(image::ImageFormat::Png)).unwrap();
    }
    let bad = root.join("a").join(name);
    fs::write(&bad, bytes).unwrap();
    bad
}

#[test]
fn a_truncated_png_or_jpeg_or_a_file_that_is_no_image_is_an_error_naming_it() {
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("z.png", truncated(encoded(image::ImageFormat::Png)), "truncated or corrupt PNG: "),
        ("z.jpg", truncated(encoded(image::ImageFormat::Jpeg)), "truncated or corrupt JPEG: "),
        ("z.png", b"just some text\n".to_vec(), "not a PNG or JPEG image"),
    ];
    for (name, bytes, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        let bad = with_bad_file(dir.path(), name, &bytes);
        let d = dataset(json!({ "root": dir.path() })).unwrap();
        assert_eq!(read(&d, DataPart::Samples, &[0, 1, 2]).0.size(), [3, 3, 48, 64]);
        let err = read_error(&d, &[0, 3]);
        let prefix = format!("data error: {}: {reason}", bad.display());
        assert!(err.starts_with(&prefix), "{err}\ndoes not start with\n{prefix}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn truncated_images_give_the_decoders_reason() {
    let dir = tempfile::tempdir().unwrap();
    let bad = with_bad_file(dir.path(), "z.jpg", &truncated(encoded(image::ImageFormat::Jpeg)));
    let d = dataset(json!({ "root": dir.path() })).unwrap();
    assert_eq!(
        read_error(&d, &[3]),
        format!(
            "data error: {}: truncated or corrupt JPEG: the data ends before the end-of-image marker",
            bad.display()
        )
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = with_bad_file(dir.path(), "z.png", &truncated(encoded(image::ImageFormat::Png)));
    let d = dataset(json!({ "root": dir.path() })).unwrap();
    assert_eq!(
        read_error(&d, &[3]),
        format!("data error: {}: truncated or corrupt PNG: unexpected end of file", bad.display())
    );
}

#[test]
fn an_unreadable_file_is_an_io_error_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bad = with_bad_file(dir.path(), "z.png", &encoded(image::ImageFormat::Png));
    fs::set_permissions(&bad, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read(&bad).is_ok() {
        eprintln!("running as root: every file is readable, nothing to check");
        return;
    }
    let d = dataset(json!({ "root": dir.path() })).unwrap();
    assert_eq!(read_error(&d, &[3]), format!("I/O error: {}: Permission denied (os error 13)", bad.display()));
}

#[test]
fn a_symbolic_link_loop_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    two_classes(dir.path());
    let link = dir.path().join("a/again");
    std::os::unix::fs::symlink(dir.path().join("a"), &link).unwrap();
    assert_eq!(
        error(json!({ "root": dir.path() })),
        format!(
            "data error: {}: symbolic link loop (it leads back to {})",
            link.display(),
            dir.path().join("a").display()
        )
    );
    // A link to images elsewhere is followed.
    fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(dir.path().join("b"), &link).unwrap();
    assert_eq!(dataset(json!({ "root": dir.path() })).unwrap().describe().unwrap().len, 7);
}

#[test]
fn skipping_leaves_unreadable_images_out_and_counts_them_once_in_the_notes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = with_bad_file(dir.path(), "1b.png", b"not an image");
    let truncated_png = dir.path().join("a/2b.png");
    fs::write(&truncated_png, truncated(encoded(image::ImageFormat::Png))).unwrap();
    let d = dataset(json!({ "root": dir.path(), "on_error": "skip" })).unwrap();
    assert_eq!(d.describe().unwrap().len, 6);
    assert_eq!(d.notes().unwrap(), json!({ "skipped": 0, "skipped_files": [] }));
    let (x, y) = read(&d, DataPart::Samples, &[0, 1, 2, 3, 4]);
    assert_eq!((x.size()[0], y.size()[0]), (3, 3));
    let (x2, y2) = read(&d, DataPart::Samples, &[2, 3, 4]);
    assert_eq!((x2.size()[0], y2.size()[0]), (1, 1), "indices 2 and 4 are 1b.png and 2b.png");
    assert!(x2.equal(&x.narrow(0, 2, 1)));
    let notes = d.notes().unwrap();
    assert_eq!(notes["skipped"], 2, "each file counted once: {notes}");
    let listed = notes["skipped_files"].as_array().unwrap();
    assert_eq!(listed[0], format!("{}: not a PNG or JPEG image", bad.display()));
    assert!(listed[1]
        .as_str()
        .unwrap()
        .starts_with(&format!("{}: truncated or corrupt PNG: ", truncated_png.display())));
    assert_eq!(read(&d, DataPart::Samples, &[2, 4]).0.size(), [0, 3, 48, 64], "a batch may be all skipped");
    let failing = dataset(json!({ "root": dir.path() })).unwrap();
    assert_eq!(read_error(&failing, &[2]), format!("data error: {}: not a PNG or JPEG image", bad.display()));
}

#[test]
fn in_memory_does_not_stream() {
    let dir = tempfile::tempdir().unwrap();
    two_classes(dir.path());
    let d = dataset(json!({ "root": dir.path(), "in_memory": true })).unwrap();
    assert!(!d.streams());
    let err = harness::check_indexed_dataset::<ImageFolder>(json!({ "root": dir.path(), "in_memory": true }));
    assert_eq!(err.unwrap_err(), "this configuration does not stream (`streams()` is false)");
}

#[test]
fn read_inputs_takes_a_file_a_folder_or_a_list() {
    let dir = tempfile::tempdir().unwrap();
    two_classes(&dir.path().join("data"));
    let d = dataset(json!({ "root": dir.path().join("data"), "color": "grayscale" })).unwrap();
    let (all, _) = read(&d, DataPart::Samples, &[0, 1, 2, 3, 4]);

    let one = d.read_inputs(&dir.path().join("data/b/0.png")).unwrap();
    assert!(one.equal(&all.narrow(0, 3, 1)));

    let folder = d.read_inputs(&dir.path().join("data")).unwrap();
    assert!(folder.equal(&all), "a folder: its images, recursively, sorted");

    let list = dir.path().join("inputs.txt");
    fs::write(&list, "# to predict\ndata/b/1.png\n\n  data/a/0.png  \n").unwrap();
    let listed = d.read_inputs(&list).unwrap();
    assert!(listed.equal(&Tensor::cat(&[all.narrow(0, 4, 1), all.narrow(0, 0, 1)], 0)));

    gray(&dir.path().join("big.png"), 8, 8, 0);
    let big = dir.path().join("big.png");
    assert_eq!(
        d.read_inputs(&big).err().unwrap().to_string(),
        format!(
            "data error: {}: image is 8x8 pixels but {} is 4x3 (set height and width to resize images to one size)",
            big.display(),
            dir.path().join("data/a/0.png").display()
        )
    );
    let resized = dataset(json!({ "root": dir.path().join("data"), "height": 3, "width": 4 })).unwrap();
    assert_eq!(resized.read_inputs(&big).unwrap().size(), [1, 3, 3, 4]);
    let missing = dir.path().join("nothing.png");
    assert_eq!(
        d.read_inputs(&missing).err().unwrap().to_string(),
        format!("I/O error: {}: No such file or directory (os error 2)", missing.display())
    );
}

/// A JPEG whose EXIF orientation tag says `orientation` (little-endian TIFF, one IFD entry).
fn jpeg_with_orientation(path: &Path, image: &RgbImage, orientation: u16) {
    use image::{codecs::jpeg::JpegEncoder, ImageEncoder};
    let mut exif = b"II*\0".to_vec();
    exif.extend(8u32.to_le_bytes()); // the first IFD follows the header
    exif.extend(1u16.to_le_bytes()); // one entry: Orientation (0x0112), SHORT, count 1
    exif.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0]);
    exif.extend(orientation.to_le_bytes());
    exif.extend([0, 0, 0, 0, 0, 0]); // value padding, then no next IFD
    let mut bytes = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut bytes, 100);
    encoder.set_exif_metadata(exif).unwrap();
    encoder.write_image(image.as_raw(), image.width(), image.height(), image::ExtendedColorType::Rgb8).unwrap();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn jpegs_are_turned_upright_as_their_exif_orientation_says() {
    let dir = tempfile::tempdir().unwrap();
    // 16 wide, 8 high as stored: its left half black, its right half white. Orientation 6 says
    // "turn 90° clockwise": upright it is 8 wide and 16 high, black on top.
    let stored = RgbImage::from_fn(16, 8, |x, _| if x < 8 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) });
    jpeg_with_orientation(&dir.path().join("a/turned.jpg"), &stored, 6);
    jpeg_with_orientation(
        &dir.path().join("b/as-stored.jpg"),
        &RgbImage::from_fn(8, 16, |_, y| Rgb([if y < 8 { 0 } else { 255 }; 3])),
        1,
    );
    let d = dataset(json!({ "root": dir.path(), "color": "grayscale" })).unwrap();
    let (x, _) = read(&d, DataPart::Samples, &[0, 1]);
    assert_eq!(x.size(), [2, 1, 16, 8], "sized upright, and the same size as an upright image");
    for sample in 0..2 {
        let image = x.get(sample).get(0);
        let (top, bottom) = (image.narrow(0, 0, 6).mean(Kind::Float), image.narrow(0, 10, 6).mean(Kind::Float));
        assert!(top.double_value(&[]) < 0.05 && bottom.double_value(&[]) > 0.95, "sample {sample}: {image}");
    }
}

/// Folders `name/a` and `name/b` under `root`, each with one 2×2 image.
fn split_folder(root: &Path, name: &str) {
    gray(&root.join(name).join("a/0.png"), 2, 2, 0);
    gray(&root.join(name).join("b/0.png"), 2, 2, 1);
}

#[test]
fn split_folders_are_read_as_splits_only_when_the_layout_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for name in ["train", "val", "test"] {
        split_folder(root, name);
    }
    // The default does not take them for classes.
    assert_eq!(
        error(json!({ "root": root })),
        format!(
            "data error: {}: folders `test`, `train`, `val` look like splits, not classes (its folders: test, train, \
             val); set \
             layout to `splits` to read root/train/<class>/ with val/ and test/ beside it, or to `classes` to take \
             every folder as a class",
            root.display()
        )
    );
    let d = dataset(json!({ "root": root, "layout": "splits" })).unwrap();
    let description = d.describe().unwrap();
    assert_eq!((description.len, description.test_len), (4, Some(2)), "val joins train; test is the test split");
    assert_eq!(description.info.class_names.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(labels(&read(&d, DataPart::Samples, &[0, 1, 2, 3]).1), [0, 1, 0, 1]);
    assert_eq!(d.notes().unwrap()["merged_into_samples"], json!(["val"]));
    let d = dataset(json!({ "root": root, "layout": "classes" })).unwrap();
    let names = d.describe().unwrap().info.class_names.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    assert_eq!(names, ["test", "train", "val"]);

    // A split folder among class folders, or val without train.
    let mixed = tempfile::tempdir().unwrap();
    split_folder(mixed.path(), "train");
    split_folder(mixed.path(), "cats");
    assert!(error(json!({ "root": mixed.path() })).contains("folder `train` looks like splits, not classes"));
    assert_eq!(
        error(json!({ "root": mixed.path(), "layout": "splits" })),
        format!(
            "data error: {}: not a split folder; layout `splits` expects train/, and optionally val/ (or valid/, \
             validation/) and test/, each holding class folders",
            mixed.path().join("cats").display()
        )
    );
    let no_train = tempfile::tempdir().unwrap();
    split_folder(no_train.path(), "Valid");
    split_folder(no_train.path(), "TEST");
    assert_eq!(
        error(json!({ "root": no_train.path(), "layout": "splits" })),
        format!(
            "data error: {}: layout `splits` needs a train folder (root/train/<class>/...); it has: TEST, Valid",
            no_train.path().display()
        )
    );
    // A class of val or test that train lacks.
    gray(&root.join("val/c/0.png"), 2, 2, 0);
    assert_eq!(
        error(json!({ "root": root, "layout": "splits" })),
        format!(
            "data error: {}: class `c` has no folder in {} (the val split may only use the training classes)",
            root.join("val/c").display(),
            root.join("train").display()
        )
    );
}

#[test]
fn fewer_than_two_classes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    gray(&dir.path().join("only/0.png"), 2, 2, 0);
    assert_eq!(
        error(json!({ "root": dir.path() })),
        format!(
            "data error: {}: one class folder, `only`; classification needs at least 2 classes (a folder of images \
             for each)",
            dir.path().display()
        )
    );
    let split = tempfile::tempdir().unwrap();
    gray(&split.path().join("train/only/0.png"), 2, 2, 0);
    assert!(error(json!({ "root": split.path() })).contains("train: one class folder, `only`"));
}

#[test]
fn a_folder_name_that_is_not_utf8_is_named_as_such() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    two_classes(dir.path());
    let odd = dir.path().join(std::ffi::OsStr::from_bytes(b"c\xff"));
    if fs::create_dir(&odd).is_err() {
        eprintln!("this file system refuses names that are not UTF-8: nothing to check");
        return;
    }
    gray(&odd.join("0.png"), 4, 3, 0);
    assert_eq!(
        error(json!({ "root": dir.path() })),
        format!(
            "data error: {}/c\u{FFFD}: the folder name is not UTF-8 (shown with \u{FFFD} for its undecodable bytes); \
             class and split names are text: rename it",
            dir.path().display()
        )
    );
}

/// The CRC-32 of PNG chunks.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// A PNG of a few hundred bytes whose header declares a `w`×`h` grayscale image.
fn png_bomb(path: &Path, w: u32, h: u32) {
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        let body = [kind, data].concat();
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
        out
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter, no interlace
                                  // A zlib stream of one stored zero byte: the first pixel of the first row, nothing more.
    let idat = [0x78, 0x01, 0x01, 0x01, 0x00, 0xFE, 0xFF, 0x00, 0x00, 0x01, 0x00, 0x01];
    let bytes =
        [b"\x89PNG\r\n\x1a\n".to_vec(), chunk(b"IHDR", &ihdr), chunk(b"IDAT", &idat), chunk(b"IEND", &[])].concat();
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_decompression_bomb_is_refused_from_its_header_naming_the_file_and_its_size() {
    let dir = tempfile::tempdir().unwrap();
    two_classes(dir.path());
    let bomb = dir.path().join("b/bomb.png");
    png_bomb(&bomb, 50_000, 50_000);
    let reason = |w: u32, h: u32, max: u64| {
        format!(
            "data error: {}: image is {w}x{h} pixels ({}), more than max_pixels ({max}); refused before decoding (a \
             decompression bomb?); raise max_pixels to read it",
            bomb.display(),
            u64::from(w) * u64::from(h)
        )
    };
    // Resized: refused when read (or skipped and counted).
    let d = dataset(json!({ "root": dir.path(), "height": 3, "width": 4 })).unwrap();
    assert_eq!(read_error(&d, &[0, 5]), reason(50_000, 50_000, 134_217_728), "b/bomb.png is the last image");
    let skipping = dataset(json!({ "root": dir.path(), "height": 3, "width": 4, "on_error": "skip" })).unwrap();
    assert_eq!(read(&skipping, DataPart::Samples, &[3, 4, 5]).0.size(), [2, 3, 3, 4]);
    assert_eq!(skipping.notes().unwrap()["skipped"], 1);
    // Not resized, the first image of a class sets the size: refused when the data set is made.
    fs::rename(&bomb, dir.path().join("b/0-bomb.png")).unwrap();
    let bomb = dir.path().join("b/0-bomb.png");
    assert_eq!(
        error(json!({ "root": dir.path() })),
        reason(50_000, 50_000, 134_217_728)
            .replace(&dir.path().join("b/bomb.png").display().to_string(), &bomb.display().to_string())
    );
    // The limit is the configuration's.
    fs::remove_file(&bomb).unwrap();
    let err = error(json!({ "root": dir.path(), "max_pixels": 11 }));
    assert!(
        err.ends_with(
            "image is 4x3 pixels (12), more than max_pixels (11); refused before decoding (a decompression bomb?); \
             raise max_pixels to read it"
        ),
        "{err}"
    );
}

#[test]
fn sizes_from_the_configuration_are_checked_before_anything_is_allocated() {
    let dir = tempfile::tempdir().unwrap();
    two_classes(dir.path());
    assert_eq!(
        error(json!({ "root": dir.path(), "height": 65535, "width": 65535 })),
        "configuration error: height × width: 65535 × 65535 is 4294836225 pixels an image, more than max_pixels \
         (134217728); resize to a smaller size (or raise max_pixels)"
    );
    // A batch larger than memory is refused before its bytes are.
    let d = dataset(json!({ "root": dir.path(), "height": 8192, "width": 8192, "max_pixels": 1u64 << 40 })).unwrap();
    let err = read_error(&d, &vec![0; 1 << 20]);
    assert!(
        err.starts_with(
            "configuration error: a batch of 1048576 images of 3 × 8192 × 8192: needs 1.1 PB (1055531162664960 bytes), \
             and this machine has "
        ) && err.ends_with("; use a smaller batch size or image size"),
        "{err}"
    );
}

mod properties {
    use gymnos_plugin_sdk::{serde_json::json, IndexedDataset};
    use proptest::prelude::*;

    use super::{dataset, split_folder};

    const NAMES: [&str; 9] = ["train", "Train", "val", "valid", "Validation", "test", "TEST", "cats", "dogs"];

    fn role(name: &str) -> Option<&'static str> {
        match name.to_ascii_lowercase().as_str() {
            "train" => Some("train"),
            "val" | "valid" | "validation" => Some("val"),
            "test" => Some("test"),
            _ => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Whatever folders a root holds, and whichever layout, the data set is the one the
        /// layout's rule gives or a refusal naming the way out; never split folders taken for
        /// classes unasked.
        #[test]
        fn a_root_is_read_as_its_layout_says(
            picked in prop::sample::subsequence(NAMES.to_vec(), 1..5),
            layout in prop::sample::select(vec!["auto", "classes", "splits"]),
        ) {
            // One folder per role, as a case-insensitive file system would have it.
            let mut names: Vec<&str> = Vec::new();
            for name in picked {
                if !names.iter().any(|n| n.eq_ignore_ascii_case(name) || role(n).is_some() && role(n) == role(name)) {
                    names.push(name);
                }
            }
            let dir = tempfile::tempdir().unwrap();
            for name in &names {
                split_folder(dir.path(), name);
            }
            let split_like = names.iter().filter(|n| role(n).is_some()).count();
            let has_train = names.iter().any(|n| role(n) == Some("train"));
            let as_splits = match layout {
                "classes" => Some(false),
                "splits" => (split_like == names.len() && has_train).then_some(true),
                _ if split_like == 0 => Some(false),
                _ => (has_train && names.iter().all(|n| matches!(role(n), Some("train" | "test")))).then_some(true),
            };
            let result = dataset(json!({ "root": dir.path(), "layout": layout }));
            match (as_splits, result) {
                (Some(true), Ok(d)) => {
                    let description = d.describe().unwrap();
                    let vals = names.iter().filter(|n| role(n) == Some("val")).count() as u64;
                    let tests = names.iter().any(|n| role(n) == Some("test"));
                    prop_assert_eq!(description.info.class_names.len(), 2);
                    prop_assert_eq!(description.len, 2 * (1 + vals));
                    prop_assert_eq!(description.test_len, tests.then_some(2));
                }
                (Some(false), Ok(d)) if names.len() >= 2 => {
                    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
                    expected.sort();
                    let classes: Vec<String> = d.describe().unwrap().info.class_names.iter().map(|c| c.to_string()).collect();
                    prop_assert_eq!(classes, expected);
                }
                (Some(false), Err(e)) if names.len() < 2 => {
                    prop_assert!(e.to_string().contains("classification needs at least 2 classes"), "{}", e);
                }
                (None, Err(e)) => {
                    let e = e.to_string();
                    let root = dir.path().display().to_string();
                    prop_assert!(e.starts_with(&format!("data error: {root}")), "{}", e);
                    prop_assert!(e.contains("layout") && !e.contains('\n'), "{}", e);
                }
                (expected, got) => prop_assert!(false, "{names:?} as {layout}: expected {expected:?}, got {:?}", got.map(|_| "a data set").map_err(|e| e.to_string())),
            }
        }
    }
}
