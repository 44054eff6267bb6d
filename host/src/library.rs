//! Opening a plugin library: manifest first, then compatibility, then abi_stable's layout check,
//! and only then the first call into the library's code.

use std::path::{Path, PathBuf};

use abi_stable::{library::lib_header_from_path, std_types::RStr};
use gymnos_plugin_api::{
    check_component_name,
    manifest::{PluginManifest, MANIFEST_LAYOUT, MANIFEST_MAGIC, MANIFEST_SYMBOL},
    module::{DetailsFn, DETAILS_SYMBOL},
    ApiVersion, Component, ComponentMeta, CreateContext, CreateStreamingFn, LibraryDetails, PluginError,
    PluginModuleRef, StreamingComponent, STREAMING_SYMBOL,
};

use crate::compat::{HostCompat, Incompatibility};

/// Why a library file could not be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: cannot open library: {reason}", path.display())]
    Open { path: PathBuf, reason: String },
    #[error("{}: not a gymnos plugin (it exports no `gymnos_plugin_manifest`)", path.display())]
    NotAPlugin { path: PathBuf },
    #[error("{}: invalid plugin manifest: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
    #[error("{} ({package}): {incompatibility}", path.display())]
    Incompatible { path: PathBuf, package: String, incompatibility: Incompatibility },
    #[error("{}: the ABI layout check failed ({reason})", path.display())]
    Layout { path: PathBuf, reason: String },
    #[error("{}: sha256 is {actual} but the registry recorded {expected}: the file changed after it was installed; install the library again to restore it", path.display())]
    HashMismatch { path: PathBuf, expected: String, actual: String },
    #[error("{}: invalid component metadata: {reason}", path.display())]
    BadMetadata { path: PathBuf, reason: String },
    #[error("{} ({package}): listing its components failed: {error}", path.display())]
    Plugin { path: PathBuf, package: String, error: PluginError },
}

impl LoadError {
    /// The same error, naming `path` instead: an install names the file the user gave, not
    /// its copy in the store.
    pub fn at(mut self, path: &Path) -> Self {
        match &mut self {
            LoadError::Open { path: p, .. }
            | LoadError::NotAPlugin { path: p }
            | LoadError::BadManifest { path: p, .. }
            | LoadError::Incompatible { path: p, .. }
            | LoadError::Layout { path: p, .. }
            | LoadError::HashMismatch { path: p, .. }
            | LoadError::BadMetadata { path: p, .. }
            | LoadError::Plugin { path: p, .. } => *p = path.to_path_buf(),
        }
        self
    }
}

/// A plugin function returned an error (or panicked): says which plugin, and which call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("plugin {plugin} failed in {call}: {error}")]
pub struct CallError {
    /// The component's name and library file.
    pub plugin: String,
    pub call: &'static str,
    pub error: PluginError,
}

/// A loaded, checked library. Libraries are never unloaded: handles and vtables they created
/// may outlive any one use (see the ABI rules in ARCHITECTURE.md).
pub struct LoadedLibrary {
    pub path: PathBuf,
    pub api_version: ApiVersion,
    pub libtorch_version: String,
    pub package: String,
    pub package_version: String,
    pub components: Vec<ComponentMeta>,
    /// Rules and schemas the components declare (API 1.1; empty for a 1.0 library).
    pub details: LibraryDetails,
    module: PluginModuleRef,
    /// Creates the streaming forms of components (API 1.2; none for an older library).
    create_streaming: Option<CreateStreamingFn>,
}

impl std::fmt::Debug for LoadedLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedLibrary").field("path", &self.path).field("package", &self.package).finish()
    }
}

/// One line of at most `max` characters (abi_stable's layout reports span many lines).
fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

struct ManifestInfo {
    api_version: ApiVersion,
    libtorch_version: String,
    package: String,
    package_version: String,
    /// The handle the manifest was read through; never closed (see [`LoadedLibrary`]).
    library: &'static libloading::Library,
}

/// Checks that the file is a complete ELF shared object before `dlopen` sees it: the loader
/// maps segments lazily, so a truncated library can open and then crash the process (SIGBUS)
/// when a missing page is touched.
fn check_elf(path: &Path, data: &[u8]) -> Result<(), LoadError> {
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    let open = |reason: String| LoadError::Open { path: path.to_path_buf(), reason };
    let elf = ElfFile64::<object::Endianness>::parse(data)
        .map_err(|e| open(format!("not a valid ELF shared library ({e})")))?;
    let endian = elf.endian();
    for segment in elf.elf_program_headers() {
        let end = segment.p_offset(endian) + segment.p_filesz(endian);
        if end > data.len() as u64 {
            return Err(open(format!(
                "the file is truncated: its segments need {end} bytes but it has {}",
                data.len()
            )));
        }
    }
    let header = elf.elf_header();
    let sections_end = header.e_shoff(endian) + header.e_shnum(endian) as u64 * header.e_shentsize(endian) as u64;
    if sections_end > data.len() as u64 {
        return Err(open(format!(
            "the file is truncated: its section table ends at byte {sections_end} but it has {}",
            data.len()
        )));
    }
    Ok(())
}

