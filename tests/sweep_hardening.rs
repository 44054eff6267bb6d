//! Sweeps refuse, before any trial runs and with one line naming the file and the field: a
//! metric or a callback's monitor the trials' runs do not record (with a suggestion), a
//! parameter that varies a field the sweep sets itself, an `experiment` that is not one, counts
//! out of range and parameter edges that break the experiment's rules, and sweep files that are
//! not sweep files. A re-run never reports results the files no longer describe: a changed base
//! or space is refused (until `--restart`), a changed metric ranks again from the records, a
//! trial whose run folder is gone or unreadable runs again.

use std::{
    fs,
    path::{Path, PathBuf},
};

use gymnos_tests::{data_dir, read_json, wine_experiment, Sandbox};
use serde_json::{json, Value};

/// The wine experiment, one epoch, written as `wine.json`.
fn base(sandbox: &Sandbox) -> PathBuf {
    let mut experiment = wine_experiment("wine");
    experiment["training"]["epochs"] = json!(1);
    sandbox.experiment("wine", &experiment)
}

/// A sweep over `wine.json`, `name.json`, its folder under `sweeps/`.
fn sweep(sandbox: &Sandbox, name: &str, changes: Value) -> PathBuf {
    let mut sweep = json!({
        "name": name,
        "experiment": "wine.json",
        "output_root": "sweeps",
        "parameters": { "training.optimizer.lr": { "values": [0.01, 0.02] } },
        "metric": { "name": "val_loss", "direction": "min" },
        "executor": { "kind": "local", "parallel": 1, "threads_per_trial": 1 },
        "max_retries": 0
    });
    for (key, value) in changes.as_object().unwrap() {
        sweep[key] = value.clone();
    }
    let path = sandbox.dir.path().join(format!("{name}.json"));
    fs::write(&path, serde_json::to_string_pretty(&sweep).unwrap()).unwrap();
    path
}

fn sweep_dir(sandbox: &Sandbox, name: &str) -> PathBuf {
    sandbox.dir.path().join("sweeps").join(name)
}

/// Runs `sweep FILE ARGS...` expecting a refusal: returns its line without `error: FILE: `,
/// after checking that nothing of the sweep was written.
fn refused(sandbox: &Sandbox, file: &Path, args: &[&str]) -> String {
    let mut all = vec!["sweep", file.to_str().unwrap()];
    all.extend_from_slice(args);
    let line = sandbox.host(&all).one_line_error().to_string();
    let name = file.file_stem().unwrap().to_str().unwrap();
    assert!(!sweep_dir(sandbox, name).exists(), "{name}: refused, yet its folder was written");
    let prefix = format!("error: {}: ", file.display());
    line.strip_prefix(&prefix).unwrap_or_else(|| panic!("the line names the sweep file: {line}")).to_string()
}

fn regression_table(sandbox: &Sandbox) -> PathBuf {
    let mut table = String::from("a,b,y\n");
    for i in 0..120 {
        let (a, b) = (((i * 37) % 100) as f64 / 50.0 - 1.0, ((i * 91) % 100) as f64 / 50.0 - 1.0);
        table.push_str(&format!("{a},{b},{}\n", 2.0 * a - 3.0 * b));
    }
    let path = sandbox.dir.path().join("linear.csv");
    fs::write(&path, table).unwrap();
    path
}

