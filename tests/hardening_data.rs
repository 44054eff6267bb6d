//! The data plugins (`csv`, `image-folder`, `synthetic`, `idx`) refuse broken data with one line
//! naming the file (and its line and column) or the configuration field, before a run folder
//! exists, and read what people commonly write. Each table runs every case through
//! `validate --deep` and `run`, which must print the same exact error; a case is a class of
//! problem (sizes nobody checked, CSV as people write it, folders laid out as splits), so grow
//! the tables with every new instance found.

use std::{
    fs,
    path::{Path, PathBuf},
};

use gymnos_plugin_sdk::memory;
use gymnos_tests::{data_dir, wine_experiment, Sandbox};
use serde_json::{json, Value};

/// One broken input: its name (also the experiment's), the experiment, and the error after
/// `error: <file>: `.
struct Case {
    name: &'static str,
    experiment: Value,
    error: String,
}

/// A built-in plugin as errors name it: `name@version`, the version read from its crate.
fn plugin(name: &str, crate_dir: &str) -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins").join(crate_dir).join("Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    let version = text.lines().find_map(|l| l.strip_prefix("version = \"")).unwrap().trim_end_matches('"');
    format!("{name}@{version}")
}

/// `dataset `csv@1.1.0` (dataset) failed in STAGE: MESSAGE`.
fn csv_failed(stage: &str, message: String) -> String {
    format!("dataset `{}` (dataset) failed in {stage}: {message}", plugin("csv", "csv-dataset"))
}

fn images_failed(stage: &str, message: String) -> String {
    format!("dataset `{}` (dataset) failed in {stage}: {message}", plugin("image-folder", "image-folder"))
}

