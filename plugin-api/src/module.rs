//! The root module every plugin library exports through abi_stable, and the optional symbols
//! that later minor versions of the API add beside it.

use abi_stable::{
    declare_root_module_statics,
    library::RootModule,
    package_version_strings,
    sabi_types::VersionStrings,
    std_types::{RResult, RStr, RString, RVec},
    StableAbi,
};

use crate::{component::Component, error::PluginError, meta::ComponentMeta, meta::CreateContext};

/// The functions a plugin library exports. A prefix type with the layout of plugin API 1.0,
/// frozen: abi_stable's layout check refuses a library whose prefix type has fewer fields than
/// the host's, so adding a field would make every plugin built against an older minor fail to
/// load. Never add, reorder, remove or retype a field; what a minor version adds comes as a
/// new, optional exported symbol (such as [`DETAILS_SYMBOL`]).
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

/// The name (NUL-terminated, for `dlsym`) under which a library exports its [`DetailsFn`].
pub const DETAILS_SYMBOL: &[u8] = b"gymnos_plugin_details\0";

/// Since plugin API 1.1, a library exports a function of this type under [`DETAILS_SYMBOL`].
/// It returns the JSON of [`crate::details::LibraryDetails`] (rules on configuration keys,
/// schemas of JSON keys) as an `RString`, which the caller frees by dropping it: the drop runs
/// the library's deallocator through the `RString`'s vtable. A library built against 1.0 lacks
/// the symbol, and the host treats it as declaring no details.
pub type DetailsFn = extern "C" fn() -> RResult<RString, PluginError>;
