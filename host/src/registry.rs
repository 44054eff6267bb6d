//! The registry: which plugins are installed, in two files.
//!
//! - `registry.json`, the **declaration**: which components (kind, name, version, package) the
//!   registry holds, and the folders `plugins scan` walks. Nothing in it depends on the machine,
//!   so a repository can track it (this one does) and a re-install writes the same bytes.
//! - `plugin-store/state.json`, the **state**: this machine's copies of the libraries in the
//!   store next to it, with their sha256, size, modification time, API and libtorch versions,
//!   the components' metadata and rules, and when each was last verified.
//!
//! A declared component whose library is not in the state is *not installed here*: resolution
//! refuses it and `plugins install` restores it. Both files are read without locking (writes are
//! atomic renames) and changed under an exclusive lock on `registry.json.lock`; the state is
//! written before the declaration, so a crash between the two leaves libraries nobody declares
//! (ignored, adopted by the next install or scan), never a declaration pointing at half a state.

use std::{
    collections::BTreeMap,
    fs::{self, File},
    path::{Path, PathBuf},
    time::UNIX_EPOCH,
};

use gymnos_plugin_api::{
    check_component_name, normalized_name, ApiVersion, ComponentKind, ComponentMeta, ConfigKey, ConfigType, Constraint,
    LibraryDetails,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    compat::HostCompat,
    library::LoadedLibrary,
    record::{one_line, parse_json},
};

/// The registry format this host reads and writes (1: one file with the state inside).
pub const FORMAT: u32 = 2;
/// Folder (relative to the registry) where `plugins install` copies libraries.
pub const STORE_DIR: &str = "plugin-store";
/// The state file, inside the store.
pub const STATE_FILE: &str = "state.json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}: no registry there; create one with `gymnos-host plugins init {}`", path.display(), dir_of(path).display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read the registry: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    /// Not JSON, not the registry's form, or entries that cannot be (an unknown kind, a name
    /// the one name rule refuses, the same component twice): each named by its place,
    /// `components[4].version: ...`.
    #[error("{}: the registry is not valid: {cause}", path.display())]
    Parse { path: PathBuf, cause: String },
    #[error("{}: registry format {found} is newer than this host's ({FORMAT}); upgrade gymnos-host", path.display())]
    Format { path: PathBuf, found: u64 },
    #[error("{}: cannot write the registry: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
    #[error("{}: cannot lock the registry: {cause}", path.display())]
    Lock { path: PathBuf, cause: std::io::Error },
    #[error("{}: already a registry", path.display())]
    Exists { path: PathBuf },
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A configuration key as the registry records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConfigKeyRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// Absent when the key is required; `null` is a default like any other (an optional key).
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    pub description: String,
    /// Rules on its values (plugin API 1.1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Constraint>,
    /// JSON Schema of a `json` key (plugin API 1.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// A present field, `null` included (serde's `Option` would read `null` as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A component of an installed library, with what it declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentRecord {
    pub name: String,
    pub kind: String,
    pub version: semver::Version,
    pub description: String,
    pub config: Vec<ConfigKeyRecord>,
}

/// One library in the store and the components it exports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LibraryRecord {
    /// Relative to the registry's folder when inside it, absolute otherwise.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Modification time (ns since the epoch) when recorded: `plugins list` compares size and
    /// mtime instead of hashing, so it stays fast; loading and `plugins verify` hash.
    pub modified_ns: u64,
    /// When `plugins verify` last found the file's hash right (RFC 3339), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
    pub package: String,
    pub package_version: String,
    pub api_version: String,
    pub libtorch_version: String,
    pub components: Vec<ComponentRecord>,
    /// What the library file says it was built for (target, C++ ABI, CUDA), read from its ELF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<crate::build_facts::BuildFacts>,
    /// The key id that signed the package it came from, when it came signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    /// The package file or channel it was installed from, when not a bare library.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
}

