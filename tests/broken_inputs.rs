//! Broken experiments, data files and run folders, each with the exact error it must get: one
//! line naming the file, the field or the plugin, a non-zero exit, and no run folder. Grow the
//! table with every bug found.

use std::fs;

use gymnos_tests::{data_dir, with, Sandbox};
use serde_json::{json, Value};

fn wine() -> Value {
    json!({
        "experiment": { "name": "broken", "seed": 1 },
        "dataset": {
            "plugin": "csv",
            "config": { "path": data_dir().join("sklearn/wine_data.csv"), "header": "sklearn" },
            "split": { "train": 0.6, "val": 0.2, "test": 0.2 }
        },
        "preprocessors": [{ "plugin": "standardize" }],
        "model": { "plugin": "mlp", "config": { "hidden": [8] } },
        "training": { "epochs": 1, "batch_size": 16, "device": "cpu" },
        "tracking": { "trackers": [{ "plugin": "jsonl" }] }
    })
}

/// (case, experiment file text, extra arguments, error after `error: <file>: `).
fn cases(sandbox: &Sandbox) -> Vec<(&'static str, String, Vec<&'static str>, String)> {
    let dir = sandbox.dir.path();
    fs::write(dir.join("a-file"), "x").unwrap();
    let bad_csv = dir.join("bad.csv");
    fs::write(&bad_csv, "a,b,target\n1,2,0\n3,x,1\n").unwrap();
    let exp = |e: Value| e.to_string();
    vec![
        ("malformed JSON", "{\"experiment\": {\"name\": \"x\",}}".into(), vec![], "invalid JSON at line 1, column 29: trailing comma".into()),
        (
            "duplicate key",
            "{\"experiment\": {\"name\": \"x\", \"name\": \"y\"}}".into(),
            vec![],
            "3 problems: experiment.name: duplicate key (line 1, column 17 and line 1, column 30); dataset: missing section; model: missing section".into(),
        ),
        ("unknown plugin", exp(with(wine(), "/model/plugin", json!("resnet9"))), vec![], "model.plugin: no model plugin named `resnet9` is installed (installed model plugins: cnn, linear, mlp, resnet, sequential)".into()),
        ("unknown version", exp(with(wine(), "/model/plugin", json!("mlp@^3"))), vec![], "model.plugin: no installed version of model plugin `mlp` matches `^3` (installed: 1.1.0)".into()),
        ("unknown key", exp(with(wine(), "/model/config", json!({ "hiden": [8] }))), vec![], "model.config.hiden: unknown key (accepted keys: hidden, activation, dropout) (mlp)".into()),
        ("value out of range", exp(with(wine(), "/model/config", json!({ "hidden": [0] }))), vec![], "model.config.hidden: item 0: 0 is not >= 1 (mlp)".into()),
        ("wrong type", exp(with(wine(), "/model/config", json!({ "dropout": "high" }))), vec![], "model.config.dropout: expected number, found a string (mlp)".into()),
        ("missing data file", exp(with(wine(), "/dataset/config/path", json!("/nonexistent/wine.csv"))), vec![], "dataset.config.path: /nonexistent/wine.csv does not exist (csv)".into()),
        (
            "tracker path leaving the run folder",
            exp(with(wine(), "/tracking/trackers/0", json!({ "plugin": "jsonl", "config": { "file": "../../escape.jsonl" } }))),
            vec![],
            "tracking.trackers[0].config.file: `../../escape.jsonl` leaves the run folder; give a relative path inside it (jsonl)".into(),
        ),
        ("name with a separator", exp(with(wine(), "/experiment/name", json!("a/b"))), vec![], "experiment.name: \"a/b\" cannot name a folder: it contains '/'".into()),
        ("name `..`", exp(with(wine(), "/experiment/name", json!(".."))), vec![], "experiment.name: `..` cannot name a folder".into()),
        (
            "output root under a file",
            exp(with(wine(), "/experiment/output_root", json!(dir.join("a-file/runs")))),
            vec![],
            format!("experiment.output_root: runs cannot be recorded: {} is not a folder", dir.join("a-file").display()),
        ),
        ("section as a list", exp(with(wine(), "/training", json!([1, 2]))), vec![], "training: expected an object, found an array".into()),
        ("field of a tagged section", exp(with(wine(), "/training/optimizer", json!({ "name": "adam", "lr": "fast" }))), vec![], "training.optimizer.lr: expected a number, found a string".into()),
        ("unknown optimizer", exp(with(wine(), "/training/optimizer", json!({ "name": "lion", "lr": 0.1 }))), vec![], "training.optimizer.name: `lion` is not one of sgd, adam, adamw".into()),
        ("fp16 on the CPU", exp(with(wine(), "/training/precision", json!("fp16"))), vec![], "training.precision: fp16 mixed precision needs a CUDA device; training.device is cpu (bf16 runs on the CPU)".into()),
        ("a size that does not fit", exp(with(wine(), "/training/epochs", json!(99_999_999_999u64))), vec![], "training.epochs: 99999999999 is above the largest value allowed, 4294967295".into()),
        ("a negative size", exp(with(wine(), "/training/batch_size", json!(-4))), vec![], "training.batch_size: -4 is below the smallest value allowed, 0".into()),
        (
            "override pointing at nothing",
            exp(wine()),
            vec!["--set", "training.epochz=3"],
            "training.epochz=3: `training.epochz` points at nothing: `training` has no `epochz` (it has: batch_size, callbacks, device, device_cache_mib, epochs, eval_batch_size, grad_clip_norm, limit_eval_batches, limit_train_batches, loss, lr_schedule, num_workers, optimizer, precision, prefetch_batches)".into(),
        ),
        (
            "a CUDA device this machine lacks",
            exp(with(wine(), "/training/device", json!("cuda:7"))),
            vec![],
            format!("training.device: `cuda:7` asks for CUDA device 7, but CUDA reports {n} device(s) here", n = 0),
        ),
        (
            "a bad row in a data file",
            exp(with(
                with(wine(), "/dataset/config", json!({ "path": bad_csv, "header": "names", "target_column": 2 })),
                "/preprocessors",
                json!([]),
            )),
            vec![],
            format!("dataset `csv@1.1.0` (dataset) failed in load: data error: {} line 3: column 2 (b) is `x`, not a number (list the column in `categorical` if it holds categories)", bad_csv.display()),
        ),
    ]
}

