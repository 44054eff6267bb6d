//! Loading real plugin libraries in-process: compatibility refusals, broken files, panics, and
//! version resolution.

use std::{fs, path::PathBuf};

use gymnos_host::{
    plugin_ref::find_installed, registry::Registry, HostCompat, LoadError, ManagerError, PluginManager, PluginRef,
};
use gymnos_plugin_api::{
    abi_stable::std_types::{RStr, RVec},
    Component, CreateContext, DeviceSpec, ErrorKind, Task, API_VERSION,
};
use gymnos_plugin_sdk::{from_handle, tch::Tensor, to_handle};
use gymnos_tests::{library, Sandbox};

fn manager(sandbox: &Sandbox) -> PluginManager {
    PluginManager::open(&sandbox.registry()).expect("open registry")
}

fn context() -> CreateContext<'static> {
    CreateContext {
        device: DeviceSpec::Cpu,
        seed: 0,
        input_shape: RVec::from(vec![4]),
        num_outputs: 3,
        task: Task::Classification,
        output_dir: RStr::from_str(""),
        base_dir: RStr::from_str(""),
    }
}

#[test]
fn plugin_built_against_a_newer_api_is_refused_naming_both_versions() {
    let sandbox = Sandbox::new();
    let before = sandbox.registry_bytes();
    let mut manager = manager(&sandbox);
    let path = library("gymnos-fixture-future-api");
    let err = manager.install(std::slice::from_ref(&path), false).unwrap_err();
    let newer = format!("{}.{}.0", API_VERSION.major, API_VERSION.minor + 1);
    assert_eq!(
        err.to_string(),
        format!(
            "{} (gymnos-fixture-future-api): built against plugin API {newer}, but this host (plugin API {API_VERSION}) \
             loads plugins built against API {}.0 to {}.{}.x",
            path.display(),
            API_VERSION.major,
            API_VERSION.major,
            API_VERSION.minor
        )
    );
    assert!(matches!(err, ManagerError::Load(LoadError::Incompatible { .. })));
    assert_eq!(sandbox.registry_bytes(), before, "a refused install must not write the registry");
    let store = sandbox.dir.path().join("plugin-store");
    let files: Vec<_> = fs::read_dir(&store).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files, ["state.json"], "a refused install leaves nothing in the store");
}

#[test]
fn a_host_of_another_major_refuses_todays_plugins() {
    let other_host =
        HostCompat { api: gymnos_plugin_api::ApiVersion::new(API_VERSION.major + 1, 0, 0), ..HostCompat::default() };
    let manager = PluginManager::new(Registry::empty(&PathBuf::from("unused.json")), other_host);
    let err = manager.load(&library("gymnos-mlp")).unwrap_err().to_string();
    assert!(
        err.contains(&format!(
            "built against plugin API {API_VERSION}, but this host (plugin API {}.0.0)",
            API_VERSION.major + 1
        )),
        "{err}"
    );
}

#[test]
fn non_plugin_truncated_and_modified_libraries_are_clear_errors_and_leave_the_registry_untouched() {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    let before = sandbox.registry_bytes().expect("registry written");
    let mut manager = manager(&sandbox);

    // A shared library that is not a plugin.
    let not_plugin = library("gymnos-fixture-not-a-plugin");
    let err = manager.install(std::slice::from_ref(&not_plugin), false).unwrap_err().to_string();
    assert_eq!(err, format!("{}: not a gymnos plugin (it exports no `gymnos_plugin_manifest`)", not_plugin.display()));

    // A truncated copy of a real plugin.
    let truncated = sandbox.dir.path().join("libtruncated.so");
    let bytes = fs::read(library("gymnos-mlp")).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let err = manager.install(std::slice::from_ref(&truncated), false).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: cannot open library: ", truncated.display())), "{err}");

    // Garbage with a library's name.
    let garbage = sandbox.dir.path().join("libgarbage.so");
    fs::write(&garbage, b"not an ELF file at all").unwrap();
    let err = manager.install(std::slice::from_ref(&garbage), false).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: cannot open library: ", garbage.display())), "{err}");

    assert_eq!(sandbox.registry_bytes().unwrap(), before, "failed installs must not touch the registry");

    // An installed library modified afterwards is refused at load, before any of its code runs.
    let registry = Registry::load(&sandbox.registry()).unwrap();
    let record = registry.libraries().iter().find(|l| l.package == "gymnos-mlp").unwrap().clone();
    let stored = registry.resolve(&record.path);
    let mut tampered = fs::read(&stored).unwrap();
    tampered.extend_from_slice(b"tampered");
    fs::write(&stored, tampered).unwrap();
    let fresh = PluginManager::open(&sandbox.registry()).unwrap();
    match fresh.load_installed(&record).unwrap_err() {
        LoadError::HashMismatch { path, expected, actual } => {
            assert_eq!(path, stored);
            assert_eq!(expected, record.sha256);
            assert_ne!(actual, record.sha256);
        }
        other => panic!("expected a hash mismatch, got {other}"),
    }
    // The cheap status used by `plugins list` sees it too, and resolution refuses it.
    let status = record.status(&fresh.registry, &fresh.compat).to_string();
    assert_eq!(
        status,
        "modified since install: `gymnos-host plugins verify` checks it; install the library again to restore it"
    );
    let err = find_installed(&fresh.registry, &fresh.compat, None, &"mlp".parse().unwrap()).unwrap_err().to_string();
    assert_eq!(err, "plugin `mlp@1.1.0` matches `*` but is not loadable: modified since install: `gymnos-host plugins verify` checks it; install the library again to restore it");
    assert_eq!(sandbox.registry_bytes().unwrap(), before);
}

