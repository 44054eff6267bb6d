//! `gymnos-host run`, `resume`, `predict`, `validate` and `schema`, end to end on small real
//! data (scikit-learn's wine table, a slice of Fashion-MNIST) and generated tables.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use gymnos_tests::{artifact_dir, data_dir, library, read_json, wine_experiment, Run, Sandbox};
use serde_json::{json, Value};

fn wine(name: &str) -> Value {
    wine_experiment(name)
}

fn run(sandbox: &Sandbox, experiment: &Path) -> Run {
    sandbox.host(&["run", experiment.to_str().unwrap(), "--no-progress"])
}

/// The metrics of a run that do not depend on timing.
fn deterministic(metrics: &Value) -> (Value, Value) {
    let mut history = metrics["history"].clone();
    for timing in ["epoch_seconds", "train_samples_per_second", "data_wait_seconds"] {
        history.as_object_mut().unwrap().remove(timing);
    }
    (history, metrics["test"].clone())
}

#[test]
fn a_run_leaves_a_complete_record_and_predict_uses_it() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let exp = sandbox.experiment("wine", &wine("wine"));
    let out = run(&sandbox, &exp);
    let stdout = out.ok();
    let runs = sandbox.runs("wine");
    assert_eq!(runs.len(), 1);
    let dir = &runs[0];
    assert_eq!(stdout.lines().next().unwrap(), dir.to_str().unwrap());

    // training_config.json: the experiment exactly as run, plugins pinned to exact versions.
    let config = read_json(&dir.join("training_config.json"));
    assert_eq!(config["dataset"]["plugin"], "csv@=1.1.0");
    assert_eq!(config["model"]["plugin"], "mlp@=1.1.0");
    assert_eq!(config["model"]["resolved"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(config["model"]["config"]["activation"], "relu", "defaults are recorded");
    assert_eq!(config["training"]["epochs"], 8);

    // metrics.json
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    assert_eq!(metrics["epochs_completed"], 8);
    for key in ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "epoch_seconds"] {
        assert_eq!(metrics["history"][key].as_array().unwrap().len(), 8, "{key}");
    }
    assert!(metrics["history"]["lr"].as_array().unwrap().iter().all(|v| v == 0.01));
    let test = &metrics["test"];
    assert!(test["accuracy"].as_f64().unwrap() > 0.8, "{test}");
    assert_eq!(test["per_class"].as_array().unwrap().len(), 3);
    assert_eq!(test["per_class"][0]["class"], "class_0");
    let confusion: i64 = test["confusion_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(confusion, metrics["data"]["test_samples"].as_i64().unwrap());
    assert_eq!(metrics["data"]["train_samples"], 107);
    assert!(metrics["hardware"]["libtorch"].as_str().unwrap().starts_with("2.11"));
    assert_eq!(metrics["hardware"]["device"], "Cpu");
    for stage in ["load_plugins", "load_dataset", "split", "preprocess", "build_model", "train", "test", "save_model"] {
        assert!(metrics["elapsed_seconds"][stage].as_f64().is_some(), "{stage}");
    }

    // execution.log: the stages and their durations.
    let log = fs::read_to_string(dir.join("execution.log")).unwrap();
    assert!(log.contains("stage{stage=\"train\"}: close time.busy="), "{log}");
    assert!(log.contains("epoch 8/8: train_loss"), "{log}");
    assert!(!log.contains('\x1b'), "no terminal colours in the log file");

    // model, checkpoints, and the tracker's file.
    for file in ["model.safetensors", "checkpoints/last.safetensors", "checkpoints/best.safetensors"] {
        assert!(dir.join(file).is_file(), "{file}");
    }
    let events: Vec<Value> = fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["event"], "start");
    assert_eq!(events[1]["event"], "params");
    assert_eq!(events.iter().filter(|e| e["scope"] == "epoch").count(), 8);
    assert_eq!(events.iter().filter(|e| e["scope"] == "test").count(), 1);
    assert_eq!(events.last().unwrap(), &json!({ "event": "finish", "status": "completed" }));

    // predict: the wine table itself (its target column is dropped).
    let input = data_dir().join("sklearn/wine_data.csv");
    let predictions: Value =
        serde_json::from_str(sandbox.host(&["predict", dir.to_str().unwrap(), input.to_str().unwrap()]).ok()).unwrap();
    let rows = predictions.as_array().unwrap();
    assert_eq!(rows.len(), 178);
    let truth: Vec<i64> = fs::read_to_string(&input)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    let right = rows.iter().zip(&truth).filter(|(r, t)| r["class"].as_i64() == Some(**t)).count();
    assert!(right as f64 / 178.0 > 0.9, "{right}/178 right");
    for row in rows {
        let p: f64 = row["probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).sum();
        assert!((p - 1.0).abs() < 1e-6);
        assert_eq!(row["label"], format!("class_{}", row["class"]));
    }
    let csv = sandbox.dir.path().join("predictions.csv");
    sandbox.host(&["predict", dir.to_str().unwrap(), input.to_str().unwrap(), "--output", csv.to_str().unwrap()]).ok();
    let text = fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().next().unwrap(), "index,class,label,p_class_0,p_class_1,p_class_2");
    assert_eq!(text.lines().count(), 179);

    // `predict ... | head -0`: the reader has gone; the command ends quietly, successfully.
    let out = sandbox.host_into_closed_pipe(&["predict", dir.to_str().unwrap(), input.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("error"), "{}", out.stderr);
}

#[test]
fn validate_deep_builds_every_component_and_takes_a_step_without_writing_a_run() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let path = sandbox.experiment("deep", &wine("deep"));
    let text = sandbox.host(&["validate", "--deep", path.to_str().unwrap()]).ok().to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], format!("{}: valid, and the run starts", path.display()));
    assert_eq!(lines[1], "  data: 107 train, 36 val, 35 test samples; input [13] -> 3 outputs");
    let loss: f64 = lines[2].strip_prefix("  first training step: loss ").unwrap().parse().unwrap();
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    assert!(sandbox.runs("deep").is_empty(), "validate --deep writes no run");

    // A model that cannot take the data passes the plain check (no plugin is loaded) and is
    // caught by the deep one, as one line naming it.
    let mut exp = wine("deep-cnn");
    exp["model"] = json!({ "plugin": "cnn" });
    let path = sandbox.experiment("deep-cnn", &exp);
    sandbox.host(&["validate", path.to_str().unwrap()]).ok();
    let err = sandbox.host(&["validate", "--deep", path.to_str().unwrap()]).one_line_error().to_string();
    assert!(err.contains("model `cnn@1.2.0` (model) failed in create: "), "{err}");
    assert!(sandbox.runs("deep-cnn").is_empty());
}

