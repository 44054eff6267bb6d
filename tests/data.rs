//! Data beyond memory (plugin API 1.2): streaming data sets read by index, the image folder,
//! and the preprocessors and augmentors of the catalog in real runs.

use std::{fs, path::Path, process::Command};

use gymnos_tests::{artifact_dir, data_dir, python, read_json, wine_experiment, Sandbox};
use serde_json::{json, Value};

/// The metrics of a run that do not depend on timing.
fn deterministic(metrics: &Value) -> (Value, Value) {
    let mut history = metrics["history"].clone();
    for timing in ["epoch_seconds", "train_samples_per_second", "data_wait_seconds"] {
        history.as_object_mut().unwrap().remove(timing);
    }
    (history, metrics["test"].clone())
}

fn synthetic(name: &str, samples: u64) -> Value {
    json!({
        "experiment": { "name": name, "seed": 3 },
        "dataset": {
            "plugin": "synthetic",
            "config": { "samples": samples, "shape": [64], "classes": 5, "noise": 1.0, "seed": 1 },
            "split": { "train": 0.8, "val": 0.1, "test": 0.1 }
        },
        "preprocessors": [{ "plugin": "standardize" }],
        "data_augmentors": [{ "plugin": "gaussian-noise", "config": { "std": 0.05 } }],
        "model": { "plugin": "mlp", "config": { "hidden": [32] } },
        "training": {
            "epochs": 3, "batch_size": 64, "num_workers": 2, "device": "cpu",
            "optimizer": { "name": "adam", "lr": 0.01 }
        }
    })
}

#[test]
fn a_streaming_data_set_trains_resumes_to_the_same_metrics_and_is_recorded_as_indexed() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let whole = sandbox.experiment("stream", &synthetic("stream", 3000));
    sandbox.host(&["run", whole.to_str().unwrap(), "--no-progress"]).ok();
    let reference = read_json(&sandbox.runs("stream")[0].join("metrics.json"));
    assert_eq!(reference["status"], "completed");
    let data = &reference["data"];
    assert_eq!((data["mode"].as_str(), data["train_samples"].as_u64()), (Some("indexed"), Some(2400)));
    assert_eq!((data["val_samples"].as_u64(), data["test_samples"].as_u64()), (Some(300), Some(300)));
    assert_eq!(data["input_shape"], json!([64]));
    assert!(reference["test"]["accuracy"].as_f64().unwrap() > 0.9, "{}", reference["test"]);
    assert!(reference["history"]["data_wait_seconds"].as_array().unwrap().iter().all(|v| v.as_f64() >= Some(0.0)));

    // Paused after the first epoch and resumed: the streamed splits, the per-index shuffles and
    // the preprocessor's fitted state come back exactly.
    let paused = sandbox.experiment("paused", &synthetic("paused", 3000));
    sandbox.host(&["run", paused.to_str().unwrap(), "--no-progress", "--stop-after-epoch", "1"]).ok();
    let run = sandbox.runs("paused")[0].clone();
    assert_eq!(read_json(&run.join("metrics.json"))["status"], "paused");
    sandbox.host(&["resume", run.to_str().unwrap(), "--no-progress"]).ok();
    let resumed = read_json(&run.join("metrics.json"));
    assert_eq!(resumed["status"], "completed");
    assert_eq!(deterministic(&resumed), deterministic(&reference));

    // `predict` reads new samples through the streaming data set's read_inputs.
    let inputs = sandbox.dir.path().join("inputs.csv");
    let row: Vec<String> = (0..64).map(|i| format!("{}", (i % 7) as f64 * 0.1)).collect();
    fs::write(&inputs, format!("{}\n{}\n", row.join(","), row.join(","))).unwrap();
    let out = sandbox.host(&["predict", run.to_str().unwrap(), inputs.to_str().unwrap()]);
    let predictions: Value = serde_json::from_str(out.ok()).unwrap();
    assert_eq!(predictions.as_array().unwrap().len(), 2);
}

