//! Installing, removing and scanning plugins, and opening installed ones for use.
//!
//! Every change follows the same order: take the registry lock, check everything, copy files
//! into the store, and write the registry last, atomically. A failure before the final write
//! leaves the registry as it was.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use walkdir::WalkDir;

use crate::{
    compat::HostCompat,
    hash::sha256_bytes,
    library::{LoadError, LoadedLibrary},
    registry::{file_stamp, LibraryRecord, Registry, RegistryError, STORE_DIR},
};

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: no gymnos plugin library found there", path.display())]
    NothingToInstall { path: PathBuf },
    #[error("{}: {kind} `{name}@{version}` is already installed from another build ({existing}); pass --replace to replace it, or give the new build another version", path.display())]
    Conflict { path: PathBuf, kind: String, name: String, version: String, existing: String },
    #[error("`{name}@{version}` is not installed (installed versions of `{name}`: {installed})")]
    NotInstalled { name: String, version: String, installed: String },
}

/// What `install` did with one library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed { source: PathBuf, stored: String, components: Vec<String> },
    AlreadyInstalled { source: PathBuf, components: Vec<String> },
}

/// What `scan` found.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub libraries: usize,
    pub components: usize,
    /// Libraries found but refused, with why.
    pub refused: Vec<String>,
}

/// The registry plus the libraries loaded from it in this process.
pub struct PluginManager {
    pub registry: Registry,
    pub compat: HostCompat,
    loaded: Mutex<HashMap<PathBuf, Arc<LoadedLibrary>>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ManagerError + '_ {
    move |cause| ManagerError::Io { path: path.to_path_buf(), cause }
}

fn is_shared_library(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "so" || e == "dylib")
}

fn component_labels(library: &LoadedLibrary) -> Vec<String> {
    library.components.iter().map(|c| format!("{} {}@{}", c.kind, c.name, c.version)).collect()
}

impl PluginManager {
    pub fn open(registry_path: &Path) -> Result<Self, ManagerError> {
        Ok(Self::new(Registry::load(registry_path)?, HostCompat::default()))
    }

    pub fn new(registry: Registry, compat: HostCompat) -> Self {
        Self { registry, compat, loaded: Mutex::new(HashMap::new()) }
    }

    /// Loads (once per process) the library at `path` and checks it.
    pub fn load(&self, path: &Path) -> Result<Arc<LoadedLibrary>, LoadError> {
        self.load_checked(path, None)
    }

