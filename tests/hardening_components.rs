//! Broken configurations of the built-in models, preprocessors, augmentors and trackers, one
//! table per class of problem, each with the exact one-line error it must get: sizes that cannot
//! fit in memory (refused before anything is allocated, naming the field and the bytes),
//! settings that would make NaN, category columns that hold measurements, and tracker settings.
//! Each case runs through every command that must refuse it: what a declared rule refuses,
//! `validate` refuses (and so `validate --deep` and `run`); what only creating or fitting the
//! component shows, `validate --deep` and `run` refuse, both before a run folder exists.

use std::fs;

use gymnos_plugin_sdk::memory;
use gymnos_tests::{wine_experiment, with, Sandbox};
use serde_json::{json, Value};

/// Where a broken configuration is caught.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    /// By a declared rule: `validate`, `validate --deep` and `run`; no run folder.
    Rule,
    /// By creating or fitting a component: `validate --deep` and `run`; no run folder.
    Create,
    /// By the first batch (an augmentor): `validate --deep` and `run`.
    FirstBatch,
}

/// The error after `error: <file>: `.
enum Expect {
    Exact(String),
    /// For what depends on this machine's memory (where a network stops fitting).
    Prefix(String),
}

struct Case {
    name: &'static str,
    experiment: Value,
    stage: Stage,
    expect: Expect,
}

fn case(name: &'static str, experiment: Value, stage: Stage, expect: Expect) -> Case {
    Case { name, experiment, stage, expect }
}

/// `... and this machine has 25.3 GB of memory`: what the plugins see, in this process too.
fn machine() -> String {
    memory::human(u128::from(memory::limit_bytes()))
}

/// The wine experiment with `value` at the `/`-separated `path` (its parent must exist).
fn wine_with(path: &str, value: Value) -> Value {
    with(wine_experiment("hardening"), path, value)
}

/// Generated images `[channels, height, width]` in 3 classes, a small CNN, one epoch.
fn images(shape: &[i64], samples: u64, batch_size: u64) -> Value {
    json!({
        "experiment": { "name": "hardening", "seed": 3 },
        "dataset": { "plugin": "synthetic", "config": { "samples": samples, "shape": shape, "classes": 3 } },
        "preprocessors": [],
        "model": { "plugin": "cnn", "config": { "channels": [4], "hidden": 8 } },
        "training": { "epochs": 1, "batch_size": batch_size, "device": "cpu" },
        "tracking": { "trackers": [{ "plugin": "jsonl" }] }
    })
}

/// Runs each case through the commands of its stage; returns what went wrong, and the cases
/// refused after a run folder was made (allowed only for `Stage::FirstBatch`, and reported).
fn check(sandbox: &Sandbox, cases: Vec<Case>) -> (Vec<String>, Vec<String>) {
    let (mut wrong, mut folders) = (Vec::new(), Vec::new());
    for (i, case) in cases.into_iter().enumerate() {
        let name = format!("hardening-{i}");
        let experiment = with(case.experiment, "/experiment/name", json!(name));
        let path = sandbox.experiment(&name, &experiment);
        let file = path.to_str().unwrap();
        let prefix = format!("error: {}: ", path.display());
        let mut commands: Vec<Vec<&str>> = vec![vec!["validate", "--deep", file], vec!["run", file, "--no-progress"]];
        if case.stage == Stage::Rule {
            commands.insert(0, vec!["validate", file]);
        }
        for args in commands {
            let out = sandbox.host(&args);
            let got = if out.code == 0 { "(succeeded)".to_string() } else { out.one_line_error().to_string() };
            let matches = match &case.expect {
                Expect::Exact(e) => got == format!("{prefix}{e}"),
                Expect::Prefix(e) => got.starts_with(&format!("{prefix}{e}")),
            };
            if !matches {
                let want = match &case.expect {
                    Expect::Exact(e) | Expect::Prefix(e) => format!("{prefix}{e}"),
                };
                wrong.push(format!("{} ({}):\n  want {want}\n  got  {got}", case.name, args.join(" ")));
            }
        }
        if !sandbox.runs(&name).is_empty() {
            match case.stage {
                Stage::FirstBatch => folders.push(case.name.to_string()),
                _ => wrong.push(format!("{}: a run refused at {:?} time left a run folder", case.name, case.stage)),
            }
        }
    }
    (wrong, folders)
}

