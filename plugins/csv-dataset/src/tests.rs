//! The `csv` data set's tests: both modes against a plain parse of real tables, and every error.

use gymnos_plugin_sdk::{harness, serde_json::json};

#[test]
fn meets_the_dataset_contract_on_wine_and_a_regression_table() {
    let wine = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/sklearn/wine_data.csv");
    let config = json!({ "path": wine, "header": "sklearn" });
    assert_eq!(harness::check_dataset::<super::CsvDataset>(config.clone()).unwrap(), (178, 0));
    assert_eq!(harness::check_dataset_inputs::<super::CsvDataset>(config, wine.as_ref(), &[13]).unwrap(), 178);

    let dir = std::env::temp_dir().join(format!("gymnos-csv-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("t.csv");
    std::fs::write(&table, "x;y\n1;2.5\n2;4.5\n3;6.5\n").unwrap();
    let config = json!({ "path": table, "task": "regression", "delimiter": ";" });
    assert_eq!(harness::check_dataset::<super::CsvDataset>(config).unwrap(), (3, 0));
    std::fs::write(&table, "x;y\n1;2.5\n2;oops\n").unwrap();
    let err =
        harness::check_dataset::<super::CsvDataset>(json!({ "path": table, "delimiter": ";", "task": "regression" }))
            .unwrap_err();
    assert!(err.ends_with("regression targets must be numbers"), "{err}");
    let err =
        harness::check_dataset::<super::CsvDataset>(json!({ "path": table, "task": "ranking", "delimiter": ";;" }))
            .unwrap_err();
    assert_eq!(err, "create: configuration error: delimiter: has 2 characters; it needs length <= 1; task: \"ranking\" is not one of classification, regression");
    std::fs::remove_dir_all(&dir).unwrap();
    let err = harness::check_dataset::<super::CsvDataset>(json!({ "path": table })).unwrap_err();
    assert_eq!(err, format!("create: configuration error: path: {} does not exist", table.display()));
}

use std::path::{Path, PathBuf};

use gymnos_plugin_sdk::{
    tch::{Kind, Tensor},
    ConfigSchema, Configurable, Context, DataPart, Dataset, IndexedDataset,
};

use super::{CsvConfig, CsvDataset};

/// A fresh folder for one test's files, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("gymnos-csv-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn gzip(&self, name: &str, text: &str) -> PathBuf {
        use std::io::Write;
        let path = self.0.join(name);
        let mut encoder =
            flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::default());
        encoder.write_all(text.as_bytes()).unwrap();
        encoder.finish().unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wine() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/sklearn/wine_data.csv"))
}

fn build(config: gymnos_plugin_sdk::serde_json::Value) -> CsvDataset {
    CsvDataset::build(CsvConfig::from_json(config).unwrap(), &Context::standalone()).unwrap()
}

/// Every sample, read by index.
fn read_all(dataset: &CsvDataset) -> (Tensor, Tensor) {
    let len = dataset.describe().unwrap().len;
    dataset.read(DataPart::Samples, &(0..len).collect::<Vec<_>>()).unwrap()
}

fn floats(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.flatten(0, -1)).unwrap()
}

fn ints(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t).unwrap()
}

/// Both modes, on the same configuration.
fn both_modes(config: gymnos_plugin_sdk::serde_json::Value) -> (CsvDataset, CsvDataset) {
    let mut streaming = config.clone();
    streaming["streaming"] = true.into();
    (build(config), build(streaming))
}

#[test]
fn wine_reads_the_same_numbers_in_memory_and_streaming_as_a_plain_parse_gives() {
    // What the table holds, parsed independently: 13 features, then the class.
    let text = std::fs::read_to_string(wine()).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let expected_x: Vec<f32> = rows.iter().flat_map(|r| r[..13].iter().map(|c| c.parse::<f32>().unwrap())).collect();
    let expected_y: Vec<i64> = rows.iter().map(|r| r[13].parse().unwrap()).collect();
    assert_eq!(rows.len(), 178);

    let config = json!({ "path": wine(), "header": "sklearn" });
    let (mut memory, streaming) = both_modes(config.clone());
    assert!(!memory.streams() && streaming.streams());
    for dataset in [&memory, &streaming] {
        let description = dataset.describe().unwrap();
        assert_eq!(description.len, 178);
        assert_eq!(description.test_len, None);
        assert_eq!(description.info.feature_shape.to_vec(), [13]);
        let names: Vec<String> = description.info.class_names.iter().map(|n| n.to_string()).collect();
        assert_eq!(names, ["class_0", "class_1", "class_2"]);
        let (x, y) = read_all(dataset);
        assert_eq!((x.kind(), x.size()), (Kind::Float, vec![178, 13]));
        assert_eq!((y.kind(), y.size()), (Kind::Int64, vec![178]));
        assert_eq!(floats(&x), expected_x);
        assert_eq!(ints(&y), expected_y);
        assert_eq!(ints(&y.bincount::<Tensor>(None, 0)), [59, 71, 48]);
        // Any indices, in any order, give those rows.
        let picked = [177u64, 0, 90, 90, 3];
        let (px, py) = dataset.read(DataPart::Samples, &picked).unwrap();
        let index = Tensor::from_slice(&picked.map(|i| i as i64));
        assert!(px.equal(&x.index_select(0, &index)) && py.equal(&y.index_select(0, &index)));
    }
    // The 1.0 form gives the same tensors.
    let loaded = memory.load().unwrap();
    let (x, y) = read_all(&streaming);
    assert!(loaded.features.equal(&x) && loaded.targets.equal(&y) && loaded.test.is_none());

    assert_eq!(
        harness::check_indexed_dataset::<CsvDataset>(json!({ "path": wine(), "header": "sklearn", "streaming": true }))
            .unwrap(),
        (178, 0)
    );
    assert_eq!(
        harness::check_indexed_dataset::<CsvDataset>(config).unwrap_err(),
        "this configuration does not stream (`streams()` is false)"
    );
    let streaming_config = json!({ "path": wine(), "header": "sklearn", "streaming": true });
    assert_eq!(harness::check_dataset_inputs::<CsvDataset>(streaming_config, wine(), &[13]).unwrap(), 178);
}