/// What a library says of itself when it is opened: everything a [`LibraryRecord`] holds but
/// where it is and what it hashes to (the safe first load's answer, `crate::probe`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LibraryDescription {
    pub package: String,
    pub package_version: String,
    pub api_version: String,
    pub libtorch_version: String,
    pub components: Vec<ComponentRecord>,
}

impl LibraryDescription {
    pub fn of(library: &LoadedLibrary) -> Self {
        Self {
            package: library.package.clone(),
            package_version: library.package_version.clone(),
            api_version: library.api_version.to_string(),
            libtorch_version: library.libtorch_version.clone(),
            components: library.components.iter().map(|c| ComponentRecord::from_meta(c, &library.details)).collect(),
        }
    }
}

/// What a registry trusts: the keys whose signatures it accepts, and whether it installs only
/// signed packages. Recorded in `registry.json` (a policy, not this machine's state).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trust {
    #[serde(default)]
    pub require_signatures: bool,
    #[serde(default)]
    pub keys: Vec<crate::package::signing::TrustedKey>,
}

impl Trust {
    fn is_default(&self) -> bool {
        *self == Trust::default()
    }
}

/// A component the registry holds, as `registry.json` lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeclaredComponent {
    pub kind: String,
    pub name: String,
    pub version: semver::Version,
    /// The Cargo package of the library that provides it.
    pub package: String,
}

/// `registry.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Declaration {
    format: u32,
    /// Folders `plugins scan` walks, relative to the registry's folder.
    #[serde(default = "default_plugin_dirs")]
    plugin_dirs: Vec<String>,
    #[serde(default)]
    components: Vec<DeclaredComponent>,
    #[serde(default, skip_serializing_if = "Trust::is_default")]
    trust: Trust,
    /// The channels `plugins install NAME@REQ`, `outdated` and `upgrade` look in, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    channels: Vec<String>,
}

/// `plugin-store/state.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    libraries: Vec<LibraryRecord>,
}

/// A registry of format 1, read to be written as format 2.
#[derive(Deserialize)]
struct FormatOne {
    #[serde(default = "default_plugin_dirs")]
    plugin_dirs: Vec<String>,
    #[serde(default)]
    libraries: Vec<LibraryRecord>,
}

fn default_plugin_dirs() -> Vec<String> {
    vec![STORE_DIR.to_string()]
}

