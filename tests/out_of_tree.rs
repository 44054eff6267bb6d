//! Plugins from outside this repository: crates made by `gymnos-host plugins new`, and a
//! plugin built against the plugin API as first released (the frozen copy in
//! `fixtures/frozen-api-1.0.0/`), each built by cargo as a separate crate, installed and run.
//!
//! The crates build into this workspace's target folder, so they reuse its compiled tch.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use gymnos_tests::{artifact_dir, read_json, Sandbox};
use serde_json::{json, Value};

/// `cargo <args>` on the crate in `dir`. The libtorch settings are the exact strings this
/// workspace was built with: torch-sys rebuilds (here and for the workspace) when they differ.
fn cargo(dir: &Path, args: &[&str]) {
    let target = artifact_dir().parent().expect("target/").to_path_buf();
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", &target)
        .env("LIBTORCH", env!("LIBTORCH"))
        .env("LIBTORCH_CXX11_ABI", env!("LIBTORCH_CXX11_ABI"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn built(lib: &str) -> PathBuf {
    artifact_dir().join(format!("lib{}.so", lib.replace('-', "_")))
}

#[test]
fn plugins_new_gives_crates_that_build_install_and_train_in_two_versions() {
    let sandbox = Sandbox::new();
    let kit = sandbox.dir.path().join("kit");
    let kinds = [
        ("dataset", "kit-blobs"),
        ("preprocessor", "kit-minmax"),
        ("data_augmentor", "kit-noise"),
        ("model", "kit-net"),
        ("tracker", "kit-csv"),
    ];
    for (kind, name) in kinds {
        let dir = kit.join(name);
        let out = sandbox.host(&["plugins", "new", "--kind", kind, name, "--path", dir.to_str().unwrap()]);
        assert!(out.ok().starts_with(&format!("created the {kind} plugin `{name}` in {}", dir.display())));
        for file in ["Cargo.toml", "Cargo.lock", "build.rs", ".cargo/config.toml", "README.md", "src/lib.rs"] {
            assert!(dir.join(file).is_file(), "{name}: {file}");
        }
        cargo(&dir, &["build", "--release", "--quiet"]);
        cargo(&dir, &["test", "--release", "--quiet"]);
        sandbox.host(&["plugins", "install", built(name).to_str().unwrap()]).ok();
    }
    // A data set read by index (API 1.2), from the same command with --streaming.
    let stream_dir = kit.join("kit-stream");
    let out = sandbox.host(&[
        "plugins",
        "new",
        "--kind",
        "dataset",
        "--streaming",
        "kit-stream",
        "--path",
        stream_dir.to_str().unwrap(),
    ]);
    assert!(out.ok().starts_with("created the dataset plugin `kit-stream`"));
    cargo(&stream_dir, &["build", "--release", "--quiet"]);
    cargo(&stream_dir, &["test", "--release", "--quiet"]);
    sandbox.host(&["plugins", "install", built("kit-stream").to_str().unwrap()]).ok();
    let err = sandbox
        .host(&["plugins", "new", "--kind", "model", "kit-net", "--path", kit.join("kit-net").to_str().unwrap()])
        .one_line_error()
        .to_string();
    assert_eq!(
        err,
        format!(
            "error: {}: already exists and is not empty; choose another name or --path",
            kit.join("kit-net").display()
        )
    );
    let err = sandbox.host(&["plugins", "new", "--kind", "model", "Bad_Name"]).one_line_error().to_string();
    assert_eq!(
        err,
        "error: `Bad_Name` is not a component name: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter"
    );

    let listed: Vec<Value> = serde_json::from_str(sandbox.host(&["plugins", "list", "--json"]).ok()).unwrap();
    let mut found: Vec<(String, String, bool)> = listed
        .iter()
        .map(|r| {
            (r["kind"].as_str().unwrap().into(), r["name"].as_str().unwrap().into(), r["loadable"].as_bool().unwrap())
        })
        .collect();
    found.sort();
    let mut expected: Vec<(String, String, bool)> =
        kinds.iter().map(|(k, n)| (k.to_string(), n.to_string(), true)).collect();
    expected.push(("dataset".into(), "kit-stream".into(), true));
    expected.sort();
    assert_eq!(found, expected);

    // An experiment made only of the generated plugins runs to the end.
    let experiment = |model: &str| {
        json!({
            "experiment": { "name": "kit", "seed": 2 },
            "dataset": { "plugin": "kit-blobs", "config": { "samples": 300 } },
            "preprocessors": [{ "plugin": "kit-minmax" }],
            "data_augmentors": [{ "plugin": "kit-noise", "config": { "std": 0.01 } }],
            "model": { "plugin": model, "config": { "hidden": 16 } },
            "training": { "epochs": 5, "batch_size": 16, "optimizer": { "name": "adam", "lr": 0.01 } },
            "tracking": { "trackers": [{ "plugin": "kit-csv" }] }
        })
    };
    let path = sandbox.experiment("kit", &experiment("kit-net@^0.1"));
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let run = &sandbox.runs("kit")[0];
    let metrics = read_json(&run.join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.9, "{}", metrics["test"]);
    let csv = fs::read_to_string(run.join("kit-csv.csv")).unwrap();
    assert!(csv.starts_with("step,scope,metric,value\n") && csv.contains(",test,accuracy,"), "{csv}");
    assert_eq!(metrics["data"]["mode"], "in_memory");

    // The same pipeline on the streaming data set: the preprocessor fits batch by batch, the
    // batches are read by index as training goes.
    let mut streamed = experiment("kit-net@^0.1");
    streamed["dataset"]["plugin"] = json!("kit-stream");
    let path = sandbox.experiment("kit-stream", &streamed);
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&sandbox.runs("kit").pop().unwrap().join("metrics.json"));
    assert_eq!((metrics["status"].as_str(), metrics["data"]["mode"].as_str()), (Some("completed"), Some("indexed")));
    assert_eq!(
        metrics["data"]["train_samples"].as_u64().unwrap()
            + metrics["data"]["val_samples"].as_u64().unwrap()
            + metrics["data"]["test_samples"].as_u64().unwrap(),
        300
    );
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.9, "{}", metrics["test"]);

    // Version 0.2.0 is released beside 0.1.0; an experiment pins either.
    let manifest = kit.join("kit-net/Cargo.toml");
    fs::write(
        &manifest,
        fs::read_to_string(&manifest).unwrap().replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
    )
    .unwrap();
    cargo(&kit.join("kit-net"), &["build", "--release", "--quiet"]);
    sandbox.host(&["plugins", "install", built("kit-net").to_str().unwrap()]).ok();
    let info: Value = serde_json::from_str(sandbox.host(&["plugins", "info", "kit-net", "--json"]).ok()).unwrap();
    assert_eq!(info["plugin"]["version"], "0.2.0");
    assert_eq!(info["other_versions"], json!(["0.1.0"]));
    let mut hashes = Vec::new();
    for version in ["0.1.0", "0.2.0"] {
        let path = sandbox.experiment("kit", &experiment(&format!("kit-net@={version}")));
        sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
        let run = sandbox.runs("kit").pop().unwrap();
        let config = read_json(&run.join("training_config.json"));
        assert_eq!(config["model"]["plugin"], format!("kit-net@={version}"));
        assert_eq!(read_json(&run.join("metrics.json"))["status"], "completed");
        hashes.push(config["model"]["resolved"]["sha256"].as_str().unwrap().to_string());
    }
    assert_ne!(hashes[0], hashes[1], "each version ran from its own library");

    // The team ships its plugins: signed packages (with each crate's README) in a channel, and
    // another registry, which requires signatures from that team, installs them by requirement
    // and trains.
    let keys = sandbox.dir.path().join("keys");
    sandbox.host(&["plugins", "keygen", "--name", "kit", "--dir", keys.to_str().unwrap()]).ok();
    let channel = sandbox.dir.path().join("channel");
    for (_, name) in kinds {
        let packed: Value = serde_json::from_str(
            sandbox
                .host(&[
                    "plugins",
                    "pack",
                    built(name).to_str().unwrap(),
                    "--crate",
                    kit.join(name).to_str().unwrap(),
                    "--sign",
                    keys.join("kit.key").to_str().unwrap(),
                    "-o",
                    sandbox.dir.path().join("packages").to_str().unwrap(),
                    "--json",
                ])
                .ok(),
        )
        .unwrap();
        assert_eq!(packed["manifest"]["documents"], json!(["README.md"]), "{name}");
        let package = packed["package"].as_str().unwrap();
        sandbox.host(&["plugins", "publish", package, "--channel", channel.to_str().unwrap()]).ok();
    }
    let other = Sandbox::new();
    other.host(&["plugins", "trust", "add", keys.join("kit.pub").to_str().unwrap()]).ok();
    other.host(&["plugins", "trust", "require", "on"]).ok();
    other.host(&["plugins", "channel", "add", channel.to_str().unwrap()]).ok();
    for (_, name) in kinds {
        let requirement = if name == "kit-net" { "^0.2" } else { "^0.1" };
        other.host(&["plugins", "install", &format!("{name}@{requirement}")]).ok();
    }
    let listed: Vec<Value> = serde_json::from_str(other.host(&["plugins", "list", "--json"]).ok()).unwrap();
    assert_eq!(listed.len(), kinds.len());
    assert!(listed.iter().all(|r| r["signed_by"].is_string() && r["loadable"] == true), "{listed:?}");
    assert_eq!(listed.iter().find(|r| r["name"] == "kit-net").unwrap()["version"], "0.2.0");
    let path = other.experiment("kit", &experiment("kit-net@^0.2"));
    other.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    assert_eq!(read_json(&other.runs("kit")[0].join("metrics.json"))["status"], "completed");
}

/// The compatibility promise: a plugin built against the plugin API as first released (1.0.0)
/// still loads and runs in this host. The fixture's API and SDK sources are frozen copies.
#[test]
fn a_plugin_built_against_the_first_released_api_still_loads_and_runs() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/frozen-api-1.0.0/plugin");
    cargo(&fixture, &["build", "--release", "--quiet"]);
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    sandbox.host(&["plugins", "install", built("gymnos-frozen-linear").to_str().unwrap()]).ok();
    let listed: Vec<Value> =
        serde_json::from_str(sandbox.host(&["plugins", "list", "--kind", "model", "--json"]).ok()).unwrap();
    let frozen = listed.iter().find(|r| r["name"] == "frozen-linear").expect("installed");
    assert_eq!((frozen["api_version"].as_str(), frozen["loadable"].as_bool()), (Some("1.0.0"), Some(true)));

    let exp = json!({
        "experiment": { "name": "frozen", "seed": 4 },
        "dataset": {
            "plugin": "csv",
            "config": { "path": gymnos_tests::data_dir().join("sklearn/iris.csv"), "header": "sklearn" },
            "split": { "train": 0.6, "val": 0.2, "test": 0.2 }
        },
        "preprocessors": [{ "plugin": "standardize", "config": { "per_feature": true } }],
        "model": { "plugin": "frozen-linear@^1" },
        "training": { "epochs": 30, "batch_size": 16, "optimizer": { "name": "adam", "lr": 0.05 } }
    });
    let path = sandbox.experiment("frozen", &exp);
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&sandbox.runs("frozen")[0].join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.8, "{}", metrics["test"]);

    // The 1.0 library has no streaming symbol (API 1.2): the host falls back to its 1.0 form,
    // and the frozen model trains on a data set that streams.
    let library = gymnos_host::library::LoadedLibrary::open(
        &built("gymnos-frozen-linear"),
        None,
        &gymnos_host::compat::HostCompat::default(),
    )
    .unwrap();
    let context = gymnos_plugin_api::CreateContext {
        device: gymnos_plugin_api::DeviceSpec::Cpu,
        seed: 0,
        input_shape: vec![4].into(),
        num_outputs: 3,
        task: gymnos_plugin_api::Task::Classification,
        output_dir: "".into(),
        base_dir: "".into(),
    };
    assert!(library.create_streaming("frozen-linear", "{}", &context).unwrap().is_none());
    let mut streamed = exp.clone();
    streamed["experiment"]["name"] = json!("frozen-stream");
    streamed["dataset"]["config"]["streaming"] = json!(true);
    let path = sandbox.experiment("frozen-stream", &streamed);
    sandbox.host(&["run", path.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&sandbox.runs("frozen-stream")[0].join("metrics.json"));
    assert_eq!((metrics["status"].as_str(), metrics["data"]["mode"].as_str()), (Some("completed"), Some("indexed")));
    assert!(metrics["test"]["accuracy"].as_f64().unwrap() > 0.8, "{}", metrics["test"]);
}