#[test]
fn the_same_seed_gives_identical_metrics_and_overrides_apply() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let exp = sandbox.experiment("wine", &wine("wine"));
    run(&sandbox, &exp).ok();
    run(&sandbox, &exp).ok();
    let runs = sandbox.runs("wine");
    assert_eq!(runs.len(), 2);
    let a = deterministic(&read_json(&runs[0].join("metrics.json")));
    let b = deterministic(&read_json(&runs[1].join("metrics.json")));
    assert_eq!(a, b);

    sandbox
        .host(&[
            "run",
            exp.to_str().unwrap(),
            "--no-progress",
            "--set",
            "training.epochs=2",
            "--set",
            "experiment.seed=6",
        ])
        .ok();
    let third = read_json(&sandbox.runs("wine")[2].join("metrics.json"));
    assert_eq!(third["epochs_completed"], 2);
    assert_ne!(deterministic(&third).0["train_loss"][0], a.0["train_loss"][0], "another seed, another run");
}

/// `training.precision: "bf16"` autocasts the forward pass on the CPU: the run learns, differs
/// from the fp32 run (its matrix products round to bfloat16), and is as reproducible.
#[test]
fn bf16_mixed_precision_trains_on_the_cpu_and_is_reproducible() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let mut bf16 = wine("bf16");
    bf16["training"]["device"] = json!("cpu");
    bf16["training"]["precision"] = json!("bf16");
    let mut fp32 = bf16.clone();
    fp32["experiment"]["name"] = json!("fp32");
    fp32["training"]["precision"] = json!("fp32");
    let (bf16, fp32) = (sandbox.experiment("bf16", &bf16), sandbox.experiment("fp32", &fp32));
    run(&sandbox, &bf16).ok();
    run(&sandbox, &bf16).ok();
    run(&sandbox, &fp32).ok();
    let runs = sandbox.runs("bf16");
    assert_eq!(read_json(&runs[0].join("training_config.json"))["training"]["precision"], "bf16");
    let (a, b) = (read_json(&runs[0].join("metrics.json")), read_json(&runs[1].join("metrics.json")));
    assert_eq!(deterministic(&a), deterministic(&b));
    assert!(a["test"]["accuracy"].as_f64().unwrap() > 0.8, "{}", a["test"]);
    let reference = read_json(&sandbox.runs("fp32")[0].join("metrics.json"));
    let first_loss = |m: &Value| m["history"]["train_loss"][0].as_f64().unwrap();
    assert_ne!(first_loss(&a), first_loss(&reference), "bf16 rounds the forward pass");
    assert!((first_loss(&a) - first_loss(&reference)).abs() < 0.05, "{} vs {}", first_loss(&a), first_loss(&reference));
}