/// Runs each case through `validate --deep` and `run`: both must end with exactly
/// `error: <file>: <error>` as their one error line (no panic, no backtrace), and no run folder
/// may exist afterwards. Every mismatch is collected before failing.
fn refused(sandbox: &Sandbox, cases: Vec<Case>) {
    let mut wrong = Vec::new();
    for case in cases {
        let mut experiment = case.experiment;
        experiment["experiment"]["name"] = json!(case.name);
        let path = sandbox.experiment(case.name, &experiment);
        let file = path.to_str().unwrap();
        let want = format!("error: {file}: {}", case.error);
        for args in [vec!["validate", "--deep", file], vec!["run", file, "--no-progress"]] {
            let out = sandbox.host(&args);
            let got = if out.code == 0 { "(succeeded)".to_string() } else { out.one_line_error().to_string() };
            if got != want {
                wrong.push(format!("{} ({}):\n  want {want}\n  got  {got}", case.name, args[0]));
            }
        }
        if !sandbox.runs(case.name).is_empty() {
            wrong.push(format!("{}: a refused run left a run folder", case.name));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `validate --deep` accepts the experiment: the data loads and the first step runs.
fn accepted(sandbox: &Sandbox, name: &str, mut experiment: Value) {
    experiment["experiment"]["name"] = json!(name);
    let path = sandbox.experiment(name, &experiment);
    let out = sandbox.host(&["validate", "--deep", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{name}: {}", out.stderr);
    assert!(out.stdout.contains("valid, and the run starts"), "{name}: {}", out.stdout);
}

/// The wine experiment, one epoch, reading the `csv` data set configured as `config`.
fn csv(config: Value) -> Value {
    let mut experiment = wine_experiment("x");
    experiment["dataset"]["config"] = config;
    experiment["training"]["epochs"] = json!(1);
    experiment
}

/// Writes `text` as `name` in the sandbox; its path.
fn write(sandbox: &Sandbox, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = sandbox.dir.path().join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

/// Wine's table (sklearn header) with a `names` header instead: `f0..f12,target`.
fn wine_named(line_ending: &str) -> String {
    let text = fs::read_to_string(data_dir().join("sklearn/wine_data.csv")).unwrap();
    let names = (0..13).map(|c| format!("f{c}")).collect::<Vec<_>>().join(",");
    let rows = text.lines().skip(1).collect::<Vec<_>>().join(line_ending);
    format!("{names},target{line_ending}{rows}{line_ending}")
}

/// A small numeric table under a `names` header `a,b,target`, rows `i, i/2, i % 3`, `bad`
/// replacing row `row` (its line is `row + 2`).
fn table(bad: Option<(usize, &str)>, line_ending: &str) -> String {
    let mut text = format!("a,b,target{line_ending}");
    for i in 0..30 {
        match bad {
            Some((row, line)) if row == i => text.push_str(line),
            _ => text.push_str(&format!("{i},{},{}", i as f64 / 2.0, i % 3)),
        }
        text.push_str(line_ending);
    }
    text
}

#[test]
fn csv_tables_are_read_as_people_write_them_and_malformed_ones_refused_naming_file_line_and_column() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();

    // Accepted: CR-only, CRLF with a byte order mark before the target's name, quoted cells
    // holding delimiters, quotes and line breaks (loaded whole and streamed).
    let wine = fs::read_to_string(data_dir().join("sklearn/wine_data.csv")).unwrap();
    let cr = write(&sandbox, "wine-cr.csv", wine.replace('\n', "\r"));
    accepted(&sandbox, "wine-cr", csv(json!({ "path": cr, "header": "sklearn" })));
    let target_first: String = wine_named("\r\n")
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (features, target) = l.rsplit_once(',').unwrap();
            format!("{target},{features}\r\n")
        })
        .collect();
    let bom = write(&sandbox, "wine-bom.csv", format!("\u{FEFF}{target_first}"));
    accepted(&sandbox, "wine-bom", csv(json!({ "path": bom, "target_column": "target" })));
    let mut quoted = String::from("\"kind\",x,y\r\n");
    for i in 0..40 {
        let kind = ["\"a,b\"", "\"say \"\"hi\"\"\"", "\"two\nlines\"", "plain"][i % 4];
        quoted.push_str(&format!("{kind},{i},{}\r\n", i % 2));
    }
    let quoted = write(&sandbox, "quoted.csv", quoted);
    for streaming in [false, true] {
        let config = json!({ "path": quoted, "categorical": ["kind"], "streaming": streaming });
        accepted(&sandbox, &format!("quoted-{streaming}"), csv(config));
    }

    let p = |name: &str, text: String| write(&sandbox, name, text);
    let narrow = p("narrow.csv", table(None, "\n").replacen("a,b,target", "a,target", 1));
    let wide = p("wide.csv", table(None, "\r").replacen("a,b,target", "a,b,c,target", 1));
    let ragged = p("ragged.csv", table(Some((7, "7,3.5,1,0")), "\r\n"));
    let dup = p("dup.csv", table(None, "\n").replacen("a,b,target", "a,a,target", 1));
    let nan = p("nan.csv", table(Some((1, "1,nan,1")), "\n"));
    let inf = p("inf.csv", table(Some((4, "-inf,2,1")), "\r"));
    let e400 = p("e400.csv", table(Some((28, "28,1e400,1")), "\r\n"));
    let continuous = p("continuous.csv", table(None, "\n"));
    let one_class = p("one-class.csv", (0..20).fold("a,target\n".into(), |t, i| t + &format!("{i},7\n")));
    let quantity = p("quantity.csv", wine_named("\n"));
    let open_quote = p("open-quote.csv", table(Some((3, "\"3,1.5,0")), "\n"));
    let big_header = p("big-header.csv", wine.replacen("178,13,", "1000000000000,13,", 1));
    let wide_header = p("wide-header.csv", wine.replacen("178,13,", "178,1000000000000,", 1));
    let d = |path: &Path| path.display().to_string();
    let data =
        |path: &Path, at: &str, message: &str| csv_failed("load", format!("data error: {}{at}: {message}", d(path)));
    let not_finite = "not a finite number (NaN, an infinity, or beyond float32's ±3.4e38); fill in or drop the value";
    let cases = vec![
        Case {
            name: "narrow-header",
            experiment: csv(json!({ "path": narrow, "target_column": "target" })),
            error: data(&narrow, " line 2", "3 cells, but the header (line 1) names 2 columns"),
        },
        Case {
            name: "wide-header",
            experiment: csv(json!({ "path": wide, "target_column": "target" })),
            error: data(&wide, " line 2", "3 cells, but the header (line 1) names 4 columns"),
        },
        Case {
            name: "ragged-row",
            experiment: csv(json!({ "path": ragged })),
            error: data(&ragged, " line 9", "4 cells, but the header (line 1) names 3 columns"),
        },
        Case {
            name: "duplicate-name",
            experiment: csv(json!({ "path": dup, "target_column": "a", "task": "regression" })),
            error: csv_failed(
                "load",
                format!(
                    "configuration error: target_column `a` is ambiguous: columns 1 and 2 of {} are both named `a`; \
                     rename one, or give the column's index",
                    d(&dup)
                ),
            ),
        },
        Case {
            name: "nan",
            experiment: csv(json!({ "path": nan })),
            error: data(&nan, " line 3", &format!("column 2 (b) is `nan`, {not_finite}")),
        },
        Case {
            name: "inf",
            experiment: csv(json!({ "path": inf })),
            error: data(&inf, " line 6", &format!("column 1 (a) is `-inf`, {not_finite}")),
        },
        Case {
            name: "e400-streaming",
            experiment: csv(json!({ "path": e400, "streaming": true })),
            error: csv_failed(
                "describe",
                format!("data error: {} line 30: column 2 (b) is `1e400`, {not_finite}", d(&e400)),
            ),
        },
        Case {
            name: "continuous-target",
            experiment: csv(json!({ "path": continuous, "target_column": "b" })),
            error: data(
                &continuous,
                "",
                "column 2 (b) holds non-integer numbers (`0.5` on line 3; 30 distinct values), not class labels; set \
                 task to regression to predict it as a number, or target_column to the column of class labels",
            ),
        },
        Case {
            name: "one-class",
            experiment: csv(json!({ "path": one_class })),
            error: data(
                &one_class,
                "",
                "column 2 (target) holds one class, `7`, on all 20 rows; classification needs at least 2 classes (is \
                 another column the target? set target_column)",
            ),
        },
        Case {
            name: "quantity-target",
            experiment: csv(json!({ "path": quantity, "target_column": "f12" })),
            error: data(
                &quantity,
                "",
                "column 13 (f12) holds integers up to 1680, which would make 1681 classes for 178 rows: a quantity, \
                 not class labels? Set task to regression to predict it as a number, target_column to the column of \
                 class labels, or class_names to name the classes",
            ),
        },
        Case {
            name: "open-quote",
            experiment: csv(json!({ "path": open_quote })),
            error: data(
                &open_quote,
                " line 5",
                "column 1: a quoted field opens here and never closes (a quote inside a quoted field is written \
                 twice: \"\")",
            ),
        },
        Case {
            name: "sklearn-samples",
            experiment: csv(json!({ "path": big_header, "header": "sklearn" })),
            error: data(
                &big_header,
                "",
                "the sklearn header (line 1) says 1000000000000 samples, but the file has 178 rows",
            ),
        },
        Case {
            name: "sklearn-features",
            experiment: csv(json!({ "path": wide_header, "header": "sklearn" })),
            error: data(
                &wide_header,
                "",
                "the sklearn header (line 1) says 1000000000000 features, but line 2 has 13 (and the target: 14 cells)",
            ),
        },
    ];
    refused(&sandbox, cases);
}

#[test]
fn a_file_to_predict_with_a_non_finite_cell_is_refused_naming_its_line_and_column() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let path = sandbox
        .experiment("wine", &csv(json!({ "path": data_dir().join("sklearn/wine_data.csv"), "header": "sklearn" })));
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let run = sandbox.runs("x")[0].clone();
    let wine = fs::read_to_string(data_dir().join("sklearn/wine_data.csv")).unwrap();
    let lines: Vec<&str> = wine.lines().take(3).collect();
    let inputs = write(
        &sandbox,
        "inputs.csv",
        format!("{}\n{}\nNaN{}\n", lines[0], lines[1], &lines[2][lines[2].find(',').unwrap()..]),
    );
    let err = sandbox.host(&["predict", run.to_str().unwrap(), inputs.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(
        err,
        format!(
            "error: {}",
            csv_failed(
                "read_inputs",
                format!(
                    "data error: {} line 3: column 1 is `NaN`, not a finite number (NaN, an infinity, or beyond \
                     float32's ±3.4e38); fill in or drop the value",
                    inputs.display()
                )
            )
        )
    );
}

/// Copies `n` of the repository's Fashion-MNIST PNGs of `class` into `dir`.
fn pngs(class: &str, dir: &Path, n: usize) {
    let source = data_dir().join("fashion-mnist-png/train").join(class);
    let mut files: Vec<PathBuf> = fs::read_dir(&source).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    fs::create_dir_all(dir).unwrap();
    for file in files.iter().take(n) {
        fs::copy(file, dir.join(file.file_name().unwrap())).unwrap();
    }
}

/// Two classes of 28×28 grayscale PNGs, `n` images each, in `root/bag` and `root/trouser`.
fn two_classes(root: &Path, n: usize) {
    pngs("bag", &root.join("bag"), n);
    pngs("trouser", &root.join("trouser"), n);
}

/// A small CNN on the image folder `config`.
fn images(config: Value) -> Value {
    json!({
        "experiment": { "name": "x", "seed": 1 },
        "dataset": { "plugin": "image-folder", "config": config, "split": { "train": 0.6, "val": 0.2, "test": 0.2 } },
        "preprocessors": [{ "plugin": "normalize" }],
        "model": { "plugin": "cnn", "config": { "channels": [4], "hidden": 8 } },
        "training": { "epochs": 1, "batch_size": 8, "device": "cpu" }
    })
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

/// A PNG of about a hundred bytes whose header declares a `w`×`h` grayscale image: a
/// decompression bomb's header.
fn png_bomb(path: &Path, w: u32, h: u32) {
    let chunk = |kind: &[u8], data: &[u8]| {
        let body = [kind, data].concat();
        [(data.len() as u32).to_be_bytes().to_vec(), body.clone(), crc32(&body).to_be_bytes().to_vec()].concat()
    };
    let ihdr = [w.to_be_bytes(), h.to_be_bytes()].concat().into_iter().chain([8, 0, 0, 0, 0]).collect::<Vec<u8>>();
    let idat = [0x78, 0x01, 0x01, 0x01, 0x00, 0xFE, 0xFF, 0x00, 0x00, 0x01, 0x00, 0x01];
    let bytes =
        [b"\x89PNG\r\n\x1a\n".to_vec(), chunk(b"IHDR", &ihdr), chunk(b"IDAT", &idat), chunk(b"IEND", &[])].concat();
    fs::write(path, bytes).unwrap();
}

#[test]
fn image_folders_laid_out_as_splits_bombs_and_sizes_beyond_memory_are_refused() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let dir = sandbox.dir.path();
    let root = |name: &str| dir.join(name);
    // train/ val/ test/, each with the two classes; train/ val/ only.
    for split in ["train", "val", "test"] {
        two_classes(&root("tvt").join(split), 10);
    }
    for split in ["train", "validation"] {
        two_classes(&root("tv").join(split), 10);
    }
    accepted(&sandbox, "tvt-splits", images(json!({ "root": root("tvt"), "layout": "splits" })));
    accepted(&sandbox, "tvt-classes", images(json!({ "root": root("tvt"), "layout": "classes" })));
    pngs("bag", &root("one/bag"), 10);
    two_classes(&root("bomb"), 10);
    png_bomb(&root("bomb/trouser/0-bomb.png"), 50_000, 50_000);
    two_classes(&root("late-bomb"), 10);
    png_bomb(&root("late-bomb/trouser/zz-bomb.png"), 60_000, 40_000);

    let d = |path: PathBuf| path.display().to_string();
    let looks_like_splits = |name: &str, folders: &str, listed: &str| {
        images_failed(
            "create",
            format!(
                "data error: {}: folders {folders} look like splits, not classes (its folders: {listed}); set layout \
                 to `splits` to read root/train/<class>/ with val/ and test/ beside it, or to `classes` to take every \
                 folder as a class",
                d(root(name))
            ),
        )
    };
    let bomb = |path: PathBuf, w: u64, h: u64| {
        format!(
            "data error: {}: image is {w}x{h} pixels ({}), more than max_pixels (134217728); refused before decoding \
             (a decompression bomb?); raise max_pixels to read it",
            d(path),
            w * h
        )
    };
    let mut cases = vec![
        Case {
            name: "train-val-test",
            experiment: images(json!({ "root": root("tvt") })),
            error: looks_like_splits("tvt", "`test`, `train`, `val`", "test, train, val"),
        },
        Case {
            name: "train-validation",
            experiment: images(json!({ "root": root("tv") })),
            error: looks_like_splits("tv", "`train`, `validation`", "train, validation"),
        },
        Case {
            name: "splits-without-train",
            experiment: images(json!({ "root": root("tvt").join("train"), "layout": "splits" })),
            error: images_failed(
                "create",
                format!(
                    "data error: {}: not a split folder; layout `splits` expects train/, and optionally val/ (or \
                     valid/, validation/) and test/, each holding class folders",
                    d(root("tvt/train/bag"))
                ),
            ),
        },
        Case {
            name: "one-class",
            experiment: images(json!({ "root": root("one") })),
            error: images_failed(
                "create",
                format!(
                    "data error: {}: one class folder, `bag`; classification needs at least 2 classes (a folder of \
                     images for each)",
                    d(root("one"))
                ),
            ),
        },
        Case {
            name: "size-beyond-pixels",
            experiment: images(json!({ "root": root("tvt/train"), "height": 65535, "width": 65535 })),
            error: images_failed(
                "create",
                "configuration error: height × width: 65535 × 65535 is 4294836225 pixels an image, more than \
                 max_pixels (134217728); resize to a smaller size (or raise max_pixels)"
                    .into(),
            ),
        },
        Case {
            name: "bomb-sets-the-size",
            experiment: images(json!({ "root": root("bomb") })),
            error: images_failed("create", bomb(root("bomb/trouser/0-bomb.png"), 50_000, 50_000)),
        },
        Case {
            name: "bomb-read-in-memory",
            experiment: images(json!({ "root": root("late-bomb"), "height": 28, "width": 28, "in_memory": true })),
            error: images_failed("load", bomb(root("late-bomb/trouser/zz-bomb.png"), 60_000, 40_000)),
        },
    ];
    // A class folder whose name is not UTF-8, where the file system allows one.
    let odd = root("odd").join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"c\xff"));
    if fs::create_dir_all(&odd).is_ok() {
        two_classes(&root("odd"), 10);
        pngs("bag", &odd, 10);
        cases.push(Case {
            name: "not-utf8",
            experiment: images(json!({ "root": root("odd") })),
            error: images_failed(
                "create",
                format!(
                    "data error: {}/c\u{FFFD}: the folder name is not UTF-8 (shown with \u{FFFD} for its undecodable \
                     bytes); class and split names are text: rename it",
                    d(root("odd"))
                ),
            ),
        });
    }
    refused(&sandbox, cases);
}

/// An IDX file of unsigned bytes: `dims` in its header, then `data`.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0, 0, 8, dims.len() as u8];
    dims.iter().for_each(|d| bytes.extend(d.to_be_bytes()));
    bytes.extend(data);
    bytes
}

#[test]
fn sizes_from_configurations_and_headers_are_checked_before_anything_is_allocated() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let synthetic = |config: Value| {
        json!({
            "experiment": { "name": "x", "seed": 1 },
            "dataset": { "plugin": "synthetic", "config": config },
            "model": { "plugin": "mlp", "config": { "hidden": [8] } },
            "training": { "epochs": 1, "batch_size": 16, "device": "cpu" }
        })
    };
    let idx_experiment = |dir: &Path| {
        json!({
            "experiment": { "name": "x", "seed": 1 },
            "dataset": { "plugin": "idx", "config": {
                "path": dir, "train_images": "images", "train_labels": "labels", "test_images": "",
            } },
            "preprocessors": [{ "plugin": "flatten" }],
            "model": { "plugin": "mlp", "config": { "hidden": [8] } },
            "training": { "epochs": 1, "batch_size": 16, "device": "cpu" }
        })
    };
    let idx_failed =
        |message: String| format!("dataset `{}` (dataset) failed in load: {message}", plugin("idx", "idx-dataset"));
    let synthetic_failed =
        |message: &str| format!("dataset `{}` (dataset) failed in create: {message}", plugin("synthetic", "synthetic"));
    let labels = idx(&[4], &[0, 1, 2, 1]);
    let short = sandbox.dir.path().join("idx-short");
    write(&sandbox, "idx-short/images", idx(&[4_000_000, 28, 28], &[7; 16]));
    write(&sandbox, "idx-short/labels", &labels);
    let huge = sandbox.dir.path().join("idx-huge");
    write(&sandbox, "idx-huge/images", idx(&[1_000_000, 1_000_000, 1_000_000], &[7; 16]));
    write(&sandbox, "idx-huge/labels", &labels);
    let one = sandbox.dir.path().join("idx-one");
    write(&sandbox, "idx-one/images", idx(&[4, 2, 2], &[7; 16]));
    write(&sandbox, "idx-one/labels", idx(&[4], &[3, 3, 3, 3]));
    let limit = memory::human(u128::from(memory::limit_bytes()));
    let cases = vec![
        Case {
            name: "samples-beyond-i64",
            experiment: synthetic(json!({ "samples": u64::MAX })),
            error: "dataset.config.samples: 18446744073709551615 is not <= 9007199254740992 (synthetic)".into(),
        },
        Case {
            name: "test-samples-beyond-i64",
            experiment: synthetic(json!({ "test_samples": 1u64 << 63 })),
            error: "dataset.config.test_samples: 9223372036854775808 is not <= 9007199254740992 (synthetic)".into(),
        },
        Case {
            name: "shape-overflowing",
            experiment: synthetic(json!({ "shape": [4294967296i64, 4294967296i64] })),
            error: synthetic_failed(
                "configuration error: shape: [4294967296, 4294967296] has more than 16777216 features",
            ),
        },
        Case {
            name: "idx-header-beyond-file",
            experiment: idx_experiment(&short),
            error: idx_failed(format!(
                "data error: {}: not an IDX file: dimensions [4000000, 28, 28] need 3136000000 bytes, found 16",
                short.join("images").display()
            )),
        },
        Case {
            name: "idx-header-beyond-memory",
            experiment: idx_experiment(&huge),
            error: idx_failed(format!(
                "data error: {}: not an IDX file: dimensions [1000000, 1000000, 1000000] need 1000000000000000000 \
                 bytes, found 16",
                huge.join("images").display()
            )),
        },
        Case {
            name: "idx-one-class",
            experiment: idx_experiment(&one),
            error: idx_failed(format!(
                "data error: {}: the training labels hold 1 class; classification needs at least 2",
                one.join("labels").display()
            )),
        },
    ];
    refused(&sandbox, cases);
    // A gzipped header beyond memory is refused from the header, nothing decompressed.
    let gz = sandbox.dir.path().join("idx-gz");
    let gzip = |bytes: &[u8]| {
        // A gzip member of stored deflate blocks: no compressor needed.
        let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
        for (i, block) in bytes.chunks(65535).enumerate() {
            let last = (i + 1) * 65535 >= bytes.len();
            out.push(u8::from(last));
            out.extend((block.len() as u16).to_le_bytes());
            out.extend((!(block.len() as u16)).to_le_bytes());
            out.extend(block);
        }
        out.extend(crc32(bytes).to_le_bytes());
        out.extend((bytes.len() as u32).to_le_bytes());
        out
    };
    write(&sandbox, "idx-gz/images.gz", gzip(&idx(&[1_000_000, 1_000_000, 1000], &[7; 16])));
    write(&sandbox, "idx-gz/labels.gz", gzip(&labels));
    let mut experiment = idx_experiment(&gz);
    experiment["dataset"]["config"]["train_images"] = json!("images.gz");
    experiment["dataset"]["config"]["train_labels"] = json!("labels.gz");
    refused(
        &sandbox,
        vec![Case {
            name: "idx-gz-beyond-memory",
            experiment,
            error: idx_failed(format!(
                "data error: {}: dimensions [1000000, 1000000, 1000]: needs 1.0 PB (1000000000000000 bytes), and this \
                 machine has {limit} of memory",
                gz.join("images.gz").display()
            )),
        }],
    );
}