#[test]
fn streaming_reads_from_several_threads_at_once() {
    let dataset = build(json!({ "path": wine(), "header": "sklearn", "streaming": true }));
    assert!(dataset.describe().unwrap().concurrent_reads);
    let (x, y) = read_all(&dataset);
    let (x, y) = (floats(&x), ints(&y));
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (dataset, x, y) = (&dataset, &x, &y);
            s.spawn(move || {
                for i in (t..178).step_by(4) {
                    let (rx, ry) = dataset.read(DataPart::Samples, &[i]).unwrap();
                    let i = i as usize;
                    assert_eq!((floats(&rx).as_slice(), ints(&ry)[0]), (&x[i * 13..(i + 1) * 13], y[i]));
                }
            });
        }
    });
    let err = dataset.read(DataPart::Samples, &[178]).unwrap_err();
    assert_eq!(err.to_string(), "runtime error: sample 178 asked for; the table has 178");
    let err = dataset.read(DataPart::Test, &[0]).unwrap_err();
    assert_eq!(err.to_string(), "runtime error: csv has no test split");
}

/// Four animals; a blank line and Windows line endings on the way.
const ANIMALS: &str =
    "colour,size,price,kind\r\nred,1,2.5,cat\r\nblue,2,3.5,dog\r\n\r\nred,3,1.0,cat\r\ngreen,4,0.5,dog\r\n";

#[test]
fn text_categories_become_their_sorted_codes_and_the_target_is_found_by_name() {
    let scratch = Scratch::new("categories");
    let path = scratch.file("animals.csv", ANIMALS);
    // blue = 0, green = 1, red = 2; cat = 0, dog = 1.
    for config in [
        json!({ "path": path, "target_column": "kind", "categorical": ["colour"] }),
        json!({ "path": path, "categorical": [0] }),
        json!({ "path": path, "target_column": 3, "categorical": [-4] }),
    ] {
        let (memory, streaming) = both_modes(config.clone());
        for dataset in [&memory, &streaming] {
            let description = dataset.describe().unwrap();
            let names: Vec<String> = description.info.class_names.iter().map(|n| n.to_string()).collect();
            assert_eq!(names, ["cat", "dog"], "{config}");
            let (x, y) = read_all(dataset);
            assert_eq!(x.size(), [4, 3]);
            assert_eq!(floats(&x), [2.0, 1.0, 2.5, 0.0, 2.0, 3.5, 2.0, 3.0, 1.0, 1.0, 4.0, 0.5], "{config}");
            assert_eq!(ints(&y), [0, 1, 0, 1], "{config}");
        }
    }

    let regression =
        json!({ "path": path, "task": "regression", "target_column": "price", "categorical": ["colour", "kind"] });
    let (memory, streaming) = both_modes(regression.clone());
    for dataset in [&memory, &streaming] {
        let (x, y) = read_all(dataset);
        assert_eq!(floats(&x), [2.0, 1.0, 0.0, 0.0, 2.0, 1.0, 2.0, 3.0, 0.0, 1.0, 4.0, 1.0]);
        assert_eq!((y.kind(), y.size()), (Kind::Float, vec![4, 1]));
        assert_eq!(floats(&y), [2.5, 3.5, 1.0, 0.5]);
    }
    let mut streaming_config = regression;
    streaming_config["streaming"] = true.into();
    assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming_config).unwrap(), (4, 0));
    let streaming_config =
        json!({ "path": path, "target_column": "kind", "categorical": ["colour"], "streaming": true });
    assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming_config).unwrap(), (4, 0));
}

