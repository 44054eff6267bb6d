//! sha256 of library files.

use sha2::{Digest, Sha256};

/// Hex sha256 of a file's bytes, read once by the caller for the hash and the ELF check.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}
