//! Channels: where teams publish packages and others find them. A channel is a folder (a shared
//! filesystem, the common case on clusters) or an HTTP(S) base URL holding packages and an
//! `index.json` that lists them ([`Index`]).
//!
//! Publishing (folders only) takes a lock on the channel, copies the package in and rewrites the
//! index whole (a temporary file renamed over it), so two publishers at once lose nothing and a
//! reader never sees half an index. Reading checks what comes back: a package's bytes against
//! the index's sha256, and its manifest against what the index says of it.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{Package, PackageError, PackageManifest};
use crate::{
    build_facts::{BuildFacts, HostLibtorch},
    compat::HostCompat,
    hash::sha256_bytes,
};

/// The index's file name in a channel.
pub const INDEX: &str = "index.json";
const INDEX_FORMAT: u32 = 1;
/// How long an HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel {channel}: {reason}")]
    Unusable { channel: String, reason: String },
    #[error("channel {channel}: {reason}")]
    Tampered { channel: String, reason: String },
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: std::io::Error },
}

/// A component a package holds, as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedComponent {
    pub kind: String,
    pub name: String,
    pub version: semver::Version,
}

/// One package of a channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The package's file, relative to the channel.
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
    pub package: String,
    pub version: semver::Version,
    pub api_version: String,
    pub libtorch: String,
    pub build: BuildFacts,
    pub components: Vec<IndexedComponent>,
    /// The key id that signed its manifest, if it is signed.
    #[serde(default)]
    pub signed_by: Option<String>,
    pub published_at: String,
}

impl IndexEntry {
    fn of(package: &Package, bytes: &[u8]) -> Self {
        let m = &package.manifest;
        IndexEntry {
            file: m.file_name(),
            sha256: sha256_bytes(bytes),
            bytes: bytes.len() as u64,
            package: m.package.clone(),
            version: m.version.clone(),
            api_version: m.api_version.clone(),
            libtorch: m.libtorch.clone(),
            build: m.build.clone(),
            components: m
                .components
                .iter()
                .map(|c| IndexedComponent { kind: c.kind.clone(), name: c.name.clone(), version: c.version.clone() })
                .collect(),
            signed_by: package.signature.as_deref().and_then(super::signing::signer_of),
            published_at: crate::record::now(),
        }
    }

    /// What the entry says that the package's manifest does not.
    fn disagreement(&self, package: &Package) -> Option<String> {
        let actual = IndexEntry { published_at: self.published_at.clone(), ..IndexEntry::of(package, &[]) };
        let said = IndexEntry { sha256: actual.sha256.clone(), bytes: actual.bytes, ..self.clone() };
        (said != actual).then(|| {
            format!(
                "the index describes {} as {} {} ({:?}), the package is {} {} ({:?})",
                self.file,
                self.package,
                self.version,
                self.components.iter().map(|c| format!("{} {}@{}", c.kind, c.name, c.version)).collect::<Vec<_>>(),
                actual.package,
                actual.version,
                actual.components.iter().map(|c| format!("{} {}@{}", c.kind, c.name, c.version)).collect::<Vec<_>>()
            )
        })
    }

    /// Why this host cannot load the package, if it cannot.
    pub fn incompatibility(&self, compat: &HostCompat, host: &HostLibtorch) -> Option<String> {
        let api = semver::Version::parse(&self.api_version).ok()?;
        let api = gymnos_plugin_api::ApiVersion::new(api.major as u32, api.minor as u32, api.patch as u32);
        if let Err(e) = compat.check(api, &self.libtorch) {
            return Some(e.to_string());
        }
        self.build.mismatch(host)
    }
}

/// `index.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    pub packages: Vec<IndexEntry>,
}

/// A folder or an HTTP(S) base URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    Folder(PathBuf),
    Http(String),
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Channel::Folder(dir) => write!(f, "{}", dir.display()),
            Channel::Http(url) => f.write_str(url),
        }
    }
}

impl Channel {
    /// `http://` and `https://` are URLs; anything else is a folder (made absolute).
    pub fn parse(text: &str) -> Channel {
        match text.starts_with("http://") || text.starts_with("https://") {
            true => Channel::Http(text.trim_end_matches('/').to_string()),
            false => Channel::Folder(std::path::absolute(text).unwrap_or_else(|_| PathBuf::from(text))),
        }
    }

    fn unusable(&self, reason: impl Into<String>) -> ChannelError {
        ChannelError::Unusable { channel: self.to_string(), reason: reason.into() }
    }

