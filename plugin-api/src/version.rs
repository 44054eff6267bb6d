//! The plugin API version and the rule that decides which plugins a host loads.

use std::fmt;

/// A semver triple, `#[repr(C)]` because it is part of the frozen manifest.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

const fn parse_u32(s: &str) -> u32 {
    let bytes = s.as_bytes();
    let mut value = 0u32;
    let mut i = 0;
    while i < bytes.len() {
        assert!(bytes[i].is_ascii_digit(), "version component is not a number");
        value = value * 10 + (bytes[i] - b'0') as u32;
        i += 1;
    }
    value
}

/// The plugin API version this crate defines: its own package version, so that a
/// release of the crate and a release of the API are the same thing.
pub const API_VERSION: ApiVersion = ApiVersion {
    major: parse_u32(env!("CARGO_PKG_VERSION_MAJOR")),
    minor: parse_u32(env!("CARGO_PKG_VERSION_MINOR")),
    patch: parse_u32(env!("CARGO_PKG_VERSION_PATCH")),
};

impl ApiVersion {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self { major, minor, patch }
    }

    /// Whether a host speaking `self` may load a plugin built against `plugin`.
    ///
    /// Same major, and the plugin's minor no newer than the host's: a minor release only adds
    /// (optional exported symbols; the 1.0 ABI types never change), so an older plugin offers a
    /// subset of what the host reads, while a newer plugin may rely on what this host lacks.
    pub const fn accepts(self, plugin: ApiVersion) -> bool {
        self.major == plugin.major && plugin.minor <= self.minor
    }

    /// The plugin API versions a host of this version loads, for messages: `1.0 to 1.3.x` for
    /// a 1.3 host.
    pub fn accepted_range(self) -> String {
        format!("{}.0 to {}.{}.x", self.major, self.major, self.minor)
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_matches_package_version() {
        assert_eq!(API_VERSION.to_string(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn older_minor_same_major_is_accepted_newer_or_other_major_is_not() {
        let host = ApiVersion::new(1, 2, 0);
        assert!(host.accepts(ApiVersion::new(1, 0, 0)));
        assert!(host.accepts(ApiVersion::new(1, 2, 7)));
        assert!(!host.accepts(ApiVersion::new(1, 3, 0)));
        assert!(!host.accepts(ApiVersion::new(2, 0, 0)));
        assert!(!host.accepts(ApiVersion::new(0, 2, 0)));
        assert_eq!(host.accepted_range(), "1.0 to 1.2.x");
    }
}
