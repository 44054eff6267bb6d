//! The host's plugin machinery, free of libtorch: the registry of installed plugins, loading
//! and checking plugin libraries, resolving `name@requirement` references, and the experiment
//! format with its validation, the run record, and sweeps.
//!
//! The `gymnos-host` binary builds its CLI on this crate; the training engine builds on it too.

pub mod build_facts;
pub mod builtin;
pub mod child;
pub mod cli_args;
pub mod compat;
pub mod distributed;
pub mod experiment;
pub mod fsio;
pub mod hash;
pub mod library;
pub mod manager;
pub mod package;
pub mod plugin_ref;
pub mod probe;
pub mod record;
pub mod registry;
pub mod report;
pub mod runs;
pub mod scaffold;
pub mod sweep;
pub mod terminal;

pub use compat::HostCompat;
pub use library::{CallError, LoadError, LoadedLibrary};
pub use manager::{InstallOutcome, InstallReport, ManagerError, PluginManager};
pub use plugin_ref::{PluginRef, ResolveError};
pub use registry::{ComponentRecord, LibraryRecord, Registry, RegistryError};
