//! `gymnos-preprocess`: preprocessors that fit on the training split batch by batch (SDK 1.2), so
//! that they also work on streaming data sets. Each is exported as an incremental preprocessor:
//! fitting in batches gives exactly the state a fit on the whole split gives.
//!
//! - `min-max` ([`MinMax`]): scales each feature (or each channel) to `[low, high]` from the
//!   training minimum and maximum. State: `min`, `max`.
//! - `normalize` ([`Normalize`]): per channel (dim 1), subtracts a mean and divides by a standard
//!   deviation, given or computed on the training split. State: `mean`, `std`.
//! - `resize` ([`Resize`]): resizes images to `height` × `width`, bilinear, antialiased when
//!   shrinking. Stateless.
//! - `grayscale` ([`Grayscale`]): turns RGB images into one luma channel (ITU-R 601).
//!   Stateless.
//! - `flatten` ([`Flatten`]): `[n, ...]` to `[n, prod(...)]`. Stateless.
//! - `label-encode` ([`LabelEncode`]): replaces the category codes of chosen columns of tabular
//!   data by their index among the values seen in training. State: `width`, `categories.<j>`.
//! - `one-hot` ([`OneHot`]): replaces chosen columns of tabular data by one-hot columns of the
//!   values seen in training. State: `width`, `categories.<j>`.
//!
//! The preprocessors work on CPU tensors and return `float32` features (`flatten` keeps the
//! dtype). `transform` takes `&self` and may run on several loader threads at once.

mod categorical;
mod image;
mod min_max;
mod normalize;

pub use categorical::{LabelEncode, LabelEncodeConfig, OneHot, OneHotConfig};
pub(crate) use gymnos_plugin_sdk::fitting::Shared;
use gymnos_plugin_sdk::{tch::Tensor, PluginError, Result};
pub use image::{Flatten, FlattenConfig, Grayscale, GrayscaleConfig, Resize, ResizeConfig};
pub use min_max::{MinMax, MinMaxConfig};
pub use normalize::{Normalize, NormalizeConfig};

gymnos_plugin_sdk::export_plugin!(
    incremental_preprocessor(MinMax),
    incremental_preprocessor(Normalize),
    incremental_preprocessor(Resize),
    incremental_preprocessor(Grayscale),
    incremental_preprocessor(Flatten),
    incremental_preprocessor(LabelEncode),
    incremental_preprocessor(OneHot),
);

/// `{name} needs {expected}, got shape [..]`: the one-line error for features of a bad shape.
pub(crate) fn bad_shape(name: &str, expected: &str, shape: &[i64]) -> PluginError {
    PluginError::data(format!("{name} needs {expected}, got shape {shape:?}"))
}

pub(crate) fn not_fitted(name: &str) -> PluginError {
    PluginError::runtime(format!("{name}: transform before fit (fit it on the training split or load its state)"))
}

pub(crate) fn state_before_fit(name: &str) -> PluginError {
    PluginError::runtime(format!("{name}: state before fit"))
}

pub(crate) fn batch_before_begin(name: &str) -> PluginError {
    PluginError::runtime(format!("{name}: fit_batch or end_fit before begin_fit"))
}

pub(crate) fn no_samples(name: &str) -> PluginError {
    PluginError::data(format!("{name}: the fit saw no training samples"))
}

/// Refuses training features that hold NaN or infinite values (they would poison the state).
pub(crate) fn check_finite(name: &str, x: &Tensor) -> Result<()> {
    if x.is_floating_point() && x.isfinite().all().int64_value(&[]) == 0 {
        return Err(PluginError::data(format!("{name}: the training features hold NaN or infinite values")));
    }
    Ok(())
}

/// The state tensors called `names`, in that order; any other name, or a missing one, is an
/// error naming the preprocessor.
pub(crate) fn named_state<const N: usize>(
    name: &str,
    names: [&str; N],
    state: Vec<(String, Tensor)>,
) -> Result<[Tensor; N]> {
    let mut found: [Option<Tensor>; N] = std::array::from_fn(|_| None);
    for (key, tensor) in state {
        let i = names.iter().position(|n| *n == key).ok_or_else(|| match N {
            0 => PluginError::data(format!("{name}: unknown state tensor `{key}` (it has no state)")),
            _ => PluginError::data(format!("{name}: unknown state tensor `{key}`")),
        })?;
        found[i] = Some(tensor);
    }
    if found.iter().any(Option::is_none) {
        let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        return Err(PluginError::data(format!("{name}: state needs {}", list.join(" and "))));
    }
    Ok(found.map(|t| t.expect("checked above")))
}