#[test]
fn new_samples_are_coded_like_the_training_file() {
    let scratch = Scratch::new("inputs");
    let path = scratch.file("animals.csv", ANIMALS);
    let features_only = scratch.file("new.csv", "colour,size,price\nblue,7,1.5\nred,8,0\n");
    let whole_rows = scratch.file("whole.csv", "colour,size,price,kind\ngreen,5,2.0,not-a-class\n");
    let unknown = scratch.file("unknown.csv", "colour,size,price\nblue,7,1.5\npurple,1,1.0\n");
    let (memory, streaming) = both_modes(json!({ "path": path, "target_column": "kind", "categorical": ["colour"] }));
    for dataset in [&memory, &streaming] {
        let x = dataset.read_inputs(&features_only).unwrap();
        assert_eq!(x.size(), [2, 3]);
        assert_eq!(floats(&x), [0.0, 7.0, 1.5, 2.0, 8.0, 0.0]);
        assert_eq!(floats(&dataset.read_inputs(&whole_rows).unwrap()), [1.0, 5.0, 2.0]);
        assert_eq!(
            dataset.read_inputs(&unknown).unwrap_err().to_string(),
            format!(
                "data error: {} line 3: column 1 (colour) is `purple`, a category the training file does not \
                 have (it has: blue, green, red)",
                unknown.display()
            )
        );
    }
}

#[test]
fn a_target_name_that_is_not_a_column_gets_one_line_naming_the_columns() {
    let scratch = Scratch::new("names");
    let path = scratch.file("animals.csv", ANIMALS);
    let expected = format!(
        "configuration error: target_column `knd` is not a column of {} (its columns: colour, size, price, kind)",
        path.display()
    );
    let config = json!({ "path": path, "target_column": "knd", "categorical": ["colour"] });
    assert_eq!(harness::check_dataset::<CsvDataset>(config.clone()).unwrap_err(), format!("load: {expected}"));
    let mut streaming = config;
    streaming["streaming"] = true.into();
    assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming).unwrap_err(), format!("describe: {expected}"));

    let err = harness::check_dataset::<CsvDataset>(json!({ "path": path, "header": "none", "target_column": "kind" }))
        .unwrap_err();
    assert_eq!(
        err,
        "create: configuration error: target_column: `kind` is a column name, but only a `names` header names \
         columns (header is `none`); give the column's index"
    );
    let err = harness::check_dataset::<CsvDataset>(json!({ "path": path, "target_column": 1.5 })).unwrap_err();
    assert_eq!(
        err,
        "create: configuration error: target_column: expected a column index (an integer) or a column name (a \
         string), found 1.5"
    );
    let err =
        harness::check_dataset::<CsvDataset>(json!({ "path": path, "categorical": ["colour", "kind"] })).unwrap_err();
    assert_eq!(
        err,
        "load: configuration error: categorical column `kind` is the target column; class labels need no coding"
    );
    let err = harness::check_dataset::<CsvDataset>(json!({ "path": path, "categorical": [0, 9] })).unwrap_err();
    assert_eq!(
        err,
        format!("load: configuration error: categorical column 9 is outside the 4 columns of {}", path.display())
    );
}

#[test]
fn a_text_cell_in_a_numeric_column_is_named_by_file_line_and_column() {
    let scratch = Scratch::new("text-cell");
    let path = scratch.file("animals.csv", ANIMALS);
    let config = json!({ "path": path, "target_column": "kind" });
    let expected = format!(
        "data error: {} line 2: column 1 (colour) is `red`, not a number (list the column in `categorical` if \
         it holds categories)",
        path.display()
    );
    assert_eq!(harness::check_dataset::<CsvDataset>(config.clone()).unwrap_err(), format!("load: {expected}"));
    let mut streaming = config;
    streaming["streaming"] = true.into();
    assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming).unwrap_err(), format!("describe: {expected}"));

    // Without a header, columns are numbered only.
    let bare = scratch.file("bare.csv", "1,2,0\n3,x,1\n");
    let err = harness::check_dataset::<CsvDataset>(json!({ "path": bare, "header": "none" })).unwrap_err();
    assert_eq!(
        err,
        format!(
            "load: data error: {} line 2: column 2 is `x`, not a number (list the column in `categorical` if \
             it holds categories)",
            bare.display()
        )
    );
}

#[test]
fn class_labels_are_checked_against_the_class_names() {
    let scratch = Scratch::new("labels");
    let numbers = scratch.file("numbers.csv", "x,y\n1,0\n2,1\n\n3,5\n4,5\n");
    let err = harness::check_dataset::<CsvDataset>(json!({ "path": numbers, "class_names": ["a", "b"] })).unwrap_err();
    assert_eq!(err, format!("load: data error: {} line 5: class label 5 is not in [0, 2)", numbers.display()));
    let words = scratch.file("words.csv", "x,y\n1,cat\n2,dog\n");
    let err = harness::check_indexed_dataset::<CsvDataset>(
        json!({ "path": words, "class_names": ["cat"], "streaming": true }),
    )
    .unwrap_err();
    assert_eq!(err, format!("describe: data error: {} line 3: unknown class `dog` (classes: cat)", words.display()));
}

/// 100,000 rows `i, i / 2, i % 3` under a header; `bad` replaces row `row`'s line.
fn big_table(scratch: &Scratch, name: &str, bad: Option<(usize, &str)>) -> PathBuf {
    let mut text = String::from("a,b,y\n");
    for i in 0..100_000usize {
        match bad {
            Some((row, line)) if row == i => text.push_str(line),
            _ => text.push_str(&format!("{i},{},{}", i as f64 / 2.0, i % 3)),
        }
        text.push('\n');
    }
    scratch.file(name, &text)
}