/// Whether an installed component's library can be loaded now, judged without loading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Loadable,
    /// Declared in `registry.json` but no library for it on this machine.
    NotInstalledHere,
    /// The library file recorded in the state is gone.
    Missing,
    /// The file's size or modification time differ from the record.
    Modified,
    Incompatible(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Loadable => f.write_str("loadable"),
            Status::NotInstalledHere => {
                f.write_str("not installed on this machine: install its library (`gymnos-host plugins install LIB`)")
            }
            Status::Missing => {
                f.write_str("missing: the library file is gone; install the library again to restore it")
            }
            Status::Modified => f.write_str(
                "modified since install: `gymnos-host plugins verify` checks it; install the library again to \
                 restore it",
            ),
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
    fn from_meta(meta: &ComponentMeta, details: &LibraryDetails) -> Self {
        let extra = details.of(meta.kind.as_str(), &meta.name);
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
                    default: (!k.default_json.is_empty())
                        .then(|| serde_json::from_str(k.default_json.as_str()).expect("checked at load")),
                    description: k.description.to_string(),
                    rules: extra.constraints.get(k.name.as_str()).cloned().unwrap_or_default(),
                    schema: extra.schemas.get(k.name.as_str()).cloned(),
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

    /// The rules of its keys, by key name.
    pub fn key_rules(&self) -> gymnos_plugin_api::config::KeyRules {
        self.config.iter().filter(|k| !k.rules.is_empty()).map(|k| (k.name.clone(), k.rules.clone())).collect()
    }

    fn declared(&self, package: &str) -> DeclaredComponent {
        DeclaredComponent {
            kind: self.kind.clone(),
            name: self.name.clone(),
            version: self.version.clone(),
            package: package.to_string(),
        }
    }
}

impl DeclaredComponent {
    /// `model mlp@1.0.0`.
    pub fn label(&self) -> String {
        format!("{} {}@{}", self.kind, self.name, self.version)
    }

    pub fn kind(&self) -> Option<ComponentKind> {
        ComponentKind::parse(&self.kind)
    }

    /// Whether `record` (a component of a library of `package`) is this one.
    fn is(&self, record: &ComponentRecord, package: &str) -> bool {
        self.kind == record.kind
            && normalized_name(&self.name) == normalized_name(&record.name)
            && self.version == record.version
            && self.package == package
    }

    /// Sort key: kind in pipeline order, then name, then version.
    fn order(&self) -> (Option<ComponentKind>, String, semver::Version) {
        (self.kind(), self.name.clone(), self.version.clone())
    }
}

impl LibraryRecord {
    /// Records a loaded library whose file is `stored_path` (already hashed).
    pub fn new(library: &LoadedLibrary, stored_path: String, sha256: String, stamp: (u64, u64)) -> Self {
        Self::described(LibraryDescription::of(library), stored_path, sha256, stamp)
    }

    /// Records a library as it described itself, whose file is `stored_path` (already hashed).
    pub fn described(description: LibraryDescription, stored_path: String, sha256: String, stamp: (u64, u64)) -> Self {
        let LibraryDescription { package, package_version, api_version, libtorch_version, components } = description;
        Self {
            path: stored_path,
            sha256,
            size: stamp.0,
            modified_ns: stamp.1,
            verified_at: None,
            package,
            package_version,
            api_version,
            libtorch_version,
            components,
            build: None,
            signed_by: None,
            origin: None,
        }
    }

    pub fn api_version(&self) -> Option<ApiVersion> {
        let v = semver::Version::parse(&self.api_version).ok()?;
        Some(ApiVersion::new(v.major as u32, v.minor as u32, v.patch as u32))
    }

    /// Cheap status: the file's size and mtime against the record, and the versions against
    /// this host. Loading and `plugins verify` check the full hash.
    pub fn status(&self, registry: &Registry, compat: &HostCompat) -> Status {
        let Some(api) = self.api_version() else {
            return Status::Incompatible(format!("unreadable API version `{}`", self.api_version));
        };
        if let Err(e) = compat.check(api, &self.libtorch_version) {
            return Status::Incompatible(e.to_string());
        }
        if let Some(why) = self.build.as_ref().and_then(|b| b.mismatch(crate::build_facts::HostLibtorch::cached())) {
            return Status::Incompatible(why);
        }
        match file_stamp(&registry.resolve(&self.path)) {
            Err(_) => Status::Missing,
            Ok(stamp) if stamp != (self.size, self.modified_ns) => Status::Modified,
            Ok(_) => Status::Loadable,
        }
    }
}

/// A declared component and, when this machine has it, its library and metadata.
#[derive(Clone, Copy, Debug)]
pub struct Installed<'r> {
    pub declared: &'r DeclaredComponent,
    pub found: Option<(&'r LibraryRecord, &'r ComponentRecord)>,
}

impl Installed<'_> {
    pub fn status(&self, registry: &Registry, compat: &HostCompat) -> Status {
        match self.found {
            Some((library, _)) => library.status(registry, compat),
            None => Status::NotInstalledHere,
        }
    }
}

/// The registry: its declaration and this machine's state, joined.
#[derive(Clone, Debug)]
pub struct Registry {
    path: PathBuf,
    declaration: Declaration,
    state: State,
}