/// The line of the fixture's `panic!("boom in create")`.
fn panic_line() -> usize {
    let source = include_str!("fixtures/panicking-plugin/src/lib.rs");
    source.lines().position(|l| l.contains("panic!(\"boom in create\")")).expect("the fixture panics") + 1
}

#[test]
fn a_panicking_plugin_returns_an_error_and_the_host_keeps_running() {
    let manager = PluginManager::new(Registry::empty(&PathBuf::from("unused.json")), HostCompat::default());
    let path = library("gymnos-fixture-panicking");
    let lib = manager.load(&path).unwrap();

    let err = lib.create("panicky", r#"{"panic_in": "create"}"#, &context()).err().expect("create must fail");
    assert_eq!(err.error.kind, ErrorKind::Panic);
    assert!(
        err.to_string().starts_with(&format!("plugin `panicky` ({}) failed in create: panicked: at ", path.display())),
        "{err}"
    );
    let message = err.to_string();
    let location = message.rsplit_once(": boom in create").map(|(head, _)| head).unwrap_or_else(|| panic!("{message}"));
    assert!(location.ends_with(&format!("tests/fixtures/panicking-plugin/src/lib.rs:{}", panic_line())), "{message}");

    // An unknown key is refused by the SDK's validation before the component's code runs.
    let err = lib.create("panicky", r#"{"colour": "red"}"#, &context()).err().unwrap();
    assert_eq!(err.error.kind, ErrorKind::Config);
    assert_eq!(err.error.message.as_str(), "colour: unknown key (accepted keys: panic_in)");

    // A libtorch error inside forward (a Rust panic in tch) comes back as an error too.
    let Ok(Component::Model(mut model)) = lib.create("panicky", r#"{"panic_in": "forward"}"#, &context()) else {
        panic!("expected a model");
    };
    let err =
        model.forward(to_handle(Tensor::ones([2, 4], gymnos_plugin_sdk::tch::kind::FLOAT_CPU)), false).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Panic);
    assert!(err.message.contains("mat1 and mat2 shapes cannot be multiplied"), "{}", err.message);

    // ... and the same library keeps working afterwards.
    let Ok(Component::Model(mut model)) = lib.create("panicky", "{}", &context()) else { panic!("expected a model") };
    let out = from_handle(model.forward(to_handle(Tensor::from_slice(&[1.0f32, 2.0, 3.0])), false).unwrap());
    assert_eq!(Vec::<f32>::try_from(&out).unwrap(), vec![2.0, 4.0, 6.0]);
}

#[test]
fn two_installed_versions_resolve_as_semver_says() {
    let sandbox = Sandbox::new();
    let mut manager = manager(&sandbox);
    manager.install(&[library("gymnos-fixture-versioned-v1"), library("gymnos-fixture-versioned-v2")], false).unwrap();
    let pick = |req: &str| {
        let reference: PluginRef = req.parse().unwrap();
        find_installed(&manager.registry, &manager.compat, Some(gymnos_plugin_api::ComponentKind::Tracker), &reference)
            .map(|(_, c)| c.version.to_string())
    };
    assert_eq!(pick("versioned@^1").unwrap(), "1.2.0");
    assert_eq!(pick("versioned@2").unwrap(), "2.0.0");
    assert_eq!(pick("versioned").unwrap(), "2.0.0");
    assert_eq!(pick("versioned@>=1.0, <2").unwrap(), "1.2.0");
    assert_eq!(
        pick("versioned@^3").unwrap_err().to_string(),
        "no installed version of tracker plugin `versioned` matches `^3` (installed: 2.0.0, 1.2.0)"
    );
    assert_eq!(
        pick("nosuch").unwrap_err().to_string(),
        "no tracker plugin named `nosuch` is installed (installed tracker plugins: versioned)"
    );

    // Each version's library is loadable on its own, and reports its own version.
    for (req, version) in [("versioned@^1", "1.2.0"), ("versioned@2", "2.0.0")] {
        let (record, _) = find_installed(&manager.registry, &manager.compat, None, &req.parse().unwrap()).unwrap();
        let lib = manager.load_installed(record).unwrap();
        assert_eq!(lib.components[0].version.as_str(), version);
    }
}
