//! `gymnos-host sweep`: a grid of trials on the local executor and on a real single-node Slurm
//! cluster with the same results, resumed after Ctrl-C, failed trials retried without stopping
//! the others, every trial checked before any starts.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use gymnos_tests::{data_dir, read_json, Run, Sandbox, SlurmCluster};
use serde_json::{json, Value};

/// Writes the wine experiment and a sweep over it; returns the sweep file.
fn sweep_file(sandbox: &Sandbox, name: &str, parameters: Value, executor: Value, epochs: u32) -> PathBuf {
    let experiment = json!({
        "experiment": { "name": "wine", "seed": 4 },
        "dataset": {
            "plugin": "csv",
            "config": { "path": data_dir().join("sklearn/wine_data.csv"), "header": "sklearn" },
            "split": { "train": 0.6, "val": 0.2, "test": 0.2 }
        },
        "preprocessors": [{ "plugin": "standardize" }],
        "model": { "plugin": "mlp", "config": { "hidden": [8] } },
        "training": { "epochs": epochs, "batch_size": 16, "optimizer": { "name": "adam", "lr": 0.01 }, "device": "cpu" }
    });
    fs::write(sandbox.dir.path().join("wine.json"), experiment.to_string()).unwrap();
    let sweep = json!({
        "name": name,
        "experiment": "wine.json",
        "output_root": "sweeps",
        "parameters": parameters,
        "metric": { "name": "test.accuracy", "direction": "max" },
        "executor": executor,
        "max_retries": 1
    });
    let path = sandbox.dir.path().join(format!("{name}.json"));
    fs::write(&path, sweep.to_string()).unwrap();
    path
}

fn grid() -> Value {
    json!({ "training.optimizer.lr": { "values": [0.001, 0.01] }, "model.config.hidden": { "values": [[4], [16]] } })
}

/// Each trial's metric, by trial number.
fn metrics(results: &Value) -> Vec<(u64, f64)> {
    let mut m: Vec<(u64, f64)> = results["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["trial"].as_u64().unwrap(), t["metric"].as_f64().unwrap_or(f64::NAN)))
        .collect();
    m.sort_by_key(|(t, _)| *t);
    m
}

fn executions(dir: &Path, trial: u32) -> usize {
    fs::read_dir(dir.join(format!("runs/trial-{trial:04}/executions"))).map_or(0, |d| d.count())
}

#[test]
fn a_local_grid_runs_every_trial_names_the_best_and_skips_finished_trials_when_run_again() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let executor = json!({ "kind": "local", "parallel": 2, "threads_per_trial": 1 });
    let file = sweep_file(&sandbox, "grid", grid(), executor, 6);
    let out = sandbox.host(&["sweep", file.to_str().unwrap()]);
    let table = out.ok().to_string();
    let dir = sandbox.dir.path().join("sweeps/grid");
    let results = read_json(&dir.join("sweep.json"));
    assert_eq!(results["trials"].as_array().unwrap().len(), 4);
    for t in results["trials"].as_array().unwrap() {
        assert_eq!(t["status"], "completed", "{t}");
        let run_dir = PathBuf::from(t["run_dir"].as_str().unwrap());
        let record = read_json(&run_dir.join("metrics.json"));
        assert_eq!(record["sweep"], json!({ "sweep": "grid", "trial": t["trial"] }));
        assert_eq!(record["test"]["accuracy"], t["metric"]);
        let config = read_json(&run_dir.join("training_config.json"));
        assert_eq!(config["training"]["optimizer"]["lr"], t["parameters"]["training.optimizer.lr"]);
        assert_eq!(config["model"]["config"]["hidden"], t["parameters"]["model.config.hidden"]);
    }
    // The best trial is named, and the table lists it first.
    let best = &results["best"];
    let best_metric = best["metric"].as_f64().unwrap();
    assert!(metrics(&results).iter().all(|(_, m)| *m <= best_metric));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("TRIAL  STATUS     test.accuracy  model.config.hidden  training.optimizer.lr"),
        "{table}"
    );
    assert!(lines[1].starts_with(&format!("{}  ", best["trial"])), "{table}");
    assert_eq!(lines[5], "4 completed");
    assert_eq!(
        lines[6],
        format!(
            "best: trial {} (test.accuracy {best_metric:.4}): {}",
            best["trial"],
            best["run_dir"].as_str().unwrap()
        )
    );

    // Run again: nothing to do.
    sandbox.host(&["sweep", file.to_str().unwrap()]).ok();
    assert!((0..4).all(|t| executions(&dir, t) == 1));
    let status = sandbox.host(&["sweep", "status", dir.to_str().unwrap()]).ok().to_string();
    assert_eq!(status, table);
}