#[test]
fn metrics_and_monitors_are_those_the_task_records_with_a_suggestion() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    base(&sandbox);
    let epoch_names = "train_loss, train_accuracy, val_loss, val_accuracy, val_f1_macro, lr, epoch_seconds, \
                       train_samples_per_second, data_wait_seconds";
    let typo = sweep(&sandbox, "typo", json!({ "metric": { "name": "val_los", "direction": "min" } }));
    assert_eq!(
        refused(&sandbox, &typo, &[]),
        format!(
            "metric.name: `val_los` is not a metric the runs record; did you mean `val_loss`? (per epoch: \
             {epoch_names}; at the end: test.loss, test.accuracy, test.f1_macro)"
        )
    );
    let test_typo = sweep(&sandbox, "test_typo", json!({ "metric": { "name": "test.acuracy", "direction": "max" } }));
    assert!(refused(&sandbox, &test_typo, &[]).contains("did you mean `test.accuracy`?"));
    let other_task = sweep(&sandbox, "r2", json!({ "metric": { "name": "val_r2", "direction": "max" } }));
    assert_eq!(
        refused(&sandbox, &other_task, &[]),
        "metric.name: `val_r2` is recorded for regression only; this experiment is classification \
         (dataset.config.task's default), whose runs record val_loss, val_accuracy, val_f1_macro"
    );

    // Without a validation split there is no val_ metric, in a sweep or a callback.
    let mut no_val = wine_experiment("noval");
    no_val["dataset"]["split"] = json!({ "train": 0.8, "val": 0.0, "test": 0.2 });
    no_val["training"]["callbacks"] = json!({ "checkpoint": { "monitor": "train_loss" } });
    sandbox.experiment("noval", &no_val);
    let no_val_sweep = sweep(
        &sandbox,
        "noval_sweep",
        json!({ "experiment": "noval.json", "metric": { "name": "val_accuracy", "direction": "max" } }),
    );
    assert_eq!(
        refused(&sandbox, &no_val_sweep, &[]),
        "metric.name: `val_accuracy` needs a validation split, but dataset.split.val is 0"
    );

    // A regression data set: its own names, and not classification's.
    let table = regression_table(&sandbox);
    let mut regression = wine_experiment("linear");
    regression["dataset"] = json!({ "plugin": "csv", "config": { "path": table, "task": "regression" } });
    regression["preprocessors"] = json!([]);
    sandbox.experiment("linear", &regression);
    let accuracy = sweep(
        &sandbox,
        "linear_accuracy",
        json!({ "experiment": "linear.json", "metric": { "name": "test.accuracy", "direction": "max" } }),
    );
    assert_eq!(
        refused(&sandbox, &accuracy, &[]),
        "metric.name: `test.accuracy` is recorded for classification only; this experiment is regression \
         (dataset.config.task), whose runs record test.loss, test.mse, test.mae, test.r2"
    );

    // Callbacks' monitors, in `validate` and in every trial of a sweep.
    let exp = sandbox.dir.path().join("wine.json");
    let validate =
        |set: &str| sandbox.host(&["validate", exp.to_str().unwrap(), "--set", set]).one_line_error().to_string();
    assert_eq!(
        validate("training.callbacks.early_stopping.monitor=val_r2"),
        format!(
            "error: {}: training.callbacks.early_stopping.monitor: `val_r2` is recorded for regression only; this \
             experiment is classification (dataset.config.task's default), whose runs record val_loss, \
             val_accuracy, val_f1_macro",
            exp.display()
        )
    );
    assert!(
        validate("training.callbacks.checkpoint.monitor=val_mse").contains("`val_mse` is recorded for regression only")
    );
    assert!(validate("training.callbacks.reduce_on_plateau.monitor=val_acuracy")
        .contains("training.callbacks.reduce_on_plateau.monitor: `val_acuracy` is not a metric the runs record; did you mean `val_accuracy`?"));
    let linear = sandbox.dir.path().join("linear.json");
    sandbox.host(&["validate", linear.to_str().unwrap(), "--set", "training.callbacks.checkpoint.monitor=val_r2"]).ok();
    let monitor_sweep = sweep(
        &sandbox,
        "monitor",
        json!({ "parameters": { "training.callbacks.checkpoint.monitor": { "values": ["val_loss", "val_mae"] } } }),
    );
    let line = refused(&sandbox, &monitor_sweep, &[]);
    assert!(
        line.starts_with("parameters.training.callbacks.checkpoint.monitor: value \"val_mae\" (values[1]) breaks a rule of the experiment: ")
            && line.ends_with("training.callbacks.checkpoint.monitor: `val_mae` is recorded for regression only; this experiment is classification (dataset.config.task's default), whose runs record val_loss, val_accuracy, val_f1_macro"),
        "{line}"
    );
}

