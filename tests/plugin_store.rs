//! The plugin store is always what the registry says: an install reads the manifest from the
//! bytes it copies, a registry without its store is repaired, a library changed in place is
//! caught by `plugins verify`, `plugins init` starts a private registry, and every command
//! ends quietly when its reader has gone.

use std::fs;

use gymnos_tests::{builtin_count, builtin_library_count, library, Sandbox};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn list_json(sandbox: &Sandbox) -> Vec<Value> {
    serde_json::from_str(sandbox.host(&["plugins", "list", "--json"]).ok()).expect("list --json is JSON")
}

fn sha256_of(path: &std::path::Path) -> String {
    Sha256::digest(fs::read(path).unwrap()).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_bare_file_name_installs_that_file_not_a_library_of_the_same_name_on_the_library_path() {
    let sandbox = Sandbox::new();
    // `libshadow.so` here is the mlp plugin; the dynamic loader's search path holds a
    // `libshadow.so` that is the cnn plugin.
    let elsewhere = sandbox.dir.path().join("system-libs");
    fs::create_dir(&elsewhere).unwrap();
    fs::copy(library("gymnos-cnn"), elsewhere.join("libshadow.so")).unwrap();
    let here = sandbox.dir.path().join("libshadow.so");
    fs::copy(library("gymnos-mlp"), &here).unwrap();

    let output = sandbox.command(&["plugins", "install", "libshadow.so"]).env("LD_LIBRARY_PATH", &elsewhere).output();
    let out = gymnos_tests::Run::of(output.unwrap());
    assert_eq!(out.ok(), format!("installed model mlp@1.1.0 from {}\n", here.display()));
    let rows = list_json(&sandbox);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "mlp");
    assert_eq!(rows[0]["sha256"], sha256_of(&here), "the manifest and the hash come from the same bytes");
}

#[test]
fn a_registry_copied_without_its_store_is_repaired_by_install_and_kept_by_scan() {
    let original = Sandbox::new();
    original.install_builtins();
    let copy = Sandbox::without_registry();
    fs::copy(original.registry(), copy.registry()).unwrap();
    let declared = fs::read(copy.registry()).unwrap();

    let rows = list_json(&copy);
    assert_eq!(rows.len(), builtin_count());
    for row in &rows {
        assert_eq!(row["loadable"], false, "{row}");
        assert_eq!(
            row["status"], "not installed on this machine: install its library (`gymnos-host plugins install LIB`)",
            "{row}"
        );
    }
    // scan finds nothing to register here, and drops nothing it could repair.
    let scan: Value = serde_json::from_str(copy.host(&["plugins", "scan", "--json"]).ok()).unwrap();
    assert_eq!(scan["not_installed_here"].as_array().unwrap().len(), builtin_count(), "{scan}");
    assert_eq!(fs::read(copy.registry()).unwrap(), declared);

    // Installing the libraries the registry declares fulfils the declaration: no conflict,
    // no --replace, and the declaration (the tracked file) is unchanged.
    copy.install_builtins();
    assert!(list_json(&copy).iter().all(|r| r["loadable"] == true));
    assert_eq!(fs::read(copy.registry()).unwrap(), declared);

    // A store file deleted later: `list` says how to repair it, and install restores it.
    let mlp = list_json(&copy).into_iter().find(|r| r["name"] == "mlp").unwrap();
    let stored = std::path::PathBuf::from(mlp["library"].as_str().unwrap());
    fs::remove_file(&stored).unwrap();
    let row = list_json(&copy).into_iter().find(|r| r["name"] == "mlp").unwrap();
    assert_eq!(row["status"], "missing: the library file is gone; install the library again to restore it");
    // `plugins info` still shows what the registry recorded, and why it cannot be loaded now.
    let info = copy.host(&["plugins", "info", "mlp"]).ok().to_string();
    assert!(info.starts_with("mlp 1.1.0 (model)\n"), "{info}");
    assert!(info.contains(&format!("  library:   {} (gymnos-mlp 1.1.0)", stored.display())), "{info}");
    assert!(
        info.contains("  status:    missing: the library file is gone; install the library again to restore it"),
        "{info}"
    );
    assert!(info.contains("hidden      integer[]"), "the recorded configuration keys: {info}");
    let out = copy.host(&["plugins", "install", library("gymnos-mlp").to_str().unwrap()]);
    assert!(out.ok().starts_with("restored model mlp@1.1.0 from "), "{}", out.stdout);
    assert_eq!(sha256_of(&stored), mlp["sha256"].as_str().unwrap());
    assert!(list_json(&copy).iter().all(|r| r["loadable"] == true));
}

