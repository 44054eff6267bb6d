//! Errors cross the boundary as values; a panic never unwinds through the ABI.

use std::fmt;

use abi_stable::{std_types::RString, StableAbi};

/// What went wrong, so the host can react (a `Config` error is the user's to fix, a `Panic`
/// is a plugin bug).
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration given to the component is invalid.
    Config,
    /// The input data is missing, malformed or of the wrong shape.
    Data,
    /// Reading or writing a file failed.
    Io,
    /// The component failed while running (a libtorch error, a numerical problem...).
    Runtime,
    /// The component's code panicked; the SDK caught it at the boundary.
    Panic,
    /// The host asked for something the component does not implement.
    Unsupported,
}

/// An error returned by a plugin function.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    pub kind: ErrorKind,
    pub message: RString,
}

impl PluginError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: RString::from(message.into()) }
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn data(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Data, message)
    }
    pub fn io(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Io, message)
    }
    pub fn runtime(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Runtime, message)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Config => "configuration error",
            ErrorKind::Data => "data error",
            ErrorKind::Io => "I/O error",
            ErrorKind::Runtime => "runtime error",
            ErrorKind::Panic => "panicked",
            ErrorKind::Unsupported => "unsupported",
        })
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for PluginError {}