#[test]
fn a_sweep_varies_neither_its_own_fields_nor_one_field_twice_and_names_an_experiment() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    base(&sandbox);
    let vary = |name: &str, parameters: Value| {
        refused(&sandbox, &sweep(&sandbox, name, json!({ "parameters": parameters })), &[])
    };
    assert_eq!(
        vary("name", json!({ "experiment.name": { "values": ["a", "b"] } })),
        "parameters.experiment.name: the sweep sets `experiment.name` itself in every trial (each trial's name, \
         trial-NNNN), so the values here would never apply; vary another field"
    );
    assert!(vary("root", json!({ "experiment.output_root": { "values": ["/tmp/a"] } }))
        .starts_with("parameters.experiment.output_root: the sweep sets `experiment.output_root` itself"));
    assert!(vary("whole", json!({ "experiment": { "values": [{ "name": "x", "seed": 1 }] } }))
        .starts_with("parameters.experiment: `experiment` holds `experiment.name`, which the sweep sets itself"));
    assert_eq!(
        vary(
            "twice",
            json!({ "training.optimizer": { "values": [{ "name": "sgd", "lr": 0.1 }] }, "training.optimizer.lr": { "values": [0.2] } })
        ),
        "parameters.training.optimizer.lr: overlaps `parameters.training.optimizer`, which sets \
         `training.optimizer.lr` too; vary one or the other"
    );

    // `experiment` must name an experiment: not the sweep itself, not another sweep, not other JSON.
    let itself = sweep(&sandbox, "itself", json!({ "experiment": "itself.json" }));
    assert_eq!(
        refused(&sandbox, &itself, &[]),
        format!(
            "experiment: {} is this sweep file itself; `experiment` names the experiment file the sweep varies (with \
             dataset, model and training sections)",
            itself.display()
        )
    );
    sweep(&sandbox, "other", json!({}));
    let of_a_sweep = sweep(&sandbox, "of_a_sweep", json!({ "experiment": "other.json" }));
    assert!(refused(&sandbox, &of_a_sweep, &[]).contains("other.json is a sweep file, not an experiment"));
    fs::write(sandbox.dir.path().join("list.json"), "[1, 2]").unwrap();
    let of_a_list = sweep(&sandbox, "of_a_list", json!({ "experiment": "list.json" }));
    assert!(refused(&sandbox, &of_a_list, &[]).ends_with("list.json is not an experiment: expected a JSON object with experiment, dataset, model and training sections, found an array"));
    let missing = sweep(&sandbox, "missing", json!({ "experiment": "nope.json" }));
    assert!(refused(&sandbox, &missing, &[]).starts_with(&format!(
        "experiment: {}: cannot read the experiment",
        sandbox.dir.path().join("nope.json").display()
    )));
    // And the sweep command given an experiment says so.
    let exp = sandbox.dir.path().join("wine.json");
    let line = sandbox.host(&["sweep", exp.to_str().unwrap()]).one_line_error().to_string();
    assert!(line.contains("$: this is an experiment file, not a sweep file (run it with `gymnos-host run`)"), "{line}");
}