#[test]
fn a_bad_row_near_the_end_of_a_big_file_fails_the_scan_with_its_line() {
    let scratch = Scratch::new("big");
    let good = big_table(&scratch, "good.csv", None);
    let dataset = build(json!({ "path": good, "streaming": true }));
    assert_eq!(dataset.describe().unwrap().len, 100_000);
    let (x, y) = dataset.read(DataPart::Samples, &[99_999, 0, 50_001]).unwrap();
    assert_eq!(floats(&x), [99_999.0, 49_999.5, 0.0, 0.0, 50_001.0, 25_000.5]);
    assert_eq!(ints(&y), [0, 0, 0]);
    let (x, _) = read_all(&dataset);
    let (memory_x, _) = read_all(&build(json!({ "path": good })));
    assert!(x.equal(&memory_x));

    // Row 99,990 is line 99,992: the header is line 1.
    let text_cell = big_table(&scratch, "text.csv", Some((99_990, "99990,n/a,0")));
    let err = build(json!({ "path": text_cell, "streaming": true })).describe().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "data error: {} line 99992: column 2 (b) is `n/a`, not a number (list the column in `categorical` \
             if it holds categories)",
            text_cell.display()
        )
    );
    let wide = big_table(&scratch, "wide.csv", Some((99_998, "1,2,3,0")));
    let err = build(json!({ "path": wide, "streaming": true })).describe().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("data error: {} line 100000: 4 cells, but the header (line 1) names 3 columns", wide.display())
    );
    let label = big_table(&scratch, "label.csv", Some((99_999, "1,2,-1")));
    let err = harness::check_indexed_dataset::<CsvDataset>(json!({ "path": label, "streaming": true })).unwrap_err();
    assert_eq!(err, format!("describe: data error: {} line 100001: class label -1 is not in [0, 3)", label.display()));
}

#[test]
fn gzipped_files_load_whole_but_do_not_stream() {
    let scratch = Scratch::new("gzip");
    let plain = scratch.file("animals.csv", ANIMALS);
    let gzipped = scratch.gzip("animals.csv.gz", ANIMALS);
    let config = |path: &Path| json!({ "path": path, "target_column": "kind", "categorical": ["colour"] });
    let (x, y) = read_all(&build(config(&plain)));
    let (gx, gy) = read_all(&build(config(&gzipped)));
    assert!(x.equal(&gx) && y.equal(&gy));

    let mut streaming = config(&gzipped);
    streaming["streaming"] = true.into();
    let refusal = |path: &Path| {
        format!(
            "create: configuration error: streaming: {} is gzip-compressed, and a compressed file cannot be read \
             at a row's offset; decompress it to stream it, or set streaming to false to load it whole",
            path.display()
        )
    };
    assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming).unwrap_err(), refusal(&gzipped));
    // Told apart by its bytes too, whatever its name.
    let disguised = scratch.0.join("disguised.csv");
    std::fs::copy(&gzipped, &disguised).unwrap();
    let mut streaming = config(&disguised);
    streaming["streaming"] = true.into();
    assert_eq!(harness::check_indexed_dataset::<CsvDataset>(streaming).unwrap_err(), refusal(&disguised));
}

/// The error both modes give for `config` (they must agree), as `kind error: message`.
fn refusal(config: gymnos_plugin_sdk::serde_json::Value) -> String {
    let (memory, streaming) = both_modes(config.clone());
    let loaded = memory.describe().err().unwrap_or_else(|| panic!("accepted: {config}")).to_string();
    let scanned = streaming.describe().err().unwrap_or_else(|| panic!("accepted streaming: {config}")).to_string();
    assert_eq!(loaded, scanned, "both modes refuse alike");
    loaded
}

/// Both modes read `config` to the same tensors; those tensors.
fn read_both(config: gymnos_plugin_sdk::serde_json::Value) -> (Tensor, Tensor) {
    let (memory, streaming) = both_modes(config.clone());
    let (x, y) = read_all(&memory);
    let (sx, sy) = read_all(&streaming);
    assert!(x.equal(&sx) && y.equal(&sy), "streaming reads what loading whole does: {config}");
    (x, y)
}

