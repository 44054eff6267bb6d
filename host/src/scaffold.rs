//! `gymnos-host plugins new`: a standalone plugin crate from the templates in `host/templates/`.
//!
//! The crate depends on the SDK by version (`gymnos-plugin-sdk = "1.5"`, the SDK's major.minor), as a plugin of a team's
//! own repository does, and its one `[patch.crates-io]` block points the gymnos crates at the
//! checkout the host was built from.

use std::path::{Path, PathBuf};

use gymnos_plugin_api::{check_component_name, ComponentKind};

/// Where the generated crate finds what it builds against.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The gymnos source tree: `plugin-api/` (with `sdk/`, `derive/`, `build-support/`) and
    /// `Cargo.lock`.
    pub source_root: PathBuf,
    /// The libtorch folder (`.venv/libtorch` of the set-up).
    pub libtorch: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The message of `gymnos_plugin_api::check_component_name`, the one rule for names.
    #[error("{0}")]
    Name(String),
    #[error("{}: already exists and is not empty; choose another name or --path", .0.display())]
    Exists(PathBuf),
    #[error("{}: {what} not found; run the set-up (scripts/setup.sh) or pass --sdk", path.display())]
    Missing { path: PathBuf, what: &'static str },
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("--streaming applies to dataset plugins only, not to a {0}")]
    StreamingKind(ComponentKind),
}

/// The SDK version a generated crate asks for: the SDK's major.minor of this source tree (the
/// templates use what it adds, `LoadedData` since 1.4), which any later 1.y SDK satisfies. A test
/// keeps it equal to `plugin-api/sdk/Cargo.toml`.
const SDK_REQUIREMENT: &str = "1.5";

fn sdk_requirement() -> String {
    SDK_REQUIREMENT.to_string()
}

/// The build helper a generated crate asks for: this host's plugin API minor (`"1.2"`), the
/// helper's version.
fn build_requirement() -> String {
    format!("{}.{}", gymnos_plugin_api::API_VERSION.major, gymnos_plugin_api::API_VERSION.minor)
}

/// The gymnos crates a generated crate patches, with their folders in the source tree.
const CRATES: [(&str, &str, &str); 4] = [
    ("{{api}}", "plugin-api", "the plugin API"),
    ("{{sdk}}", "plugin-api/sdk", "the plugin SDK"),
    ("{{derive}}", "plugin-api/derive", "the plugin SDK's derive macros"),
    ("{{build}}", "plugin-api/build-support", "the plugin build helper"),
];

impl Toolchain {
    /// The source tree this host was built from, and its libtorch: the very `LIBTORCH`
    /// string the host's build used (from .cargo/config.toml), so that a plugin built into
    /// the host's target folder reuses its compiled libtorch bindings.
    pub fn of_this_build() -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf();
        let libtorch = option_env!("LIBTORCH").map_or_else(|| root.join(".venv/libtorch"), PathBuf::from);
        Self { libtorch, source_root: root }
    }

    fn check(&self) -> Result<(), ScaffoldError> {
        let crates = CRATES.iter().map(|(_, dir, what)| (self.source_root.join(dir).join("Cargo.toml"), *what));
        for (path, what) in crates.chain([(self.libtorch.join("lib"), "libtorch")]) {
            if !path.exists() {
                return Err(ScaffoldError::Missing { path, what });
            }
        }
        Ok(())
    }
}

fn template(kind: ComponentKind, streaming: bool) -> &'static str {
    match kind {
        ComponentKind::Dataset if streaming => include_str!("../templates/plugin/indexed_dataset.rs"),
        ComponentKind::Dataset => include_str!("../templates/plugin/dataset.rs"),
        ComponentKind::Preprocessor => include_str!("../templates/plugin/preprocessor.rs"),
        ComponentKind::DataAugmentor => include_str!("../templates/plugin/data_augmentor.rs"),
        ComponentKind::Model => include_str!("../templates/plugin/model.rs"),
        ComponentKind::Tracker => include_str!("../templates/plugin/tracker.rs"),
    }
}

/// `my-model` (or `my_model`) -> `MyModel`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