/// What is checked of a file's bytes before it is loaded: a complete ELF shared library that
/// exports the manifest.
pub fn check_plugin_file(path: &Path, data: &[u8]) -> Result<(), LoadError> {
    check_elf(path, data)?;
    if !exports_manifest(data) {
        return Err(LoadError::NotAPlugin { path: path.to_path_buf() });
    }
    Ok(())
}

/// Whether an ELF file exports the manifest symbol, read from its dynamic symbol table without
/// loading it: a folder walk must not run the initialisers of libraries that are no plugins.
pub fn exports_manifest(data: &[u8]) -> bool {
    use object::{Object, ObjectSymbol};
    let name = &MANIFEST_SYMBOL[..MANIFEST_SYMBOL.len() - 1];
    object::File::parse(data)
        .map(|file| file.dynamic_symbols().any(|s| s.is_definition() && s.name_bytes().is_ok_and(|n| n == name)))
        .unwrap_or(false)
}

fn read_manifest(path: &Path) -> Result<ManifestInfo, LoadError> {
    // SAFETY: loading a library runs its initialisers; that is the trust one gives to any
    // installed plugin. Nothing else is called before the manifest has been checked.
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| LoadError::Open { path: path.to_path_buf(), reason: one_line(&e.to_string(), 300) })?;
    // SAFETY: the symbol, when present, is a `PluginManifest` static (checked by its magic).
    let manifest: &PluginManifest = unsafe {
        match library.get::<*const PluginManifest>(MANIFEST_SYMBOL) {
            Ok(symbol) => &**symbol,
            Err(_) => return Err(LoadError::NotAPlugin { path: path.to_path_buf() }),
        }
    };
    let bad = |reason: &str| LoadError::BadManifest { path: path.to_path_buf(), reason: reason.to_string() };
    if manifest.magic != MANIFEST_MAGIC {
        return Err(bad("wrong magic bytes"));
    }
    if manifest.layout < MANIFEST_LAYOUT {
        return Err(bad(&format!("manifest layout {} is older than {MANIFEST_LAYOUT}", manifest.layout)));
    }
    // SAFETY: the manifest's string fields are NUL-terminated statics of the library.
    let read = |ptr, what: &str| unsafe { PluginManifest::read_str(ptr) }.map(str::to_string).ok_or_else(|| bad(what));
    let api_version = manifest.api_version;
    let libtorch_version = read(manifest.libtorch_version, "missing libtorch version")?;
    let package = read(manifest.package_name, "missing package name")?;
    let package_version = read(manifest.package_version, "missing package version")?;
    // Keep the library mapped: abi_stable opens it again by path and never unloads it either.
    let library = Box::leak(Box::new(library));
    Ok(ManifestInfo { api_version, libtorch_version, package, package_version, library })
}

fn check_metadata(path: &Path, components: &[ComponentMeta]) -> Result<(), LoadError> {
    let bad = |reason: String| LoadError::BadMetadata { path: path.to_path_buf(), reason };
    if components.is_empty() {
        return Err(bad("the library exports no component".into()));
    }
    for c in components {
        let name = c.name.as_str();
        check_component_name(name).map_err(bad)?;
        if let Err(e) = semver::Version::parse(c.version.as_str()) {
            return Err(bad(format!("component `{name}` has version `{}`, which is not semver: {e}", c.version)));
        }
        for key in c.config.iter() {
            if !key.default_json.is_empty()
                && serde_json::from_str::<serde_json::Value>(key.default_json.as_str()).is_err()
            {
                return Err(bad(format!("component `{name}` key `{}` has a default that is not JSON", key.name)));
            }
        }
    }
    Ok(())
}

/// The first plugin API version whose libraries export [`DETAILS_SYMBOL`].
const DETAILS_SINCE: ApiVersion = ApiVersion::new(1, 1, 0);

/// The details (API 1.1) of a library, read through the function it exports under
/// [`DETAILS_SYMBOL`]; none for a library built against 1.0, which lacks the symbol. A library
/// whose manifest says 1.1 or later must export it.
fn read_details(path: &Path, manifest: &ManifestInfo) -> Result<LibraryDetails, LoadError> {
    if manifest.api_version < DETAILS_SINCE {
        return Ok(LibraryDetails::default());
    }
    // SAFETY: a library built against API >= 1.1 exports this symbol as a `DetailsFn` (the SDK's
    // `export_plugin!` checks the type); the library stays loaded for the life of the process.
    let details: DetailsFn = match unsafe { manifest.library.get::<DetailsFn>(DETAILS_SYMBOL) } {
        Ok(symbol) => *symbol,
        Err(_) => {
            return Err(LoadError::BadManifest {
                path: path.to_path_buf(),
                reason: format!(
                    "built against plugin API {} but exports no `gymnos_plugin_details`",
                    manifest.api_version
                ),
            })
        }
    };
    // The returned `RString` is freed by its drop, through the library's own deallocator.
    let package = &manifest.package;
    let json = details().into_result().map_err(|error| LoadError::Plugin {
        path: path.to_path_buf(),
        package: package.to_string(),
        error,
    })?;
    serde_json::from_str(json.as_str())
        .map_err(|e| LoadError::BadMetadata { path: path.to_path_buf(), reason: format!("component details: {e}") })
}

