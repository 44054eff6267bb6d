//! What [`export_plugin!`](crate::export_plugin) expands to: one [`Entry`] per component and the
//! two `extern "C"` functions of the root module.

use gymnos_plugin_api::{
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RResult, RStr, RVec},
    },
    component::{AugmentorObj_TO, DatasetObj_TO, ModelObj_TO, PreprocessorObj_TO, TrackerObj_TO},
    Component as AbiComponent, ComponentKind, ComponentMeta, ConfigKey, CreateContext, PluginError,
};

use crate::{
    component::{Component, DataAugmentor, Dataset, Model, Preprocessor, Tracker},
    guard::{guard, Guarded},
    Config, Context, Result,
};

/// The symbol abi_stable 0.11 looks the root module up by (`ROOT_MODULE_LOADER_NAME`); written
/// out because `export_name` needs a literal. A unit test keeps it equal to abi_stable's.
#[doc(hidden)]
#[macro_export]
macro_rules! __root_module_symbol {
    () => {
        "_1as_0lib_1header_0root_bmodule_bloader"
    };
}

/// One exported component, type-erased.
pub struct Entry {
    pub kind: ComponentKind,
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub config_keys: fn() -> Vec<ConfigKey>,
    build: fn(&Config, &Context) -> Result<AbiComponent>,
}

impl Entry {
    const fn of<T: Component>(kind: ComponentKind, build: fn(&Config, &Context) -> Result<AbiComponent>) -> Self {
        Entry { kind, name: T::NAME, version: T::VERSION, description: T::DESCRIPTION, config_keys: T::config_keys, build }
    }
    pub const fn dataset<T: Dataset>() -> Self {
        Self::of::<T>(ComponentKind::Dataset, |c, x| {
            Ok(AbiComponent::Dataset(DatasetObj_TO::from_value(Guarded(T::create(c, x)?), TD_Opaque)))
        })
    }
    pub const fn preprocessor<T: Preprocessor>() -> Self {
        Self::of::<T>(ComponentKind::Preprocessor, |c, x| {
            Ok(AbiComponent::Preprocessor(PreprocessorObj_TO::from_value(Guarded(T::create(c, x)?), TD_Opaque)))
        })
    }
    pub const fn data_augmentor<T: DataAugmentor>() -> Self {
        Self::of::<T>(ComponentKind::DataAugmentor, |c, x| {
            Ok(AbiComponent::DataAugmentor(AugmentorObj_TO::from_value(Guarded(T::create(c, x)?), TD_Opaque)))
        })
    }
    pub const fn model<T: Model>() -> Self {
        Self::of::<T>(ComponentKind::Model, |c, x| {
            Ok(AbiComponent::Model(ModelObj_TO::from_value(Guarded(T::create(c, x)?), TD_Opaque)))
        })
    }
    pub const fn tracker<T: Tracker>() -> Self {
        Self::of::<T>(ComponentKind::Tracker, |c, x| {
            Ok(AbiComponent::Tracker(TrackerObj_TO::from_value(Guarded(T::create(c, x)?), TD_Opaque)))
        })
    }

    fn meta(&self) -> ComponentMeta {
        ComponentMeta {
            name: self.name.into(),
            kind: self.kind,
            version: self.version.into(),
            description: self.description.into(),
            config: (self.config_keys)().into(),
        }
    }
}

/// Body of the root module's `components` function.
pub fn components(entries: &[Entry]) -> RResult<RVec<ComponentMeta>, PluginError> {
    guard(|| Ok(entries.iter().map(Entry::meta).collect()))
}

/// Body of the root module's `create` function.
pub fn create(
    entries: &[Entry],
    name: RStr<'_>,
    config_json: RStr<'_>,
    context: &CreateContext<'_>,
) -> RResult<AbiComponent, PluginError> {
    guard(|| {
        let entry = entries.iter().find(|e| e.name == name.as_str()).ok_or_else(|| {
            let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
            PluginError::config(format!("this library has no component `{name}` (it has: {})", names.join(", ")))
        })?;
        let config = Config::parse(entry.name, &(entry.config_keys)(), config_json.as_str())?;
        (entry.build)(&config, &Context::from_abi(context))
    })
}

/// Exports a plugin library's components:
///
/// ```ignore
/// gymnos_plugin_sdk::export_plugin!(model(Mlp), preprocessor(Standardize));
/// ```
///
/// Kinds: `dataset`, `preprocessor`, `data_augmentor`, `model`, `tracker`. Requires a `build.rs`
/// that calls `gymnos_plugin_build::link_libtorch()`.
#[macro_export]
macro_rules! export_plugin {
    ($($kind:ident($ty:ty)),+ $(,)?) => {
        #[doc(hidden)]
        static __GYMNOS_ENTRIES: &[$crate::export::Entry] = &[$($crate::export::Entry::$kind::<$ty>()),+];

        #[doc(hidden)]
        #[no_mangle]
        pub static gymnos_plugin_manifest: $crate::api::PluginManifest = $crate::api::PluginManifest {
            magic: $crate::api::manifest::MANIFEST_MAGIC,
            layout: $crate::api::manifest::MANIFEST_LAYOUT,
            api_version: $crate::api::API_VERSION,
            libtorch_version: concat!(
                env!("GYMNOS_LIBTORCH_VERSION", "call gymnos_plugin_build::link_libtorch() from build.rs"),
                "\0"
            ).as_ptr().cast(),
            package_name: concat!(env!("CARGO_PKG_NAME"), "\0").as_ptr().cast(),
            package_version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast(),
        };

        #[doc(hidden)]
        extern "C" fn __gymnos_components() -> $crate::api::abi_stable::std_types::RResult<
            $crate::api::abi_stable::std_types::RVec<$crate::api::ComponentMeta>,
            $crate::api::PluginError,
        > {
            $crate::export::components(__GYMNOS_ENTRIES)
        }

        #[doc(hidden)]
        extern "C" fn __gymnos_create(
            name: $crate::api::abi_stable::std_types::RStr<'_>,
            config: $crate::api::abi_stable::std_types::RStr<'_>,
            context: &$crate::api::CreateContext<'_>,
        ) -> $crate::api::abi_stable::std_types::RResult<$crate::api::Component, $crate::api::PluginError> {
            $crate::export::create(__GYMNOS_ENTRIES, name, config, context)
        }

        #[doc(hidden)]
        fn __gymnos_root_module() -> $crate::api::PluginModuleRef {
            use $crate::api::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::api::PluginModule { components: __gymnos_components, create: __gymnos_create }
                .leak_into_prefix()
        }

        /// abi_stable's library header (what `#[export_root_module]` would generate).
        #[doc(hidden)]
        #[export_name = $crate::__root_module_symbol!()]
        pub static __GYMNOS_LIB_HEADER: $crate::api::abi_stable::library::LibHeader = {
            extern "C" fn erased() -> $crate::api::abi_stable::library::RootModuleResult {
                $crate::api::abi_stable::library::__call_root_module_loader(__gymnos_root_module)
            }
            unsafe {
                $crate::api::abi_stable::library::LibHeader::from_constructor::<$crate::api::PluginModuleRef>(
                    erased,
                    $crate::api::abi_stable::library::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn root_module_symbol_is_abi_stables() {
        assert_eq!(__root_module_symbol!(), gymnos_plugin_api::abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