fn assert_cases(cases: Vec<Case>) {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let (wrong, folders) = check(&sandbox, cases);
    if !folders.is_empty() {
        // `run` creates its folder before the first batch (see the module's docs).
        eprintln!("refused at the first batch after the run folder was made: {}", folders.join(", "));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn sizes_that_cannot_fit_are_refused_before_anything_is_allocated_naming_the_field() {
    let m = machine();
    let dense = |units: i64| json!({ "type": "dense", "units": units });
    let conv = |filters: i64| json!({ "type": "conv2d", "filters": filters, "kernel_size": 3 });
    let sequential = |layers: Value| json!({ "plugin": "sequential", "config": { "layers": layers } });
    let images_with = |path: &str, value: Value| with(images(&[1, 28, 28], 48, 8), path, value);
    assert_cases(vec![
        case(
            "mlp: two hidden layers whose product cannot fit",
            wine_with("/model/config/hidden", json!([1000000, 1000000])),
            Stage::Create,
            Expect::Exact(format!(
                "model `mlp@1.1.0` (model) failed in create: configuration error: hidden[1] (the network up to this \
                 layer of 1000000 x 1000000 weights): needs 4.0 TB (4000076000000 bytes), and this machine has {m} of \
                 memory"
            )),
        ),
        case(
            "mlp: one absurd layer",
            wine_with("/model/config/hidden", json!([1000000000000i64])),
            Stage::Create,
            Expect::Exact(format!(
                "model `mlp@1.1.0` (model) failed in create: configuration error: hidden[0] (the network up to this \
                 layer of 13 x 1000000000000 weights): needs 64.0 TB (64000000000000 bytes), and this machine has {m} \
                 of memory"
            )),
        ),
        case(
            "sequential: two dense layers at the per-layer cap",
            wine_with("/model", sequential(json!([dense(1 << 20), dense(1 << 20)]))),
            Stage::Create,
            Expect::Exact(format!(
                "model `sequential@1.1.0` (model) failed in create: configuration error: layers[1].units (the network \
                 up to this dense layer of 1048576 x 1048576 weights): needs 4.4 TB (4398117814272 bytes), and this \
                 machine has {m} of memory"
            )),
        ),
        case(
            "sequential: two convolutions at the per-layer cap, inside a residual block",
            images_with(
                "/model",
                sequential(json!([conv(8), { "type": "residual", "layers": [conv(1 << 20), conv(1 << 20), conv(8)] }])),
            ),
            Stage::Create,
            Expect::Exact(format!(
                "model `sequential@1.1.0` (model) failed in create: configuration error: layers[1].layers[1].filters \
                 (the network up to this conv2d of 1048576 to 1048576 channels, output [1048576, 28, 28]): needs 39.6 \
                 TB (39589305672512 bytes), and this machine has {m} of memory"
            )),
        ),
        case(
            "cnn: a block too wide for one image",
            images_with("/model/config", json!({ "channels": [1000000000] })),
            Stage::Create,
            Expect::Exact(format!(
                "model `cnn@1.2.0` (model) failed in create: configuration error: channels[0] (the network up to \
                 block 0: 1 to 1000000000 channels at 28x28): needs 10.2 TB (10244000000000 bytes), and this machine \
                 has {m} of memory"
            )),
        ),
        case(
            "cnn: a dense head too wide",
            images_with("/model/config", json!({ "hidden": 100000000 })),
            Stage::Create,
            Expect::Exact(format!(
                "model `cnn@1.2.0` (model) failed in create: configuration error: hidden (the network up to its dense \
                 layer from channels[1]: 64x7x7 features x 100000000 weights): needs 1.3 TB (1256000565632 bytes), and \
                 this machine has {m} of memory"
            )),
        ),
        case(
            "resnet: stages too wide",
            images_with("/model", json!({ "plugin": "resnet", "config": { "depth": [2, 2, 2, 2, 2], "width": 4096 } })),
            Stage::Create,
            Expect::Prefix("model `resnet@1.1.0` (model) failed in create: configuration error: depth[".into()),
        ),
        case(
            "resize: a side beyond the rule",
            images_with(
                "/preprocessors",
                json!([{ "plugin": "resize", "config": { "height": 1000000, "width": 28 } }]),
            ),
            Stage::Rule,
            Expect::Exact("preprocessors[0].config.height: 1000000 is not in [1, 65535] (resize)".into()),
        ),
        case(
            "resize: sides within the rule whose batch cannot fit",
            images_with(
                "/preprocessors",
                json!([{ "plugin": "resize", "config": { "height": 65535, "width": 65535 } }]),
            ),
            Stage::Create,
            Expect::Prefix(
                "preprocessor `resize@1.0.0` (preprocessors[0]) failed in fit_batch: configuration error: height x \
                 width (65535x65535 pixels, for "
                    .into(),
            ),
        ),
        case(
            "random-crop: a padding beyond the rule",
            images_with("/data_augmentors", json!([{ "plugin": "random-crop", "config": { "padding": 1000000000 } }])),
            Stage::Rule,
            Expect::Exact("data_augmentors[0].config.padding: 1000000000 is not in [0, 1024] (random-crop)".into()),
        ),
        case(
            "random-crop: a padding within the rule whose padded batch cannot fit",
            with(
                with(
                    images(&[4096, 1, 1], 1024, 512),
                    "/model",
                    json!({ "plugin": "mlp", "config": { "hidden": [4] } }),
                ),
                "/data_augmentors",
                json!([{ "plugin": "random-crop", "config": { "padding": 1024 } }]),
            ),
            Stage::FirstBatch,
            Expect::Exact(format!(
                "data_augmentor `random-crop@1.0.0` (data_augmentors[0]) failed in augment: configuration error: \
                 padding (1024 pixels a side, for 512 images of 4096x1x1): needs 35.2 TB (35218740215808 bytes), and \
                 this machine has {m} of memory"
            )),
        ),
    ]);
}

#[test]
fn settings_that_would_make_nan_are_refused_naming_the_field_or_the_feature() {
    let sandbox_dir = tempfile::tempdir().unwrap();
    // Column `c` is constant: with epsilon 0 standardize would divide it by 0.
    let constant = sandbox_dir.path().join("constant.csv");
    let rows: String = (0..40).map(|i| format!("{},{},7,{}\n", i % 7, (i * 3) % 11, i % 2)).collect();
    fs::write(&constant, format!("a,b,c,target\n{rows}")).unwrap();
    let on_constant = with(
        wine_with("/dataset/config", json!({ "path": constant, "header": "names", "target_column": "target" })),
        "/preprocessors",
        json!([{ "plugin": "standardize", "config": { "per_feature": true, "epsilon": 0 } }]),
    );
    let augmented = |plugin: &str, config: Value| {
        with(images(&[1, 12, 12], 48, 8), "/data_augmentors", json!([{ "plugin": plugin, "config": config }]))
    };
    assert_cases(vec![
        case(
            "standardize: epsilon 0 and a constant feature",
            on_constant,
            Stage::Create,
            Expect::Exact(
                "preprocessor `standardize@1.1.0` (preprocessors[0]) failed in end_fit: data error: standardize: \
                 feature 2 is constant in the training split (standard deviation 0) and `epsilon` is 0: dividing by 0 \
                 gives NaN; set `epsilon` above 0 (the default is 1e-8), or leave the feature out"
                    .into(),
            ),
        ),
        case(
            "mixup: alpha 0",
            augmented("mixup", json!({ "alpha": 0 })),
            Stage::Rule,
            Expect::Exact("data_augmentors[0].config.alpha: 0 is not > 0 (mixup)".into()),
        ),
        case(
            "cutmix: a negative alpha",
            augmented("cutmix", json!({ "alpha": -1 })),
            Stage::Rule,
            Expect::Exact("data_augmentors[0].config.alpha: -1 is not > 0 (cutmix)".into()),
        ),
        case(
            "random-erasing: an aspect ratio of 0",
            augmented("random-erasing", json!({ "ratio_min": 0 })),
            Stage::Rule,
            Expect::Exact("data_augmentors[0].config.ratio_min: 0 is not > 0 (random-erasing)".into()),
        ),
        case(
            "normalize: a standard deviation of 0",
            wine_with("/preprocessors", json!([{ "plugin": "normalize", "config": { "mean": [0.5], "std": [0] } }])),
            Stage::Rule,
            Expect::Exact("preprocessors[0].config.std: item 0: 0 is not > 0 (normalize)".into()),
        ),
        case(
            "min-max: a range beyond 64-bit floats",
            wine_with("/preprocessors", json!([{ "plugin": "min-max", "config": { "low": -1e308, "high": 1e308 } }])),
            Stage::Create,
            Expect::Exact(
                "preprocessor `min-max@1.0.0` (preprocessors[0]) failed in create: configuration error: min-max: \
                 `high` - `low` (1e308 - -1e308) is beyond a 64-bit float; the scaled features would be infinite"
                    .into(),
            ),
        ),
    ]);
}

#[test]
fn measurements_listed_as_categories_are_refused_naming_the_column() {
    assert_cases(vec![
        case(
            "one-hot: a whole-number measurement of many values",
            wine_with("/preprocessors", json!([{ "plugin": "one-hot", "config": { "columns": [12] } }])),
            Stage::Create,
            Expect::Exact(
                "preprocessor `one-hot@1.0.0` (preprocessors[0]) failed in fit_batch: data error: one-hot: column 12 \
                 takes more than 50 distinct values in training (max_categories): it looks like a continuous feature \
                 or an identifier, not categories; leave it out of `columns`, or raise `max_categories` if it holds \
                 that many categories"
                    .into(),
            ),
        ),
        case(
            "label-encode: measurements",
            wine_with("/preprocessors", json!([{ "plugin": "label-encode", "config": { "columns": [0, 1] } }])),
            Stage::Create,
            Expect::Exact(
                "preprocessor `label-encode@1.0.0` (preprocessors[0]) failed in fit_batch: data error: label-encode: \
                 column 0 holds 11.03 in training, not an integer category code: it looks like a continuous feature; \
                 leave it out of `columns` (a csv data set gives the columns listed in its `categorical` as integer \
                 codes)"
                    .into(),
            ),
        ),
        case(
            "one-hot: max_categories 0",
            wine_with(
                "/preprocessors",
                json!([{ "plugin": "one-hot", "config": { "columns": [12], "max_categories": 0 } }]),
            ),
            Stage::Rule,
            Expect::Exact("preprocessors[0].config.max_categories: 0 is not in [1, 1000000] (one-hot)".into()),
        ),
    ]);
}

#[test]
fn category_columns_still_train() {
    // A csv data set's `categorical` column arrives as integer codes: one-hot and label-encode
    // take it, and a column of more categories than the default with max_categories raised.
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let path = sandbox.dir.path().join("colors.csv");
    let colors = ["red", "green", "blue", "teal"];
    let rows: String =
        (0..80).map(|i| format!("{},{},{},{}\n", colors[i % 4], i % 60, (i as f64) * 0.25, i % 2)).collect();
    fs::write(&path, format!("color,shade,size,target\n{rows}")).unwrap();
    for (i, preprocessors) in [
        json!([{ "plugin": "one-hot", "config": { "columns": [0] } }]),
        json!([{ "plugin": "label-encode", "config": { "columns": [0] } }]),
        json!([{ "plugin": "one-hot", "config": { "columns": [0, 1], "max_categories": 60 } }]),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("categories-{i}");
        let exp = with(
            with(
                wine_with(
                    "/dataset/config",
                    json!({ "path": path, "header": "names", "target_column": "target", "categorical": ["color"] }),
                ),
                "/preprocessors",
                preprocessors.clone(),
            ),
            "/experiment/name",
            json!(name),
        );
        let file = sandbox.experiment(&name, &with(exp, "/training/epochs", json!(1)));
        let out = sandbox.host(&["run", file.to_str().unwrap(), "--no-progress"]);
        assert_eq!(out.code, 0, "{preprocessors}: {}", out.stderr);
    }
}

#[test]
fn tracker_settings_are_refused_by_plain_validate() {
    let tracker =
        |plugin: &str, config: Value| wine_with("/tracking/trackers", json!([{ "plugin": plugin, "config": config }]));
    let url = "it needs a URL (http:// or https://host[:port][/path]) (mlflow)";
    assert_cases(vec![
        case(
            "mlflow: not a URL",
            tracker("mlflow", json!({ "tracking_uri": "not a url" })),
            Stage::Rule,
            Expect::Exact(format!("tracking.trackers[0].config.tracking_uri: `not a url` contains a space; {url}")),
        ),
        case(
            "mlflow: no scheme",
            tracker("mlflow", json!({ "tracking_uri": "localhost:5000" })),
            Stage::Rule,
            Expect::Exact(format!(
                "tracking.trackers[0].config.tracking_uri: `localhost:5000` has no scheme:// (such as http://); {url}"
            )),
        ),
        case(
            "mlflow: another scheme",
            tracker("mlflow", json!({ "tracking_uri": "file:///tmp/mlruns" })),
            Stage::Rule,
            Expect::Exact(format!(
                "tracking.trackers[0].config.tracking_uri: `file:///tmp/mlruns` has the scheme `file`, not http or \
                 https; {url}"
            )),
        ),
        case(
            "mlflow: a port that is no port",
            tracker("mlflow", json!({ "tracking_uri": "http://127.0.0.1:99999" })),
            Stage::Rule,
            Expect::Exact(format!(
                "tracking.trackers[0].config.tracking_uri: `http://127.0.0.1:99999` has the port `99999`, not a \
                 number from 1 to 65535; {url}"
            )),
        ),
        case(
            "jsonl: an empty file name",
            tracker("jsonl", json!({ "file": "" })),
            Stage::Rule,
            Expect::Exact(
                "tracking.trackers[0].config.file: is empty; give a relative path inside the run folder (jsonl)".into(),
            ),
        ),
        case(
            "tensorboard: the run folder itself",
            tracker("tensorboard", json!({ "dir": "logs/.." })),
            Stage::Rule,
            Expect::Exact(
                "tracking.trackers[0].config.dir: `logs/..` names the run folder itself; give a relative path inside \
                 it (tensorboard)"
                    .into(),
            ),
        ),
    ]);
}

#[test]
fn a_csv_tracker_writing_both_tables_to_one_file_is_refused() {
    // The host refuses files two trackers' keys share at `validate`; the csv tracker refuses its
    // own two tables in one file when it is created, for hosts that do not.
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let exp = wine_with(
        "/tracking/trackers",
        json!([{ "plugin": "csv", "config": { "file": "t.csv", "test_file": "./t.csv" } }]),
    );
    let path = sandbox.experiment("hardening", &exp);
    for args in [vec!["validate", path.to_str().unwrap()], vec!["run", path.to_str().unwrap(), "--no-progress"]] {
        let out = sandbox.host(&args);
        let err = out.one_line_error();
        assert!(err.starts_with(&format!("error: {}: ", path.display())) && err.contains("test_file"), "{err}");
    }
    assert!(sandbox.runs("hardening").is_empty());
}

#[test]
fn the_url_rule_is_shown_by_plugins_info_and_the_schema() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let info = sandbox.host(&["plugins", "info", "mlflow"]);
    assert!(info.ok().contains("non-empty; a URL (http:// or https://host[:port][/path])"), "{}", info.stdout);
    let schema = sandbox.host(&["schema"]);
    let text = schema.ok();
    let rule = r#""format":"uri""#;
    let pattern = r#""pattern":"^([hH][tT][tT][pP]|[hH][tT][tT][pP][sS])://[^\\s?#]+$""#;
    let compact = serde_json::from_str::<Value>(text).unwrap().to_string();
    assert!(compact.contains(rule) && compact.contains(pattern), "the mlflow tracker's tracking_uri in the schema");
}
