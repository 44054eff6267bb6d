//! `gymnos-host plugins new`: a standalone plugin crate from the templates in `host/templates/`.

use std::path::{Path, PathBuf};

use gymnos_plugin_api::ComponentKind;

/// Where the generated crate finds what it builds against.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// The gymnos source tree: `plugin-api/sdk`, `plugin-api/build-support`, `Cargo.lock`.
    pub source_root: PathBuf,
    /// The libtorch folder (`.venv/libtorch` of the set-up).
    pub libtorch: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("`{0}` is not a plugin name: use lowercase letters, digits and `-`, starting with a letter")]
    Name(String),
    #[error("{}: already exists and is not empty; choose another name or --path", .0.display())]
    Exists(PathBuf),
    #[error("{}: {what} not found; run the set-up (scripts/setup.sh) or pass --sdk", path.display())]
    Missing { path: PathBuf, what: &'static str },
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

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
        let need = [
            (self.source_root.join("plugin-api/sdk/Cargo.toml"), "the plugin SDK"),
            (self.source_root.join("plugin-api/build-support/Cargo.toml"), "the plugin build helper"),
            (self.libtorch.join("lib"), "libtorch"),
        ];
        for (path, what) in need {
            if !path.exists() {
                return Err(ScaffoldError::Missing { path, what });
            }
        }
        Ok(())
    }
}

fn template(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Dataset => include_str!("../templates/plugin/dataset.rs"),
        ComponentKind::Preprocessor => include_str!("../templates/plugin/preprocessor.rs"),
        ComponentKind::DataAugmentor => include_str!("../templates/plugin/data_augmentor.rs"),
        ComponentKind::Model => include_str!("../templates/plugin/model.rs"),
        ComponentKind::Tracker => include_str!("../templates/plugin/tracker.rs"),
    }
}

/// `my-model` -> `MyModel`.
fn type_name(name: &str) -> String {
    name.split('-').map(|part| {
        let mut chars = part.chars();
        chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
    }).collect()
}

/// Writes the crate `name` into `dir` (which must not exist, or be empty). Returns the files.
pub fn new_plugin(kind: ComponentKind, name: &str, dir: &Path, toolchain: &Toolchain) -> Result<Vec<PathBuf>, ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        return Err(ScaffoldError::Name(name.to_string()));
    }
    if dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    toolchain.check()?;
    let root = &toolchain.source_root;
    let fill = |text: &str| {
        text.replace("{{crate}}", name)
            .replace("{{name}}", name)
            .replace("{{lib}}", &name.replace('-', "_"))
            .replace("{{Type}}", &type_name(name))
            .replace("{{kind}}", kind.as_str())
            .replace("{{sdk}}", &root.join("plugin-api/sdk").to_string_lossy())
            .replace("{{build}}", &root.join("plugin-api/build-support").to_string_lossy())
            .replace("{{libtorch}}", &toolchain.libtorch.to_string_lossy())
            .replace("{{guide}}", &root.join("docs/writing-plugins.md").to_string_lossy())
    };
    let mut files = vec![
        (PathBuf::from("Cargo.toml"), fill(include_str!("../templates/plugin/Cargo.toml.in"))),
        (PathBuf::from("build.rs"), include_str!("../templates/plugin/build.rs").to_string()),
        (PathBuf::from(".cargo/config.toml"), fill(include_str!("../templates/plugin/cargo-config.toml.in"))),
        (PathBuf::from(".gitignore"), include_str!("../templates/plugin/gitignore").to_string()),
        (PathBuf::from("README.md"), fill(include_str!("../templates/plugin/README.md.in"))),
        (PathBuf::from("src/lib.rs"), fill(template(kind))),
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
        let toolchain = Toolchain { source_root: "/nonexistent".into(), libtorch: "/nonexistent".into() };
        let dir = std::env::temp_dir();
        for bad in ["My", "9lives", "a_b", "a-", ""] {
            assert!(matches!(new_plugin(ComponentKind::Model, bad, &dir, &toolchain), Err(ScaffoldError::Name(_))), "{bad}");
        }
    }
}
