//! `registry.json`: the installed plugins. Read without locking (writes are atomic renames);
//! changed under an exclusive lock on `registry.json.lock`.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use gymnos_plugin_api::{ApiVersion, ComponentKind, ComponentMeta, ConfigKey, ConfigType};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{compat::HostCompat, library::LoadedLibrary};

/// The registry format this host reads and writes.
pub const FORMAT: u32 = 1;
/// Folder (relative to the registry) where `plugins install` copies libraries.
pub const STORE_DIR: &str = "plugin-store";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}: cannot read the registry: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: the registry is not valid: {cause}", path.display())]
    Parse { path: PathBuf, cause: serde_json::Error },
    #[error("{}: registry format {found} is newer than this host's ({FORMAT}); upgrade gymnos-host", path.display())]
    Format { path: PathBuf, found: u32 },
    #[error("{}: cannot write the registry: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("{}: cannot lock the registry: {cause}", path.display())]
    Lock { path: PathBuf, cause: std::io::Error },
}

/// A configuration key as the registry records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigKeyRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// Absent when the key is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentRecord {
    pub name: String,
    pub kind: String,
    pub version: semver::Version,
    pub description: String,
    pub config: Vec<ConfigKeyRecord>,
}

/// One installed library and the components it exports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LibraryRecord {
    /// Relative to the registry's folder when inside it, absolute otherwise.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Modification time (ns since the epoch) at install: `plugins list` compares size and
    /// mtime instead of hashing, so it stays fast; loading always checks the hash.
    pub modified_ns: u64,
    pub package: String,
    pub package_version: String,
    pub api_version: String,
    pub libtorch_version: String,
    pub components: Vec<ComponentRecord>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Registry {
    pub format: u32,
    /// Folders `plugins scan` walks, relative to the registry's folder.
    #[serde(default = "default_plugin_dirs")]
    pub plugin_dirs: Vec<String>,
    #[serde(default)]
    pub libraries: Vec<LibraryRecord>,
    #[serde(skip)]
    path: PathBuf,
}

fn default_plugin_dirs() -> Vec<String> {
    vec![STORE_DIR.to_string()]
}

/// Whether an installed library can be loaded now, judged without loading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Loadable,
    Missing,
    Modified,
    Incompatible(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Loadable => f.write_str("loadable"),
            Status::Missing => f.write_str("missing: the library file is gone"),
            Status::Modified => f.write_str("modified since install: reinstall it or run `plugins scan`"),
            Status::Incompatible(why) => write!(f, "incompatible: {why}"),
        }
    }
}

pub(crate) fn file_stamp(path: &Path) -> std::io::Result<(u64, u64)> {
    let meta = fs::metadata(path)?;
    let modified = meta.modified()?.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    Ok((meta.len(), modified))
}

impl ConfigKeyRecord {
    pub fn to_abi(&self) -> ConfigKey {
        ConfigKey {
            name: self.name.as_str().into(),
            ty: ConfigType::parse(&self.ty).unwrap_or(ConfigType::Json),
            default_json: self.default.as_ref().map(Value::to_string).unwrap_or_default().into(),
            description: self.description.as_str().into(),
        }
    }
}

impl ComponentRecord {
    fn from_meta(meta: &ComponentMeta) -> Self {
        Self {
            name: meta.name.to_string(),
            kind: meta.kind.as_str().to_string(),
            version: semver::Version::parse(meta.version.as_str()).expect("checked by LoadedLibrary::open"),
            description: meta.description.to_string(),
            config: meta
                .config
                .iter()
                .map(|k| ConfigKeyRecord {
                    name: k.name.to_string(),
                    ty: k.ty.as_str().to_string(),
                    default: (!k.default_json.is_empty()).then(|| serde_json::from_str(k.default_json.as_str()).expect("checked at load")),
                    description: k.description.to_string(),
                })
                .collect(),
        }
    }

    pub fn kind(&self) -> Option<ComponentKind> {
        ComponentKind::parse(&self.kind)
    }

    pub fn config_keys(&self) -> Vec<ConfigKey> {
        self.config.iter().map(ConfigKeyRecord::to_abi).collect()
    }
}