#[test]
fn quoted_fields_a_byte_order_mark_and_any_line_ending_read_like_the_plain_table() {
    let scratch = Scratch::new("people");
    let config = |path: &Path| json!({ "path": path, "target_column": "kind", "categorical": ["colour"] });
    let (x, y) = read_both(config(&scratch.file("plain.csv", ANIMALS)));
    let variants = [
        ("lf.csv", ANIMALS.replace("\r\n", "\n")),
        ("cr.csv", ANIMALS.replace("\r\n", "\r")),
        ("bom.csv", format!("\u{FEFF}{}", ANIMALS.replace("\r\n", "\n"))),
        ("no-final-break.csv", ANIMALS.trim_end().to_string()),
        (
            "quoted.csv",
            "\"colour\",size,\"price\",kind\n\"red\",1,\"2.5\",cat\n \"blue\" ,2,3.5,\"dog\"\r\"red\",3,1.0,cat\n\ngreen,\"4\",0.5,dog\n"
                .to_string(),
        ),
    ];
    for (name, text) in variants {
        let (vx, vy) = read_both(config(&scratch.file(name, &text)));
        assert!(vx.equal(&x) && vy.equal(&y), "{name}");
    }
    // A byte order mark before a column name the configuration uses: the name is clean.
    let bom_target = scratch.file("bom-target.csv", "\u{FEFF}kind,size\ncat,1\ndog,2\n");
    let (_, y) = read_both(json!({ "path": bom_target, "target_column": "kind" }));
    assert_eq!(ints(&y), [0, 1]);

    // Cells holding the delimiter, quotes and line breaks keep them, as categories.
    let text = "name,n,y\n\"a,b\",1,0\n\"say \"\"hi\"\"\",2,1\n\"two\r\nlines\",3,0\n\"a,b\",4,1\n";
    let path = scratch.file("cells.csv", text);
    let config = json!({ "path": path, "categorical": ["name"] });
    let (x, y) = read_both(config.clone());
    // Sorted: "a,b" = 0, "say \"hi\"" = 1, "two\r\nlines" = 2.
    assert_eq!(floats(&x), [0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 0.0, 4.0]);
    assert_eq!(ints(&y), [0, 1, 0, 1]);
    let streaming = build(json!({ "path": path, "categorical": ["name"], "streaming": true }));
    let (x, _) = streaming.read(DataPart::Samples, &[2, 1]).unwrap();
    assert_eq!(floats(&x), [2.0, 3.0, 1.0, 2.0], "a row spanning two lines, read at its offset");
    // Prediction files are read the same way.
    let inputs = scratch.file("inputs.csv", "\u{FEFF}name,n\r\"two\r\nlines\",7\r");
    assert_eq!(floats(&streaming.read_inputs(&inputs).unwrap()), [2.0, 7.0]);
}

#[test]
fn wine_with_cr_or_crlf_line_endings_and_a_byte_order_mark_reads_as_wine() {
    let scratch = Scratch::new("wine-endings");
    let text = std::fs::read_to_string(wine()).unwrap();
    let (x, y) = read_both(json!({ "path": wine(), "header": "sklearn" }));
    for (name, text) in [
        ("cr.csv", text.replace('\n', "\r")),
        ("crlf.csv", text.replace('\n', "\r\n")),
        ("bom.csv", format!("\u{FEFF}{}", text.replace('\n', "\r\n"))),
    ] {
        let (wx, wy) = read_both(json!({ "path": scratch.file(name, &text), "header": "sklearn" }));
        assert!(wx.equal(&x) && wy.equal(&y), "{name}");
    }
    let gzipped = scratch.gzip("cr.csv.gz", &text.replace('\n', "\r"));
    let (gx, _) = read_all(&build(json!({ "path": gzipped, "header": "sklearn" })));
    assert!(gx.equal(&x));
}

#[test]
fn a_header_narrower_or_wider_than_the_rows_is_refused_naming_both_widths_and_the_line() {
    let scratch = Scratch::new("header-width");
    let narrow = scratch.file("narrow.csv", "a,b,target\n1,2,3,0\n4,5,6,1\n");
    assert_eq!(
        refusal(json!({ "path": narrow, "target_column": "target" })),
        format!("data error: {} line 2: 4 cells, but the header (line 1) names 3 columns", narrow.display())
    );
    let wide = scratch.file("wide.csv", "\n\na,b,target,extra\r\n1,2,0\r\n4,5,1\r\n");
    assert_eq!(
        refusal(json!({ "path": wide, "target_column": "target" })),
        format!("data error: {} line 4: 3 cells, but the header (line 3) names 4 columns", wide.display())
    );
    // Without a header, the first row sets the width.
    let ragged = scratch.file("ragged.csv", "1,2,0\n3,4,1\n5,6,7,0\n");
    assert_eq!(
        refusal(json!({ "path": ragged, "header": "none" })),
        format!("data error: {} line 3: 4 cells where the first row has 3", ragged.display())
    );
}

#[test]
fn a_column_name_the_header_gives_twice_is_refused_when_the_configuration_names_it() {
    let scratch = Scratch::new("duplicates");
    let path = scratch.file("dup.csv", "f0,f1,f0,y\n1,2,3,0\n4,5,6,1\n");
    let expected = format!(
        "configuration error: target_column `f0` is ambiguous: columns 1 and 3 of {} are both named `f0`; rename \
         one, or give the column's index",
        path.display()
    );
    assert_eq!(refusal(json!({ "path": path, "target_column": "f0", "task": "regression" })), expected);
    assert!(refusal(json!({ "path": path, "categorical": ["f0"] })).contains("categorical column `f0` is ambiguous"));
    // By index, or naming another column, the table reads.
    let (x, y) = read_both(json!({ "path": path, "target_column": "y" }));
    assert_eq!((floats(&x), ints(&y)), (vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![0, 1]));
    let (x, y) = read_both(json!({ "path": path, "target_column": 0, "task": "regression" }));
    assert_eq!((x.size(), floats(&y)), (vec![2, 3], vec![1.0, 4.0]));
}