/// Peak resident memory (KiB) of `gymnos-host ARGS` and its engine, measured by a parent of
/// their own so that no other test's processes count.
fn peak_kib(sandbox: &Sandbox, args: &[&str]) -> u64 {
    const SCRIPT: &str = "import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
if r.returncode: sys.exit(r.stderr.decode())
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)";
    let out = Command::new(python())
        .args(["-c", SCRIPT])
        .arg(artifact_dir().join("gymnos-host"))
        .arg("--registry")
        .arg(sandbox.registry())
        .args(args)
        .current_dir(sandbox.dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn streaming_ten_million_samples_takes_the_memory_of_a_hundred_thousand() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let bounded = |name: &str, samples: u64| {
        let mut exp = synthetic(name, samples);
        exp["preprocessors"] = json!([]);
        exp["training"]["epochs"] = json!(1);
        exp["training"]["limit_train_batches"] = json!(100);
        exp["training"]["limit_eval_batches"] = json!(2);
        sandbox.experiment(name, &exp)
    };
    let small = bounded("small", 100_000);
    let large = bounded("large", 10_000_000);
    let small_kib = peak_kib(&sandbox, &["run", small.to_str().unwrap(), "--no-progress"]);
    let large_kib = peak_kib(&sandbox, &["run", large.to_str().unwrap(), "--no-progress"]);
    let metrics = read_json(&sandbox.runs("large")[0].join("metrics.json"));
    assert_eq!(
        (metrics["status"].as_str(), metrics["data"]["train_samples"].as_u64()),
        (Some("completed"), Some(8_000_000))
    );
    // A list of 8 million indices alone would take 64 MB; the runs differ by far less.
    let grown = large_kib as i64 - small_kib as i64;
    assert!(grown < 24 * 1024, "peak memory grew by {grown} KiB, from {small_kib} to {large_kib} KiB");
}

/// Writes the first `limit` Fashion-MNIST test images as `dir/<class>/<index>.png`.
fn png_folder(dir: &Path, limit: u32) {
    let fmnist = data_dir().join("fashion-mnist");
    let out = Command::new(artifact_dir().join("gymnos-idx-to-images"))
        .arg("--images")
        .arg(fmnist.join("t10k-images-idx3-ubyte.gz"))
        .arg("--labels")
        .arg(fmnist.join("t10k-labels-idx1-ubyte.gz"))
        .arg("--out")
        .arg(dir)
        .args(["--format", "png", "--limit", &limit.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn image_experiment(name: &str, root: &Path, on_error: &str) -> Value {
    json!({
        "experiment": { "name": name, "seed": 5 },
        "dataset": {
            "plugin": "image-folder",
            "config": { "root": root, "color": "grayscale", "height": 32, "width": 32, "on_error": on_error },
            "split": { "train": 0.8, "val": 0.1, "test": 0.1 }
        },
        "preprocessors": [{ "plugin": "normalize" }],
        "data_augmentors": [
            { "plugin": "random-crop", "config": { "padding": 4 } },
            { "plugin": "color-jitter", "config": { "brightness": 0.2, "contrast": 0.2 } }
        ],
        "model": { "plugin": "cnn", "config": { "channels": [8, 16], "hidden": 32 } },
        "training": {
            "epochs": 3, "batch_size": 64, "num_workers": 2, "device": "cpu",
            "optimizer": { "name": "adam", "lr": 0.003 }
        }
    })
}

#[test]
fn an_image_folder_trains_with_resize_crop_and_jitter_and_counts_what_it_skipped() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let root = sandbox.dir.path().join("images");
    png_folder(&root, 1500);
    // A file that is no image, among the classes.
    let broken = root.join("bag/zz-broken.png");
    fs::write(&broken, b"not a png").unwrap();

    let skipping = sandbox.experiment("images", &image_experiment("images", &root, "skip"));
    sandbox.host(&["run", skipping.to_str().unwrap(), "--no-progress"]).ok();
    let run = sandbox.runs("images")[0].clone();
    let metrics = read_json(&run.join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    let data = &metrics["data"];
    assert_eq!((data["mode"].as_str(), data["input_shape"].clone()), (Some("indexed"), json!([1, 32, 32])));
    assert_eq!(
        data["train_samples"].as_u64().unwrap()
            + data["val_samples"].as_u64().unwrap()
            + data["test_samples"].as_u64().unwrap(),
        1501
    );
    assert_eq!(data["dataset_notes"]["skipped"], 1, "{data}");
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.6, "{}", metrics["test"]);

    // Prediction reads a folder of images, decoded and resized as in training.
    let out = sandbox.host(&["predict", run.to_str().unwrap(), root.join("trouser").to_str().unwrap()]);
    let predictions: Value = serde_json::from_str(out.ok()).unwrap();
    let rows = predictions.as_array().unwrap();
    assert_eq!(rows.len(), fs::read_dir(root.join("trouser")).unwrap().count());
    let right = rows.iter().filter(|r| r["label"] == "trouser").count();
    assert!(right * 10 >= rows.len() * 7, "{right} of {} trousers", rows.len());

    // Without skipping, the broken file fails the run, named.
    let failing = sandbox.experiment("strict", &image_experiment("strict", &root, "fail"));
    let err = sandbox.host(&["run", failing.to_str().unwrap(), "--no-progress"]).one_line_error().to_string();
    assert!(err.contains(&broken.display().to_string()), "{err}");
    assert!(err.starts_with("error: "), "{err}");
}

#[test]
fn a_csv_table_streams_with_the_catalog_preprocessors() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let mut exp = wine_experiment("wine-stream");
    exp["dataset"]["config"]["streaming"] = json!(true);
    exp["preprocessors"] = json!([{ "plugin": "min-max" }, { "plugin": "normalize" }]);
    let path = sandbox.experiment("wine-stream", &exp);
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&sandbox.runs("wine-stream")[0].join("metrics.json"));
    assert_eq!((metrics["status"].as_str(), metrics["data"]["mode"].as_str()), (Some("completed"), Some("indexed")));
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.85, "{}", metrics["test"]);

    // Mixing augmentors hand the loss soft targets; evaluation sees the data as it is.
    let mut mixed = wine_experiment("wine-mixup");
    mixed["data_augmentors"] = json!([{ "plugin": "mixup", "config": { "alpha": 0.4 } }]);
    mixed["training"]["epochs"] = json!(20);
    let path = sandbox.experiment("wine-mixup", &mixed);
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&sandbox.runs("wine-mixup")[0].join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.85, "{}", metrics["test"]);
}

