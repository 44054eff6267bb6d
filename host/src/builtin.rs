//! The built-in plugins: the plugin crates of this repository, which the set-up builds and
//! `gymnos-host plugins install --builtins` (and `plugins init`) installs from the folder the
//! binaries were built into.

/// The Cargo packages of the built-in plugins (a test keeps this equal to `plugins/`).
pub const PACKAGES: &[&str] = &[
    "gymnos-idx-dataset",
    "gymnos-csv-dataset",
    "gymnos-standardize",
    "gymnos-random-flip",
    "gymnos-mlp",
    "gymnos-cnn",
    "gymnos-jsonl-tracker",
    "gymnos-linear",
    "gymnos-resnet",
    "gymnos-sequential",
    "gymnos-tensorboard-tracker",
    "gymnos-csv-tracker",
    "gymnos-mlflow-tracker",
    "gymnos-augment",
    "gymnos-preprocess",
    "gymnos-image-folder",
    "gymnos-synthetic",
];

/// The library file cargo builds for a package: `gymnos-mlp` -> `libgymnos_mlp.so`.
pub fn library_file(package: &str) -> String {
    format!("lib{}.so", package.replace('-', "_"))
}

/// The folder the built-in libraries sit in: next to the running binary.
pub fn default_dir() -> std::io::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().map(std::path::Path::to_path_buf).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_list_is_the_plugin_crates_of_the_repository() {
        let plugins = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        let mut found: Vec<String> = std::fs::read_dir(plugins)
            .unwrap()
            .filter_map(|entry| std::fs::read_to_string(entry.unwrap().path().join("Cargo.toml")).ok())
            .filter_map(|manifest| {
                let line = manifest.lines().find(|l| l.starts_with("name = "))?.to_string();
                Some(line.trim_start_matches("name = ").trim_matches('"').to_string())
            })
            .collect();
        found.sort();
        let mut listed: Vec<String> = super::PACKAGES.iter().map(|p| p.to_string()).collect();
        listed.sort();
        assert_eq!(found, listed);
    }
}