impl Registry {
    /// An empty registry that will be written at `path`.
    pub fn empty(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            declaration: Declaration {
                format: FORMAT,
                plugin_dirs: default_plugin_dirs(),
                components: Vec::new(),
                trust: Trust::default(),
                channels: Vec::new(),
            },
            state: State::default(),
        }
    }

    /// Reads the registry at `path` and its store's state. A missing `registry.json` is an
    /// error naming it; a missing state is an empty one (nothing installed on this machine).
    /// A UTF-8 byte order mark before either file's JSON is ignored. Entries that cannot be
    /// right (an unknown kind, an invalid component name, the same component declared twice)
    /// refuse the whole registry, each named: the registry decides which native code is
    /// loaded, so a half-understood one is not used.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = match crate::fsio::read_text(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::Missing { path: path.to_path_buf() })
            }
            Err(cause) => return Err(RegistryError::Read { path: path.to_path_buf(), cause }),
        };
        let invalid = |cause: String| RegistryError::Parse { path: path.to_path_buf(), cause: one_line(&cause) };
        let value: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let format = match value.get("format") {
            None => 1,
            Some(format) => {
                format.as_u64().ok_or_else(|| invalid(format!("format: expected a whole number, found {format}")))?
            }
        };
        if format > u64::from(FORMAT) {
            return Err(RegistryError::Format { path: path.to_path_buf(), found: format });
        }
        let mut registry = Self::empty(path);
        if format < 2 {
            let old: FormatOne = parse_json(&text).map_err(|e| invalid(e.to_string()))?;
            check(library_problems(&old.libraries)).map_err(invalid)?;
            registry.declaration.plugin_dirs = old.plugin_dirs;
            registry.state.libraries = old.libraries;
            registry.declare_all();
        } else {
            registry.declaration = parse_json(&text).map_err(|e| invalid(e.to_string()))?;
            check(declaration_problems(&registry.declaration.components)).map_err(invalid)?;
        }
        let state_path = registry.state_path();
        match crate::fsio::read_text(&state_path) {
            Ok(text) if format >= 2 => {
                let invalid =
                    |cause: String| RegistryError::Parse { path: state_path.clone(), cause: one_line(&cause) };
                registry.state = parse_json(&text).map_err(|e| invalid(e.to_string()))?;
                check(library_problems(&registry.state.libraries)).map_err(invalid)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(cause) => return Err(RegistryError::Read { path: state_path, cause }),
        }
        Ok(registry)
    }

    /// Creates an empty registry at `path` (and its store); an existing one is an error.
    pub fn init(path: &Path) -> Result<Self, RegistryError> {
        if path.exists() {
            return Err(RegistryError::Exists { path: path.to_path_buf() });
        }
        let write = |cause| RegistryError::Write { path: path.to_path_buf(), cause };
        fs::create_dir_all(dir_of(path)).map_err(write)?;
        let registry = Self::empty(path);
        fs::create_dir_all(registry.store_dir()).map_err(write)?;
        registry.save()?;
        Ok(registry)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder relative paths in the registry are relative to.
    pub fn dir(&self) -> PathBuf {
        dir_of(&self.path).to_path_buf()
    }

    pub fn store_dir(&self) -> PathBuf {
        self.dir().join(STORE_DIR)
    }

    pub fn state_path(&self) -> PathBuf {
        self.store_dir().join(STATE_FILE)
    }

    pub fn plugin_dirs(&self) -> &[String] {
        &self.declaration.plugin_dirs
    }

    pub fn trust(&self) -> &Trust {
        &self.declaration.trust
    }

    pub fn trust_mut(&mut self) -> &mut Trust {
        &mut self.declaration.trust
    }

    pub fn channels(&self) -> &[String] {
        &self.declaration.channels
    }

    pub fn channels_mut(&mut self) -> &mut Vec<String> {
        &mut self.declaration.channels
    }

    pub fn resolve(&self, recorded: &str) -> PathBuf {
        let p = Path::new(recorded);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
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

    /// The libraries this machine has.
    pub fn libraries(&self) -> &[LibraryRecord] {
        &self.state.libraries
    }

    pub fn libraries_mut(&mut self) -> &mut Vec<LibraryRecord> {
        &mut self.state.libraries
    }

    /// Every declared component, with its library when this machine has it.
    pub fn installed(&self) -> impl Iterator<Item = Installed<'_>> {
        self.declaration.components.iter().map(|declared| Installed { declared, found: self.find(declared) })
    }

    fn find(&self, declared: &DeclaredComponent) -> Option<(&LibraryRecord, &ComponentRecord)> {
        self.state
            .libraries
            .iter()
            .flat_map(|l| l.components.iter().map(move |c| (l, c)))
            .find(|(l, c)| declared.is(c, &l.package))
    }

    /// Every (library, component) pair this machine has, declared or not.
    pub fn components(&self) -> impl Iterator<Item = (&LibraryRecord, &ComponentRecord)> {
        self.state.libraries.iter().flat_map(|l| l.components.iter().map(move |c| (l, c)))
    }

    /// Declares every component of every library in the state (install and scan do it for
    /// what they add), and keeps the declaration sorted so it is written the same every time.
    pub fn declare_all(&mut self) {
        let mut declared = std::mem::take(&mut self.declaration.components);
        for library in &self.state.libraries {
            for c in &library.components {
                let d = c.declared(&library.package);
                if !declared.contains(&d) {
                    declared.push(d);
                }
            }
        }
        declared.sort_by_key(DeclaredComponent::order);
        self.declaration.components = declared;
    }

    /// Removes declared components; returns them.
    pub fn undeclare(&mut self, matches: impl Fn(&DeclaredComponent) -> bool) -> Vec<DeclaredComponent> {
        let (removed, kept) = std::mem::take(&mut self.declaration.components).into_iter().partition(matches);
        self.declaration.components = kept;
        removed
    }

    /// Drops state records whose components are all undeclared; returns the files of the
    /// dropped records that are in the store (to delete once the registry is written).
    pub fn drop_undeclared_libraries(&mut self) -> Vec<PathBuf> {
        let store = self.store_dir();
        let declared = &self.declaration.components;
        let (kept, dropped): (Vec<LibraryRecord>, Vec<LibraryRecord>) = std::mem::take(&mut self.state.libraries)
            .into_iter()
            .partition(|l| l.components.iter().any(|c| declared.iter().any(|d| d.is(c, &l.package))));
        self.state.libraries = kept;
        dropped.iter().map(|l| self.resolve(&l.path)).filter(|p| p.starts_with(&store)).collect()
    }

    /// Writes the state, then the declaration, each atomically (see the module docs).
    pub fn save(&self) -> Result<(), RegistryError> {
        let state_path = self.state_path();
        let write = |path: &Path, value: &dyn erased::Json| {
            let mut text = value.to_pretty();
            text.push('\n');
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir).map_err(|cause| RegistryError::Write { path: path.to_path_buf(), cause })?;
            }
            crate::fsio::write_atomically(path, text.as_bytes(), 0o644)
                .map_err(|cause| RegistryError::Write { path: path.to_path_buf(), cause })
        };
        write(&state_path, &self.state)?;
        write(&self.path, &self.declaration)
    }

    /// Takes the registry's write lock (released when the returned file is dropped).
    pub fn lock(path: &Path) -> Result<File, RegistryError> {
        let lock_path = path.with_extension("json.lock");
        let lock_err = |source| RegistryError::Lock { path: lock_path.clone(), cause: source };
        let file = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(lock_err)?;
        file.lock().map_err(lock_err)?;
        Ok(file)
    }

    /// The declared components by kind, for messages (`installed models: cnn, mlp`).
    pub fn names_by_kind(&self) -> BTreeMap<Option<ComponentKind>, Vec<String>> {
        let mut names: BTreeMap<Option<ComponentKind>, Vec<String>> = BTreeMap::new();
        for d in &self.declaration.components {
            let list = names.entry(d.kind()).or_default();
            if !list.contains(&d.name) {
                list.push(d.name.clone());
            }
        }
        names
    }
}

