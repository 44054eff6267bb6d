//! Plugin packages: how a plugin travels between teams.
//!
//! A package is one file, `NAME-VERSION-TARGET.gplugin`: a gzipped tar archive holding
//!
//! - `manifest.json`: what the library is, readable without loading it ([`PackageManifest`]:
//!   its components and their configuration keys, versions, the plugin API and libtorch it was
//!   built against, its build facts, its sha256);
//! - `lib/<file>.so`: the library;
//! - `README.md`, `LICENSE*` when the crate has them;
//! - `manifest.json.minisig`: optionally, a minisign signature of `manifest.json` (which holds
//!   the library's hash, so the signature covers the library too).
//!
//! Reading a package checks everything before anything is used: only those entries, regular
//! files at those paths (nothing that climbs out), a manifest of this format, a library whose
//! sha256 and build facts are the manifest's. `signing` checks signatures against a registry's
//! trusted keys; `channel` publishes packages to, and finds them in, channels.

pub mod channel;
pub mod signing;

use std::{
    io::{BufRead, Read},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{build_facts::BuildFacts, hash::sha256_bytes, registry::LibraryRecord};

/// The package file's extension.
pub const EXTENSION: &str = "gplugin";
/// The manifest format this host writes and reads.
pub const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SIGNATURE: &str = "manifest.json.minisig";
/// The largest package this host reads (a library is a few MB; the limit refuses a bomb).
const MAX_ENTRY_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
    #[error("{}: not a gymnos plugin package: {reason}", path.display())]
    NotAPackage { path: PathBuf, reason: String },
    #[error("{}: the package is damaged: {reason}", path.display())]
    Damaged { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Refused { path: PathBuf, reason: String },
}

/// One component, as a package's manifest lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackagedComponent {
    pub kind: String,
    pub name: String,
    pub version: semver::Version,
    pub description: String,
    /// Its configuration keys, as the registry records them (types, defaults, rules, schemas).
    pub config: Vec<crate::registry::ConfigKeyRecord>,
}

/// `manifest.json`: the library, described without loading it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackageManifest {
    pub format: u32,
    /// The Cargo package and version of the library.
    pub package: String,
    pub version: semver::Version,
    pub components: Vec<PackagedComponent>,
    /// The plugin API the library was built against, and the hosts that load it (`^1.2`).
    pub api_version: String,
    pub host_range: String,
    /// libtorch's version the library was built against (major.minor must match the host's).
    pub libtorch: String,
    pub build: BuildFacts,
    /// When the package was made (RFC 3339).
    pub built_at: String,
    /// The library's file name inside `lib/`, size and sha256.
    pub library: String,
    pub library_bytes: u64,
    pub library_sha256: String,
    /// Other files of the package (README, licence).
    #[serde(default)]
    pub documents: Vec<String>,
}

impl PackageManifest {
    /// The manifest of a library the registry has recorded (from its probe).
    pub fn of(record: &LibraryRecord, file_name: &str, bytes: &[u8], build: BuildFacts) -> Self {
        let api = semver::Version::parse(&record.api_version).ok();
        Self {
            format: FORMAT,
            package: record.package.clone(),
            version: semver::Version::parse(&record.package_version).unwrap_or(semver::Version::new(0, 0, 0)),
            components: record
                .components
                .iter()
                .map(|c| PackagedComponent {
                    kind: c.kind.clone(),
                    name: c.name.clone(),
                    version: c.version.clone(),
                    description: c.description.clone(),
                    config: c.config.clone(),
                })
                .collect(),
            api_version: record.api_version.clone(),
            host_range: api.map_or_else(String::new, |v| format!("^{}.{}", v.major, v.minor)),
            libtorch: record.libtorch_version.clone(),
            build,
            built_at: crate::record::now(),
            library: file_name.to_string(),
            library_bytes: bytes.len() as u64,
            library_sha256: sha256_bytes(bytes),
            documents: Vec::new(),
        }
    }