/// Fashion-MNIST's first 4000 test images through an MLP with random flips (so batches come
/// from the worker threads), killed with SIGKILL after its first checkpoint, then resumed.
#[test]
fn resuming_after_a_kill_mid_run_gives_the_metrics_of_an_uninterrupted_run() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let experiment = |name: &str| {
        json!({
            "experiment": { "name": name, "seed": 11 },
            "dataset": {
                "plugin": "idx",
                "config": {
                    "path": data_dir().join("fashion-mnist"),
                    "train_images": "t10k-images-idx3-ubyte.gz", "train_labels": "t10k-labels-idx1-ubyte.gz",
                    "test_images": "", "limit": 4000
                },
                "split": { "train": 0.8, "val": 0.1, "test": 0.1 }
            },
            "preprocessors": [{ "plugin": "standardize" }],
            "data_augmentors": [{ "plugin": "random-flip" }],
            "model": { "plugin": "mlp", "config": { "hidden": [128], "dropout": 0.2 } },
            "training": {
                "epochs": 4, "batch_size": 16, "num_workers": 2, "device": "cpu",
                "optimizer": { "name": "sgd", "lr": 0.05, "momentum": 0.9 },
                "lr_schedule": { "name": "cosine" }
            }
        })
    };
    let whole = sandbox.experiment("whole", &experiment("whole"));
    run(&sandbox, &whole).ok();
    let reference = read_json(&sandbox.runs("whole")[0].join("metrics.json"));

    let killed = sandbox.experiment("killed", &experiment("killed"));
    let mut child = Command::new(artifact_dir().join("gymnos-host"))
        .args(["--registry", sandbox.registry().to_str().unwrap(), "run", killed.to_str().unwrap(), "--no-progress"])
        .current_dir(sandbox.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let dir = loop {
        let checkpointed = sandbox.runs("killed").into_iter().next().filter(|d| {
            fs::read_to_string(d.join("metrics.json"))
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|m| m["epochs_completed"].as_u64() >= Some(1))
        });
        if let Some(dir) = checkpointed {
            break dir;
        }
        assert!(Instant::now() < deadline, "no checkpoint within 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let interrupted = read_json(&dir.join("metrics.json"));
    assert_eq!(interrupted["status"], "running", "a killed run is left as it was");
    let done_before_kill = interrupted["epochs_completed"].as_u64().unwrap();
    assert!(done_before_kill < 4, "killed after {done_before_kill} epochs");

    sandbox.host(&["resume", dir.to_str().unwrap(), "--no-progress"]).ok();
    let resumed = read_json(&dir.join("metrics.json"));
    assert_eq!(resumed["status"], "completed");
    assert_eq!(resumed["resumed_at_epochs"].as_array().unwrap().len(), 1);
    assert_eq!(deterministic(&resumed), deterministic(&reference));

    let again = sandbox.host(&["resume", dir.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(again, format!("error: {}: this run already completed; nothing to resume", dir.display()));
}

#[test]
fn regression_on_a_generated_table_and_csv_predictions() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let mut table = String::from("a,b,y\n");
    let mut inputs = String::from("a,b\n");
    for i in 0..400 {
        let (a, b) = (((i * 37) % 100) as f64 / 50.0 - 1.0, ((i * 91) % 100) as f64 / 50.0 - 1.0);
        table.push_str(&format!("{a},{b},{}\n", 2.0 * a - 3.0 * b + 0.5));
        if i < 5 {
            inputs.push_str(&format!("{a},{b}\n"));
        }
    }
    let csv = sandbox.dir.path().join("linear.csv");
    fs::write(&csv, table).unwrap();
    let exp = sandbox.experiment(
        "linear",
        &json!({
            "experiment": { "name": "linear", "seed": 1 },
            "dataset": { "plugin": "csv", "config": { "path": "linear.csv", "task": "regression" } },
            "model": { "plugin": "mlp", "config": { "hidden": [32], "dropout": 0.0, "activation": "tanh" } },
            "training": { "epochs": 40, "batch_size": 32, "optimizer": { "name": "adamw", "lr": 0.01 }, "loss": "mse",
                          "callbacks": { "checkpoint": { "monitor": "val_r2" } } }
        }),
    );
    run(&sandbox, &exp).ok();
    let dir = &sandbox.runs("linear")[0];
    let metrics = read_json(&dir.join("metrics.json"));
    assert!(metrics["test"]["r2"].as_f64().unwrap() > 0.95, "{}", metrics["test"]);
    assert_eq!(metrics["best"]["metric"], "val_r2");
    let input = sandbox.dir.path().join("new.csv");
    fs::write(&input, inputs).unwrap();
    let out = sandbox.host(&["predict", dir.to_str().unwrap(), input.to_str().unwrap(), "--format", "csv", "--best"]);
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines[0], "index,prediction_0");
    assert_eq!(lines.len(), 6);
    let first: f64 = lines[1].split(',').nth(1).unwrap().parse().unwrap();
    // The table's target is 2a - 3b + 0.5; the first input row is a = b = -1.
    let (a, b) = (-1.0, -1.0);
    assert!((first - (2.0 * a - 3.0 * b + 0.5)).abs() < 0.5, "{first}");
}

#[test]
fn a_nan_loss_fails_the_run_with_one_line_and_a_record_that_says_so() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let mut exp = wine("nan");
    // The largest learning rate accepted, on a plain SGD: it diverges in the second epoch.
    exp["training"]["optimizer"] = json!({ "name": "sgd", "lr": 100 });
    let path = sandbox.experiment("nan", &exp);
    let err = run(&sandbox, &path).one_line_error().to_string();
    assert!(
        err.contains("the loss became")
            && err.ends_with("(stop_on_nan), the learning rate 100: training diverged (a smaller training.optimizer.lr, or grad_clip_norm, may help); the last checkpoint holds the last good state"),
        "{err}"
    );
    // A rate no optimizer trains with is refused before anything runs.
    exp["training"]["optimizer"] = json!({ "name": "sgd", "lr": 1e30 });
    let path = sandbox.experiment("nan", &exp);
    let err = run(&sandbox, &path).one_line_error().to_string();
    assert!(
        err.ends_with("training.optimizer.lr: 1e30 is larger than any learning rate that trains (at most 100)"),
        "{err}"
    );
    assert_eq!(sandbox.runs("nan").len(), 1, "the refused run left no folder");
    let metrics = read_json(&sandbox.runs("nan")[0].join("metrics.json"));
    assert_eq!(metrics["status"], "failed");
    assert!(metrics["error"].as_str().unwrap().contains("the loss became"));
}