/// The problems of one component entry at `at` (`components[4]`): a kind that is not one of
/// the five (as the registry writes them), a name the one name rule refuses (empty, with a
/// path separator or `..`, upper case...).
fn entry_problems(at: &str, kind: &str, name: &str, problems: &mut Vec<String>) {
    if !ComponentKind::ALL.iter().any(|k| k.as_str() == kind) {
        let kinds: Vec<&str> = ComponentKind::ALL.iter().map(|k| k.as_str()).collect();
        problems.push(format!("{at}.kind: `{kind}` is not a component kind (one of: {})", kinds.join(", ")));
    }
    if let Err(why) = check_component_name(name) {
        problems.push(format!("{at}.name: {why}"));
    }
}

/// The problems of `registry.json`'s components: each entry's, and an entry that declares a
/// component (kind, name, version) declared before.
fn declaration_problems(components: &[DeclaredComponent]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<(String, String, semver::Version), usize> = BTreeMap::new();
    for (i, c) in components.iter().enumerate() {
        let at = format!("components[{i}]");
        entry_problems(&at, &c.kind, &c.name, &mut problems);
        let key = (c.kind.clone(), normalized_name(&c.name), c.version.clone());
        if let Some(first) = seen.insert(key, i) {
            problems.push(format!("{at}: {} is declared twice (also components[{first}])", c.label()));
        }
    }
    problems
}

