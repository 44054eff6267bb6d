//! The manifest: the one part of a plugin library whose layout never changes.
//!
//! The host reads it with a plain `dlsym` before it trusts anything else in the library, so
//! that a library built against another API or libtorch is refused with a message naming both
//! versions instead of failing (or crashing) in abi_stable's layout check.

use std::ffi::{c_char, CStr};

use crate::version::ApiVersion;

/// Name of the exported static holding the [`PluginManifest`] (NUL-terminated for dlsym).
pub const MANIFEST_SYMBOL: &[u8] = b"gymnos_plugin_manifest\0";

/// Identifies a gymnos plugin manifest (guards against an unrelated symbol of the same name).
pub const MANIFEST_MAGIC: [u8; 8] = *b"GYMNOSPL";

/// Layout revision of [`PluginManifest`]. Fields may only ever be appended, and this bumped.
pub const MANIFEST_LAYOUT: u32 = 1;

/// Frozen C layout. Never reorder or remove fields: hosts of every API major read it.
#[repr(C)]
pub struct PluginManifest {
    pub magic: [u8; 8],
    pub layout: u32,
    /// Plugin API version the library was compiled against.
    pub api_version: ApiVersion,
    /// libtorch version the library was compiled against, e.g. `2.11.0` (NUL-terminated).
    pub libtorch_version: *const c_char,
    /// Cargo package name and version of the library (NUL-terminated).
    pub package_name: *const c_char,
    pub package_version: *const c_char,
}

// SAFETY: the pointers refer to `'static` NUL-terminated string literals.
unsafe impl Sync for PluginManifest {}

impl PluginManifest {
    /// Reads one of the string fields.
    ///
    /// # Safety
    /// `ptr` must be null or a NUL-terminated string that outlives `'a`.
    pub unsafe fn read_str<'a>(ptr: *const c_char) -> Option<&'a str> {
        if ptr.is_null() {
            return None;
        }
        unsafe { CStr::from_ptr(ptr) }.to_str().ok()
    }
}