    fn load_checked(&self, path: &Path, contents: Option<&[u8]>) -> Result<Arc<LoadedLibrary>, LoadError> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(library) = loaded.get(&key) {
            return Ok(library.clone());
        }
        let library = Arc::new(LoadedLibrary::open(path, contents, &self.compat)?);
        loaded.insert(key, library.clone());
        Ok(library)
    }

    /// Loads the library at `path` and returns its sha256 too; one read of the file serves
    /// the hash and the ELF check.
    fn load_hashed(&self, path: &Path) -> Result<(Arc<LoadedLibrary>, String), LoadError> {
        let bytes = fs::read(path).map_err(|e| LoadError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
        let sha256 = sha256_bytes(&bytes);
        Ok((self.load_checked(path, Some(&bytes))?, sha256))
    }

    /// Loads an installed library after checking that its file still has the recorded hash.
    /// The hash is compared before anything of the library runs.
    pub fn load_installed(&self, record: &LibraryRecord) -> Result<Arc<LoadedLibrary>, LoadError> {
        let path = self.registry.resolve(&record.path);
        let bytes = fs::read(&path).map_err(|e| LoadError::Open { path: path.clone(), reason: e.to_string() })?;
        let actual = sha256_bytes(&bytes);
        if actual != record.sha256 {
            return Err(LoadError::HashMismatch { path, expected: record.sha256.clone(), actual });
        }
        self.load_checked(&path, Some(&bytes))
    }

    /// Libraries named by `paths`: files as given, folders walked. In a folder, files that are
    /// not plugins are skipped; a named file must be a plugin.
    fn collect(&self, paths: &[PathBuf]) -> Result<Vec<(PathBuf, Arc<LoadedLibrary>, String)>, ManagerError> {
        let mut found = Vec::new();
        for path in paths {
            let meta = fs::metadata(path).map_err(io_err(path))?;
            if !meta.is_dir() {
                let (library, sha256) = self.load_hashed(path)?;
                found.push((path.clone(), library, sha256));
                continue;
            }
            let before = found.len();
            for entry in WalkDir::new(path).follow_links(true).sort_by_file_name() {
                let entry = entry.map_err(|e| ManagerError::Io { path: path.clone(), cause: e.into() })?;
                if !entry.file_type().is_file() || !is_shared_library(entry.path()) {
                    continue;
                }
                match self.load_hashed(entry.path()) {
                    Ok((library, sha256)) => found.push((entry.path().to_path_buf(), library, sha256)),
                    Err(LoadError::NotAPlugin { .. }) => {
                        tracing::debug!(file = %entry.path().display(), "skipped: not a plugin")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if found.len() == before {
                return Err(ManagerError::NothingToInstall { path: path.clone() });
            }
        }
        Ok(found)
    }

    /// Installs libraries into the store and the registry; all or nothing.
    pub fn install(&mut self, paths: &[PathBuf], replace: bool) -> Result<Vec<InstallOutcome>, ManagerError> {
        let _lock = Registry::lock(self.registry.path())?;
        self.registry = Registry::load(self.registry.path())?;
        let candidates = self.collect(paths)?;

        let mut next = self.registry.clone();
        let mut outcomes = Vec::new();
        let mut to_copy: Vec<(PathBuf, PathBuf, String)> = Vec::new();
        let store = next.store_dir();
        for (source, library, sha256) in candidates {
            // Also catches the same file named twice in one call: records are added as we go.
            if next.libraries.iter().any(|l| l.sha256 == sha256) {
                outcomes.push(InstallOutcome::AlreadyInstalled { source, components: component_labels(&library) });
                continue;
            }
            for c in &library.components {
                let version = semver::Version::parse(c.version.as_str()).expect("checked at load");
                for l in next.libraries.iter_mut() {
                    let clash = l.components.iter().position(|r| r.name == c.name.as_str() && r.kind == c.kind.as_str() && r.version == version);
                    let Some(i) = clash else { continue };
                    if !replace {
                        return Err(ManagerError::Conflict {
                            path: source.clone(),
                            kind: c.kind.to_string(),
                            name: c.name.to_string(),
                            version: c.version.to_string(),
                            existing: l.path.clone(),
                        });
                    }
                    l.components.remove(i);
                }
            }
            let stem = source.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
            let ext = source.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "so".into());
            // Content-addressed: builds of different versions sit side by side.
            let file_name = format!("{stem}-{}.{ext}", &sha256[..16]);
            let dest = store.join(&file_name);
            let stored = format!("{STORE_DIR}/{file_name}");
            outcomes.push(InstallOutcome::Installed { source: source.clone(), stored: stored.clone(), components: component_labels(&library) });
            next.libraries.push(LibraryRecord::new(&library, stored.clone(), sha256, (0, 0)));
            to_copy.push((source, dest, stored));
        }
        let orphans = self.drop_empty_libraries(&mut next);

        // Copy into the store (each file atomically), then record the copies' stamps.
        // On any failure the copies are removed again: the store keeps only registered files.
        let discard_copies = || {
            for (_, copied, _) in &to_copy {
                let _ = fs::remove_file(copied);
            }
        };
        fs::create_dir_all(&store).map_err(io_err(&store))?;
        for (source, dest, stored) in &to_copy {
            let stamp = copy_atomically(source, dest).and_then(|()| file_stamp(dest).map_err(io_err(dest)));
            let stamp = stamp.inspect_err(|_| discard_copies())?;
            let record = next.libraries.iter_mut().find(|l| &l.path == stored).expect("recorded above");
            (record.size, record.modified_ns) = stamp;
        }
        next.save().inspect_err(|_| discard_copies())?;
        self.remove_store_files(&orphans);
        self.registry = next;
        Ok(outcomes)
    }

    /// Removes `name@version` (exact version). The library file is deleted from the store when
    /// none of its components remain.
    pub fn remove(&mut self, name: &str, version: &semver::Version) -> Result<Vec<String>, ManagerError> {
        let _lock = Registry::lock(self.registry.path())?;
        let mut next = Registry::load(self.registry.path())?;
        let mut removed = Vec::new();
        for library in next.libraries.iter_mut() {
            library.components.retain(|c| {
                let hit = c.name == name && &c.version == version;
                if hit {
                    removed.push(format!("{} {}@{}", c.kind, c.name, c.version));
                }
                !hit
            });
        }
        if removed.is_empty() {
            let mut installed: Vec<String> =
                next.components().filter(|(_, c)| c.name == name).map(|(_, c)| c.version.to_string()).collect();
            installed.sort();
            return Err(ManagerError::NotInstalled {
                name: name.to_string(),
                version: version.to_string(),
                installed: if installed.is_empty() { "none".into() } else { installed.join(", ") },
            });
        }
        let orphans = self.drop_empty_libraries(&mut next);
        next.save()?;
        self.remove_store_files(&orphans);
        self.registry = next;
        Ok(removed)
    }

    /// Rebuilds the registry from the libraries found under its `plugin_dirs`.
    pub fn scan(&mut self) -> Result<ScanReport, ManagerError> {
        let _lock = Registry::lock(self.registry.path())?;
        let current = Registry::load(self.registry.path())?;
        let mut next = Registry::empty(current.path());
        next.plugin_dirs = current.plugin_dirs.clone();
        let mut report = ScanReport::default();
        for dir in &current.plugin_dirs {
            let dir = current.resolve(dir);
            if !dir.is_dir() {
                continue;
            }
            for entry in WalkDir::new(&dir).follow_links(true).sort_by_file_name().into_iter().filter_map(Result::ok) {
                let path = entry.path();
                if !entry.file_type().is_file() || !is_shared_library(path) {
                    continue;
                }
                let (library, sha256) = match self.load_hashed(path) {
                    Ok(loaded) => loaded,
                    Err(LoadError::NotAPlugin { .. }) => continue,
                    Err(e) => {
                        report.refused.push(e.to_string());
                        continue;
                    }
                };
                if next.libraries.iter().any(|l| l.sha256 == sha256) {
                    continue;
                }
                let stamp = file_stamp(path).map_err(io_err(path))?;
                report.libraries += 1;
                report.components += library.components.len();
                next.libraries.push(LibraryRecord::new(&library, next.record_path(path), sha256, stamp));
            }
        }
        next.save()?;
        self.registry = next;
        Ok(report)
    }

    /// Drops library records left without components; returns the store files to delete once
    /// the registry is written.
    fn drop_empty_libraries(&self, registry: &mut Registry) -> Vec<PathBuf> {
        let store = registry.store_dir();
        let orphans = registry
            .libraries
            .iter()
            .filter(|l| l.components.is_empty())
            .map(|l| registry.resolve(&l.path))
            .filter(|p| p.starts_with(&store))
            .collect();
        registry.libraries.retain(|l| !l.components.is_empty());
        orphans
    }

    fn remove_store_files(&self, files: &[PathBuf]) {
        for file in files {
            if let Err(e) = fs::remove_file(file) {
                tracing::warn!(file = %file.display(), error = %e, "could not delete an uninstalled library");
            }
        }
    }
}

/// Copies `source` to `dest` so that `dest` is either absent or complete.
fn copy_atomically(source: &Path, dest: &Path) -> Result<(), ManagerError> {
    let bytes = fs::read(source).map_err(io_err(source))?;
    crate::fsio::write_atomically(dest, &bytes, 0o755).map_err(io_err(dest))
}