#[test]
fn a_failing_tracker_does_not_stop_training_and_a_failing_model_is_named() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let fixture = library("gymnos-fixture-panicking");
    sandbox.host(&["plugins", "install", fixture.to_str().unwrap()]).ok();

    let mut exp = wine("tracked");
    exp["tracking"]["trackers"] = json!([{ "plugin": "failing-tracker" }, { "plugin": "jsonl" }]);
    run(&sandbox, &sandbox.experiment("tracked", &exp)).ok();
    let dir = &sandbox.runs("tracked")[0];
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    let errors: Vec<&str> = metrics["tracker_errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert!(errors[0].starts_with("tracker `failing-tracker@0.1.0` (tracking.trackers[0]) failed in start: I/O error: tracking server unreachable"), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("failed in log_metrics: panicked") && e.ends_with("tracker bug")),
        "{errors:?}"
    );
    assert!(dir.join("metrics.jsonl").is_file(), "the other tracker kept working");

    let mut exp = wine("panics");
    exp["model"] = json!({ "plugin": "panicky", "config": { "panic_in": "forward" } });
    let err = run(&sandbox, &sandbox.experiment("panics", &exp)).one_line_error().to_string();
    assert!(err.ends_with("model `panicky@0.1.0` (model) failed in forward: panicked: libtorch: mat1 and mat2 shapes cannot be multiplied (16x13 and 14x3)"), "{err}");
    // The first batch goes through the model before the run folder is made.
    assert!(sandbox.runs("panics").is_empty(), "a model that fails on the first batch leaves no folder");

    let mut exp = wine("shape");
    exp["model"] = json!({ "plugin": "panicky" });
    let err = run(&sandbox, &sandbox.experiment("shape", &exp)).one_line_error().to_string();
    assert!(err.ends_with("model `panicky@0.1.0` (model) forward returned shape [16, 13], expected [16, 3]"), "{err}");
}