    /// `NAME-VERSION-TARGET.gplugin`.
    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.{EXTENSION}", self.package, self.version, self.build.target)
    }

    /// `kind name@version` of each component.
    pub fn labels(&self) -> Vec<String> {
        self.components.iter().map(|c| format!("{} {}@{}", c.kind, c.name, c.version)).collect()
    }

    /// What the library itself says (its probe's record) that the manifest does not: every
    /// component, version and key must agree.
    pub fn disagreement(&self, record: &LibraryRecord) -> Option<String> {
        let theirs = PackageManifest::of(record, &self.library, &[], self.build.clone());
        let differs = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            Some(format!("the manifest says {what} {a:?}, the library says {b:?}"))
        };
        if self.package != theirs.package || self.version != theirs.version {
            return differs("package", &(&self.package, &self.version), &(&theirs.package, &theirs.version));
        }
        if self.api_version != theirs.api_version {
            return differs("plugin API", &self.api_version, &theirs.api_version);
        }
        if self.libtorch != theirs.libtorch {
            return differs("libtorch", &self.libtorch, &theirs.libtorch);
        }
        if self.components != theirs.components {
            return differs("components", &self.labels(), &theirs.labels());
        }
        None
    }
}

/// A package read whole and checked: its manifest (and its bytes, which a signature covers), its
/// signature if any, the library's bytes and its documents.
#[derive(Debug)]
pub struct Package {
    pub path: PathBuf,
    pub manifest: PackageManifest,
    pub manifest_bytes: Vec<u8>,
    pub signature: Option<String>,
    pub library: Vec<u8>,
    pub documents: Vec<(String, Vec<u8>)>,
}

impl Package {
    /// Reads the package at `path`, refusing anything but a well-formed one: see the module's
    /// docs.
    pub fn read(path: &Path) -> Result<Package, PackageError> {
        let file = std::fs::File::open(path).map_err(|cause| PackageError::Io { path: path.to_path_buf(), cause })?;
        Self::from_reader(path, file)
    }