#[test]
fn counts_and_every_parameters_edges_are_checked_before_any_trial_runs() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let wine = base(&sandbox);
    let zero = sweep(&sandbox, "zero", json!({ "trials": 0 }));
    assert_eq!(refused(&sandbox, &zero, &[]), "trials: 0 is not between 1 and 100000");
    let zero_random = sweep(
        &sandbox,
        "zero_random",
        json!({ "trials": 0, "parameters": { "training.optimizer.lr": { "uniform": [0.001, 0.1] } } }),
    );
    assert_eq!(refused(&sandbox, &zero_random, &[]), "trials: 0 is not between 1 and 100000");
    let retries = sweep(&sandbox, "retries", json!({ "max_retries": 1000 }));
    assert_eq!(refused(&sandbox, &retries, &[]), "max_retries: 1000 is not between 0 and 100");
    let parallel = sweep(&sandbox, "parallel", json!({ "executor": { "kind": "local", "parallel": 0 } }));
    assert_eq!(refused(&sandbox, &parallel, &[]), "executor.parallel: 0 is not between 1 and 65536");
    let memory = sweep(&sandbox, "memory", json!({ "executor": { "kind": "slurm", "memory": "4G\nrm -rf ~" } }));
    assert!(refused(&sandbox, &memory, &[]).starts_with("executor.memory: \"4G\\nrm -rf ~\" is not a Slurm value"));

    // The upper bound of a huge uniform range: refused by the experiment's own rule, whatever it is.
    let huge = sweep(
        &sandbox,
        "huge",
        json!({ "trials": 2, "parameters": { "training.optimizer.lr": { "uniform": [0.001, 1e308] } } }),
    );
    let line = refused(&sandbox, &huge, &[]);
    let start = format!(
        "parameters.training.optimizer.lr: the upper bound 1e308 of `uniform` breaks a rule of the experiment: {}: \
         training.optimizer.lr: ",
        wine.display()
    );
    assert!(line.starts_with(&start), "{line}");
    // Every listed value, a range's last point, an integer draw's bound.
    let listed = sweep(&sandbox, "listed", json!({ "parameters": { "training.epochs": { "values": [1, 2, 0] } } }));
    assert_eq!(
        refused(&sandbox, &listed, &[]),
        format!(
            "parameters.training.epochs: value 0 (values[2]) breaks a rule of the experiment: {}: training.epochs: \
             must be at least 1",
            wine.display()
        )
    );
    // An SGD base, for its momentum in [0, 1).
    let mut sgd = wine_experiment("sgd");
    sgd["training"]["epochs"] = json!(1);
    sgd["training"]["optimizer"] = json!({ "name": "sgd", "lr": 0.05, "momentum": 0.5 });
    let sgd_path = sandbox.experiment("sgd", &sgd);
    let range = sweep(
        &sandbox,
        "range",
        json!({ "experiment": "sgd.json", "parameters": { "training.optimizer.momentum": { "range": [0, 1, 0.5] } } }),
    );
    assert_eq!(
        refused(&sandbox, &range, &[]),
        format!(
            "parameters.training.optimizer.momentum: the range's last point 1.0 breaks a rule of the experiment: {}: \
             training.optimizer.momentum: 1 is not in [0, 1)",
            sgd_path.display()
        )
    );
    let seed = sweep(
        &sandbox,
        "seed",
        json!({ "trials": 3, "parameters": { "experiment.seed": { "int_uniform": [-5, 5] } } }),
    );
    assert!(refused(&sandbox, &seed, &[]).starts_with(
        "parameters.experiment.seed: the lower bound -5 of `int_uniform` breaks a rule of the experiment: "
    ));
    let typed = sweep(&sandbox, "typed", json!({ "parameters": { "training.epochs": { "values": [1, "two"] } } }));
    assert!(refused(&sandbox, &typed, &[])
        .ends_with("training.epochs: expected an integer, found a string (set by --set training.epochs=\"two\")"));
    let nowhere = sweep(&sandbox, "nowhere", json!({ "parameters": { "training.optimizr.lr": { "values": [0.1] } } }));
    assert!(refused(&sandbox, &nowhere, &[]).starts_with(
        "parameters.training.optimizr.lr: `training.optimizr` points at nothing: `training` has no `optimizr`"
    ));

    // A uniform draw never reaches its upper bound: [0.5, 1) of momentum is fine, and runs.
    let half_open = sweep(
        &sandbox,
        "half_open",
        json!({ "experiment": "sgd.json", "trials": 2, "parameters": { "training.optimizer.momentum": { "uniform": [0.5, 1.0] } } }),
    );
    sandbox.host(&["sweep", half_open.to_str().unwrap()]).ok();
    // Adam has no momentum: the path's own problem, named at the parameter.
    let momentum = sweep(
        &sandbox,
        "momentum",
        json!({ "trials": 2, "parameters": { "training.optimizer.momentum": { "uniform": [0.5, 1.0] } } }),
    );
    let line = refused(&sandbox, &momentum, &[]);
    assert!(
        line.starts_with("parameters.training.optimizer.momentum: `training.optimizer.momentum` points at nothing"),
        "{line}"
    );
}

