//! The `tensorboard` and `csv` trackers, end to end: a real run, its event files read with
//! TensorBoard's own loader (`support/read_tfevents.py`, in the set-up's `.venv`), its CSV
//! tables, each compared value by value with the run's `metrics.json`.

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use gymnos_tests::{artifact_dir, library, python, read_json, wine_experiment, Sandbox};
use serde_json::{json, Value};

fn wine(name: &str, tracking: Value) -> Value {
    let mut experiment = wine_experiment(name);
    experiment["tracking"] = tracking;
    experiment
}

/// A registry with the built-ins and the two trackers.
fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let tensorboard = library("gymnos-tensorboard-tracker");
    let csv = library("gymnos-csv-tracker");
    sandbox.host(&["plugins", "install", tensorboard.to_str().unwrap(), csv.to_str().unwrap()]).ok();
    sandbox
}

/// Runs experiment `name` and returns its run folder.
fn run(sandbox: &Sandbox, name: &str, experiment: &Value) -> PathBuf {
    let path = sandbox.experiment(name, experiment);
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let runs = sandbox.runs(name);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

/// What TensorBoard reads from the event files under `logdir` (see `read_tfevents.py`).
fn read_tfevents(logdir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/read_tfevents.py");
    let out = Command::new(python()).arg(script).arg(logdir).output().expect("run read_tfevents.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "read_tfevents.py failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("read_tfevents.py printed no JSON: {e}: {stderr}"))
}

/// The set-up's Python, which has tensorboard.
/// A float TensorBoard stored, as the float32 it is. serde_json's default parsing of a 17-digit
/// number may be one unit in the last place off; rounding to float32 undoes that.
fn stored(value: &Value) -> f32 {
    value.as_f64().unwrap_or_else(|| panic!("{value} is not a number")) as f32
}

/// The history (name: values by epoch) and the test report's numbers (name: value) of a run's
/// `metrics.json`, exactly: Python parses floats exactly and hands their bits over as integers.
fn exact_metrics(run: &Path) -> (BTreeMap<String, Vec<f64>>, BTreeMap<String, f64>) {
    const SCRIPT: &str = "import json, struct, sys
m = json.load(open(sys.argv[1]))
bits = lambda x: struct.unpack('<Q', struct.pack('<d', float(x)))[0]
number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
print(json.dumps({'history': {k: [bits(x) for x in v] for k, v in m['history'].items()},
                  'test': {k: bits(v) for k, v in m['test'].items() if number(v)}}))";
    let out = Command::new(python()).args(["-c", SCRIPT]).arg(run.join("metrics.json")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let float = |v: &Value| f64::from_bits(v.as_u64().unwrap());
    let history = parsed["history"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_array().unwrap().iter().map(float).collect()))
        .collect();
    let test = parsed["test"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), float(v))).collect();
    (history, test)
}

/// The value at a dotted hyperparameter name of the experiment (list items by index).
fn at_dotted<'a>(experiment: &'a Value, name: &str) -> Option<&'a Value> {
    name.split('.').try_fold(experiment, |value, key| match value {
        Value::Object(map) => map.get(key),
        Value::Array(items) => items.get(key.parse::<usize>().ok()?),
        _ => None,
    })
}

/// A CSV table as this test's files have it: no quoted fields (no metric name needs quoting).
fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(!text.contains('"'), "{text}");
    assert!(text.ends_with('\n'), "the last line is whole: {text:?}");
    text.lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

