//! The `gymnos-host plugins` commands, run as a user would run them.

use std::fs;

use gymnos_tests::{builtin_count, builtin_libraries, builtin_library_count, builtin_names, library, Sandbox};
use serde_json::Value;

fn list_json(sandbox: &Sandbox) -> Vec<Value> {
    let out = sandbox.host(&["plugins", "list", "--json"]);
    serde_json::from_str::<Vec<Value>>(out.ok()).expect("list --json is a JSON array")
}

#[test]
fn installed_builtins_list_every_kind_as_loadable_with_versions() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let rows = list_json(&sandbox);
    let mut summary: Vec<(String, String, String, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["name"].as_str().unwrap().to_string(),
                r["version"].as_str().unwrap().to_string(),
                r["loadable"].as_bool().unwrap(),
            )
        })
        .collect();
    summary.sort();
    let expect = |k: &str, n: &str, v: &str| (k.to_string(), n.to_string(), v.to_string(), true);
    assert_eq!(
        summary,
        vec![
            expect("data_augmentor", "color-jitter", "1.0.0"),
            expect("data_augmentor", "cutmix", "1.0.0"),
            expect("data_augmentor", "gaussian-noise", "1.0.0"),
            expect("data_augmentor", "mixup", "1.0.0"),
            expect("data_augmentor", "random-crop", "1.0.0"),
            expect("data_augmentor", "random-erasing", "1.0.0"),
            expect("data_augmentor", "random-flip", "1.0.0"),
            expect("data_augmentor", "random-rotation", "1.0.0"),
            expect("dataset", "csv", "1.1.0"),
            expect("dataset", "idx", "1.0.0"),
            expect("dataset", "image-folder", "1.1.0"),
            expect("dataset", "synthetic", "1.0.0"),
            expect("model", "cnn", "1.2.0"),
            expect("model", "linear", "1.0.0"),
            expect("model", "mlp", "1.1.0"),
            expect("model", "resnet", "1.1.0"),
            expect("model", "sequential", "1.1.0"),
            expect("preprocessor", "flatten", "1.0.0"),
            expect("preprocessor", "grayscale", "1.0.0"),
            expect("preprocessor", "label-encode", "1.0.0"),
            expect("preprocessor", "min-max", "1.0.0"),
            expect("preprocessor", "normalize", "1.0.0"),
            expect("preprocessor", "one-hot", "1.0.0"),
            expect("preprocessor", "resize", "1.0.0"),
            expect("preprocessor", "standardize", "1.1.0"),
            expect("tracker", "csv", "1.1.0"),
            expect("tracker", "jsonl", "1.0.0"),
            expect("tracker", "mlflow", "1.0.0"),
            expect("tracker", "tensorboard", "1.0.0"),
        ]
    );
    for row in &rows {
        assert_eq!(row["status"], "loadable");
        assert_eq!(row["api_version"], gymnos_plugin_api::API_VERSION.to_string());
        assert_eq!(row["sha256"].as_str().unwrap().len(), 64);
        assert!(row["library"].as_str().unwrap().contains("/plugin-store/"), "{row}");
    }

    // --kind filters; the table has a header and one line per plugin.
    let models = sandbox.host(&["plugins", "list", "--kind", "model"]);
    let lines: Vec<&str> = models.ok().lines().collect();
    let names: Vec<&str> = lines.iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["NAME", "cnn", "linear", "mlp", "resnet", "sequential"], "{lines:?}");
    assert!(lines[1..].iter().all(|l| l.ends_with("loadable")), "{lines:?}");

    // Installing the same files again changes nothing.
    let before = sandbox.registry_bytes();
    sandbox.install_builtins();
    assert_eq!(sandbox.registry_bytes(), before);
}

#[test]
fn info_shows_configuration_keys_with_defaults() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let text = sandbox.host(&["plugins", "info", "mlp"]).ok().to_string();
    assert!(text.starts_with("mlp 1.1.0 (model)\n"), "{text}");
    assert!(
        text.contains(&format!("built for: plugin API {}, libtorch 2.11", gymnos_plugin_api::API_VERSION)),
        "{text}"
    );
    assert!(text.contains("verified:  never (`gymnos-host plugins verify`)"), "{text}");
    let keys: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("KEY")).skip(1).collect();
    assert_eq!(keys.len(), 3, "{text}");
    assert!(keys[0].starts_with("hidden") && keys[0].contains("integer[]") && keys[0].contains("[256,128]"), "{text}");

    let json: Value = serde_json::from_str(sandbox.host(&["plugins", "info", "idx@^1", "--json"]).ok()).unwrap();
    assert_eq!(json["plugin"]["name"], "idx");
    let path_key = json["config"].as_array().unwrap().iter().find(|k| k["name"] == "path").unwrap();
    assert_eq!(path_key["type"], "path");
    assert!(path_key.get("default").is_none(), "a required key has no default: {path_key}");
}

