//! What this host can load: the plugin API versions and the libtorch version it accepts.

use gymnos_plugin_api::{ApiVersion, API_VERSION};

/// The libtorch version plugins must be built against (major.minor decides). A constant, so
/// that `gymnos-host`, which never links libtorch, builds without it; the engine's tests check
/// that it matches the libtorch the engine links.
pub const LIBTORCH_VERSION: &str = "2.11.0";

/// Whether that libtorch calls with the C++11 ABI of `std::string` (PyPI's 2.x wheels do, and
/// the set-up builds with `LIBTORCH_CXX11_ABI=1`): a plugin built with the old ABI cannot link.
pub const LIBTORCH_CXX11_ABI: bool = true;

/// A host's requirements; a value so tests can describe other hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCompat {
    pub api: ApiVersion,
    pub libtorch: String,
}

/// Why a library cannot be loaded by this host, from its manifest alone.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Incompatibility {
    #[error(
        "built against plugin API {plugin}, but this host (plugin API {host}) loads plugins built against API {range}"
    )]
    Api { plugin: ApiVersion, host: ApiVersion, range: String },
    #[error("built against libtorch {plugin}, but this host uses libtorch {host}")]
    Libtorch { plugin: String, host: String },
}

impl Default for HostCompat {
    fn default() -> Self {
        Self { api: API_VERSION, libtorch: LIBTORCH_VERSION.to_string() }
    }
}

/// `major.minor` of a version string: libtorch keeps its C++ ABI within a minor release.
fn major_minor(version: &str) -> &str {
    match version.match_indices('.').nth(1) {
        Some((i, _)) => &version[..i],
        None => version,
    }
}

impl HostCompat {
    pub fn check(&self, plugin_api: ApiVersion, plugin_libtorch: &str) -> Result<(), Incompatibility> {
        if !self.api.accepts(plugin_api) {
            return Err(Incompatibility::Api { plugin: plugin_api, host: self.api, range: self.api.accepted_range() });
        }
        if major_minor(plugin_libtorch) != major_minor(&self.libtorch) {
            return Err(Incompatibility::Libtorch { plugin: plugin_libtorch.to_string(), host: self.libtorch.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_and_libtorch_rules() {
        let host = HostCompat { api: ApiVersion::new(1, 1, 0), libtorch: "2.11.0".into() };
        assert!(host.check(ApiVersion::new(1, 0, 3), "2.11.1").is_ok());
        assert_eq!(
            host.check(ApiVersion::new(1, 2, 0), "2.11.0").unwrap_err().to_string(),
            "built against plugin API 1.2.0, but this host (plugin API 1.1.0) loads plugins built against API 1.0 to 1.1.x"
        );
        // A host of the first release refuses a plugin that may rely on streaming (1.2).
        let first = HostCompat { api: ApiVersion::new(1, 0, 0), libtorch: "2.11.0".into() };
        assert_eq!(
            first.check(ApiVersion::new(1, 2, 0), "2.11.0").unwrap_err().to_string(),
            "built against plugin API 1.2.0, but this host (plugin API 1.0.0) loads plugins built against API 1.0 to 1.0.x"
        );
        assert_eq!(
            host.check(ApiVersion::new(1, 0, 0), "2.10.0").unwrap_err().to_string(),
            "built against libtorch 2.10.0, but this host uses libtorch 2.11.0"
        );
    }
}