/// The problems of the libraries' component records (the state, or a format 1 registry).
fn library_problems(libraries: &[LibraryRecord]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, library) in libraries.iter().enumerate() {
        for (j, c) in library.components.iter().enumerate() {
            entry_problems(&format!("libraries[{i}].components[{j}]"), &c.kind, &c.name, &mut problems);
        }
    }
    problems
}

/// At most this many problems are listed in the one line of a registry error.
const LISTED_PROBLEMS: usize = 5;

/// `problems` as one line, or `Ok` when there are none.
fn check(problems: Vec<String>) -> Result<(), String> {
    match problems.len() {
        0 => Ok(()),
        1 => Err(problems[0].clone()),
        n => {
            let mut listed = problems[..n.min(LISTED_PROBLEMS)].join("; ");
            if n > LISTED_PROBLEMS {
                listed.push_str(&format!("; and {} more", n - LISTED_PROBLEMS));
            }
            Err(format!("{n} problems: {listed}"))
        }
    }
}

/// Pretty JSON of the two files' types behind one function.
mod erased {
    pub trait Json {
        fn to_pretty(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_pretty(&self) -> String {
            serde_json::to_string_pretty(self).expect("registry types serialize")
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_null_default_is_kept_and_an_absent_one_means_required() {
        let key = |default| ConfigKeyRecord {
            name: "k".into(),
            ty: "string".into(),
            default,
            description: String::new(),
            rules: Vec::new(),
            schema: None,
        };
        for record in [key(Some(Value::Null)), key(None), key(Some(Value::from(3)))] {
            let text = serde_json::to_string(&record).unwrap();
            assert_eq!(serde_json::from_str::<ConfigKeyRecord>(&text).unwrap(), record, "{text}");
        }
    }

    use super::*;

    fn library(package: &str, name: &str, version: &str) -> LibraryRecord {
        LibraryRecord {
            path: format!("{STORE_DIR}/lib{package}.so"),
            sha256: "00".repeat(32),
            size: 1,
            modified_ns: 1,
            verified_at: None,
            package: package.into(),
            package_version: version.into(),
            api_version: "1.1.0".into(),
            libtorch_version: "2.11.0".into(),
            components: vec![ComponentRecord {
                name: name.into(),
                kind: "model".into(),
                version: semver::Version::parse(version).unwrap(),
                description: String::new(),
                config: Vec::new(),
            }],
            build: None,
            signed_by: None,
            origin: None,
        }
    }

    #[test]
    fn the_declaration_is_machine_free_and_written_the_same_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        assert!(matches!(Registry::load(&path), Err(RegistryError::Missing { .. })));
        let mut registry = Registry::init(&path).unwrap();
        registry.libraries_mut().push(library("b", "mlp", "1.0.0"));
        registry.libraries_mut().push(library("a", "cnn", "2.0.0"));
        registry.declare_all();
        registry.save().unwrap();
        let first = fs::read_to_string(&path).unwrap();
        assert!(!first.contains("sha256") && !first.contains("modified"), "{first}");
        assert!(first.find("\"cnn\"").unwrap() < first.find("\"mlp\"").unwrap(), "sorted: {first}");
        let again = Registry::load(&path).unwrap();
        again.save().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), first);