#[cfg(test)]
pub(crate) mod testing {
    use gymnos_plugin_sdk::tch::{Device, Kind, Tensor};

    /// Integer class targets for `n` samples.
    pub fn targets(n: i64) -> Tensor {
        Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3)
    }

    /// A tensor of `f64` values with a shape.
    pub fn tensor(values: &[f64], shape: &[i64]) -> Tensor {
        Tensor::from_slice(values).view(shape)
    }

    /// The values of a tensor, flattened, as `f64`.
    pub fn values(t: &Tensor) -> Vec<f64> {
        Vec::<f64>::try_from(&t.to_kind(Kind::Double).contiguous().view([-1])).unwrap()
    }

    /// Element-wise closeness of two lists of values.
    pub fn assert_close(actual: &[f64], expected: &[f64], tolerance: f64) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= tolerance, "{actual:?} vs {expected:?}");
        }
    }
}

/// `gymnos-host validate` checks the rules each preprocessor declares, without creating it;
/// `create` checks them again and may refuse more. Around every bound, what the declared rules
/// accept, create accepts: the only refusals left to create are those no single key's rule can
/// say (two keys together, or this machine's memory), listed here.
#[cfg(test)]
mod declared_rules {
    use gymnos_plugin_sdk::{
        serde_json::{json, Value},
        ConfigSchema, Configurable, Context,
    };
    use proptest::prelude::*;

    use crate::{LabelEncode, MinMax, Normalize, OneHot, Resize};

    /// What validate says (the declared keys and rules), and what create says.
    fn verdicts<T: Configurable>(config: &Value) -> (bool, Result<(), String>) {
        let declared = T::Config::from_json(config.clone());
        let accepted = declared.is_ok();
        let created = declared.and_then(|c| T::build(c, &Context::standalone())).map(drop).map_err(|e| e.to_string());
        (accepted, created)
    }

    /// Numbers at and around the bounds the rules use.
    fn near_bounds() -> impl Strategy<Value = f64> {
        prop::sample::select(vec![
            -1e308,
            -1.0,
            -1e-9,
            -0.0,
            0.0,
            1e-300,
            1e-9,
            0.5,
            1.0,
            1.0 + 1e-9,
            2.0,
            65535.0,
            65536.0,
            1e6,
            1e308,
        ])
    }

    fn integers() -> impl Strategy<Value = i64> {
        prop::sample::select(vec![i64::MIN, -1, 0, 1, 2, 50, 65535, 65536, 1_000_000, 1_000_001, i64::MAX])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn normalize(mean in prop::collection::vec(near_bounds(), 1..3), std in prop::collection::vec(near_bounds(), 1..3)) {
            // Cross-key, said by create only: one mean per std.
            prop_assume!(mean.len() == std.len());
            let (accepted, created) = verdicts::<Normalize>(&json!({ "mean": mean, "std": std }));
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
        }

        #[test]
        fn min_max(low in near_bounds(), high in near_bounds()) {
            // Cross-key, said by create only: low below high, and their difference finite.
            prop_assume!(low < high && (high - low).is_finite());
            let (accepted, created) = verdicts::<MinMax>(&json!({ "low": low, "high": high }));
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
        }

        #[test]
        fn resize(height in integers(), width in integers()) {
            let (accepted, created) = verdicts::<Resize>(&json!({ "height": height, "width": width }));
            // This machine's memory, said by create only.
            let memory = created.as_ref().err().is_some_and(|e| e.contains(": needs "));
            prop_assert_eq!(accepted, created.is_ok() || memory, "{:?}", created);
        }

        #[test]
        fn categories(column in integers(), max_categories in integers(), unknown in near_bounds()) {
            let config = json!({ "columns": [column], "max_categories": max_categories });
            let (accepted, created) = verdicts::<OneHot>(&config);
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
            let mut config = config;
            config["unknown"] = json!(unknown);
            let (accepted, created) = verdicts::<LabelEncode>(&config);
            prop_assert_eq!(accepted, created.is_ok(), "{:?}", created);
        }
    }
}