#[test]
fn sweep_files_are_read_as_people_write_them() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    base(&sandbox);
    let write = |name: &str, text: &str| {
        let path = sandbox.dir.path().join(format!("{name}.json"));
        fs::write(&path, text).unwrap();
        path
    };
    let list = write("list", "[]");
    assert_eq!(
        refused(&sandbox, &list, &[]),
        "$: expected a JSON object with the fields name, experiment, parameters, metric (and optionally output_root, \
         trials, seed, executor, max_retries, early_stopping), found an array"
    );
    let cut = write("cut", "{\"name\": \"cut\", \"experiment\": \"wine.json\", \"param\n");
    assert_eq!(
        refused(&sandbox, &cut, &[]),
        "the JSON ends early at line 2, column 0 (control character (\\u0000-\\u001F) found while parsing a string): is \
         the file truncated?"
    );
    let cut_object = write("cut_object", "{\"name\": \"cut\", \"experiment\": \"wine.json\",");
    assert!(refused(&sandbox, &cut_object, &[]).starts_with("the JSON ends early at line 1, column "));
    let types = write(
        "types",
        &json!({
            "name": "types", "experiment": "wine.json", "output_root": "sweeps",
            "parameters": { "training.optimizer.lr": [0.1], "training.epochs": { "valuse": [1] } },
            "metric": ["val_loss", "min"], "trials": "two", "seed": -1, "executor": { "kind": "kubernetes" }, "retries": 2
        })
        .to_string(),
    );
    let line = refused(&sandbox, &types, &[]);
    assert_eq!(
        line,
        "7 problems: executor.kind: `kubernetes` is not one of local, slurm; metric: expected an object, found an \
         array; parameters.training.epochs: `valuse` is not a form of parameter; did you mean `values`? (a parameter \
         is an object with one of values, range, uniform, log_uniform, int_uniform: {\"values\": [...]}, {\"range\": \
         [start, stop, step]}, {\"uniform\": [low, high]}, {\"log_uniform\": [low, high]}, {\"int_uniform\": [low, \
         high]}); parameters.training.optimizer.lr: expected an object, found an array (a parameter is an object with \
         one of values, range, uniform, log_uniform, int_uniform: {\"values\": [...]}, {\"range\": [start, stop, \
         step]}, {\"uniform\": [low, high]}, {\"log_uniform\": [low, high]}, {\"int_uniform\": [low, high]}); \
         retries: unknown field; did you mean `max_retries`? (fields: name, experiment, parameters, metric, \
         output_root, trials, seed, executor, max_retries, early_stopping); seed: -1 is below the smallest value \
         allowed, 0; trials: expected an integer or null, found a string"
    );
    for internal in ["SweepFile", "struct", "variant", "Parameter"] {
        assert!(!line.contains(internal), "{line}");
    }
    // A byte order mark is no problem.
    let plain = sweep(&sandbox, "bom", json!({}));
    let text = fs::read_to_string(&plain).unwrap();
    fs::write(&plain, format!("\u{feff}{text}")).unwrap();
    sandbox.host(&["sweep", plain.to_str().unwrap()]).ok();
}

/// Each trial's run folder and metric, by trial.
fn trials(dir: &Path) -> Vec<(String, Option<PathBuf>, Option<f64>)> {
    let results = read_json(&dir.join("sweep.json"));
    results["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (t["status"].as_str().unwrap().to_string(), t["run_dir"].as_str().map(PathBuf::from), t["metric"].as_f64())
        })
        .collect()
}

fn executions(dir: &Path, trial: u32) -> Vec<PathBuf> {
    let mut runs: Vec<PathBuf> = fs::read_dir(dir.join(format!("runs/trial-{trial:04}/executions")))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    runs.sort();
    runs
}

