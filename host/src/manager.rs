//! Installing, removing, scanning and verifying plugins, and opening installed ones for use.
//!
//! Every change follows the same order: take the registry lock, check everything, copy files
//! into the store, and write the registry last (state, then declaration), atomically. A failure
//! before the final write leaves the registry as it was and removes the copies it made.
//!
//! A library is always loaded from the bytes that were hashed: install writes the bytes it read
//! into the content-addressed store and loads that copy by absolute path; scan, verify and
//! loading for a run hash the file they open.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use gymnos_plugin_api::ComponentKind;
use walkdir::WalkDir;

use crate::{
    build_facts::BuildFacts,
    compat::HostCompat,
    hash::sha256_bytes,
    library::{check_plugin_file, exports_manifest, LoadError, LoadedLibrary},
    package::{channel::ChannelError, signing, Package, PackageError, PackageManifest},
    probe::{Probe, ProbeError},
    registry::{file_stamp, LibraryDescription, LibraryRecord, Registry, RegistryError, STORE_DIR},
};

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: no gymnos plugin library found there{}", path.display(), list_reasons(.reasons))]
    NothingToInstall { path: PathBuf, reasons: Vec<String> },
    #[error("{}: {kind} `{name}@{version}` is already installed from another build ({existing}); pass --replace to replace it, or give the new build another version", path.display())]
    Conflict { path: PathBuf, kind: String, name: String, version: String, existing: String },
    #[error("`{name}@{version}` is not installed (installed versions of `{name}`: {installed})")]
    NotInstalled { name: String, version: String, installed: String },
    #[error("`{name}@{version}` names installed plugins of several kinds ({kinds}); say which with --kind")]
    Ambiguous { name: String, version: String, kinds: String },
    #[error("{}: the built-in plugin {package} is missing; build the workspace first (scripts/setup.sh)", path.display())]
    MissingBuiltin { path: PathBuf, package: String },
    #[error("{}", error.about(path))]
    Probe { path: PathBuf, error: ProbeError },
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error("{}: {reason}", path.display())]
    Signature { path: PathBuf, reason: String },
    #[error("{}: not a regular file or a folder (a device, a pipe or a socket); give a plugin library, a package or a folder", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: the package's manifest disagrees with its library: {reason}; not installed", path.display())]
    Disagrees { path: PathBuf, reason: String },
}

fn list_reasons(reasons: &[String]) -> String {
    if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join("; "))
    }
}

/// What `install` did with one library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallOutcome {
    Installed {
        source: PathBuf,
        stored: String,
        components: Vec<String>,
    },
    /// The same bytes were installed already; the store file is there and right.
    AlreadyInstalled {
        source: PathBuf,
        components: Vec<String>,
    },
    /// The same bytes were recorded, but the store file was missing or changed: rewritten.
    Restored {
        source: PathBuf,
        stored: String,
        components: Vec<String>,
    },
}

/// What `install` did, and what it passed over in folders.
#[derive(Debug, Default)]
pub struct InstallReport {
    pub outcomes: Vec<InstallOutcome>,
    /// Libraries in a folder that are no gymnos plugins.
    pub skipped: Vec<PathBuf>,
    /// Plugin libraries in a folder that could not be installed, with why.
    pub refused: Vec<String>,
}

/// What `scan` found.
#[derive(Debug, Default)]
pub struct ScanReport {
    pub libraries: usize,
    pub components: usize,
    /// Libraries found but refused, with why.
    pub refused: Vec<String>,
    /// Declared components no library was found for (kept: `install` restores them).
    pub unresolved: Vec<String>,
}

/// One library's verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub library: PathBuf,
    pub components: Vec<String>,
    /// `ok`, `missing` or `modified`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The registry plus the libraries loaded from it in this process.
pub struct PluginManager {
    pub registry: Registry,
    pub compat: HostCompat,
    loaded: Mutex<HashMap<PathBuf, Arc<LoadedLibrary>>>,
    /// Opens libraries this registry has not seen in a child process first (`crate::probe`);
    /// without one, install loads them here.
    probe: Option<Probe>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ManagerError + '_ {
    move |cause| ManagerError::Io { path: path.to_path_buf(), cause }
}

fn is_shared_library(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "so" || e == "dylib")
}