#[test]
fn a_library_changed_in_place_with_its_time_kept_is_caught_by_verify() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let clean: Vec<Value> = serde_json::from_str(sandbox.host(&["plugins", "verify", "--json"]).ok()).unwrap();
    assert_eq!(clean.len(), builtin_library_count());
    assert!(clean.iter().all(|r| r["status"] == "ok"), "{clean:?}");
    let listed = sandbox.host(&["plugins", "list", "--kind", "model"]).ok().to_string();
    assert!(!listed.contains("never"), "list says when each entry was last verified: {listed}");

    // Same size, same modification time, one byte different.
    let mlp = list_json(&sandbox).into_iter().find(|r| r["name"] == "mlp").unwrap();
    let stored = std::path::PathBuf::from(mlp["library"].as_str().unwrap());
    let modified = fs::metadata(&stored).unwrap().modified().unwrap();
    let mut bytes = fs::read(&stored).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&stored, &bytes).unwrap();
    fs::File::options().write(true).open(&stored).unwrap().set_modified(modified).unwrap();
    assert_eq!(list_json(&sandbox).into_iter().find(|r| r["name"] == "mlp").unwrap()["loadable"], true);

    let out = sandbox.host(&["plugins", "verify", "--json"]);
    assert_ne!(out.code, 0, "verify fails when an entry does not match");
    let report: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
    let bad: Vec<&Value> = report.iter().filter(|r| r["status"] != "ok").collect();
    assert_eq!(bad.len(), 1, "{report:?}");
    assert_eq!(bad[0]["status"], "modified");
    assert_eq!(bad[0]["library"], stored.to_str().unwrap());
    assert!(bad[0]["detail"].as_str().unwrap().starts_with("sha256 is "), "{report:?}");
    let err = sandbox.host(&["plugins", "verify"]).one_line_error().to_string();
    let expected = format!(
        "error: 1 of {} libraries do not match the registry; install them again to restore them",
        builtin_library_count()
    );
    assert_eq!(err, expected);
}

#[test]
fn plugins_init_gives_a_working_private_registry_and_a_missing_one_is_named() {
    let sandbox = Sandbox::without_registry();
    let err = sandbox.host(&["plugins", "list"]).one_line_error().to_string();
    assert_eq!(
        err,
        format!(
            "error: {}: no registry there; create one with `gymnos-host plugins init {}`",
            sandbox.registry().display(),
            sandbox.dir.path().display()
        )
    );

    let private = sandbox.dir.path().join("team");
    let out = sandbox.host(&["plugins", "init", private.to_str().unwrap()]);
    assert!(out.ok().starts_with(&format!("created the registry {}", private.join("registry.json").display())));
    let registry = private.join("registry.json");
    let list = gymnos_tests::Run::of(
        std::process::Command::new(gymnos_tests::artifact_dir().join("gymnos-host"))
            .args(["plugins", "list", "--json"])
            .env("GYMNOS_REGISTRY", &registry)
            .output()
            .unwrap(),
    );
    let rows: Vec<Value> = serde_json::from_str(list.ok()).unwrap();
    assert_eq!(rows.len(), builtin_count());
    assert!(rows
        .iter()
        .all(|r| r["loadable"] == true && r["library"].as_str().unwrap().starts_with(private.to_str().unwrap())));
    // A second init does not overwrite it.
    let err = sandbox.host(&["plugins", "init", private.to_str().unwrap()]).one_line_error().to_string();
    assert!(err.contains("already"), "{err}");
}

#[test]
fn commands_writing_to_a_closed_pipe_end_quietly_and_successfully() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    for args in [
        &["plugins", "list"][..],
        &["plugins", "list", "--json"],
        &["plugins", "info", "mlp"],
        &["plugins", "verify"],
        &["schema"],
    ] {
        let out = sandbox.host_into_closed_pipe(args);
        assert_eq!((out.code, out.stderr.as_str()), (0, ""), "{args:?}");
    }
}