/// The first plugin API version whose libraries export [`STREAMING_SYMBOL`].
const STREAMING_SINCE: ApiVersion = ApiVersion::new(1, 2, 0);

/// The function (API 1.2) that creates the streaming forms of a library's components; none for
/// a library built against 1.0 or 1.1, which lacks it. A library whose manifest says 1.2 or
/// later must export it.
fn read_streaming(path: &Path, manifest: &ManifestInfo) -> Result<Option<CreateStreamingFn>, LoadError> {
    if manifest.api_version < STREAMING_SINCE {
        return Ok(None);
    }
    // SAFETY: a library built against API >= 1.2 exports this symbol as a `CreateStreamingFn`
    // (the SDK's `export_plugin!` checks the type); the library stays loaded for good.
    match unsafe { manifest.library.get::<CreateStreamingFn>(STREAMING_SYMBOL) } {
        Ok(symbol) => Ok(Some(*symbol)),
        Err(_) => Err(LoadError::BadManifest {
            path: path.to_path_buf(),
            reason: format!(
                "built against plugin API {} but exports no `gymnos_plugin_create_streaming`",
                manifest.api_version
            ),
        }),
    }
}

impl LoadedLibrary {
    /// Opens and checks the library at `path`; see the module docs for the order of checks.
    /// `contents` are the file's bytes when the caller has read them already (for its hash).
    ///
    /// The library is always opened by its absolute path: the dynamic loader searches the
    /// system's library folders for a bare file name, and would load another library than the
    /// one the caller hashed.
    pub fn open(path: &Path, contents: Option<&[u8]>, compat: &HostCompat) -> Result<Self, LoadError> {
        let path = &std::path::absolute(path)
            .map_err(|e| LoadError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
        let read;
        let bytes = match contents {
            Some(bytes) => bytes,
            None => {
                read = std::fs::read(path)
                    .map_err(|e| LoadError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
                &read
            }
        };
        check_plugin_file(path, bytes)?;
        let manifest = read_manifest(path)?;
        compat.check(manifest.api_version, &manifest.libtorch_version).map_err(|incompatibility| {
            LoadError::Incompatible { path: path.to_path_buf(), package: manifest.package.clone(), incompatibility }
        })?;
        let layout_error = |e: abi_stable::library::LibraryError| LoadError::Layout {
            path: path.to_path_buf(),
            reason: one_line(&e.to_string(), 400),
        };
        let header = lib_header_from_path(path).map_err(layout_error)?;
        // The semver rule is ours (checked above); abi_stable checks the type layouts.
        let module = header.check_layout::<PluginModuleRef>().map_err(layout_error)?;
        let components: Vec<ComponentMeta> = (module.components())()
            .into_result()
            .map_err(|error| LoadError::Plugin { path: path.to_path_buf(), package: manifest.package.clone(), error })?
            .into_iter()
            .collect();
        check_metadata(path, &components)?;
        let details = read_details(path, &manifest)?;
        let create_streaming = read_streaming(path, &manifest)?;
        Ok(Self {
            path: path.to_path_buf(),
            api_version: manifest.api_version,
            libtorch_version: manifest.libtorch_version,
            package: manifest.package,
            package_version: manifest.package_version,
            components,
            details,
            module,
            create_streaming,
        })
    }

    /// Creates the component `name` from a JSON configuration.
    pub fn create(&self, name: &str, config_json: &str, context: &CreateContext<'_>) -> Result<Component, CallError> {
        (self.module.create())(RStr::from_str(name), RStr::from_str(config_json), context)
            .into_result()
            .map_err(|error| CallError { plugin: format!("`{name}` ({})", self.path.display()), call: "create", error })
    }

    /// Creates the streaming form (API 1.2) of the component `name`: none when the library
    /// predates 1.2, the component has none, or its configuration asks for the 1.0 form.
    pub fn create_streaming(
        &self,
        name: &str,
        config_json: &str,
        context: &CreateContext<'_>,
    ) -> Result<Option<StreamingComponent>, CallError> {
        let Some(create) = self.create_streaming else { return Ok(None) };
        create(RStr::from_str(name), RStr::from_str(config_json), context)
            .into_result()
            .map(|c| c.into_option())
            .map_err(|error| CallError { plugin: format!("`{name}` ({})", self.path.display()), call: "create", error })
    }
}