#[test]
fn user_errors_are_one_line_and_leave_the_registry_untouched() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let before = sandbox.registry_bytes();

    let err = sandbox.host(&["plugins", "info", "nosuch"]).one_line_error().to_string();
    let mut names = builtin_names();
    names.dedup(); // `csv` is a data set and a tracker
    assert_eq!(err, format!("error: no plugin named `nosuch` is installed (installed plugins: {})", names.join(", ")));
    let err = sandbox.host(&["plugins", "info", "mlp@^2"]).one_line_error().to_string();
    assert_eq!(err, "error: no installed version of plugin `mlp` matches `^2` (installed: 1.1.0)");
    let err = sandbox.host(&["plugins", "info", "mlp@two"]).one_line_error().to_string();
    assert!(err.starts_with("error: `mlp@two` is not a plugin reference: "), "{err}");
    let err = sandbox.host(&["plugins", "remove", "mlp@9.9.9"]).one_line_error().to_string();
    assert_eq!(err, "error: `mlp@9.9.9` is not installed (installed versions of `mlp`: 1.1.0)");
    let err = sandbox.host(&["plugins", "remove", "mlp"]).one_line_error().to_string();
    assert_eq!(err, "error: `mlp`: give the exact version to remove, as NAME@VERSION");
    let missing = sandbox.dir.path().join("nothing-here.so");
    let err = sandbox.host(&["plugins", "install", missing.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: No such file or directory (os error 2)", missing.display()));
    let err = sandbox
        .host(&["plugins", "install", library("gymnos-fixture-future-api").to_str().unwrap()])
        .one_line_error()
        .to_string();
    let api = gymnos_plugin_api::API_VERSION;
    let newer = format!("{}.{}.0", api.major, api.minor + 1);
    let fixture = library("gymnos-fixture-future-api");
    assert!(err.starts_with(&format!("error: {} (gymnos-fixture-future-api): ", fixture.display())), "{err}");
    assert!(err.contains(&format!("built against plugin API {newer}, but this host (plugin API {api})")), "{err}");
    assert_eq!(sandbox.registry_bytes(), before);

    // A malformed registry is named, with the position of the problem.
    fs::write(sandbox.registry(), "{ \"format\": 1, \"libraries\": [ }").unwrap();
    let err = sandbox.host(&["plugins", "list"]).one_line_error().to_string();
    assert!(err.starts_with(&format!("error: {}: the registry is not valid: ", sandbox.registry().display())), "{err}");
    assert!(err.contains("line 1 column"), "{err}");
}

#[test]
fn install_conflicts_replace_remove_and_scan() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();

    // A different build of mlp 1.1.0 (here: the same library with bytes appended) conflicts.
    let rebuilt = sandbox.dir.path().join("libgymnos_mlp.so");
    let mut bytes = fs::read(library("gymnos-mlp")).unwrap();
    bytes.extend_from_slice(b"another build");
    fs::write(&rebuilt, bytes).unwrap();
    let err = sandbox.host(&["plugins", "install", rebuilt.to_str().unwrap()]).one_line_error().to_string();
    assert!(err.contains("model `mlp@1.1.0` is already installed from another build"), "{err}");
    assert!(err.ends_with("pass --replace to replace it, or give the new build another version"), "{err}");

    // --replace swaps it in and deletes the old copy from the store.
    let store = sandbox.dir.path().join("plugin-store");
    let count = || {
        let files = fs::read_dir(&store).unwrap().map(|e| e.unwrap().path());
        files.filter(|p| p.extension().is_some_and(|e| e == "so")).count()
    };
    assert_eq!(count(), builtin_library_count());
    sandbox.host(&["plugins", "install", "--replace", rebuilt.to_str().unwrap()]).ok();
    assert_eq!(count(), builtin_library_count());
    let mlp: Vec<Value> = list_json(&sandbox).into_iter().filter(|r| r["name"] == "mlp").collect();
    assert_eq!(mlp.len(), 1);
    assert!(mlp[0]["library"].as_str().unwrap().contains("libgymnos_mlp-"), "{}", mlp[0]);

    // remove deletes the record and the stored file.
    assert_eq!(sandbox.host(&["plugins", "remove", "mlp@1.1.0"]).ok(), "removed model mlp@1.1.0\n");
    assert_eq!(count(), builtin_library_count() - 1);
    assert!(list_json(&sandbox).iter().all(|r| r["name"] != "mlp"));

    // scan rebuilds this machine's records from the store.
    fs::remove_file(store.join("state.json")).unwrap();
    let report: Value = serde_json::from_str(sandbox.host(&["plugins", "scan", "--json"]).ok()).unwrap();
    assert_eq!(report["libraries"], builtin_library_count() - 1);
    assert_eq!(report["components"], builtin_count() - 1);
    let mut names: Vec<String> = list_json(&sandbox).iter().map(|r| r["name"].as_str().unwrap().to_string()).collect();
    names.sort();
    let mut expected = builtin_names();
    expected.retain(|n| n != "mlp");
    assert_eq!(names, expected);
}

#[test]
fn installing_a_folder_skips_non_plugins_and_finds_every_plugin() {
    let sandbox = Sandbox::new();
    let folder = sandbox.dir.path().join("drop");
    fs::create_dir(&folder).unwrap();
    for lib in builtin_libraries().iter().chain([library("gymnos-fixture-not-a-plugin")].iter()) {
        fs::copy(lib, folder.join(lib.file_name().unwrap())).unwrap();
    }
    let out: Value =
        serde_json::from_str(sandbox.host(&["plugins", "install", "--json", folder.to_str().unwrap()]).ok()).unwrap();
    assert_eq!(out["installed"].as_array().unwrap().len(), builtin_library_count());
    assert!(out["installed"].as_array().unwrap().iter().all(|o| o["status"] == "installed"), "{out}");
    // Every library that is no plugin is reported, not only the first.
    let not_plugin = folder.join(library("gymnos-fixture-not-a-plugin").file_name().unwrap());
    assert_eq!(out["skipped"], serde_json::json!([not_plugin]));
    assert_eq!(list_json(&sandbox).len(), builtin_count());

    let empty = sandbox.dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let err = sandbox.host(&["plugins", "install", empty.to_str().unwrap()]).one_line_error().to_string();
    assert_eq!(err, format!("error: {}: no gymnos plugin library found there", empty.display()));
}