#[test]
fn a_rerun_never_reports_results_the_files_no_longer_describe() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let wine = base(&sandbox);
    let file = sweep(&sandbox, "again", json!({}));
    let dir = sweep_dir(&sandbox, "again");
    let run = |args: &[&str]| {
        let mut all = vec!["sweep", file.to_str().unwrap()];
        all.extend_from_slice(args);
        sandbox.host(&all)
    };
    run(&[]).ok();
    let first = trials(&dir);
    assert!(first.iter().all(|(status, run, metric)| status == "completed" && run.is_some() && metric.is_some()));
    let recorded = fs::read(dir.join("sweep.json")).unwrap();

    // The base changed: refused, nothing run, nothing rewritten.
    let mut edited = wine_experiment("wine");
    edited["training"]["epochs"] = json!(2);
    fs::write(&wine, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let line = run(&[]).one_line_error().to_string();
    assert_eq!(
        line,
        format!(
            "error: {}: the base experiment {} (training.epochs: 1 → 2) changed since the sweep in {} was started, so \
             its recorded trials no longer match the files; run `gymnos-host sweep {} --restart` to discard its \
             results and start afresh, or give the sweep another name",
            file.display(),
            wine.display(),
            dir.display(),
            file.display()
        )
    );
    assert_eq!(fs::read(dir.join("sweep.json")).unwrap(), recorded);
    assert!((0..2).all(|t| executions(&dir, t).len() == 1));
    // The space changed: refused as well, naming it.
    base(&sandbox);
    sweep(&sandbox, "again", json!({ "parameters": { "training.optimizer.lr": { "values": [0.01, 0.03] } } }));
    assert!(run(&[]).one_line_error().contains(
        "the parameters (training.optimizer.lr: {\"values\":[0.01,0.02]} → {\"values\":[0.01,0.03]}) changed since the sweep"
    ));
    // --restart starts afresh with the files as they are.
    run(&["--restart"]).ok();
    let restarted = trials(&dir);
    assert!(restarted.iter().all(|(status, _, _)| status == "completed"));
    assert_eq!(read_json(&dir.join("sweep.json"))["trials"][1]["parameters"]["training.optimizer.lr"], 0.03);
    assert!((0..2).all(|t| executions(&dir, t).len() == 1), "the old runs are gone");
    assert_ne!(restarted[0].1, first[0].1);

    // Only the metric changed: ranked again from the trials' records, nothing run.
    sweep(
        &sandbox,
        "again",
        json!({
            "parameters": { "training.optimizer.lr": { "values": [0.01, 0.03] } },
            "metric": { "name": "val_accuracy", "direction": "max" }, "max_retries": 2
        }),
    );
    let table = run(&[]).ok().to_string();
    assert!(table.starts_with("TRIAL  STATUS     val_accuracy"), "{table}");
    let results = read_json(&dir.join("sweep.json"));
    assert_eq!(results["metric"], json!({ "name": "val_accuracy", "direction": "max" }));
    assert_eq!(results["max_retries"], 2);
    for t in results["trials"].as_array().unwrap() {
        let record = read_json(&Path::new(t["run_dir"].as_str().unwrap()).join("metrics.json"));
        let best = record["history"]["val_accuracy"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_f64)
            .fold(f64::MIN, f64::max);
        assert_eq!(t["metric"].as_f64(), Some(best));
    }
    assert!((0..2).all(|t| executions(&dir, t).len() == 1));

    // A finished trial whose run folder is gone runs again; one whose record cannot be read too.
    fs::remove_dir_all(dir.join("runs/trial-0001")).unwrap();
    let status = sandbox.host(&["sweep", "status", dir.to_str().unwrap()]).ok().to_string();
    assert!(status.contains("1 completed, 1 pending"), "{status}");
    assert!(!status.contains("trial-0001/executions"), "the best is not the gone trial: {status}");
    let broken = executions(&dir, 0).remove(0);
    fs::write(broken.join("metrics.json"), "{\"status\": \"comp").unwrap();
    run(&[]).ok();
    let after = trials(&dir);
    assert!(after.iter().all(|(status, run, _)| status == "completed" && run.as_ref().is_some_and(|r| r.is_dir())));
    assert_eq!(executions(&dir, 0).len(), 2, "trial 0 ran again beside its unreadable run");
    assert_eq!(executions(&dir, 1).len(), 1, "trial 1 ran again");
    assert_ne!(after[0].1.as_ref(), Some(&broken));

    // A sweep.json that cannot be read back, or runs without one: refused until --restart.
    fs::write(dir.join("sweep.json"), "{").unwrap();
    assert!(run(&[]).one_line_error().starts_with(&format!(
        "error: {}: its sweep.json is not a sweep's results (EOF while parsing an object at line 1 column 1); run `gymnos-host sweep {} --restart`",
        dir.display(),
        file.display()
    )));
    fs::remove_file(dir.join("sweep.json")).unwrap();
    assert!(run(&[]).one_line_error().contains("the folder holds trial runs but no sweep.json"));
    run(&["--restart"]).ok();
    let _ = data_dir();
}