        // Without its state (a fresh clone), the declared components are not installed here.
        fs::remove_file(again.state_path()).unwrap();
        let bare = Registry::load(&path).unwrap();
        let statuses: Vec<Status> = bare.installed().map(|i| i.status(&bare, &HostCompat::default())).collect();
        assert_eq!(statuses, [Status::NotInstalledHere, Status::NotInstalledHere]);
    }

    fn declared(kind: &str, name: &str, version: &str) -> Value {
        serde_json::json!({ "kind": kind, "name": name, "version": version, "package": "p" })
    }

    /// The error `Registry::load` gives for a declaration with `components`, after the file and
    /// without serde's position (`at line 1 column 84`).
    fn load_error(components: Vec<Value>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let text = serde_json::json!({ "format": 2, "components": components }).to_string();
        fs::write(&path, text).unwrap();
        let err = Registry::load(&path).unwrap_err().to_string();
        let prefix = format!("{}: the registry is not valid: ", path.display());
        let err = err.strip_prefix(&prefix).unwrap_or_else(|| panic!("{err}"));
        err.split(" at line ").next().unwrap().to_string()
    }

    #[test]
    fn a_broken_entry_is_named_and_refuses_the_registry() {
        let ok = declared("model", "mlp", "1.0.0");
        let name_rule =
            "is not a component name: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter";
        for (entry, error) in [
            (declared("model", "mlp", "one"), "components[1].version: unexpected character 'o' while parsing major version number".to_string()),
            (declared("gizmo", "g", "1.0.0"), "components[1].kind: `gizmo` is not a component kind (one of: dataset, preprocessor, data_augmentor, model, tracker)".to_string()),
            (declared("Model", "g", "1.0.0"), "components[1].kind: `Model` is not a component kind (one of: dataset, preprocessor, data_augmentor, model, tracker)".to_string()),
            (declared("model", "", "1.0.0"), format!("components[1].name: `` {name_rule}")),
            (declared("model", "../../etc/passwd", "1.0.0"), format!("components[1].name: `../../etc/passwd` {name_rule}")),
            (declared("model", "a/b", "1.0.0"), format!("components[1].name: `a/b` {name_rule}")),
            (declared("model", "..", "1.0.0"), format!("components[1].name: `..` {name_rule}")),
            (declared("model", "mlp", "1.0.0"), "components[1]: model mlp@1.0.0 is declared twice (also components[0])".to_string()),
            (Value::Null, "components[1]: invalid type: null, expected an object".to_string()),
            (serde_json::json!([]), "components[1]: expected an object, found an array".to_string()),
            (serde_json::json!({ "kind": "model" }), "components[1]: missing field `name`".to_string()),
        ] {
            assert_eq!(load_error(vec![ok.clone(), entry.clone()]), error, "{entry}");
        }
        // `-` and `_` are the same character in names.
        assert_eq!(
            load_error(vec![declared("model", "m-lp", "1.0.0"), declared("model", "m_lp", "1.0.0")]),
            "components[1]: model m_lp@1.0.0 is declared twice (also components[0])"
        );
        // Every problem is listed, up to five.
        let many: Vec<Value> = (0..8).map(|i| declared("gizmo", &format!("g{i}"), "1.0.0")).collect();
        let err = load_error(many);
        assert!(err.starts_with("8 problems: components[0].kind: `gizmo`"), "{err}");
        assert!(err.ends_with("; and 3 more"), "{err}");
        // The same name at another version, or of another kind, is fine.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let components = [ok, declared("model", "mlp", "1.1.0"), declared("dataset", "mlp", "1.0.0")];
        fs::write(&path, serde_json::json!({ "format": 2, "components": components }).to_string()).unwrap();
        assert_eq!(Registry::load(&path).unwrap().installed().count(), 3);
    }