#[test]
fn an_interrupted_sweep_resumes_its_trials_from_their_checkpoints() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let executor = json!({ "kind": "local", "parallel": 2, "threads_per_trial": 1 });
    let parameters =
        json!({ "training.optimizer.lr": { "values": [0.001, 0.002] }, "training.batch_size": { "values": [2] } });
    let file = sweep_file(&sandbox, "long", parameters, executor, 300);
    let dir = sandbox.dir.path().join("sweeps/long");
    let child = sandbox
        .command(&["sweep", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let checkpoint = |t: u32| {
        fs::read_dir(dir.join(format!("runs/trial-{t:04}/executions")))
            .ok()
            .and_then(|mut d| d.next())
            .is_some_and(|e| e.unwrap().path().join("checkpoints/last.safetensors").is_file())
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(checkpoint(0) && checkpoint(1)) {
        assert!(Instant::now() < deadline, "no checkpoints within two minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!(
            "error: sweep {}: interrupted; run `gymnos-host sweep {}` again to continue it",
            dir.display(),
            file.display()
        )
    );
    let results = read_json(&dir.join("sweep.json"));
    assert!(results["trials"].as_array().unwrap().iter().all(|t| t["status"] == "interrupted"), "{results}");

    sandbox.host(&["sweep", file.to_str().unwrap()]).ok();
    let results = read_json(&dir.join("sweep.json"));
    for t in results["trials"].as_array().unwrap() {
        assert_eq!(t["status"], "completed");
        let record = read_json(&PathBuf::from(t["run_dir"].as_str().unwrap()).join("metrics.json"));
        assert_eq!(record["epochs_completed"], 300);
        assert_eq!(record["resumed_at_epochs"].as_array().unwrap().len(), 1, "{record}");
    }
    assert!((0..2).all(|t| executions(&dir, t) == 1), "resumed in place, not started again");
}

#[test]
fn a_failing_trial_is_retried_and_never_stops_the_others() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    // `mse` is for regression: the trial passes `validate` (it depends on the data) and fails
    // when its data set loads.
    let parameters = json!({ "training.loss": { "values": ["cross_entropy", "mse"] } });
    let file = sweep_file(&sandbox, "failing", parameters, json!({ "kind": "local", "parallel": 1 }), 3);
    let err = sandbox.host(&["sweep", file.to_str().unwrap()]).one_line_error().to_string();
    let dir = sandbox.dir.path().join("sweeps/failing");
    assert_eq!(
        err,
        format!(
            "error: sweep {}: 1 of 2 trials did not complete; see their logs in {}",
            dir.display(),
            dir.join("logs").display()
        )
    );
    let results = read_json(&dir.join("sweep.json"));
    assert_eq!(results["trials"][0]["status"], "completed");
    let failed = &results["trials"][1];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failures"], 2, "tried once more (max_retries 1)");
    assert_eq!(
        failed["error"],
        format!(
            "{}: training.loss: mse needs a regression data set; this one is classification (use cross_entropy or auto)",
            dir.join("trials/trial-0001.json").display()
        )
    );
    assert_eq!(results["best"]["trial"], 0);
}

#[test]
fn every_trial_is_checked_before_any_starts() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let parameters = json!({ "training.optimizer.lr": { "values": [0.01, -1] } });
    let file = sweep_file(&sandbox, "invalid", parameters, json!({ "kind": "local" }), 3);
    let err = sandbox.host(&["sweep", file.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(
        err,
        format!(
            "error: {}: parameters.training.optimizer.lr: value -1 (values[1]) breaks a rule of the experiment: {}: training.optimizer.lr: -1 is not a positive learning rate",
            file.display(),
            sandbox.dir.path().join("wine.json").display()
        )
    );
    assert!(!sandbox.dir.path().join("sweeps/invalid/runs").exists(), "no trial started");

    let bad = sweep_file(&sandbox, "bad", json!({ "x": { "uniform": [0, 1] } }), json!({ "kind": "local" }), 3);
    let err = sandbox.host(&["sweep", bad.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: trials: random parameters need a number of trials", bad.display()));
}

#[test]
fn a_sweep_on_a_slurm_cluster_gives_the_local_results_trial_by_trial() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let local =
        sweep_file(&sandbox, "here", grid(), json!({ "kind": "local", "parallel": 2, "threads_per_trial": 1 }), 6);
    sandbox.host(&["sweep", local.to_str().unwrap()]).ok();

    let cluster = SlurmCluster::start();
    let executor = json!({ "kind": "slurm", "parallel": 4, "threads_per_trial": 1, "time_limit": "00:10:00" });
    let slurm = sweep_file(&sandbox, "cluster", grid(), executor, 6);
    let output =
        sandbox.command(&["sweep", slurm.to_str().unwrap()]).env("SLURM_CONF", &cluster.conf).output().unwrap();
    Run::of(output).ok();

    let here = read_json(&sandbox.dir.path().join("sweeps/here/sweep.json"));
    let there = read_json(&sandbox.dir.path().join("sweeps/cluster/sweep.json"));
    assert_eq!(metrics(&there), metrics(&here));
    assert_eq!(there["best"]["trial"], here["best"]["trial"]);
    let scripts: Vec<_> = fs::read_dir(sandbox.dir.path().join("sweeps/cluster/slurm")).unwrap().collect();
    assert!(!scripts.is_empty(), "the trials went through sbatch");
    for t in there["trials"].as_array().unwrap() {
        let record = read_json(&PathBuf::from(t["run_dir"].as_str().unwrap()).join("metrics.json"));
        assert_eq!(record["sweep"]["sweep"], "cluster");
    }
}

#[test]
fn successive_halving_stops_the_trials_that_fall_behind_and_finishes_the_best() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let parameters = json!({
        "training.optimizer.lr": { "values": [0.0003, 0.003, 0.03] },
        "model.config.hidden": { "values": [[2], [8], [32]] }
    });
    let executor = json!({ "kind": "local", "parallel": 2, "threads_per_trial": 1 });
    let file = sweep_file(&sandbox, "halving", parameters, executor, 9);
    // Compared at epochs 1 and 3 by the best validation loss so far; a third goes on each time.
    let mut sweep: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
    sweep["metric"] = json!({ "name": "val_loss", "direction": "min" });
    sweep["early_stopping"] = json!({ "min_epochs": 1, "reduction_factor": 3 });
    fs::write(&file, sweep.to_string()).unwrap();
    sandbox.host(&["sweep", file.to_str().unwrap()]).ok();

    let dir = sandbox.dir.path().join("sweeps/halving");
    let results = read_json(&dir.join("sweep.json"));
    let trials = results["trials"].as_array().unwrap();
    let with = |status: &str| trials.iter().filter(|t| t["status"] == status).collect::<Vec<_>>();
    assert_eq!((with("completed").len(), with("pruned").len()), (1, 8), "{results}");
    let mut stopped_at: Vec<u64> = with("pruned").iter().map(|t| t["epochs"].as_u64().unwrap()).collect();
    stopped_at.sort();
    assert_eq!(stopped_at, [1, 1, 1, 1, 1, 1, 3, 3]);
    assert_eq!(results["rungs_done"], json!([1, 3]));

    // At each rung the trials that went on were the best by the metric at that epoch.
    let best_val_loss = |t: &Value, epochs: usize| {
        let record = read_json(&PathBuf::from(t["run_dir"].as_str().unwrap()).join("metrics.json"));
        record["history"]["val_loss"].as_array().unwrap()[..epochs]
            .iter()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::INFINITY, f64::min)
    };
    let at_rung_1: Vec<f64> = with("pruned").iter().filter(|t| t["epochs"] == 1).map(|t| best_val_loss(t, 1)).collect();
    let went_on: Vec<&Value> = trials.iter().filter(|t| t["epochs"].as_u64().unwrap() >= 3).collect();
    assert_eq!(went_on.len(), 3);
    for t in &went_on {
        assert!(at_rung_1.iter().all(|&pruned| best_val_loss(t, 1) <= pruned), "{t}");
    }
    let winner = with("completed")[0];
    let record = read_json(&PathBuf::from(winner["run_dir"].as_str().unwrap()).join("metrics.json"));
    assert_eq!(record["epochs_completed"], 9);
    assert_eq!(record["resumed_at_epochs"], json!([1, 3]), "one run, paused at each rung and resumed");
    assert_eq!(results["best"]["trial"], winner["trial"]);

    // Run again: nothing left to do.
    sandbox.host(&["sweep", file.to_str().unwrap()]).ok();
    assert!((0..9).all(|t| executions(&dir, t) == 1));
}

/// A trial of two data-parallel processes on the local executor: each trial's run says it was
/// spread over two.
#[test]
fn a_local_trial_may_train_on_several_processes() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let executor = json!({ "kind": "local", "parallel": 1, "threads_per_trial": 2, "processes_per_trial": 2 });
    let parameters = json!({ "training.optimizer.lr": { "values": [0.001, 0.01] } });
    let file = sweep_file(&sandbox, "ddp", parameters, executor, 2);
    sandbox.host(&["sweep", file.to_str().unwrap()]).ok();
    let results = read_json(&sandbox.dir.path().join("sweeps/ddp/sweep.json"));
    for t in results["trials"].as_array().unwrap() {
        assert_eq!(t["status"], "completed", "{t}");
        let record = read_json(&PathBuf::from(t["run_dir"].as_str().unwrap()).join("metrics.json"));
        assert_eq!(record["distributed"]["world_size"], 2, "{record}");
        assert_eq!(record["distributed"]["launcher"]["kind"], "local");
    }
}
