//! What [`export_plugin!`](crate::export_plugin) expands to: one [`Entry`] per component, the
//! two `extern "C"` functions of the root module, and (API 1.1) the exported details function.

use std::collections::BTreeMap;

use gymnos_plugin_api::{
    abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{ROption, RResult, RStr, RString, RVec},
    },
    component::{AugmentorObj_TO, DatasetObj_TO, ModelObj_TO, PreprocessorObj_TO, TrackerObj_TO},
    config::KeyRules,
    streaming::{IncrementalPreprocessorObj_TO, IndexedDatasetObj_TO, StreamingComponent},
    Component as AbiComponent, ComponentDetails, ComponentKind, ComponentMeta, ConfigKey, CreateContext,
    LibraryDetails, PluginError,
};
use serde_json::Value;

use crate::{
    component::{
        Component, DataAugmentor, Dataset, IncrementalPreprocessor, IndexedDataset, Model, Preprocessor, Tracker,
    },
    guard::{guard, Guarded, GuardedWhole},
    ConfigValues, Context, Result,
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
#[derive(Clone, Copy)]
pub struct Entry {
    pub kind: ComponentKind,
    pub name: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub config_keys: fn() -> Vec<ConfigKey>,
    pub key_rules: fn() -> KeyRules,
    pub key_schemas: fn() -> BTreeMap<String, Value>,
    build: fn(&ConfigValues, &Context) -> Result<AbiComponent>,
    /// The streaming form (API 1.2), for the kinds that have one.
    build_streaming: Option<BuildStreaming>,
}

/// Builds a component's streaming form, or none when its configuration asks for the 1.0 form.
type BuildStreaming = fn(&ConfigValues, &Context) -> Result<Option<StreamingComponent>>;

impl Entry {
    const fn of<T: Component>(kind: ComponentKind, build: fn(&ConfigValues, &Context) -> Result<AbiComponent>) -> Self {
        Entry {
            kind,
            name: T::NAME,
            version: T::VERSION,
            description: T::DESCRIPTION,
            config_keys: T::config_keys,
            key_rules: T::key_rules,
            key_schemas: T::key_schemas,
            build,
            build_streaming: None,
        }
    }
    const fn streaming(self, build: BuildStreaming) -> Self {
        Entry { build_streaming: Some(build), ..self }
    }
    pub const fn dataset<T: Dataset>() -> Self {
        Self::of::<T>(ComponentKind::Dataset, |c, x| {
            Ok(AbiComponent::Dataset(DatasetObj_TO::from_value(Guarded(T::create(c, x)?), TD_Opaque)))
        })
    }
    /// A data set read by index (SDK 1.2): its 1.0 form loads every sample through `read`.
    pub const fn indexed_dataset<T: IndexedDataset>() -> Self {
        Self::of::<T>(ComponentKind::Dataset, |c, x| {
            Ok(AbiComponent::Dataset(DatasetObj_TO::from_value(GuardedWhole(T::create(c, x)?), TD_Opaque)))
        })
        .streaming(|c, x| {
            let dataset = T::create(c, x)?;
            Ok(dataset.streams().then(|| {
                StreamingComponent::IndexedDataset(IndexedDatasetObj_TO::from_value(Guarded(dataset), TD_Opaque))
            }))
        })
    }
    /// A preprocessor that also fits batch by batch (SDK 1.2).
    pub const fn incremental_preprocessor<T: IncrementalPreprocessor>() -> Self {
        Self::preprocessor::<T>().streaming(|c, x| {
            let preprocessor = Guarded(T::create(c, x)?);
            Ok(Some(StreamingComponent::IncrementalPreprocessor(IncrementalPreprocessorObj_TO::from_value(
                preprocessor,
                TD_Opaque,
            ))))
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

    fn details(&self) -> ComponentDetails {
        ComponentDetails {
            name: self.name.into(),
            kind: self.kind.as_str().into(),
            constraints: (self.key_rules)(),
            schemas: (self.key_schemas)(),
        }
    }
}

/// Body of the root module's `components` function.
pub fn components(entries: &[Entry]) -> RResult<RVec<ComponentMeta>, PluginError> {
    guard(|| Ok(entries.iter().map(Entry::meta).collect()))
}

/// Body of the exported `gymnos_plugin_details` function (API 1.1, a
/// [`gymnos_plugin_api::module::DetailsFn`]): the JSON of [`LibraryDetails`].
pub fn component_details(entries: &[Entry]) -> RResult<RString, PluginError> {
    guard(|| {
        let details = LibraryDetails { components: entries.iter().map(Entry::details).collect() };
        serde_json::to_string(&details)
            .map(RString::from)
            .map_err(|e| PluginError::runtime(format!("component details: {e}")))
    })
}

/// The entry called `name`, its configuration checked, and the context.
fn checked<'e>(
    entries: &'e [Entry],
    name: RStr<'_>,
    config_json: RStr<'_>,
    context: &CreateContext<'_>,
) -> Result<(&'e Entry, ConfigValues, Context)> {
    let entry = entries.iter().find(|e| e.name == name.as_str()).ok_or_else(|| {
        let names: Vec<&str> = entries.iter().map(|e| e.name).collect();
        PluginError::config(format!("this library has no component `{name}` (it has: {})", names.join(", ")))
    })?;
    let context = Context::from_abi(context);
    let config = ConfigValues::checked(
        entry.name,
        &(entry.config_keys)(),
        &(entry.key_rules)(),
        config_json.as_str(),
        Some(&context),
    )?;
    Ok((entry, config, context))
}

/// Body of the root module's `create` function.
pub fn create(
    entries: &[Entry],
    name: RStr<'_>,
    config_json: RStr<'_>,
    context: &CreateContext<'_>,
) -> RResult<AbiComponent, PluginError> {
    guard(|| {
        let (entry, config, context) = checked(entries, name, config_json, context)?;
        (entry.build)(&config, &context)
    })
}

/// Body of the exported `gymnos_plugin_create_streaming` function (API 1.2, a
/// [`gymnos_plugin_api::CreateStreamingFn`]).
pub fn create_streaming(
    entries: &[Entry],
    name: RStr<'_>,
    config_json: RStr<'_>,
    context: &CreateContext<'_>,
) -> RResult<ROption<StreamingComponent>, PluginError> {
    guard(|| {
        let (entry, config, context) = checked(entries, name, config_json, context)?;
        Ok(match entry.build_streaming {
            Some(build) => build(&config, &context)?.into(),
            None => ROption::RNone,
        })
    })
}

/// Exports a plugin library's components:
///
/// ```ignore
/// gymnos_plugin_sdk::export_plugin!(model(Mlp), preprocessor(Standardize));
/// ```
///
/// Kinds: `dataset`, `indexed_dataset` (SDK 1.2), `preprocessor`, `incremental_preprocessor`
/// (SDK 1.2), `data_augmentor`, `model`, `tracker`. Requires a `build.rs` that calls
/// `gymnos_plugin_build::link_libtorch()`.
///
/// Exports the manifest, abi_stable's root module (the layout of API 1.0), since API 1.1
/// `gymnos_plugin_details` ([`gymnos_plugin_api::module::DETAILS_SYMBOL`]): the components'
/// rules and schemas as JSON, and since API 1.2 `gymnos_plugin_create_streaming`
/// ([`gymnos_plugin_api::STREAMING_SYMBOL`]): the streaming forms of components.
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

        /// The components' details (API 1.1), looked up by the host under
        /// `gymnos_plugin_api::module::DETAILS_SYMBOL`; its type is `gymnos_plugin_api::module::DetailsFn`.
        #[doc(hidden)]
        #[no_mangle]
        pub extern "C" fn gymnos_plugin_details() -> $crate::api::abi_stable::std_types::RResult<
            $crate::api::abi_stable::std_types::RString,
            $crate::api::PluginError,
        > {
            $crate::export::component_details(__GYMNOS_ENTRIES)
        }
        const _: $crate::api::module::DetailsFn = gymnos_plugin_details;

        /// The streaming forms of components (API 1.2), looked up by the host under
        /// `gymnos_plugin_api::STREAMING_SYMBOL`; its type is `gymnos_plugin_api::CreateStreamingFn`.
        #[doc(hidden)]
        #[no_mangle]
        pub extern "C" fn gymnos_plugin_create_streaming(
            name: $crate::api::abi_stable::std_types::RStr<'_>,
            config: $crate::api::abi_stable::std_types::RStr<'_>,
            context: &$crate::api::CreateContext<'_>,
        ) -> $crate::api::abi_stable::std_types::RResult<
            $crate::api::abi_stable::std_types::ROption<$crate::api::StreamingComponent>,
            $crate::api::PluginError,
        > {
            $crate::export::create_streaming(__GYMNOS_ENTRIES, name, config, context)
        }
        const _: $crate::api::CreateStreamingFn = gymnos_plugin_create_streaming;

        #[doc(hidden)]
        fn __gymnos_root_module() -> $crate::api::PluginModuleRef {
            use $crate::api::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::api::PluginModule {
                components: __gymnos_components,
                create: __gymnos_create,
            }
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

    #[test]
    fn details_function_is_exported_under_the_details_symbol() {
        // The macro names the function; the host looks it up by `DETAILS_SYMBOL`.
        assert_eq!(gymnos_plugin_api::module::DETAILS_SYMBOL, b"gymnos_plugin_details\0");
    }

    #[test]
    fn streaming_function_is_exported_under_the_streaming_symbol() {
        assert_eq!(gymnos_plugin_api::STREAMING_SYMBOL, b"gymnos_plugin_create_streaming\0");
    }
}