fn record_labels(record: &LibraryRecord) -> Vec<String> {
    record.components.iter().map(|c| format!("{} {}@{}", c.kind, c.name, c.version)).collect()
}

/// A path as the user meant it: a bare file name is the file in the current folder.
fn absolute(path: &Path) -> Result<PathBuf, ManagerError> {
    std::path::absolute(path).map_err(io_err(path))
}

/// A library read for installing: its source, bytes and hash, and what came with it.
struct Candidate {
    source: PathBuf,
    bytes: Vec<u8>,
    sha256: String,
    /// The package's manifest, the key that signed it, where it came from.
    manifest: Option<PackageManifest>,
    signed_by: Option<String>,
    origin: Option<String>,
}

impl Candidate {
    fn library(source: PathBuf, bytes: Vec<u8>, sha256: String) -> Self {
        Candidate { source, bytes, sha256, manifest: None, signed_by: None, origin: None }
    }
}

/// The store file of a library's bytes: named by content, so versions sit side by side.
fn store_name(source: &Path, sha256: &str) -> String {
    let stem = source.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "plugin".into());
    let ext = source.extension().map(|e| e.to_string_lossy().into_owned()).unwrap_or_else(|| "so".into());
    format!("{stem}-{}.{ext}", &sha256[..16])
}

impl PluginManager {
    pub fn open(registry_path: &Path) -> Result<Self, ManagerError> {
        Ok(Self::new(Registry::load(registry_path)?, HostCompat::default()))
    }

    pub fn new(registry: Registry, compat: HostCompat) -> Self {
        Self { registry, compat, loaded: Mutex::new(HashMap::new()), probe: None }
    }

    /// Opens libraries not installed yet in `probe`'s child process before anything here does.
    pub fn with_probe(mut self, probe: Probe) -> Self {
        self.probe = Some(probe);
        self
    }

    /// A package, checked against this registry's trust: its signature verified against the
    /// trusted keys (a bad one is always refused; a missing or unknown one when the registry
    /// requires signatures). Returns the installable library and who signed it.
    fn package_candidate(&self, package: Package, origin: String) -> Result<Candidate, ManagerError> {
        let trust = self.registry.trust();
        let path = package.path.clone();
        let refuse = |reason: String| ManagerError::Signature { path: path.clone(), reason };
        let signed_by = match &package.signature {
            Some(signature) => match signing::verify(&trust.keys, signature, &package.manifest_bytes) {
                Ok(id) => Some(id),
                Err(e) => {
                    let unknown = signing::signer_of(signature)
                        .is_some_and(|id| !trust.keys.iter().any(|k| k.id == id));
                    if !unknown || trust.require_signatures {
                        return Err(refuse(format!("{e}; not installed")));
                    }
                    None
                }
            },
            None if trust.require_signatures => {
                return Err(refuse(
                    "unsigned, and this registry requires signatures (`plugins trust require on`): sign it with `gymnos-host plugins pack LIB --sign KEY`; not installed"
                        .into(),
                ))
            }
            None => None,
        };
        let sha256 = sha256_bytes(&package.library);
        let source = package.path.clone();
        Ok(Candidate {
            source,
            sha256,
            bytes: package.library,
            manifest: Some(package.manifest),
            signed_by,
            origin: Some(origin),
        })
    }

    /// A bare library is refused when the registry installs only signed packages.
    fn unsigned_allowed(&self, path: &Path) -> Result<(), ManagerError> {
        match self.registry.trust().require_signatures {
            true => Err(ManagerError::Signature {
                path: path.to_path_buf(),
                reason: "a bare library, and this registry installs only signed packages (`plugins trust require on`): install its signed .gplugin instead; not installed".into(),
            }),
            false => Ok(()),
        }
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
        let library = Arc::new(LoadedLibrary::open(&key, contents, &self.compat)?);
        loaded.insert(key, library.clone());
        Ok(library)
    }

