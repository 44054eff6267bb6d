//! The root module every plugin library exports through abi_stable.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RVec},
    StableAbi,
};

use crate::{component::Component, error::PluginError, meta::ComponentMeta, meta::CreateContext};

/// The functions a plugin library exports. A prefix type: later minor versions of the API may
/// append fields after `create`, which hosts read as optional.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModuleRef)))]
#[sabi(missing_field(panic))]
pub struct PluginModule {
    /// Metadata of every component the library exports.
    pub components: extern "C" fn() -> RResult<RVec<ComponentMeta>, PluginError>,

    /// Creates the component called `name` from its configuration (a JSON object the host has
    /// already validated against the component's declared keys).
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(
        name: RStr<'_>,
        config_json: RStr<'_>,
        context: &CreateContext<'_>,
    ) -> RResult<Component, PluginError>,
}

impl RootModule for PluginModuleRef {
    declare_root_module_statics! {PluginModuleRef}
    const BASE_NAME: &'static str = "gymnos_plugin";
    const NAME: &'static str = "gymnos_plugin";
    // The host does its own semver check (see `ApiVersion::accepts`) from the manifest before
    // touching the root module, and only asks abi_stable for the layout check. This value is
    // informational.
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}