#[test]
fn every_broken_input_gets_its_exact_error_and_leaves_no_run_folder() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let mut wrong = Vec::new();
    for (i, (case, text, extra, expected)) in cases(&sandbox).into_iter().enumerate() {
        let path = sandbox.dir.path().join(format!("case-{i}.json"));
        fs::write(&path, &text).unwrap();
        // Overrides are named by the flag, everything else by the file.
        let want = match extra.first() {
            Some(&"--set") => format!("error: --set {expected}"),
            _ => format!("error: {}: {expected}", path.display()),
        };
        let file = path.to_str().unwrap();
        // What fails before a plugin is loaded fails `validate`; the rest `validate --deep`. Both
        // say what `run` says.
        let commands: Vec<Vec<&str>> = vec![
            [&["validate", "--deep", file][..], &extra].concat(),
            [&["run", file, "--no-progress"][..], &extra].concat(),
        ];
        for args in commands {
            let out = sandbox.host(&args);
            let got = if out.code == 0 { "(succeeded)".to_string() } else { out.one_line_error().to_string() };
            if got != want {
                wrong.push(format!("{case} ({}):\n  want {want}\n  got  {got}", args[0]));
            }
        }
        assert!(sandbox.runs("broken").is_empty(), "{case}: a refused run left a run folder");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn broken_run_folders_are_named() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let dir = sandbox.dir.path();
    let input = data_dir().join("sklearn/wine_data.csv");
    let err = sandbox.host(&["resume", dir.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: not a run folder (no training_config.json)", dir.display()));
    let nowhere = dir.join("nowhere");
    let err =
        sandbox.host(&["predict", nowhere.to_str().unwrap(), input.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: not a run folder (no training_config.json)", nowhere.display()));

    // A run folder whose record is damaged.
    let path = sandbox.dir.path().join("wine.json");
    fs::write(&path, wine().to_string()).unwrap();
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let run = sandbox.runs("broken")[0].clone();
    let err = sandbox.host(&["resume", run.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: this run already completed; nothing to resume", run.display()));
    fs::write(run.join("metrics.json"), "{ \"status\": ").unwrap();
    let err = sandbox.host(&["resume", run.to_str().unwrap()]).one_line_error().to_string();
    assert!(
        err.starts_with(&format!("error: {}: not a valid run record: ", run.join("metrics.json").display())),
        "{err}"
    );
    fs::remove_file(run.join("model.safetensors")).unwrap();
    let err = sandbox.host(&["predict", run.to_str().unwrap(), input.to_str().unwrap()]).one_line_error().to_string();
    // The record cannot say whether the run completed, so the message says both what is missing
    // and why the record does not explain it.
    assert!(
        err.starts_with(&format!(
            "error: {}: missing, and the run's record cannot be read: {}: not a valid run record: ",
            run.join("model.safetensors").display(),
            run.join("metrics.json").display()
        )),
        "{err}"
    );
}

#[test]
fn every_experiment_of_the_repository_passes_validate_deep() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../experiments");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let out = sandbox.host(&["validate", "--deep", file.to_str().unwrap()]);
        assert!(out.ok().starts_with(&format!("{}: valid, and the run starts", file.display())), "{}", out.stdout);
    }
}