    /// A file of the channel, as bytes.
    fn read(&self, file: &str) -> Result<Vec<u8>, ChannelError> {
        match self {
            Channel::Folder(dir) => {
                if !dir.is_dir() {
                    return Err(self.unusable("no such folder"));
                }
                fs::read(dir.join(file)).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => self.unusable(format!("{file} is not there")),
                    _ => self.unusable(format!("{file}: {e}")),
                })
            }
            Channel::Http(base) => {
                let url = format!("{base}/{file}");
                let agent = ureq::Agent::config_builder().timeout_global(Some(HTTP_TIMEOUT)).build().new_agent();
                let response = agent.get(&url).call().map_err(|e| match e {
                    ureq::Error::StatusCode(404) => self.unusable(format!("{file} is not there (404)")),
                    ureq::Error::StatusCode(code) => self.unusable(format!("{url} answered {code}")),
                    other => self.unusable(format!("unreachable ({other})")),
                })?;
                response
                    .into_body()
                    .with_config()
                    .limit(super::MAX_ENTRY_BYTES)
                    .read_to_vec()
                    .map_err(|e| self.unusable(format!("{url}: {e}")))
            }
        }
    }

    /// The channel's index.
    pub fn index(&self) -> Result<Index, ChannelError> {
        let bytes = self.read(INDEX).map_err(|e| match e {
            ChannelError::Unusable { channel, reason } if reason.starts_with(INDEX) => ChannelError::Unusable {
                channel,
                reason: format!("not a channel: it has no {INDEX} (publish a package to it first)"),
            },
            other => other,
        })?;
        let index: Index = serde_json::from_slice(&bytes).map_err(|e| ChannelError::Tampered {
            channel: self.to_string(),
            reason: format!("{INDEX} is not an index ({e})"),
        })?;
        if index.format > INDEX_FORMAT {
            return Err(
                self.unusable(format!("index format {} is newer than this host's; upgrade gymnos-host", index.format))
            );
        }
        Ok(index)
    }

    /// The package of `entry`, checked against the index (its bytes' sha256, its manifest).
    pub fn fetch(&self, entry: &IndexEntry) -> Result<Package, ChannelError> {
        if entry.file.contains('/') || entry.file.contains("..") {
            return Err(ChannelError::Tampered {
                channel: self.to_string(),
                reason: format!("the index names `{}`, outside the channel; refused", entry.file),
            });
        }
        let bytes = self.read(&entry.file).map_err(|e| match e {
            ChannelError::Unusable { channel, reason } if reason.contains("is not there") => ChannelError::Tampered {
                channel,
                reason: format!("the index names {}, which is not in the channel", entry.file),
            },
            other => other,
        })?;
        let actual = sha256_bytes(&bytes);
        if actual != entry.sha256 {
            return Err(ChannelError::Tampered {
                channel: self.to_string(),
                reason: format!("{} has sha256 {actual}, the index says {}: refused", entry.file, entry.sha256),
            });
        }
        let package = Package::from_bytes(Path::new(&format!("{self}/{}", entry.file)), &bytes)?;
        if let Some(reason) = entry.disagreement(&package) {
            return Err(ChannelError::Tampered { channel: self.to_string(), reason });
        }
        Ok(package)
    }

    /// Adds the package at `file` to a folder channel (created if missing); returns its entry.
    /// The same package again changes nothing; another package of the same name is refused.
    pub fn publish(&self, file: &Path) -> Result<IndexEntry, ChannelError> {
        let Channel::Folder(dir) = self else {
            return Err(self.unusable("an HTTP channel is read-only here: publish to the folder it serves"));
        };
        let package = Package::read(file)?;
        let bytes = fs::read(file).map_err(|cause| ChannelError::Io { path: file.to_path_buf(), cause })?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |cause| ChannelError::Io { path, cause }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join(".index.lock");
        let lock = fs::File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut index = match dir.join(INDEX).exists() {
            true => self.index()?,
            false => Index { format: INDEX_FORMAT, packages: Vec::new() },
        };
        let entry = IndexEntry::of(&package, &bytes);
        if let Some(existing) = index.packages.iter().find(|e| e.file == entry.file) {
            if existing.sha256 == entry.sha256 {
                return Ok(existing.clone());
            }
            return Err(self.unusable(format!(
                "{} is published already with other contents (sha256 {}); give the new build another version",
                entry.file, existing.sha256
            )));
        }
        let target = dir.join(&entry.file);
        crate::fsio::write_atomically(&target, &bytes, 0o644).map_err(io(&target))?;
        index.packages.push(entry.clone());
        index.packages.sort_by(|a, b| (&a.package, &a.version, &a.file).cmp(&(&b.package, &b.version, &b.file)));
        let mut text = serde_json::to_string_pretty(&index).expect("indexes serialize");
        text.push('\n');
        let index_path = dir.join(INDEX);
        if let Err(e) = crate::fsio::write_atomically(&index_path, text.as_bytes(), 0o644) {
            let _ = fs::remove_file(&target);
            return Err(io(&index_path)(e));
        }
        Ok(entry)
    }
}

/// The packages of `index` that hold a component `name` (of `kind`) whose version matches `req`,
/// each with why this host cannot load it (none when it can), the highest version first.
pub fn candidates<'i>(
    index: &'i Index,
    name: &str,
    kind: Option<&str>,
    req: &semver::VersionReq,
    compat: &HostCompat,
    host: &HostLibtorch,
) -> Vec<(&'i IndexEntry, &'i IndexedComponent, Option<String>)> {
    let wanted = gymnos_plugin_api::normalized_name(name);
    let mut found: Vec<_> = index
        .packages
        .iter()
        .flat_map(|entry| entry.components.iter().map(move |c| (entry, c)))
        .filter(|(_, c)| gymnos_plugin_api::normalized_name(&c.name) == wanted && kind.is_none_or(|k| k == c.kind))
        .filter(|(_, c)| req.matches(&c.version))
        .map(|(entry, c)| (entry, c, entry.incompatibility(compat, host)))
        .collect();
    found.sort_by(|a, b| b.1.version.cmp(&a.1.version));
    found
}

/// The manifest of a package an index entry names, for messages.
pub fn describe(manifest: &PackageManifest) -> String {
    format!("{} {} ({})", manifest.package, manifest.version, manifest.labels().join(", "))
}