#[test]
fn non_finite_cells_are_refused_naming_file_line_and_column() {
    let scratch = Scratch::new("non-finite");
    let reason = "not a finite number (NaN, an infinity, or beyond float32's ±3.4e38); fill in or drop the value";
    for (cell, line) in [("nan", 3), ("NaN", 2), ("inf", 3), ("-Infinity", 2), ("1e400", 3), ("3.5e38", 2)] {
        let text =
            if line == 2 { format!("a,b,y\n1,{cell},0\n2,3,1\n") } else { format!("a,b,y\n1,2,0\n2,{cell},1\n") };
        let path = scratch.file("t.csv", &text);
        assert_eq!(
            refusal(json!({ "path": path })),
            format!("data error: {} line {line}: column 2 (b) is `{cell}`, {reason}", path.display()),
        );
    }
    let path = scratch.file("target.csv", "a,y\n1,0.5\n2,inf\n");
    assert_eq!(
        refusal(json!({ "path": path, "task": "regression" })),
        format!("data error: {} line 3: column 2 (y) is `inf`, {reason}", path.display()),
    );
    // In files to predict too.
    let dataset = build(json!({ "path": wine(), "header": "sklearn" }));
    let text = std::fs::read_to_string(wine()).unwrap();
    let mut lines: Vec<String> = text.lines().take(3).map(String::from).collect();
    lines[2] = format!("NaN{}", &lines[2][lines[2].find(',').unwrap()..]);
    let inputs = scratch.file("inputs.csv", &lines.join("\n"));
    assert_eq!(
        dataset.read_inputs(&inputs).unwrap_err().to_string(),
        format!("data error: {} line 3: column 1 is `NaN`, {reason}", inputs.display())
    );
}

#[test]
fn a_sklearn_header_must_count_the_rows_and_features_it_heads() {
    let scratch = Scratch::new("sklearn");
    let text = std::fs::read_to_string(wine()).unwrap();
    let body = &text[text.find('\n').unwrap()..];
    let cases = [
        (
            "1000000000000,13,class_0,class_1,class_2",
            "the sklearn header (line 1) says 1000000000000 samples, but the file has 178 rows",
        ),
        ("177,13,class_0,class_1,class_2", "the sklearn header (line 1) says 177 samples, but the file has 178 rows"),
        (
            "178,1000000000000,class_0,class_1,class_2",
            "the sklearn header (line 1) says 1000000000000 features, but line 2 has 13 (and the target: 14 cells)",
        ),
    ];
    for (header, reason) in cases {
        let path = scratch.file("w.csv", &format!("{header}{body}"));
        assert_eq!(
            refusal(json!({ "path": path, "header": "sklearn" })),
            format!("data error: {}: {reason}", path.display()),
            "{header}"
        );
    }
    let path = scratch.file("names.csv", &format!("f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,f10,f11,f12,target{body}"));
    assert_eq!(
        refusal(json!({ "path": path, "header": "sklearn" })),
        format!(
            "data error: {} line 1: a sklearn header begins with the numbers of samples and of features, and `f0` is \
             not a count (set header to `names` if this row names the columns)",
            path.display()
        )
    );
}

#[test]
fn a_classification_target_must_hold_class_labels_of_at_least_two_classes() {
    let scratch = Scratch::new("targets");
    let continuous = scratch.file("continuous.csv", "a,y\n1,0\n2,12.5\n3,1\n4,0.25\n");
    assert_eq!(
        refusal(json!({ "path": continuous })),
        format!(
            "data error: {}: column 2 (y) holds non-integer numbers (`12.5` on line 3; 4 distinct values), not class \
             labels; set task to regression to predict it as a number, or target_column to the column of class labels",
            continuous.display()
        )
    );
    let (_, y) = read_both(json!({ "path": continuous, "task": "regression" }));
    assert_eq!(floats(&y), [0.0, 12.5, 1.0, 0.25]);

    // Wine's proline column: integers, but far more of them than rows.
    let text = std::fs::read_to_string(wine()).unwrap();
    let names = (0..13).map(|c| format!("f{c}")).collect::<Vec<_>>().join(",");
    let named = scratch.file("wine.csv", &format!("{names},target{}", &text[text.find('\n').unwrap()..]));
    let proline = refusal(json!({ "path": named, "target_column": "f12" }));
    assert_eq!(
        proline,
        format!(
            "data error: {}: column 13 (f12) holds integers up to 1680, which would make 1681 classes for 178 rows: a \
             quantity, not class labels? Set task to regression to predict it as a number, target_column to the \
             column of class labels, or class_names to name the classes",
            named.display()
        )
    );

    let one = scratch.file("one.csv", "a,y\n1,cat\n2,cat\n3,cat\n");
    assert_eq!(
        refusal(json!({ "path": one })),
        format!(
            "data error: {}: column 2 (y) holds one class, `cat`, on all 3 rows; classification needs at least 2 \
             classes (is another column the target? set target_column)",
            one.display()
        )
    );
    let sklearn_one = scratch.file("one-sk.csv", "3,1,class_0\n1,0\n2,0\n3,0\n");
    assert!(
        refusal(json!({ "path": sklearn_one, "header": "sklearn" })).contains("holds one class, `0`, on all 3 rows")
    );

    let empty = scratch.file("empty.csv", "a,y\n1,cat\n2,\n3,dog\n");
    assert_eq!(
        refusal(json!({ "path": empty })),
        format!("data error: {} line 3: column 2 (y) is empty; every row needs a class label", empty.display())
    );
    let nan = scratch.file("nan.csv", "a,y\n1,0\n2,nan\n3,1\n");
    assert_eq!(
        refusal(json!({ "path": nan })),
        format!(
            "data error: {} line 3: column 2 (y) is `nan`, not a finite number; every row needs a class label",
            nan.display()
        )
    );

    // Integers written as floats are integers.
    let floats_path = scratch.file("floats.csv", "a,y\n1,0.0\n2,2.0\n3,1\n");
    let (_, y) = read_both(json!({ "path": floats_path }));
    assert_eq!(ints(&y), [0, 2, 1]);
}