    /// Reads a package from `bytes` (downloaded), named `path` in messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Package, PackageError> {
        Self::from_reader(path, bytes)
    }

    fn from_reader(path: &Path, reader: impl Read) -> Result<Package, PackageError> {
        let damaged = |reason: String| PackageError::Damaged { path: path.to_path_buf(), reason };
        let foreign = |reason: String| PackageError::NotAPackage { path: path.to_path_buf(), reason };
        // gzip's magic first: a file of another kind is foreign, not a damaged package.
        let mut reader = std::io::BufReader::new(reader);
        let head = reader.fill_buf().map_err(|e| damaged(format!("cannot read it ({e})")))?;
        if !head.starts_with(&[0x1f, 0x8b]) {
            return Err(foreign(if head.is_empty() {
                "the file is empty".into()
            } else {
                "not a gzipped tar archive".into()
            }));
        }
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
        let (mut manifest_bytes, mut signature, mut libraries, mut documents) = (None, None, Vec::new(), Vec::new());
        let entries = archive.entries().map_err(|e| foreign(format!("not a gzipped tar archive ({e})")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| damaged(format!("cannot read its archive ({e})")))?;
            let name = entry.path().map_err(|e| damaged(e.to_string()))?.to_string_lossy().into_owned();
            let kind = entry.header().entry_type();
            if !kind.is_file() {
                return Err(foreign(format!("`{name}` is not a regular file (a link or a folder)")));
            }
            let safe = !name.starts_with('/') && !name.split('/').any(|c| c == ".." || c.is_empty() || c == ".");
            if !safe {
                return Err(PackageError::Refused {
                    path: path.to_path_buf(),
                    reason: format!("the archive's entry `{name}` would leave the package's folder; refused"),
                });
            }
            let size = entry.header().size().map_err(|e| damaged(e.to_string()))?;
            if size > MAX_ENTRY_BYTES {
                return Err(foreign(format!("`{name}` is {size} bytes, more than a package holds")));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            entry.read_to_end(&mut bytes).map_err(|e| damaged(format!("`{name}` cannot be read ({e})")))?;
            match name.as_str() {
                MANIFEST => manifest_bytes = Some(bytes),
                SIGNATURE => {
                    signature = Some(String::from_utf8(bytes).map_err(|_| damaged("the signature is not text".into()))?)
                }
                lib if lib.starts_with("lib/") && !lib[4..].contains('/') => {
                    libraries.push((lib[4..].to_string(), bytes))
                }
                doc if !doc.contains('/')
                    && (doc.starts_with("README") || doc.starts_with("LICENSE") || doc.starts_with("LICENCE")) =>
                {
                    documents.push((doc.to_string(), bytes))
                }
                other => return Err(foreign(format!("it holds `{other}`, which no package holds"))),
            }
        }
        let manifest_bytes = manifest_bytes.ok_or_else(|| foreign(format!("it has no {MANIFEST}")))?;
        let manifest: PackageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| damaged(format!("{MANIFEST} is not a package manifest ({e})")))?;
        if manifest.format > FORMAT {
            return Err(foreign(format!(
                "its manifest format {} is newer than this host's ({FORMAT}); upgrade gymnos-host",
                manifest.format
            )));
        }
        let [(library_name, library)] = <[_; 1]>::try_from(libraries).map_err(|l: Vec<(String, Vec<u8>)>| {
            foreign(format!("it holds {} libraries under lib/, one expected", l.len()))
        })?;
        if library_name != manifest.library {
            return Err(damaged(format!("its library is lib/{library_name}, the manifest names {}", manifest.library)));
        }
        let actual = sha256_bytes(&library);
        if actual != manifest.library_sha256 || library.len() as u64 != manifest.library_bytes {
            return Err(damaged(format!(
                "lib/{library_name} has sha256 {actual} ({} bytes), the manifest says {} ({} bytes): it was changed after packing",
                library.len(),
                manifest.library_sha256,
                manifest.library_bytes
            )));
        }
        match BuildFacts::of(&library) {
            Some(facts) if facts == manifest.build => {}
            Some(facts) => {
                return Err(damaged(format!(
                    "the manifest says the library was built {:?}, the library says {facts:?}",
                    manifest.build
                )))
            }
            None => return Err(damaged(format!("lib/{library_name} is not an ELF library"))),
        }
        Ok(Package { path: path.to_path_buf(), manifest, manifest_bytes, signature, library, documents })
    }

    /// Writes a package of `manifest`, the library's `library` bytes and `documents` into
    /// `dir` (atomically: a complete file, or none); returns its path.
    pub fn write(
        dir: &Path,
        manifest: &PackageManifest,
        library: &[u8],
        documents: &[(String, Vec<u8>)],
        signature: Option<&str>,
    ) -> Result<PathBuf, PackageError> {
        let path = dir.join(manifest.file_name());
        let io = |cause| PackageError::Io { path: path.clone(), cause };
        let manifest_bytes = manifest_json(manifest);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        {
            let mut archive = tar::Builder::new(&mut encoder);
            let mut add = |name: &str, bytes: &[u8]| -> std::io::Result<()> {
                let mut header = tar::Header::new_gnu();
                header.set_size(bytes.len() as u64);
                header.set_mode(0o644);
                header.set_mtime(0);
                header.set_cksum();
                archive.append_data(&mut header, name, bytes)
            };
            add(MANIFEST, &manifest_bytes).map_err(io)?;
            if let Some(signature) = signature {
                add(SIGNATURE, signature.as_bytes()).map_err(io)?;
            }
            add(&format!("lib/{}", manifest.library), library).map_err(io)?;
            for (name, bytes) in documents {
                add(name, bytes).map_err(io)?;
            }
            archive.finish().map_err(io)?;
        }
        let bytes = encoder.finish().map_err(io)?;
        std::fs::create_dir_all(dir).map_err(io)?;
        crate::fsio::write_atomically(&path, &bytes, 0o644).map_err(io)?;
        Ok(path)
    }
}

/// The bytes a manifest is written (and signed) as.
pub fn manifest_json(manifest: &PackageManifest) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(manifest).expect("manifests serialize");
    text.push('\n');
    text.into_bytes()
}

/// Whether `path` names a package file (by its extension).
pub fn is_package(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == EXTENSION)
}