    #[test]
    fn a_registry_that_is_no_object_or_of_an_unreadable_format_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        for (text, error) in [
            ("[]", "the registry is not valid: expected an object, found an array"),
            ("null", "the registry is not valid: expected an object, found null"),
            ("{\"format\": \"two\"}", "the registry is not valid: format: expected a whole number, found \"two\""),
            ("{\"format\": -1}", "the registry is not valid: format: expected a whole number, found -1"),
            (
                "{\"format\": 4294967298}",
                "registry format 4294967298 is newer than this host's (2); upgrade gymnos-host",
            ),
            (
                "{\"format\": 2, \"components\": {}}",
                "the registry is not valid: components: invalid type: map, expected a sequence at line 1 column 28",
            ),
            ("{ \"format\": 2, ", "the registry is not valid: EOF while parsing a value at line 1 column 15"),
        ] {
            fs::write(&path, text).unwrap();
            assert_eq!(
                Registry::load(&path).unwrap_err().to_string(),
                format!("{}: {error}", path.display()),
                "{text}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_is_ignored_in_both_files_and_the_state_is_checked_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let mut registry = Registry::init(&path).unwrap();
        registry.libraries_mut().push(library("a", "cnn", "2.0.0"));
        registry.declare_all();
        registry.save().unwrap();
        for file in [path.clone(), registry.state_path()] {
            let text = fs::read_to_string(&file).unwrap();
            fs::write(&file, format!("\u{feff}{text}")).unwrap();
        }
        let read = Registry::load(&path).unwrap();
        assert_eq!(read.installed().map(|i| i.declared.label()).collect::<Vec<_>>(), ["model cnn@2.0.0"]);
        assert!(read.installed().all(|i| i.found.is_some()));

        let mut state: Value =
            serde_json::from_str(fs::read_to_string(read.state_path()).unwrap().trim_start_matches('\u{feff}'))
                .unwrap();
        state["libraries"][0]["components"][0]["name"] = "../x".into();
        fs::write(read.state_path(), state.to_string()).unwrap();
        assert_eq!(
            Registry::load(&path).unwrap_err().to_string(),
            format!(
                "{}: the registry is not valid: libraries[0].components[0].name: `../x` is not a component name: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter",
                read.state_path().display()
            )
        );
        state["libraries"][0]["size"] = "big".into();
        fs::write(read.state_path(), state.to_string()).unwrap();
        let err = Registry::load(&path).unwrap_err().to_string();
        assert!(
            err.contains(
                "state.json: the registry is not valid: libraries[0].size: invalid type: string \"big\", expected u64"
            ),
            "{err}"
        );
    }

    #[test]
    fn format_one_registries_are_read_and_declare_their_libraries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let old = serde_json::json!({ "format": 1, "plugin_dirs": ["plugin-store"], "libraries": [library("a", "cnn", "1.0.0")] });
        fs::write(&path, old.to_string()).unwrap();
        let registry = Registry::load(&path).unwrap();
        let installed: Vec<String> = registry.installed().map(|i| i.declared.label()).collect();
        assert_eq!(installed, ["model cnn@1.0.0"]);
        assert!(registry.installed().all(|i| i.found.is_some()));
    }
}