#[test]
fn a_delimiter_that_cannot_separate_cells_is_refused() {
    let scratch = Scratch::new("delimiter");
    let path = scratch.file("t.csv", "a,y\n1,0\n");
    for delimiter in ["\"", "§", "\n"] {
        let err = CsvDataset::build(
            CsvConfig::from_json(json!({ "path": path, "delimiter": delimiter })).unwrap(),
            &Context::standalone(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.starts_with("configuration error: delimiter: ") && err.contains("cannot separate cells"), "{err}");
    }
}

#[test]
fn a_quote_left_open_is_refused_naming_its_line() {
    let scratch = Scratch::new("open-quote");
    let path = scratch.file("t.csv", "name,y\n\"a,0\nb,1\nc,0\n");
    assert_eq!(
        refusal(json!({ "path": path, "categorical": [0] })),
        format!(
            "data error: {} line 2: column 1: a quoted field opens here and never closes (a quote inside a quoted \
             field is written twice: \"\")",
            path.display()
        )
    );
}

/// Generated tables: whatever their quoting, line endings, byte order mark, blank lines and
/// delimiter, they read back to the values written; a row of another width, or a non-finite
/// cell, anywhere, is refused with its line.
mod properties {
    use gymnos_plugin_sdk::serde_json::json;
    use proptest::prelude::*;

    use super::{floats, ints, read_both, refusal, Scratch};

    /// One row: a text category, numbers, a class label.
    #[derive(Clone, Debug)]
    struct Row {
        kind: String,
        numbers: Vec<f32>,
        label: String,
    }

    /// How the table is written.
    #[derive(Clone, Debug)]
    struct Style {
        delimiter: char,
        /// Per line: 0 LF, 1 CRLF, 2 CR.
        endings: Vec<u8>,
        /// Per cell, in writing order: quote it even if it needs no quotes; pad it with spaces.
        quote: Vec<bool>,
        pad: Vec<bool>,
        bom: bool,
        final_break: bool,
        /// Per line: a blank line before it.
        blank: Vec<bool>,
    }

    const LABELS: [&str; 5] = ["cat", "dog", "a,b", "say \"hi\"", "two\nlines"];

    fn row(features: usize) -> impl Strategy<Value = Row> {
        ("[a-z ,;|\"\r\n\t]{0,6}", prop::collection::vec(-1.0e6f32..1.0e6, features), 0..LABELS.len()).prop_map(
            |(kind, numbers, label)| Row {
                // Unquoted cells lose their surrounding spaces; quoted ones keep them, so the
                // table keeps none to stay comparable in every style.
                kind: kind.trim().to_string(),
                numbers,
                label: LABELS[label].to_string(),
            },
        )
    }

    fn table() -> impl Strategy<Value = (Vec<Row>, Style)> {
        (1usize..4, 2usize..24).prop_flat_map(|(features, rows)| {
            let lines = rows + 1;
            let cells = lines * (features + 2);
            (
                prop::collection::vec(row(features), rows),
                (
                    prop::sample::select(vec![',', ';', '|', '\t']),
                    prop::collection::vec(0u8..3, lines),
                    prop::collection::vec(any::<bool>(), cells),
                    prop::collection::vec(any::<bool>(), cells),
                    any::<bool>(),
                    any::<bool>(),
                    prop::collection::vec(prop::bool::weighted(0.1), lines),
                )
                    .prop_map(|(delimiter, endings, quote, pad, bom, final_break, blank)| Style {
                        delimiter,
                        endings,
                        quote,
                        pad,
                        bom,
                        final_break,
                        blank,
                    }),
            )
        })
    }

    fn write(rows: &[Row], style: &Style) -> String {
        let features = rows[0].numbers.len();
        let header: Vec<String> = std::iter::once("kind".to_string())
            .chain((0..features).map(|i| format!("x{i}")))
            .chain(["label".into()])
            .collect();
        let lines = std::iter::once(header).chain(rows.iter().map(|r| {
            std::iter::once(r.kind.clone())
                .chain(r.numbers.iter().map(|v| v.to_string()))
                .chain([r.label.clone()])
                .collect()
        }));
        let mut text = String::from(if style.bom { "\u{FEFF}" } else { "" });
        let mut cell = 0;
        let ending = |e: u8| ["\n", "\r\n", "\r"][e as usize];
        for (i, line) in lines.enumerate() {
            if style.blank[i] {
                // A blank line: after a CR, an LF would only complete its CRLF.
                text.push_str(if text.ends_with('\r') { "\r" } else { ending(style.endings[i]) });
            }
            let cells: Vec<String> = line
                .iter()
                .map(|value: &String| {
                    let needs = value.contains([style.delimiter, '"', '\r', '\n']);
                    let (quote, pad) = (style.quote[cell] || needs, style.pad[cell]);
                    cell += 1;
                    let written = if quote { format!("\"{}\"", value.replace('"', "\"\"")) } else { value.clone() };
                    if pad {
                        format!(" {written}  ")
                    } else {
                        written
                    }
                })
                .collect();
            text.push_str(&cells.join(&style.delimiter.to_string()));
            if i + 1 < style.endings.len() || style.final_break {
                text.push_str(ending(style.endings[i]));
            }
        }
        text
    }

    /// Codes of `values` among their sorted distinct values.
    fn codes(values: &[&str]) -> Vec<f32> {
        let mut distinct: Vec<&str> = values.to_vec();
        distinct.sort();
        distinct.dedup();
        values.iter().map(|v| distinct.binary_search(v).unwrap() as f32).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn written_tables_read_back_to_their_values((mut rows, style) in table()) {
            // Two classes at least.
            rows[0].label = LABELS[0].into();
            rows[1].label = LABELS[1].into();
            let scratch = Scratch::new("prop-round-trip");
            let path = scratch.file("t.csv", &write(&rows, &style));
            let config = json!({
                "path": path, "target_column": "label", "categorical": ["kind"],
                "delimiter": style.delimiter.to_string(),
            });
            let (x, y) = read_both(config);
            let kinds = codes(&rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>());
            let expected_x: Vec<f32> =
                rows.iter().zip(&kinds).flat_map(|(r, &k)| std::iter::once(k).chain(r.numbers.iter().copied())).collect();
            let labels = codes(&rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>());
            prop_assert_eq!(floats(&x), expected_x);
            prop_assert_eq!(ints(&y), labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
        }

        #[test]
        fn a_row_or_header_of_another_width_is_refused_with_its_line(
            features in 1usize..5,
            rows in 2usize..20,
            bad in any::<prop::sample::Index>(),
            extra in prop_oneof![-3i64..0, 1i64..4],
            header_wrong in any::<bool>(),
            endings in prop::collection::vec(0u8..3, 21),
            bom in any::<bool>(),
        ) {
            let width = features + 1;
            let wrong = (width as i64 + extra).max(1) as usize;
            prop_assume!(wrong != width);
            let bad = bad.index(rows);
            let header_width = if header_wrong { wrong } else { width };
            let mut lines = vec![(0..header_width).map(|c| format!("c{c}")).collect::<Vec<_>>().join(",")];
            for r in 0..rows {
                let cells = if !header_wrong && r == bad { wrong } else { width };
                lines.push((0..cells).map(|c| if c + 1 == width { (r % 2).to_string() } else { format!("{r}.{c}") }).collect::<Vec<_>>().join(","));
            }
            let mut text = String::from(if bom { "\u{FEFF}" } else { "" });
            for (line, ending) in lines.iter().zip(&endings) {
                text.push_str(line);
                text.push_str(["\n", "\r\n", "\r"][*ending as usize]);
            }
            let scratch = Scratch::new("prop-width");
            let path = scratch.file("t.csv", &text);
            let (line, cells, named) = if header_wrong { (2, width, wrong) } else { (bad + 2, wrong, width) };
            prop_assert_eq!(
                refusal(json!({ "path": path, "target_column": -1 })),
                format!("data error: {} line {line}: {cells} cells, but the header (line 1) names {named} columns", path.display())
            );
        }

        #[test]
        fn a_non_finite_cell_anywhere_is_refused_with_its_line_and_column(
            features in 1usize..5,
            rows in 2usize..20,
            at in any::<(prop::sample::Index, prop::sample::Index)>(),
            token in prop::sample::select(vec!["nan", "NaN", "-nan", "inf", "-inf", "+Infinity", "1e400", "-1e39", "3.5e38"]),
            crlf in any::<bool>(),
        ) {
            let (bad_row, bad_column) = (at.0.index(rows), at.1.index(features));
            let mut text = (0..features).map(|c| format!("f{c}")).chain(["y".into()]).collect::<Vec<_>>().join(",");
            for r in 0..rows {
                text.push_str(if crlf { "\r\n" } else { "\n" });
                let cells: Vec<String> = (0..features)
                    .map(|c| if (r, c) == (bad_row, bad_column) { token.to_string() } else { format!("{}", r * 10 + c) })
                    .chain([(r % 2).to_string()])
                    .collect();
                text.push_str(&cells.join(","));
            }
            let scratch = Scratch::new("prop-finite");
            let path = scratch.file("t.csv", &text);
            prop_assert_eq!(
                refusal(json!({ "path": path })),
                format!(
                    "data error: {} line {}: column {} (f{bad_column}) is `{token}`, not a finite number (NaN, an \
                     infinity, or beyond float32's ±3.4e38); fill in or drop the value",
                    path.display(),
                    bad_row + 2,
                    bad_column + 1
                )
            );
        }
    }
}
