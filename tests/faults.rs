//! Faults from outside the host's code: a plugin that takes the process down, a disk that
//! fills up while a checkpoint or the registry is written, and `kill -9` in the middle of an
//! install. Each must leave a record that says what happened and no corrupted state.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use gymnos_tests::{artifact_dir, builtin_count, builtin_libraries, data_dir, library, read_json, Run, Sandbox};
use serde_json::{json, Value};

fn wine(name: &str, model: Value, epochs: u32) -> Value {
    json!({
        "experiment": { "name": name, "seed": 3 },
        "dataset": {
            "plugin": "csv",
            "config": { "path": data_dir().join("sklearn/wine_data.csv"), "header": "sklearn" },
            "split": { "train": 0.6, "val": 0.2, "test": 0.2 }
        },
        "preprocessors": [{ "plugin": "standardize" }],
        "model": model,
        "training": { "epochs": epochs, "batch_size": 16, "optimizer": { "name": "adam", "lr": 0.01 }, "device": "cpu" }
    })
}

/// Runs `gymnos-host ARGS` in the sandbox with files limited to `limit_kib` KiB, as on a disk
/// that is full once a file grows past that size (writes fail with EFBIG; SIGXFSZ ignored).
fn host_with_file_limit(sandbox: &Sandbox, limit_kib: u64, args: &[&str]) -> Run {
    let host = artifact_dir().join("gymnos-host");
    let script = format!("trap '' XFSZ; ulimit -f {limit_kib}; exec \"$0\" \"$@\"");
    let output = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg(host)
        .arg("--registry")
        .arg(sandbox.registry())
        .args(args)
        .current_dir(sandbox.dir.path())
        .output()
        .unwrap();
    Run::of(output)
}

/// No temporary file of an atomic write is left anywhere under `dir`.
fn assert_no_temporaries(dir: &Path) {
    for entry in walk(dir) {
        let name = entry.file_name().unwrap().to_string_lossy().to_string();
        assert!(!name.starts_with(".tmp"), "a temporary file was left behind: {}", entry.display());
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_plugin_that_aborts_the_process_leaves_a_failed_record_and_a_resumable_checkpoint() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    sandbox.host(&["plugins", "install", library("gymnos-fixture-panicking").to_str().unwrap()]).ok();
    // 107 training samples in batches of 16: 6 training calls and 1 validation call per epoch,
    // so the 20th forward call is in the third epoch, after two checkpoints.
    let exp = wine("crash", json!({ "plugin": "crashing", "config": { "abort_at_call": 20 } }), 4);
    let path = sandbox.experiment("crash", &exp);
    let err = sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).one_line_error().to_string();
    let dir = sandbox.runs("crash")[0].clone();
    assert_eq!(
        err,
        format!(
            "error: run {}: the training process died of signal 6 (SIGABRT, an abort); the run is recorded as failed; \
             continue from its last checkpoint with `gymnos-host resume {}`",
            dir.display(),
            dir.display()
        )
    );
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!(metrics["status"], "failed");
    assert_eq!(metrics["error"], "the training process died of signal 6 (SIGABRT, an abort)");
    assert_eq!(metrics["epochs_completed"], 2);
    assert_no_temporaries(&dir);

    // The counter restarts with the process: the resumed run needs fewer than 20 calls.
    sandbox.host(&["resume", dir.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!((metrics["status"].as_str(), metrics["epochs_completed"].as_u64()), (Some("completed"), Some(4)));
    assert_eq!(metrics["resumed_at_epochs"], json!([2]));
}

#[test]
fn a_disk_that_fills_during_a_checkpoint_fails_the_run_in_one_line_and_leaves_no_partial_file() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    // The checkpoint (weights and Adam's two moments of a 13-512-3 MLP, about 80 KiB) does not
    // fit; the small files of the record do.
    let exp = wine("full", json!({ "plugin": "mlp", "config": { "hidden": [512] } }), 2);
    let path = sandbox.experiment("full", &exp);
    let err = host_with_file_limit(&sandbox, 48, &["run", path.to_str().unwrap(), "--no-progress"])
        .one_line_error()
        .to_string();
    let dir = sandbox.runs("full")[0].clone();
    let checkpoint = dir.join("checkpoints/last.safetensors");
    assert!(err.starts_with(&format!("error: run {}: ", dir.display())), "{err}");
    assert!(err.contains(&format!("{}: cannot write: File too large", checkpoint.display())), "{err}");
    assert!(!checkpoint.exists(), "no partial checkpoint");
    let metrics = read_json(&dir.join("metrics.json"));
    assert_eq!(metrics["status"], "failed");
    assert_no_temporaries(&dir);
}

#[test]
fn a_disk_that_fills_during_an_install_leaves_the_registry_and_the_store_as_they_were() {
    let sandbox = Sandbox::new();
    let registry = fs::read(sandbox.registry()).unwrap();
    let state = fs::read(sandbox.dir.path().join("plugin-store/state.json")).unwrap();
    // The libraries are about 1.6 MiB; the store copy cannot be written whole.
    let err = host_with_file_limit(&sandbox, 512, &["plugins", "install", library("gymnos-mlp").to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(fs::read(sandbox.registry()).unwrap(), registry);
    assert_eq!(fs::read(sandbox.dir.path().join("plugin-store/state.json")).unwrap(), state);
    assert_no_temporaries(sandbox.dir.path());
    let files: Vec<_> = fs::read_dir(sandbox.dir.path().join("plugin-store")).unwrap().collect();
    assert_eq!(files.len(), 1, "only state.json");
}

#[test]
fn kill_9_in_the_middle_of_an_install_leaves_a_registry_that_loads_and_verifies() {
    let folder = tempfile::tempdir().unwrap();
    for lib in builtin_libraries() {
        fs::copy(&lib, folder.path().join(lib.file_name().unwrap())).unwrap();
    }
    for delay_ms in [5, 20, 60, 150] {
        let sandbox = Sandbox::new();
        let mut child = sandbox
            .command(&["plugins", "install", folder.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the moment, the registry is either before or after the install, and every
        // library it records is whole.
        let listed: Vec<Value> = serde_json::from_str(sandbox.host(&["plugins", "list", "--json"]).ok()).unwrap();
        assert!(listed.is_empty() || listed.len() == builtin_count(), "{delay_ms} ms: {listed:?}");
        sandbox.host(&["plugins", "verify"]).ok();
        // And the install can simply be run again.
        sandbox.host(&["plugins", "install", folder.path().to_str().unwrap()]).ok();
        assert_eq!(
            serde_json::from_str::<Vec<Value>>(sandbox.host(&["plugins", "list", "--json"]).ok()).unwrap().len(),
            builtin_count()
        );
    }
}
