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
        format!("data error: {} line 100000: 4 cells where the first row has 3", wide.display())
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
