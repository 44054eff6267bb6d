//! What the engine refuses before a run exists, and the consistency of runs with their data:
//! `run` refuses exactly what `validate --deep` refuses, with the same line, and leaves no run
//! folder; degenerate settings are named as the cause, not as the NaN they would make; sizes
//! are checked before anything is allocated; a run resumed on data that changed since it
//! started is refused, saying what changed, and left as it was.

use std::{fs, path::Path};

use gymnos_tests::{data_dir, read_json, wine_experiment, with, Sandbox};
use serde_json::{json, Value};

/// The wine experiment with one change, and the text its refusal must contain.
fn broken_experiments(sandbox: &Sandbox) -> Vec<(&'static str, Value, String)> {
    let wine = || wine_experiment("broken");
    // A table with a constant first feature.
    let constant = sandbox.dir.path().join("constant.csv");
    let table = fs::read_to_string(data_dir().join("sklearn/wine_data.csv")).unwrap();
    let mut lines: Vec<String> = table.lines().map(String::from).collect();
    for line in lines.iter_mut().skip(1) {
        let mut cells: Vec<&str> = line.split(',').collect();
        cells[0] = "5.0";
        *line = cells.join(",");
    }
    fs::write(&constant, lines.join("\n") + "\n").unwrap();
    vec![
        (
            "batch normalisation on batches of one sample",
            with(
                with(wine(), "training.batch_size", json!(1)),
                "model",
                json!({ "plugin": "sequential", "config": { "layers": [
                    { "type": "dense", "units": 16 }, { "type": "batch_norm" }, { "type": "relu" }
                ] } }),
            ),
            "training.batch_size: model `sequential@".into(),
        ),
        (
            "a learning rate no optimizer trains with",
            with(wine(), "training.optimizer.lr", json!(1e308)),
            "training.optimizer.lr: 1e308 is larger than any learning rate that trains (at most 100)".into(),
        ),
        (
            "a step schedule that grows the rate past the bound",
            with(with(wine(), "training.epochs", json!(3)), "training.lr_schedule", json!({ "name": "step", "step_size": 1, "gamma": 1e308 })),
            "training.lr_schedule.gamma: 1e308 takes the learning rate to 1e306 by epoch 2 (at most 100)".into(),
        ),
        (
            "a weight decay that takes more than every weight each step",
            with(wine(), "training.optimizer.weight_decay", json!(1e308)),
            "training.optimizer.weight_decay: 1e308 with a learning rate of 0.01 takes lr × weight_decay = 1e306 of every weight each step; keep it below 1".into(),
        ),
        (
            "more batches in flight than memory holds",
            with(wine(), "training.prefetch_batches", json!(4_294_967_295u64)),
            "training.prefetch_batches: 4294967295 is not between 1 and 256 (each batch in flight takes memory)".into(),
        ),
        (
            "a tracker writing the run's own record",
            with(wine(), "tracking.trackers", json!([{ "plugin": "jsonl", "config": { "file": "metrics.json" } }])),
            "tracking.trackers[0].config.file: `metrics.json` is one of the run's own files, which the record writes; choose another name".into(),
        ),
        (
            "two trackers writing one file",
            with(
                wine(),
                "tracking.trackers",
                json!([{ "plugin": "jsonl", "config": { "file": "out.log" } }, { "plugin": "csv", "config": { "file": "out.log" } }]),
            ),
            "tracking.trackers[1].config.file: `out.log` is also written by tracking.trackers[0].config.file; give each its own file".into(),
        ),
        (
            "a tracker whose settings it refuses when created",
            with(wine(), "tracking.trackers", json!([{ "plugin": "mlflow", "config": { "tracking_uri": "not a url" } }])),
            "tracking_uri".into(),
        ),
        (
            "a streamed batch larger than memory",
            with(
                with(
                    with(wine(), "dataset", json!({ "plugin": "synthetic", "config": { "samples": 10_000_000_000u64, "shape": [64], "classes": 3 } })),
                    "training.batch_size",
                    json!(4_294_967_295u64),
                ),
                "training.limit_train_batches",
                json!(1),
            ),
            "training.batch_size: a batch of 4294967295 samples of shape [64]: needs 1.1 TB (1099511627520 bytes), and this machine has".into(),
        ),
        (
            "a zero epsilon on a constant feature",
            with(
                with(wine(), "dataset.config.path", json!(constant)),
                "preprocessors",
                json!([{ "plugin": "standardize", "config": { "per_feature": true, "epsilon": 0 } }]),
            ),
            "standardize".into(),
        ),
    ]
}