impl LibraryRecord {
    /// Records a loaded library whose file is `stored_path` (already hashed).
    pub fn new(library: &LoadedLibrary, stored_path: String, sha256: String, stamp: (u64, u64)) -> Self {
        Self {
            path: stored_path,
            sha256,
            size: stamp.0,
            modified_ns: stamp.1,
            package: library.package.clone(),
            package_version: library.package_version.clone(),
            api_version: library.api_version.to_string(),
            libtorch_version: library.libtorch_version.clone(),
            components: library.components.iter().map(ComponentRecord::from_meta).collect(),
        }
    }

    pub fn api_version(&self) -> Option<ApiVersion> {
        let v = semver::Version::parse(&self.api_version).ok()?;
        Some(ApiVersion::new(v.major as u32, v.minor as u32, v.patch as u32))
    }

    /// Cheap status: the file's size and mtime against the record, and the versions against
    /// this host. Loading checks the full hash.
    pub fn status(&self, registry: &Registry, compat: &HostCompat) -> Status {
        let Some(api) = self.api_version() else {
            return Status::Incompatible(format!("unreadable API version `{}`", self.api_version));
        };
        if let Err(e) = compat.check(api, &self.libtorch_version) {
            return Status::Incompatible(e.to_string());
        }
        match file_stamp(&registry.resolve(&self.path)) {
            Err(_) => Status::Missing,
            Ok(stamp) if stamp != (self.size, self.modified_ns) => Status::Modified,
            Ok(_) => Status::Loadable,
        }
    }
}

impl Registry {
    /// An empty registry that will be written at `path`.
    pub fn empty(path: &Path) -> Self {
        Self { format: FORMAT, plugin_dirs: default_plugin_dirs(), libraries: Vec::new(), path: path.to_path_buf() }
    }

    /// Reads the registry at `path`; a missing file is an empty registry.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty(path)),
            Err(source) => return Err(RegistryError::Read { path: path.to_path_buf(), cause: source }),
        };
        let mut registry: Registry =
            serde_json::from_str(&text).map_err(|source| RegistryError::Parse { path: path.to_path_buf(), cause: source })?;
        if registry.format > FORMAT {
            return Err(RegistryError::Format { path: path.to_path_buf(), found: registry.format });
        }
        registry.path = path.to_path_buf();
        Ok(registry)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder relative paths in the registry are relative to.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir().join(STORE_DIR)
    }

    pub fn resolve(&self, recorded: &str) -> PathBuf {
        let p = Path::new(recorded);
        if p.is_absolute() { p.to_path_buf() } else { self.dir().join(p) }
    }

    /// How a path is recorded: relative to the registry's folder when inside it, so that a
    /// checkout can move; absolute otherwise.
    pub fn record_path(&self, path: &Path) -> String {
        let dir = self.dir().canonicalize().unwrap_or_else(|_| self.dir());
        let abs = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        match abs.strip_prefix(&dir) {
            Ok(rel) => rel.to_string_lossy().into_owned(),
            Err(_) => abs.to_string_lossy().into_owned(),
        }
    }

    /// Every (library, component) pair.
    pub fn components(&self) -> impl Iterator<Item = (&LibraryRecord, &ComponentRecord)> {
        self.libraries.iter().flat_map(|l| l.components.iter().map(move |c| (l, c)))
    }

    /// Writes the registry atomically: a temporary file in the same folder, flushed to disk,
    /// then renamed over the old one. A crash leaves either the old or the new file whole.
    pub fn save(&self) -> Result<(), RegistryError> {
        let mut text = serde_json::to_string_pretty(self).expect("registry serializes");
        text.push('\n');
        crate::fsio::write_atomically(&self.path, text.as_bytes(), 0o644)
            .map_err(|cause| RegistryError::Write { path: self.path.clone(), cause })
    }

    /// Takes the registry's write lock (released when the returned file is dropped).
    pub fn lock(path: &Path) -> Result<File, RegistryError> {
        let lock_path = path.with_extension("json.lock");
        let lock_err = |source| RegistryError::Lock { path: lock_path.clone(), cause: source };
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(lock_err)?;
        }
        let file = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(lock_err)?;
        file.lock().map_err(lock_err)?;
        Ok(file)
    }
}