#[test]
fn a_jpeg_folder_loaded_in_memory_trains_like_a_data_set_loaded_whole() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let root = sandbox.dir.path().join("jpeg");
    let fmnist = data_dir().join("fashion-mnist");
    let out = Command::new(artifact_dir().join("gymnos-idx-to-images"))
        .arg("--images")
        .arg(fmnist.join("t10k-images-idx3-ubyte.gz"))
        .arg("--labels")
        .arg(fmnist.join("t10k-labels-idx1-ubyte.gz"))
        .arg("--out")
        .arg(&root)
        .args(["--format", "jpeg", "--quality", "85", "--limit", "1200"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut exp = image_experiment("jpeg", &root, "fail");
    exp["dataset"]["config"] = json!({ "root": root, "color": "grayscale", "in_memory": true });
    let path = sandbox.experiment("jpeg", &exp);
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&sandbox.runs("jpeg")[0].join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    assert_eq!(
        (metrics["data"]["mode"].as_str(), metrics["data"]["input_shape"].clone()),
        (Some("in_memory"), json!([1, 28, 28]))
    );
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.55, "{}", metrics["test"]);
}

#[test]
fn bad_image_folders_are_refused_before_a_run_folder_exists() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let root = sandbox.dir.path();
    let images = |name: &str| root.join(name);
    // An empty root; a class folder without images; two sizes without a resize; a symlink loop.
    fs::create_dir_all(images("empty")).unwrap();
    png_folder(&images("no-images"), 30);
    fs::create_dir_all(images("no-images/hats")).unwrap();
    fs::write(images("no-images/hats/readme.txt"), "no pictures here").unwrap();
    png_folder(&images("loop"), 30);
    std::os::unix::fs::symlink(images("loop"), images("loop/bag/again")).unwrap();
    let cases = [
        ("empty", format!("{}: no class folders", images("empty").display())),
        ("no-images", format!("{}: no images", images("no-images/hats").display())),
        ("loop", "symbolic link loop".to_string()),
    ];
    for (name, expected) in cases {
        let mut exp = image_experiment(name, &images(name), "skip");
        exp["dataset"]["config"] = json!({ "root": images(name), "color": "grayscale" });
        let path = sandbox.experiment(name, &exp);
        let err = sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).one_line_error().to_string();
        assert!(err.starts_with("error: ") && err.contains(&expected), "{name}: {err}");
        assert!(sandbox.runs(name).is_empty(), "{name}: no run folder");
        let err = sandbox.host(&["validate", "--deep", path.to_str().unwrap()]).one_line_error().to_string();
        assert!(err.contains(&expected), "{name}: {err}");
    }
}