#[test]
fn tensorboard_and_csv_record_a_run_exactly() {
    let sandbox = sandbox();
    let trackers = json!([{ "plugin": "tensorboard" }, { "plugin": "csv" }, { "plugin": "jsonl" }]);
    let dir = run(&sandbox, "wine", &wine("wine", json!({ "trackers": trackers, "log_every_n_steps": 5 })));
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    let epochs = metrics["epochs_completed"].as_u64().unwrap();
    assert_eq!(epochs, 8);
    let (history, test) = exact_metrics(&dir);
    assert_eq!(test.keys().collect::<Vec<_>>(), ["accuracy", "f1_macro", "loss"]);
    assert_eq!(history.len(), 9, "{:?}", history.keys());
    // The jsonl tracker's record of the same calls: the parameters and the step metrics.
    let events: Vec<Value> = fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let params = &events.iter().find(|e| e["event"] == "params").unwrap()["params"];
    let steps: Vec<&Value> = events.iter().filter(|e| e["scope"] == "train_step").collect();
    assert!(!steps.is_empty());

    // TensorBoard: one event file, in the default folder.
    let files: Vec<String> = fs::read_dir(dir.join("tensorboard"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("events.out.tfevents."), "{files:?}");
    let tb = read_tfevents(&dir.join("tensorboard"));
    let scalars = tb["scalars"].as_object().unwrap();

    // Exactly these tags.
    let mut want_tags: Vec<String> = history.keys().map(|k| format!("epoch/{k}")).collect();
    want_tags.extend(test.keys().map(|k| format!("test/{k}")));
    want_tags.extend(["train_step/loss".to_string(), "train_step/lr".to_string()]);
    want_tags.sort();
    let got_tags: Vec<&String> = scalars.keys().collect();
    assert_eq!(got_tags, want_tags.iter().collect::<Vec<_>>());

    let series = |tag: &str| -> Vec<(u64, f32)> {
        let points = scalars[tag].as_array().unwrap();
        points.iter().map(|p| (p[0].as_u64().unwrap(), stored(&p[1]))).collect()
    };
    // epoch/<name>: the history, at epochs 1..=8.
    for (name, values) in &history {
        let want: Vec<(u64, f32)> = values.iter().enumerate().map(|(i, v)| (i as u64 + 1, *v as f32)).collect();
        assert_eq!(want.len() as u64, epochs, "{name}");
        assert_eq!(series(&format!("epoch/{name}")), want, "epoch/{name}");
    }
    // test/<name>: the test report, at the epochs completed.
    for (name, value) in &test {
        assert_eq!(series(&format!("test/{name}")), [(epochs, *value as f32)], "test/{name}");
    }
    // train_step/<name>: every 5th optimizer step, the values the trackers got.
    for name in ["loss", "lr"] {
        let want: Vec<(u64, f32)> =
            steps.iter().map(|e| (e["step"].as_u64().unwrap(), stored(&e["metrics"][name]))).collect();
        assert_eq!(series(&format!("train_step/{name}")), want, "train_step/{name}");
    }
    for e in &steps {
        assert_eq!(e["step"].as_u64().unwrap() % 5, 0, "{e}");
    }
    assert!(steps.iter().all(|e| e["metrics"]["lr"] == 0.01));

    // The experiment as text at step 0, in a JSON code block.
    let text = tb["text"]["experiment"].as_array().unwrap();
    assert_eq!(text.len(), 1, "{text:?}");
    assert_eq!(text[0][0], 0);
    let body = text[0][1].as_str().unwrap();
    let json_text =
        body.strip_prefix("```json\n").and_then(|b| b.strip_suffix("\n```")).unwrap_or_else(|| panic!("{body}"));
    assert_eq!(&serde_json::from_str::<Value>(json_text).unwrap(), params);
    assert_eq!(params["training"]["epochs"], 8);

    // Hyperparameters: the experiment flattened, the metric tags, the session's status.
    let hp = &tb["hparams"];
    let hparams = hp["hparams"].as_object().unwrap();
    assert_eq!(hparams["training.optimizer.lr"], 0.01);
    assert_eq!(hparams["training.optimizer.name"], "adam");
    assert_eq!(hparams["training.epochs"], 8.0);
    assert_eq!(hparams["model.config.hidden"], "[16]");
    assert_eq!(hparams["model.plugin"], "mlp@=1.1.0");
    assert_eq!(hparams["preprocessors.0.config.per_feature"], true);
    assert_eq!(hparams["tracking.trackers.0.config.dir"], "tensorboard");
    assert_eq!(hparams["experiment.name"], "wine");
    for (name, value) in hparams {
        assert!(!name.split('.').any(|k| k == "resolved"), "{name}: plugin sections' `resolved` is left out");
        let source = at_dotted(params, name).unwrap_or_else(|| panic!("{name} is not in the experiment"));
        match source {
            Value::Array(_) => assert_eq!(value.as_str(), Some(source.to_string().as_str()), "{name}"),
            Value::Number(n) => assert_eq!(value.as_f64(), n.as_f64(), "{name}"),
            _ => assert_eq!(value, source, "{name}"),
        }
    }
    let mut want_metrics: Vec<String> = history.keys().map(|k| format!("epoch/{k}")).collect();
    want_metrics.sort();
    want_metrics.extend(test.keys().map(|k| format!("test/{k}")));
    assert_eq!(hp["metrics"], json!(want_metrics));
    assert_eq!(hp["status"], "STATUS_SUCCESS");

    // csv: epochs.csv, one row per epoch, every cell the history's value exactly.
    let table = read_csv(&dir.join("epochs.csv"));
    let mut columns: Vec<&str> = history.keys().map(String::as_str).collect();
    columns.sort();
    assert_eq!(table[0], [&["epoch"][..], &columns].concat());
    assert_eq!(table.len() as u64, epochs + 1);
    for (i, row) in table[1..].iter().enumerate() {
        assert_eq!(row[0], (i + 1).to_string());
        for (name, cell) in columns.iter().zip(&row[1..]) {
            let value: f64 = cell.parse().unwrap_or_else(|e| panic!("{name} row {}: {cell:?}: {e}", i + 1));
            assert_eq!(value.to_bits(), history[*name][i].to_bits(), "{name} at epoch {}: {cell}", i + 1);
        }
    }
    // test.csv: the test report.
    let table = read_csv(&dir.join("test.csv"));
    assert_eq!(table[0], ["epoch", "accuracy", "f1_macro", "loss"]);
    assert_eq!(table.len(), 2);
    assert_eq!(table[1][0], epochs.to_string());
    for (name, cell) in table[0][1..].iter().zip(&table[1][1..]) {
        assert_eq!(cell.parse::<f64>().unwrap().to_bits(), test[name].to_bits(), "{name}: {cell}");
    }
    // No temporary file left behind.
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(metrics.get("tracker_errors").is_none(), "{}", metrics["tracker_errors"]);
}

#[test]
fn without_parameters_no_hyperparameters_are_written_and_folders_are_configurable() {
    let sandbox = sandbox();
    let trackers = json!([
        { "plugin": "tensorboard", "config": { "dir": "logs/tb" } },
        { "plugin": "csv", "config": { "file": "tables/e.csv", "test_file": "tables/t.csv" } }
    ]);
    let mut exp = wine("quiet", json!({ "trackers": trackers, "log_params": false }));
    exp["training"]["epochs"] = json!(2);
    let dir = run(&sandbox, "quiet", &exp);
    let metrics = read_json(&dir.join("metrics.json"));
    let tb = read_tfevents(&dir.join("logs/tb"));
    assert_eq!(tb["hparams"], json!({ "hparams": {}, "metrics": [], "status": null }));
    assert_eq!(tb["text"], json!({}));
    let scalars = tb["scalars"].as_object().unwrap();
    assert!(scalars.keys().all(|t| t.starts_with("epoch/") || t.starts_with("test/")), "no step metrics: {scalars:?}");
    assert_eq!(scalars["epoch/train_loss"].as_array().unwrap().len(), 2);
    assert_eq!(read_csv(&dir.join("tables/e.csv")).len(), 3);
    assert_eq!(read_csv(&dir.join("tables/t.csv"))[1][0], "2");
    assert!(!dir.join("epochs.csv").exists() && !dir.join("tensorboard").exists());
    assert_eq!(metrics["status"], "completed");
    assert!(metrics.get("tracker_errors").is_none(), "{}", metrics["tracker_errors"]);
}

/// Ctrl-C after the first checkpoint, then `resume`: the resumed session adds an event file to
/// the same folder, the session's status is the resumed session's, and the tables continue. The
/// csv tracker is named by its old name, `csv-log`, which still finds it.
#[test]
fn an_interrupted_run_resumes_into_the_same_files() {
    let sandbox = sandbox();
    let trackers = json!([{ "plugin": "tensorboard" }, { "plugin": "csv-log" }]);
    let mut exp = wine("ctrlc", json!({ "trackers": trackers }));
    exp["training"]["epochs"] = json!(200);
    exp["training"]["batch_size"] = json!(4);
    let path = sandbox.experiment("ctrlc", &exp);
    let child = Command::new(artifact_dir().join("gymnos-host"))
        .args(["--registry", sandbox.registry().to_str().unwrap(), "run", path.to_str().unwrap(), "--no-progress"])
        .current_dir(sandbox.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sandbox.runs("ctrlc").first().is_some_and(|d| d.join("checkpoints/last.safetensors").is_file()) {
        assert!(Instant::now() < deadline, "no checkpoint within a minute");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = sandbox.runs("ctrlc")[0].clone();
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!(metrics["status"], "interrupted");
    let done = metrics["epochs_completed"].as_u64().unwrap();
    let tb = read_tfevents(&dir.join("tensorboard"));
    assert_eq!(tb["hparams"]["status"], Value::Null, "an interrupted session has no end: the resumed one ends it");
    assert_eq!(tb["hparams"]["hparams"]["training.epochs"], 200.0);
    assert_eq!(tb["scalars"]["epoch/train_loss"].as_array().unwrap().len() as u64, done);
    let before = read_csv(&dir.join("epochs.csv"));
    assert_eq!(before.len() as u64, done + 1);

    sandbox.host(&["resume", dir.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!((metrics["status"].as_str(), metrics["epochs_completed"].as_u64()), (Some("completed"), Some(200)));
    assert_eq!(metrics["resumed_at_epochs"], json!([done]));
    assert_eq!(fs::read_dir(dir.join("tensorboard")).unwrap().count(), 2, "one event file per session");
    let tb = read_tfevents(&dir.join("tensorboard"));
    assert_eq!(tb["hparams"]["status"], "STATUS_SUCCESS");
    assert_eq!(tb["text"]["experiment"].as_array().unwrap().len(), 1, "parameters are logged once");
    let (history, test) = exact_metrics(&dir);
    let table = read_csv(&dir.join("epochs.csv"));
    assert_eq!(table.len(), 201);
    // The rows of the first session are kept as written.
    assert_eq!(table[..before.len()], before[..]);
    for (name, values) in &history {
        let points = tb["scalars"][format!("epoch/{name}")].as_array().unwrap();
        let got: Vec<(u64, f32)> = points.iter().map(|p| (p[0].as_u64().unwrap(), stored(&p[1]))).collect();
        let want: Vec<(u64, f32)> = values.iter().enumerate().map(|(i, v)| (i as u64 + 1, *v as f32)).collect();
        assert_eq!(got, want, "epoch/{name}");
        // The resumed session's rows: the history exactly. (The host reads the history of the
        // epochs before the resume back from the checkpoint with serde_json's default float
        // parsing, which can be one unit in the last place off; the table keeps the values the
        // tracker was given, so those rows are compared as float32.)
        let column = table[0].iter().position(|c| c == name).unwrap();
        let cells: Vec<f64> = table[1..].iter().map(|r| r[column].parse::<f64>().unwrap()).collect();
        let resumed = done as usize;
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&cells[resumed..]), bits(&values[resumed..]), "{name}");
        let singles = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<_>>();
        assert_eq!(singles(&cells[..resumed]), singles(&values[..resumed]), "{name}");
    }
    assert_eq!(read_csv(&dir.join("test.csv"))[1][0], "200");
    assert_eq!(tb["scalars"]["test/loss"], json!([[200, test["loss"] as f32 as f64]]));
    assert!(metrics.get("tracker_errors").is_none(), "{}", metrics["tracker_errors"]);
}

#[test]
fn a_folder_leaving_the_run_folder_is_refused_before_anything_runs() {
    let sandbox = sandbox();
    for (plugin, key) in [("tensorboard", "dir"), ("csv", "file"), ("csv", "test_file")] {
        let exp = wine("escape", json!({ "trackers": [{ "plugin": plugin, "config": { key: "../../x" } }] }));
        let path = sandbox.experiment("escape", &exp);
        let err = sandbox.host(&["validate", path.to_str().unwrap()]).one_line_error().to_string();
        assert_eq!(
            err,
            format!(
                "error: {}: tracking.trackers[0].config.{key}: `../../x` leaves the run folder; give a relative path inside it ({plugin})",
                path.display()
            )
        );
    }
    assert!(sandbox.runs("escape").is_empty());
}

#[test]
fn the_csv_tracker_s_old_name_still_finds_it_with_a_warning_and_the_record_has_the_new_one() {
    let sandbox = sandbox();
    let exp = wine("renamed", json!({ "trackers": [{ "plugin": "csv-log@^1" }] }));
    let path = sandbox.experiment("renamed", &exp);
    let validated = sandbox.host(&["validate", path.to_str().unwrap()]);
    validated.ok();
    assert!(
        validated.stderr.contains("`csv-log` is deprecated: the plugin is now called `csv`"),
        "{}",
        validated.stderr
    );
    let mut short = exp.clone();
    short["training"]["epochs"] = json!(1);
    let dir = run(&sandbox, "renamed", &short);
    let config = read_json(&dir.join("training_config.json"));
    assert_eq!(config["tracking"]["trackers"][0]["plugin"], "csv@=1.1.0");
    assert_eq!(read_csv(&dir.join("epochs.csv")).len(), 2);
}