/// A TOML basic string: `"..."` with `\` and `"` escaped, for paths in generated files.
fn toml_string(path: &Path) -> String {
    let text = path.to_string_lossy();
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '\\' => quoted.push_str("\\\\"),
            '"' => quoted.push_str("\\\""),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// An absolute form of `path` (made absolute against the current folder when relative), so that
/// the generated crate builds wherever it is moved.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writes the crate `name` into `dir` (which must not exist, or be empty). Returns the files.
/// `streaming` (data sets only) gives a data set read by index (plugin API 1.2).
pub fn new_plugin(
    kind: ComponentKind,
    streaming: bool,
    name: &str,
    dir: &Path,
    toolchain: &Toolchain,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    check_component_name(name).map_err(ScaffoldError::Name)?;
    if streaming && kind != ComponentKind::Dataset {
        return Err(ScaffoldError::StreamingKind(kind));
    }
    if dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    toolchain.check()?;
    let root = absolute(&toolchain.source_root);
    let fill = |text: &str| {
        let mut text = text
            .replace("{{crate}}", name)
            .replace("{{name}}", name)
            .replace("{{lib}}", &name.replace('-', "_"))
            .replace("{{Type}}", &type_name(name))
            .replace("{{kind}}", kind.as_str())
            .replace("{{sdk_req}}", &sdk_requirement())
            .replace("{{build_req}}", &build_requirement())
            .replace("{{libtorch}}", &toml_string(&absolute(&toolchain.libtorch)))
            .replace("{{root}}", &root.to_string_lossy())
            .replace("{{guide}}", &root.join("docs/writing-plugins.md").to_string_lossy());
        for (placeholder, folder, _) in CRATES {
            text = text.replace(placeholder, &toml_string(&root.join(folder)));
        }
        text
    };
    let mut files = vec![
        (PathBuf::from("Cargo.toml"), fill(include_str!("../templates/plugin/Cargo.toml.in"))),
        (PathBuf::from("build.rs"), include_str!("../templates/plugin/build.rs").to_string()),
        (PathBuf::from(".cargo/config.toml"), fill(include_str!("../templates/plugin/cargo-config.toml.in"))),
        (PathBuf::from(".gitignore"), include_str!("../templates/plugin/gitignore").to_string()),
        (PathBuf::from("README.md"), fill(include_str!("../templates/plugin/README.md.in"))),
        (PathBuf::from("src/lib.rs"), fill(template(kind, streaming))),
    ];
    // The host's lock file pins the dependencies (tch above all) to the versions the host
    // was built with; cargo drops the entries the plugin does not use.
    if let Ok(lock) = std::fs::read_to_string(root.join("Cargo.lock")) {
        files.push((PathBuf::from("Cargo.lock"), lock));
    }
    let mut written = Vec::new();
    for (relative, text) in files {
        let path = dir.join(relative);
        let io = |cause| ScaffoldError::Io { path: path.clone(), cause };
        std::fs::create_dir_all(path.parent().expect("files sit in a folder")).map_err(io)?;
        std::fs::write(&path, text).map_err(io)?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_and_name_rules() {
        assert_eq!(type_name("my-fancy-model"), "MyFancyModel");
        assert_eq!(type_name("my_net2"), "MyNet2");
        let toolchain = Toolchain { source_root: "/nonexistent".into(), libtorch: "/nonexistent".into() };
        let dir = std::env::temp_dir();
        for bad in ["My", "9lives", "a-", "a_", "a.b", ""] {
            let err = new_plugin(ComponentKind::Model, false, bad, &dir, &toolchain).unwrap_err();
            assert_eq!(err.to_string(), check_component_name(bad).unwrap_err(), "{bad}");
        }
        // `_` is allowed, as the host allows it at load: the name passes, the toolchain is missing.
        let err =
            new_plugin(ComponentKind::Model, false, "a_b", &dir.join("gymnos-scaffold-none"), &toolchain).unwrap_err();
        assert!(matches!(err, ScaffoldError::Missing { .. }), "{err}");
    }

    #[test]
    fn the_crate_depends_on_the_sdk_by_version_and_patches_it_to_the_checkout() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path().join("gymnos \"src\"");
        for (_, folder, _) in CRATES {
            std::fs::create_dir_all(root.join(folder)).unwrap();
            std::fs::write(root.join(folder).join("Cargo.toml"), "").unwrap();
        }
        std::fs::create_dir_all(root.join(".venv/libtorch/lib")).unwrap();
        let toolchain = Toolchain { source_root: root.clone(), libtorch: root.join(".venv/libtorch") };
        let dir = tree.path().join("my_net");
        for kind in ComponentKind::ALL {
            let dir = dir.join(kind.as_str());
            new_plugin(kind, false, "my_net", &dir, &toolchain).unwrap();
            let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
            assert!(lib.contains("#[derive(Config)]\npub struct MyNetConfig {"), "{kind}");
            assert!(lib.contains("impl Configurable for MyNet {"), "{kind}");
            assert!(!lib.contains("{{") && !lib.contains("impl Component for"), "{kind}");
        }
        let streaming = tree.path().join("my_stream");
        new_plugin(ComponentKind::Dataset, true, "my_stream", &streaming, &toolchain).unwrap();
        let lib = std::fs::read_to_string(streaming.join("src/lib.rs")).unwrap();
        assert!(lib.contains("impl IndexedDataset for MyStream {") && lib.contains("indexed_dataset(MyStream)"));
        let err = new_plugin(ComponentKind::Model, true, "my_model", &tree.path().join("m"), &toolchain).unwrap_err();
        assert_eq!(err.to_string(), "--streaming applies to dataset plugins only, not to a model");
        let manifest = std::fs::read_to_string(dir.join("model/Cargo.toml")).unwrap();
        let api = format!("{}.{}", gymnos_plugin_api::API_VERSION.major, gymnos_plugin_api::API_VERSION.minor);
        let sdk = SDK_REQUIREMENT;
        assert!(manifest.contains(&format!("\n[dependencies]\ngymnos-plugin-sdk = \"{sdk}\"\n")), "{manifest}");
        assert!(manifest.contains(&format!("\n[build-dependencies]\ngymnos-plugin-build = \"{api}\"\n")), "{manifest}");
        assert_eq!(manifest.matches("[patch.crates-io]").count(), 1, "{manifest}");
        let quoted = |folder: &str| toml_string(&root.join(folder));
        assert!(quoted("plugin-api/sdk").ends_with("/gymnos \\\"src\\\"/plugin-api/sdk\""));
        for (krate, folder) in [
            ("gymnos-plugin-api", "plugin-api"),
            ("gymnos-plugin-sdk", "plugin-api/sdk"),
            ("gymnos-plugin-derive", "plugin-api/derive"),
            ("gymnos-plugin-build", "plugin-api/build-support"),
        ] {
            assert!(
                manifest.contains(&format!("\n{krate} = {{ path = {} }}\n", quoted(folder))),
                "{krate}: {manifest}"
            );
        }
        assert!(manifest.contains("\n[profile.release]\ndebug = false\nstrip = \"debuginfo\"\n"), "{manifest}");
        let config = std::fs::read_to_string(dir.join("model/.cargo/config.toml")).unwrap();
        assert!(config.contains(&format!("LIBTORCH = {}\n", quoted(".venv/libtorch"))), "{config}");
        let dataset = std::fs::read_to_string(dir.join("dataset/src/lib.rs")).unwrap();
        assert!(dataset.contains("fn load(&mut self)") && dataset.contains("fn read_inputs("), "{dataset}");
    }
}

#[cfg(test)]
mod sdk_version_tests {
    #[test]
    fn the_sdk_requirement_is_the_sdk_s_major_minor() {
        let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api/sdk/Cargo.toml");
        let text = std::fs::read_to_string(manifest).unwrap();
        let version = text.lines().find_map(|l| l.strip_prefix("version = ")).unwrap().trim_matches('"');
        let major_minor: Vec<&str> = version.split('.').take(2).collect();
        assert_eq!(super::SDK_REQUIREMENT, major_minor.join("."));
    }
}