    /// Reads a file and returns its bytes and sha256 (one read serves both and the ELF check).
    fn read_hashed(path: &Path) -> Result<(Vec<u8>, String), LoadError> {
        let bytes = fs::read(path).map_err(|e| LoadError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
        let sha256 = sha256_bytes(&bytes);
        Ok((bytes, sha256))
    }

    /// Loads an installed library after checking that its file still has the recorded hash.
    /// The hash is compared before anything of the library runs.
    pub fn load_installed(&self, record: &LibraryRecord) -> Result<Arc<LoadedLibrary>, LoadError> {
        let path = self.registry.resolve(&record.path);
        let (bytes, actual) = Self::read_hashed(&path)?;
        if actual != record.sha256 {
            return Err(LoadError::HashMismatch { path, expected: record.sha256.clone(), actual });
        }
        self.load_checked(&path, Some(&bytes))
    }

    /// The libraries named by `paths`: files as given (each must be a plugin), folders walked
    /// (libraries that are no plugins are skipped, and plugins that cannot be read are refused,
    /// both reported).
    fn collect(&self, paths: &[PathBuf], report: &mut InstallReport) -> Result<Vec<Candidate>, ManagerError> {
        let mut found = Vec::new();
        for path in paths {
            let path = absolute(path)?;
            let meta = fs::metadata(&path).map_err(io_err(&path))?;
            if !meta.is_dir() && !meta.is_file() {
                return Err(ManagerError::NotAFile { path });
            }
            if !meta.is_dir() && crate::package::is_package(&path) {
                let package = Package::read(&path)?;
                found.push(self.package_candidate(package, path.display().to_string())?);
                continue;
            }
            if !meta.is_dir() {
                self.unsigned_allowed(&path)?;
                let (bytes, sha256) = Self::read_hashed(&path)?;
                check_plugin_file(&path, &bytes)?;
                found.push(Candidate::library(path, bytes, sha256));
                continue;
            }
            let before = found.len();
            let mut reasons = Vec::new();
            for entry in WalkDir::new(&path).follow_links(true).sort_by_file_name() {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        reasons.push(format!("{}: {e}", e.path().unwrap_or(&path).display()));
                        continue;
                    }
                };
                let installable = is_shared_library(entry.path()) || crate::package::is_package(entry.path());
                if !entry.file_type().is_file() || !installable {
                    continue;
                }
                let source = entry.path().to_path_buf();
                if crate::package::is_package(&source) {
                    let package = Package::read(&source).map_err(ManagerError::from);
                    match package.and_then(|p| self.package_candidate(p, source.display().to_string())) {
                        Ok(candidate) => found.push(candidate),
                        Err(e) => reasons.push(e.to_string()),
                    }
                    continue;
                }
                if let Err(e) = self.unsigned_allowed(&source) {
                    reasons.push(e.to_string());
                    continue;
                }
                match Self::read_hashed(&source).and_then(|(bytes, sha256)| {
                    check_plugin_file(&source, &bytes)?;
                    Ok((bytes, sha256))
                }) {
                    Ok((bytes, sha256)) => found.push(Candidate::library(source, bytes, sha256)),
                    Err(LoadError::NotAPlugin { .. }) => report.skipped.push(source),
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            if found.len() == before && reasons.is_empty() {
                return Err(ManagerError::NothingToInstall { path, reasons: Vec::new() });
            }
            report.refused.extend(reasons);
        }
        Ok(found)
    }

    /// Installs libraries and packages into the store and the registry. Named files are all or
    /// nothing; in folders, every plugin that can be installed is, and the others are reported.
    pub fn install(&mut self, paths: &[PathBuf], replace: bool) -> Result<InstallReport, ManagerError> {
        let _lock = Registry::lock(self.registry.path())?;
        self.registry = Registry::load(self.registry.path())?;
        let mut report = InstallReport::default();
        let named_files: Vec<PathBuf> =
            paths.iter().filter(|p| !p.is_dir()).map(|p| absolute(p)).collect::<Result<_, _>>()?;
        let candidates = self.collect(paths, &mut report)?;
        let first = paths.first().cloned().unwrap_or_default();
        self.commit(candidates, &named_files, replace, report, &first)
    }

    /// Installs the highest version of `reference` (of `kind`) that one of `channels` offers
    /// built for this host: the first channel that has one wins.
    pub fn install_from_channels(
        &mut self,
        reference: &crate::PluginRef,
        kind: Option<ComponentKind>,
        channels: &[crate::package::channel::Channel],
        replace: bool,
    ) -> Result<InstallReport, ManagerError> {
        let _lock = Registry::lock(self.registry.path())?;
        self.registry = Registry::load(self.registry.path())?;
        let (channel, entry) = self.choose(reference, kind, channels)?;
        let package = channel.fetch(&entry)?;
        let source = package.path.clone();
        let candidate = self.package_candidate(package, format!("channel {channel}"))?;
        self.commit(vec![candidate], std::slice::from_ref(&source), replace, InstallReport::default(), &source)
    }

    /// The channel and package `reference` resolves to: the highest matching version built for
    /// this host, in the first channel that has one.
    pub fn choose(
        &self,
        reference: &crate::PluginRef,
        kind: Option<ComponentKind>,
        channels: &[crate::package::channel::Channel],
    ) -> Result<(crate::package::channel::Channel, crate::package::channel::IndexEntry), ManagerError> {
        use crate::package::channel::{candidates, ChannelError};
        let host = crate::build_facts::HostLibtorch::cached();
        let mut refused = Vec::new();
        for channel in channels {
            let index = channel.index()?;
            let found =
                candidates(&index, &reference.name, kind.map(|k| k.as_str()), &reference.req, &self.compat, host);
            if let Some((entry, _, _)) = found.iter().find(|(_, _, why)| why.is_none()) {
                return Ok((channel.clone(), (*entry).clone()));
            }
            refused.extend(found.iter().map(|(_, c, why)| {
                format!("{}@{} in {} ({})", c.name, c.version, channel, why.as_deref().unwrap_or_default())
            }));
        }
        let listed: Vec<String> = channels.iter().map(ToString::to_string).collect();
        Err(ChannelError::Unusable {
            channel: listed.join(", "),
            reason: match refused.is_empty() {
                true => format!("no package offers `{reference}`"),
                false => format!("no package of `{reference}` is built for this host: {}", refused.join("; ")),
            },
        }
        .into())
    }

    /// Writes `candidates` into the store and the registry; see [`PluginManager::install`].
    fn commit(
        &mut self,
        candidates: Vec<Candidate>,
        named_files: &[PathBuf],
        replace: bool,
        mut report: InstallReport,
        first: &Path,
    ) -> Result<InstallReport, ManagerError> {
        let mut next = self.registry.clone();
        let store = next.store_dir();
        fs::create_dir_all(&store).map_err(io_err(&store))?;
        // Store files this install wrote; removed again if it fails.
        let mut written: Vec<PathBuf> = Vec::new();
        let discard = |written: &[PathBuf]| {
            for file in written {
                let _ = fs::remove_file(file);
            }
        };
        for candidate in candidates {
            let named = named_files.contains(&candidate.source);
            match self.install_one(&mut next, &candidate, replace, &mut written) {
                Ok(outcome) => report.outcomes.push(outcome),
                Err(e) if !named => report.refused.push(e.to_string()),
                Err(e) => {
                    discard(&written);
                    return Err(e);
                }
            }
        }
        if report.outcomes.is_empty() {
            discard(&written);
            let reasons = std::mem::take(&mut report.refused);
            return Err(ManagerError::NothingToInstall { path: first.to_path_buf(), reasons });
        }
        next.declare_all();
        let orphans = next.drop_undeclared_libraries();
        if let Err(e) = next.save() {
            discard(&written);
            return Err(e.into());
        }
        self.remove_store_files(&next, &orphans);
        self.registry = next;
        Ok(report)
    }

    /// Copies one library into the store (unless its exact bytes are there), loads the copy,
    /// and records it in `next`.
    fn install_one(
        &self,
        next: &mut Registry,
        candidate: &Candidate,
        replace: bool,
        written: &mut Vec<PathBuf>,
    ) -> Result<InstallOutcome, ManagerError> {
        let Candidate { source, bytes, sha256, .. } = candidate;
        let known = next.libraries().iter().position(|l| &l.sha256 == sha256);
        let stored = match known {
            Some(i) => next.libraries()[i].path.clone(),
            None => format!("{STORE_DIR}/{}", store_name(source, sha256)),
        };
        let dest = next.resolve(&stored);
        let intact = fs::read(&dest).is_ok_and(|on_disk| sha256_bytes(&on_disk) == *sha256);
        if !intact {
            crate::fsio::write_atomically(&dest, bytes, 0o755).map_err(io_err(&dest))?;
            written.push(dest.clone());
        }
        // Bytes this registry has not seen are opened in the probe's process first (and then
        // never here); bytes it has were opened before.
        let description = match (&self.probe, known) {
            (Some(probe), None) => {
                probe.describe(&dest).map_err(|error| ManagerError::Probe { path: source.clone(), error })?
            }
            _ => LibraryDescription::of(&*self.load_checked(&dest, Some(bytes)).map_err(|e| e.at(source))?),
        };
        let stamp = file_stamp(&dest).map_err(io_err(&dest))?;
        let mut described = LibraryRecord::described(description, stored.clone(), sha256.clone(), stamp);
        if let Some(reason) = candidate.manifest.as_ref().and_then(|m| m.disagreement(&described)) {
            return Err(ManagerError::Disagrees { path: source.clone(), reason });
        }
        described.build = BuildFacts::of(bytes);
        described.signed_by = candidate.signed_by.clone();
        described.origin = candidate.origin.clone();
        let components = record_labels(&described);
        if let Some(i) = known {
            // Recorded afresh: components removed or replaced since come back with it.
            // The same bytes again: who signed them, and where they came from, still hold when
            // they now come as a bare library.
            let record = &mut next.libraries_mut()[i];
            let verified_at = record.verified_at.take();
            let signed_by = described.signed_by.take().or_else(|| record.signed_by.take());
            let origin = described.origin.take().or_else(|| record.origin.take());
            *record = LibraryRecord { verified_at, signed_by, origin, ..described };
            return Ok(match intact {
                true => InstallOutcome::AlreadyInstalled { source: source.clone(), components },
                false => InstallOutcome::Restored { source: source.clone(), stored, components },
            });
        }
        for c in &described.components {
            let version = c.version.clone();
            let same = |name: &str, kind: &str, v: &semver::Version| {
                gymnos_plugin_api::normalized_name(name) == gymnos_plugin_api::normalized_name(&c.name)
                    && kind == c.kind.as_str()
                    && *v == version
            };
            let clash = next.installed().find(|i| same(&i.declared.name, &i.declared.kind, &i.declared.version));
            let Some(clash) = clash else { continue };
            // Declared by the registry but not installed on this machine (a cloned repository,
            // a copied registry): this library is what the declaration asks for.
            if clash.found.is_none() && clash.declared.package == described.package {
                continue;
            }
            if !replace {
                return Err(ManagerError::Conflict {
                    path: source.clone(),
                    kind: c.kind.to_string(),
                    name: c.name.to_string(),
                    version: c.version.to_string(),
                    existing: clash
                        .found
                        .map_or_else(|| "a library not installed here".into(), |(l, _)| l.path.clone()),
                });
            }
            next.undeclare(|d| same(&d.name, &d.kind, &d.version));
            for l in next.libraries_mut() {
                l.components.retain(|r| !same(&r.name, &r.kind, &r.version));
            }
        }
        next.libraries_mut().push(described);
        Ok(InstallOutcome::Installed { source: source.clone(), stored, components })
    }

    /// Installs the built-in plugins: the libraries of [`crate::builtin::PACKAGES`] found in
    /// `dir` (the folder the binaries were built into).
    pub fn install_builtins(&mut self, dir: &Path, replace: bool) -> Result<InstallReport, ManagerError> {
        let mut paths = Vec::new();
        for package in crate::builtin::PACKAGES {
            let path = dir.join(crate::builtin::library_file(package));
            if !path.is_file() {
                return Err(ManagerError::MissingBuiltin { path, package: package.to_string() });
            }
            paths.push(path);
        }
        self.install(&paths, replace)
    }

    /// Removes `name@version` (exact version; `-` and `_` alike in the name). The library file
    /// is deleted from the store when none of its components remain.
    /// Removes `name@version` of `kind` (any kind when `None`, if only one kind has it).
    pub fn remove(
        &mut self,
        name: &str,
        version: &semver::Version,
        kind: Option<ComponentKind>,
    ) -> Result<Vec<String>, ManagerError> {
        let _lock = Registry::lock(self.registry.path())?;
        let mut next = Registry::load(self.registry.path())?;
        let wanted = gymnos_plugin_api::normalized_name(name);
        let named = |d: &crate::registry::DeclaredComponent| {
            gymnos_plugin_api::normalized_name(&d.name) == wanted && &d.version == version
        };
        let mut kinds: Vec<String> =
            next.installed().filter(|i| named(i.declared)).map(|i| i.declared.kind.clone()).collect();
        kinds.sort();
        kinds.dedup();
        if kind.is_none() && kinds.len() > 1 {
            let (name, version, kinds) = (name.to_string(), version.to_string(), kinds.join(", "));
            return Err(ManagerError::Ambiguous { name, version, kinds });
        }
        let kind_ok = |k: &str| kind.is_none_or(|kind| kind.as_str() == k);
        let hit = |n: &str, v: &semver::Version, k: &str| {
            gymnos_plugin_api::normalized_name(n) == wanted && v == version && kind_ok(k)
        };
        let removed: Vec<String> =
            next.undeclare(|d| hit(&d.name, &d.version, &d.kind)).iter().map(|d| d.label()).collect();
        if removed.is_empty() {
            let mut installed: Vec<String> = next
                .installed()
                .filter(|i| gymnos_plugin_api::normalized_name(&i.declared.name) == wanted)
                .map(|i| i.declared.version.to_string())
                .collect();
            installed.sort();
            return Err(ManagerError::NotInstalled {
                name: name.to_string(),
                version: version.to_string(),
                installed: if installed.is_empty() { "none".into() } else { installed.join(", ") },
            });
        }
        for library in next.libraries_mut() {
            library.components.retain(|c| !hit(&c.name, &c.version, c.kind.as_str()));
        }
        let orphans = next.drop_undeclared_libraries();
        next.save()?;
        self.remove_store_files(&next, &orphans);
        self.registry = next;
        Ok(removed)
    }

    /// Rebuilds the state from the libraries found under the registry's `plugin_dirs` and
    /// declares what it finds. Declared components it finds no library for stay declared (and
    /// records of missing or changed files stay recorded), so that `install` can repair them.
    pub fn scan(&mut self) -> Result<ScanReport, ManagerError> {
        let _lock = Registry::lock(self.registry.path())?;
        let mut next = Registry::load(self.registry.path())?;
        let mut report = ScanReport::default();
        let dirs: Vec<PathBuf> = next.plugin_dirs().iter().map(|d| next.resolve(d)).filter(|d| d.is_dir()).collect();
        for dir in dirs {
            for entry in WalkDir::new(&dir).follow_links(true).sort_by_file_name().into_iter().filter_map(Result::ok) {
                let path = entry.path();
                if !entry.file_type().is_file() || !is_shared_library(path) {
                    continue;
                }
                let (bytes, sha256) = match Self::read_hashed(path) {
                    Ok(read) => read,
                    Err(e) => {
                        report.refused.push(e.to_string());
                        continue;
                    }
                };
                if !exports_manifest(&bytes) {
                    continue;
                }
                // A library this registry has not seen is opened in the probe's process first.
                let seen = next.libraries().iter().any(|l| l.sha256 == sha256);
                let described = match (&self.probe, seen) {
                    (Some(probe), false) => {
                        probe.describe(path).map_err(|error| ManagerError::Probe { path: path.to_path_buf(), error })
                    }
                    _ => self.load_checked(path, Some(&bytes)).map(|l| LibraryDescription::of(&l)).map_err(Into::into),
                };
                let description = match described {
                    Ok(description) => description,
                    Err(e) => {
                        report.refused.push(e.to_string());
                        continue;
                    }
                };
                let recorded = next.record_path(path);
                let stamp = file_stamp(path).map_err(io_err(path))?;
                report.libraries += 1;
                report.components += description.components.len();
                let mut record = LibraryRecord::described(description, recorded.clone(), sha256.clone(), stamp);
                record.build = BuildFacts::of(&bytes);
                let libraries = next.libraries_mut();
                match libraries.iter().position(|l| l.sha256 == sha256 || l.path == recorded) {
                    Some(i) if libraries[i].sha256 == sha256 => {
                        let (verified_at, signed_by, origin) = (
                            libraries[i].verified_at.clone(),
                            libraries[i].signed_by.clone(),
                            libraries[i].origin.clone(),
                        );
                        libraries[i] = LibraryRecord { verified_at, signed_by, origin, ..record }
                    }
                    Some(i) => libraries[i] = record,
                    None => libraries.push(record),
                }
            }
        }
        next.declare_all();
        report.unresolved = next.installed().filter(|i| i.found.is_none()).map(|i| i.declared.label()).collect();
        next.save()?;
        self.registry = next;
        Ok(report)
    }

    /// Hashes every installed library and compares it with its record. Records found right get
    /// their verification time and current size and modification time.
    pub fn verify(&mut self) -> Result<Vec<Verification>, ManagerError> {
        let _lock = Registry::lock(self.registry.path())?;
        let mut next = Registry::load(self.registry.path())?;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut results = Vec::new();
        let dir = next.dir();
        for record in next.libraries_mut() {
            let path = if Path::new(&record.path).is_absolute() {
                PathBuf::from(&record.path)
            } else {
                dir.join(&record.path)
            };
            let components = record.components.iter().map(|c| format!("{} {}@{}", c.kind, c.name, c.version)).collect();
            let (status, detail) = match fs::read(&path) {
                Err(e) => ("missing", Some(format!("cannot read it: {e}"))),
                Ok(bytes) => match sha256_bytes(&bytes) {
                    actual if actual == record.sha256 => {
                        record.verified_at = Some(now.clone());
                        if let Ok(stamp) = file_stamp(&path) {
                            (record.size, record.modified_ns) = stamp;
                        }
                        ("ok", None)
                    }
                    actual => {
                        ("modified", Some(format!("sha256 is {actual}, the registry recorded {}", record.sha256)))
                    }
                },
            };
            results.push(Verification { library: path, components, status, detail });
        }
        next.save()?;
        self.registry = next;
        Ok(results)
    }

    /// Deletes store files nothing in `registry` refers to any more.
    fn remove_store_files(&self, registry: &Registry, files: &[PathBuf]) {
        for file in files {
            if registry.libraries().iter().any(|l| &registry.resolve(&l.path) == file) {
                continue;
            }
            if let Err(e) = fs::remove_file(file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %file.display(), error = %e, "could not delete an uninstalled library");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A registry declaring a dataset and a tracker that share the name `csv`.
    fn registry_with_a_shared_name() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        let declared = serde_json::json!({
            "format": 2,
            "plugin_dirs": ["plugin-store"],
            "components": [
                { "kind": "dataset", "name": "csv", "version": "1.0.0", "package": "gymnos-csv-dataset" },
                { "kind": "tracker", "name": "csv", "version": "1.0.0", "package": "some-csv-tracker" }
            ]
        });
        fs::write(&path, declared.to_string()).unwrap();
        (dir, path)
    }

    #[test]
    fn removing_a_name_that_several_kinds_share_needs_the_kind() {
        let (_dir, path) = registry_with_a_shared_name();
        let mut manager = PluginManager::open(&path).unwrap();
        let version = semver::Version::new(1, 0, 0);
        let err = manager.remove("csv", &version, None).unwrap_err().to_string();
        assert_eq!(
            err,
            "`csv@1.0.0` names installed plugins of several kinds (dataset, tracker); say which with --kind"
        );
        assert_eq!(manager.remove("csv", &version, Some(ComponentKind::Tracker)).unwrap(), ["tracker csv@1.0.0"]);
        let left: Vec<String> = Registry::load(&path).unwrap().installed().map(|i| i.declared.label()).collect();
        assert_eq!(left, ["dataset csv@1.0.0"]);
    }

    #[test]
    fn a_reference_without_a_kind_to_a_name_several_kinds_share_is_refused() {
        let (_dir, path) = registry_with_a_shared_name();
        let registry = Registry::load(&path).unwrap();
        let reference = "csv".parse().unwrap();
        let err = crate::plugin_ref::find_installed(&registry, &HostCompat::default(), None, &reference).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`csv` names installed plugins of several kinds (dataset, tracker); say which with --kind"
        );
        let by_kind = crate::plugin_ref::find_installed(
            &registry,
            &HostCompat::default(),
            Some(ComponentKind::Tracker),
            &reference,
        );
        assert!(by_kind.unwrap_err().to_string().contains("not loadable"), "resolved among trackers only");
    }
}