/// The class: whatever `validate --deep` refuses, `run` refuses with the same line, before its
/// folder exists.
#[test]
fn run_refuses_what_validate_deep_refuses_with_the_same_line_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    for (case, exp, expected) in broken_experiments(&sandbox) {
        let path = sandbox.experiment("broken", &exp);
        let deep = sandbox.host(&["validate", "--deep", path.to_str().unwrap()]);
        assert_ne!(
            deep.code,
            0,
            "{case}: validate --deep accepted it: {}\n{}",
            deep.stdout,
            fs::read_to_string(&path).unwrap()
        );
        let deep = deep.one_line_error().to_string();
        let run = sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).one_line_error().to_string();
        assert_eq!(deep, run, "{case}");
        assert!(run.contains(&expected), "{case}: {run}");
        assert!(sandbox.runs("broken").is_empty(), "{case}: a run folder was left behind");
        assert!(!sandbox.dir.path().join("trainings/broken").exists(), "{case}: the experiment's folder was made");
    }
}

/// The wine table with a header of names (`f0`..`f12`, `target`), its rows through `change`.
fn write_table(table: &Path, change: impl Fn(usize, Vec<String>) -> Vec<String>) {
    let text = fs::read_to_string(data_dir().join("sklearn/wine_data.csv")).unwrap();
    let rows: Vec<String> = text
        .lines()
        .skip(1)
        .enumerate()
        .map(|(i, l)| change(i, l.split(',').map(String::from).collect()).join(","))
        .filter(|row| !row.is_empty())
        .collect();
    let width = rows[0].split(',').count();
    let mut names: Vec<String> = (0..width - 1).map(|i| format!("f{i}")).collect();
    names.push("target".into());
    fs::write(table, format!("{}\n{}\n", names.join(","), rows.join("\n"))).unwrap();
}

#[test]
fn a_run_resumed_on_changed_data_is_refused_saying_what_changed_and_left_as_it_was() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let table = sandbox.dir.path().join("wine.csv");
    let same = |_: usize, cells: Vec<String>| cells;
    write_table(&table, same);
    let exp = with(
        wine_experiment("resumed"),
        "dataset.config",
        json!({ "path": table, "header": "names", "target_column": "target" }),
    );
    let path = sandbox.experiment("resumed", &exp);
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress", "--stop-after-epoch", "1"]).ok();
    let run = sandbox.runs("resumed").pop().unwrap();
    let before = fs::read(run.join("metrics.json")).unwrap();
    let refused = |change: &dyn Fn(usize, Vec<String>) -> Vec<String>, says: &str| {
        write_table(&table, change);
        let line = sandbox.host(&["resume", run.to_str().unwrap(), "--no-progress"]).one_line_error().to_string();
        assert!(
            line.starts_with(&format!(
                "error: run {}: the data set changed since this run started: {says}.",
                run.display()
            )),
            "{line}"
        );
        assert!(line.ends_with("restore that data, or start a new run with `gymnos-host run`"), "{line}");
        assert_eq!(fs::read(run.join("metrics.json")).unwrap(), before, "the run's record is as it was");
    };
    refused(
        &|_, mut cells| {
            cells.insert(0, "1.0".into());
            cells
        },
        "its samples' shape is [14], and was [13]",
    );
    refused(
        &|i, mut cells| {
            if i % 10 == 0 {
                *cells.last_mut().unwrap() = "3".into();
            }
            cells
        },
        "it has 4 classes (0, 1, 2, 3), and had 3 (0, 1, 2)",
    );
    refused(&|i, cells| if i == 0 { Vec::new() } else { cells }, "it has 177 samples, and had 178 samples");
    refused(
        &|_, mut cells| {
            cells[0] = format!("{}", cells[0].parse::<f64>().unwrap() * 3.0);
            cells
        },
        "its values are not those the run started with",
    );
    // The data it started on: the run continues and completes.
    write_table(&table, same);
    sandbox.host(&["resume", run.to_str().unwrap(), "--no-progress"]).ok();
    assert_eq!(read_json(&run.join("metrics.json"))["status"], "completed");
}