#[test]
fn validate_reports_every_problem_with_its_path() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();

    let valid = sandbox.experiment("valid", &wine("valid"));
    let out: Value = serde_json::from_str(sandbox.host(&["validate", valid.to_str().unwrap(), "--json"]).ok()).unwrap();
    assert_eq!(out["resolved"]["model"]["plugin"], "mlp@=1.1.0");

    let structure = sandbox.experiment(
        "structure",
        &json!({
            "experiment": { "name": "x" },
            "dataset": { "plugin": "csv" },
            "model": { "plugin": "mlp" },
            "training": { "epochs": "ten" },
            "tracking": { "trackerz": [] },
            "extra": 1
        }),
    );
    let err = sandbox.host(&["validate", structure.to_str().unwrap()]).one_line_error().to_string();
    assert!(err.starts_with(&format!("error: {}: 3 problems: extra: unknown section", structure.display())), "{err}");
    assert!(
        err.contains("; tracking.trackerz: unknown field (fields: log_every_n_steps, log_params, trackers)"),
        "{err}"
    );
    assert!(err.ends_with("; training.epochs: expected an integer, found a string"), "{err}");

    let mut exp = wine("semantic");
    exp["model"]["plugin"] = json!("nosuch");
    exp["dataset"]["config"]["colour"] = json!(1);
    exp["dataset"]["split"] = json!({ "train": 0.7, "val": 0.3, "test": 0.2 });
    exp["training"]["optimizer"]["lr"] = json!(-1.0);
    exp["preprocessors"][0]["config"]["per_feature"] = json!("yes");
    let semantic = sandbox.experiment("semantic", &exp);
    let out = sandbox.host(&["validate", semantic.to_str().unwrap(), "--json"]);
    assert_ne!(out.code, 0);
    let problems: Vec<String> = serde_json::from_str::<Value>(&out.stdout).unwrap()["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}: {}", p["path"].as_str().unwrap(), p["message"].as_str().unwrap()))
        .collect();
    assert_eq!(problems, vec![
        "dataset.split: train + val + test = 1.2, not 1".to_string(),
        "training.optimizer.lr: -1 is not a positive learning rate".into(),
        "dataset.config.colour: unknown key (accepted keys: path, task, header, target_column, delimiter, class_names, categorical, streaming) (csv)".into(),
        "preprocessors[0].config.per_feature: expected bool, found a string (standardize)".into(),
        "model.plugin: no model plugin named `nosuch` is installed (installed model plugins: cnn, linear, mlp, resnet, sequential)".into(),
    ]);

    let broken = sandbox.dir.path().join("broken.json");
    fs::write(&broken, "{\n  \"experiment\": {\n    \"name\": \"x\",,\n  }\n}").unwrap();
    let err = sandbox.host(&["validate", broken.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: invalid JSON at line 3, column 17: key must be a string", broken.display()));

    let err =
        sandbox.host(&["validate", valid.to_str().unwrap(), "--set", "training.epochs=0"]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: training.epochs: must be at least 1", valid.display()));
    let err = sandbox.host(&["run", valid.to_str().unwrap(), "--set", "training"]).one_line_error().to_string();
    assert_eq!(err, "error: --set training: expected PATH=VALUE");
    assert!(sandbox.runs("valid").is_empty(), "a refused run leaves no run folder");

    let schema: Value = serde_json::from_str(sandbox.host(&["schema"]).ok()).unwrap();
    assert!(
        schema["properties"]["training"].is_object()
            && schema["required"].as_array().unwrap().contains(&json!("model")),
        "{schema}"
    );

    let missing = PathBuf::from("/nonexistent/run");
    let err = sandbox.host(&["resume", missing.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(err, "error: /nonexistent/run: not a run folder (no training_config.json)");
}

#[test]
fn ctrl_c_stops_after_the_batch_records_interrupted_and_the_run_resumes() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let mut exp = wine("ctrlc");
    exp["training"]["epochs"] = json!(200);
    exp["training"]["batch_size"] = json!(4);
    let path = sandbox.experiment("ctrlc", &exp);
    let child = Command::new(artifact_dir().join("gymnos-host"))
        .args(["--registry", sandbox.registry().to_str().unwrap(), "run", path.to_str().unwrap(), "--no-progress"])
        .current_dir(sandbox.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sandbox.runs("ctrlc").first().is_some_and(|d| d.join("checkpoints/last.safetensors").is_file()) {
        assert!(Instant::now() < deadline, "no checkpoint within a minute");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let dir = &sandbox.runs("ctrlc")[0];
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    let last = stderr.lines().last().unwrap();
    assert!(last.starts_with("error: run ") && last.contains(": interrupted at epoch "), "{last}");
    assert!(last.ends_with(&format!("continue with `gymnos-host resume {}`", dir.display())), "{last}");
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!(metrics["status"], "interrupted");
    sandbox.host(&["resume", dir.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!((metrics["status"].as_str(), metrics["epochs_completed"].as_u64()), (Some("completed"), Some(200)));
}
