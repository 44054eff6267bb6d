//! The boundary: every call from the host runs inside [`guard`], which turns a panic into a
//! `PluginError` (a panic must never unwind through `extern "C"`, which would abort the host),
//! and the sabi_trait objects handed to the host wrap the author's type in [`Guarded`].

use std::{
    cell::{Cell, RefCell},
    collections::HashSet,
    panic::{catch_unwind, AssertUnwindSafe},
    path::Path,
    sync::Once,
};

use gymnos_plugin_api::{
    abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec},
    component::{AugmentorObj, DatasetObj, ModelObj, PreprocessorObj, TrackerObj},
    streaming::{IncrementalPreprocessorObj, IndexedDatasetObj},
    DataPart, ErrorKind, IndexedDescription, LoadedData, Metric, NamedTensor, PluginError, Samples, TensorHandle,
};
use tch::Tensor;

use crate::{
    component::{DataAugmentor, Dataset, IncrementalPreprocessor, IndexedDataset, Model, Preprocessor, Tracker},
    convert::{from_handle, from_named, from_samples, to_handle, to_named, to_samples},
    Result, Rng,
};

thread_local! {
    static IN_GUARD: Cell<bool> = const { Cell::new(false) };
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Inside a guarded call, the panic hook records where the panic happened instead of printing:
/// the host reports it as an error naming the plugin. Elsewhere (threads the plugin spawned
/// itself) the previous hook runs as usual.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_GUARD.with(Cell::get) {
                let location = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_LOCATION.with(|p| *p.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        first_line(s)
    } else if let Some(s) = payload.downcast_ref::<String>() {
        first_line(s)
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// The meaningful first line of a panic message. A libtorch error surfaces through tch as
/// `...unwrap() on an Err value: Torch("<message>\nException raised from ...<C++ backtrace>")`:
/// keep `<message>` only.
pub(crate) fn first_line(message: &str) -> String {
    if let Some((_, torch)) = message.split_once("Torch(\"") {
        let end = torch.find("\\n").or_else(|| torch.find('\n')).or_else(|| torch.rfind("\")")).unwrap_or(torch.len());
        return format!("libtorch: {}", &torch[..end]);
    }
    message.lines().next().unwrap_or_default().to_string()
}

/// Runs `f`, converting its result and any panic into what crosses the ABI.
pub(crate) fn guard<R>(f: impl FnOnce() -> Result<R>) -> RResult<R, PluginError> {
    install_panic_hook();
    let was_guarded = IN_GUARD.with(|g| g.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    IN_GUARD.with(|g| g.set(was_guarded));
    match outcome {
        Ok(result) => result.into(),
        Err(payload) => {
            // A location inside a dependency (tch's generated bindings) tells the author nothing.
            let location = PANIC_LOCATION.with(|p| p.borrow_mut().take()).filter(|l| !l.contains("/.cargo/registry/"));
            let message = match location {
                Some(at) => format!("at {at}: {}", panic_message(payload.as_ref())),
                None => panic_message(payload.as_ref()),
            };
            RResult::RErr(PluginError::new(ErrorKind::Panic, message))
        }
    }
}

/// The author's component, seen by the host through a sabi_trait object.
pub(crate) struct Guarded<T>(pub T);

impl<T: Dataset> DatasetObj for Guarded<T> {
    fn load(&mut self) -> RResult<LoadedData, PluginError> {
        guard(|| {
            let loaded = self.0.load()?;
            Ok(LoadedData {
                info: loaded.info,
                samples: to_samples(loaded.features, loaded.targets),
                test: loaded.test.map(|(f, t)| to_samples(f, t)).into(),
            })
        })
    }

    fn read_inputs(&mut self, path: RStr<'_>) -> RResult<TensorHandle, PluginError> {
        guard(|| self.0.read_inputs(Path::new(path.as_str())).map(to_handle))
    }
}

impl<T: IndexedDataset> IndexedDatasetObj for Guarded<T> {
    fn describe(&self) -> RResult<IndexedDescription, PluginError> {
        guard(|| {
            let d = self.0.describe()?;
            Ok(IndexedDescription {
                info: d.info,
                len: d.len,
                test_len: d.test_len.into(),
                concurrent_reads: d.concurrent_reads,
            })
        })
    }

    fn read(&self, part: DataPart, indices: RSlice<'_, u64>) -> RResult<Samples, PluginError> {
        guard(|| self.0.read(part, indices.as_slice()).map(|(x, y)| to_samples(x, y)))
    }

    fn read_inputs(&self, path: RStr<'_>) -> RResult<TensorHandle, PluginError> {
        guard(|| self.0.read_inputs(Path::new(path.as_str())).map(to_handle))
    }

    fn notes(&self) -> RResult<RString, PluginError> {
        guard(|| Ok(self.0.notes()?.to_string().into()))
    }
}

/// An [`IndexedDataset`] in the 1.0 form: `load` reads every sample through `read`.
pub(crate) struct GuardedWhole<T>(pub T);

/// Samples read per `read` call when loading an indexed data set whole.
const WHOLE_READ_CHUNK: u64 = 4096;

fn read_all<T: IndexedDataset>(dataset: &T, part: DataPart, len: u64) -> Result<(Tensor, Tensor)> {
    let mut features = Vec::new();
    let mut targets = Vec::new();
    let mut start = 0;
    while start < len {
        let indices: Vec<u64> = (start..len.min(start + WHOLE_READ_CHUNK)).collect();
        let (x, y) = dataset.read(part, &indices)?;
        features.push(x);
        targets.push(y);
        start += WHOLE_READ_CHUNK;
    }
    if features.is_empty() {
        return Err(PluginError::data("the data set has no samples"));
    }
    Ok((Tensor::cat(&features, 0), Tensor::cat(&targets, 0)))
}

impl<T: IndexedDataset> DatasetObj for GuardedWhole<T> {
    fn load(&mut self) -> RResult<LoadedData, PluginError> {
        guard(|| {
            let description = self.0.describe()?;
            let (features, targets) = read_all(&self.0, DataPart::Samples, description.len)?;
            let test = match description.test_len {
                Some(n) => Some(read_all(&self.0, DataPart::Test, n)?),
                None => None,
            };
            Ok(LoadedData {
                info: description.info,
                samples: to_samples(features, targets),
                test: test.map(|(f, t)| to_samples(f, t)).into(),
            })
        })
    }

    fn read_inputs(&mut self, path: RStr<'_>) -> RResult<TensorHandle, PluginError> {
        guard(|| self.0.read_inputs(Path::new(path.as_str())).map(to_handle))
    }
}

impl<T: IncrementalPreprocessor> IncrementalPreprocessorObj for Guarded<T> {
    fn begin_fit(&mut self) -> RResult<(), PluginError> {
        guard(|| self.0.begin_fit())
    }

    fn fit_batch(&mut self, batch: Samples) -> RResult<(), PluginError> {
        guard(|| {
            let (features, targets) = from_samples(batch);
            self.0.fit_batch(&features, &targets)
        })
    }

    fn end_fit(&mut self) -> RResult<(), PluginError> {
        guard(|| self.0.end_fit())
    }

    fn transform(&self, features: TensorHandle) -> RResult<TensorHandle, PluginError> {
        preprocessor_transform(&self.0, features)
    }

    fn state(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        preprocessor_state(&self.0)
    }

    fn load_state(&mut self, state: RVec<NamedTensor>) -> RResult<(), PluginError> {
        preprocessor_load_state(&mut self.0, state)
    }
}

// What a preprocessor's two ABI forms (1.0 and incremental) share.
fn preprocessor_transform<T: Preprocessor>(p: &T, features: TensorHandle) -> RResult<TensorHandle, PluginError> {
    guard(|| p.transform(&from_handle(features)).map(to_handle))
}

fn preprocessor_state<T: Preprocessor>(p: &T) -> RResult<RVec<NamedTensor>, PluginError> {
    guard(|| p.state().map(to_named))
}

fn preprocessor_load_state<T: Preprocessor>(p: &mut T, state: RVec<NamedTensor>) -> RResult<(), PluginError> {
    guard(|| p.load_state(from_named(state)))
}

impl<T: Preprocessor> PreprocessorObj for Guarded<T> {
    fn fit(&mut self, data: Samples) -> RResult<(), PluginError> {
        guard(|| {
            let (features, targets) = from_samples(data);
            self.0.fit(&features, &targets)
        })
    }

    fn transform(&self, features: TensorHandle) -> RResult<TensorHandle, PluginError> {
        preprocessor_transform(&self.0, features)
    }

    fn state(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        preprocessor_state(&self.0)
    }

    fn load_state(&mut self, state: RVec<NamedTensor>) -> RResult<(), PluginError> {
        preprocessor_load_state(&mut self.0, state)
    }
}

impl<T: DataAugmentor> AugmentorObj for Guarded<T> {
    fn augment(&self, batch: Samples, seed: u64) -> RResult<Samples, PluginError> {
        guard(|| {
            let (features, targets) = from_samples(batch);
            let (f, t) = self.0.augment(features, targets, &mut Rng::new(seed))?;
            Ok(to_samples(f, t))
        })
    }
}

/// The model's variables sorted by name, so that every listing (and the host's optimizer
/// state built from it) has one order.
fn sorted_variables<T: Model>(model: &T, trainable_only: bool) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> =
        model.var_store().variables().into_iter().filter(|(_, t)| !trainable_only || t.requires_grad()).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

impl<T: Model> ModelObj for Guarded<T> {
    fn forward(&mut self, input: TensorHandle, train: bool) -> RResult<TensorHandle, PluginError> {
        guard(|| self.0.forward(&from_handle(input), train).map(to_handle))
    }

    fn parameters(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        guard(|| Ok(to_named(sorted_variables(&self.0, true))))
    }

    fn state(&self) -> RResult<RVec<NamedTensor>, PluginError> {
        guard(|| Ok(to_named(sorted_variables(&self.0, false))))
    }

    fn load_state(&mut self, state: RVec<NamedTensor>) -> RResult<(), PluginError> {
        guard(|| {
            let vars = self.0.var_store().variables();
            let mut seen = HashSet::new();
            for (name, src) in from_named(state) {
                let Some(dst) = vars.get(&name) else {
                    return Err(PluginError::data(format!("state has unknown tensor `{name}`")));
                };
                if dst.size() != src.size() {
                    return Err(PluginError::data(format!(
                        "tensor `{name}` has shape {:?} in the state, {:?} in the model",
                        src.size(),
                        dst.size()
                    )));
                }
                tch::no_grad(|| dst.shallow_clone().f_copy_(&src))
                    .map_err(|e| PluginError::runtime(format!("copying `{name}`: {e}")))?;
                seen.insert(name);
            }
            let mut missing: Vec<&String> = vars.keys().filter(|k| !seen.contains(*k)).collect();
            missing.sort();
            match missing.is_empty() {
                true => Ok(()),
                false => Err(PluginError::data(format!("state lacks tensors {missing:?}"))),
            }
        })
    }
}

fn parse_json(text: RStr<'_>) -> Result<serde_json::Value> {
    serde_json::from_str(text.as_str()).map_err(|e| PluginError::data(format!("invalid JSON from host: {e}")))
}

impl<T: Tracker> TrackerObj for Guarded<T> {
    fn start(&mut self, run_json: RStr<'_>) -> RResult<(), PluginError> {
        guard(|| self.0.start(&parse_json(run_json)?))
    }

    fn log_params(&mut self, params_json: RStr<'_>) -> RResult<(), PluginError> {
        guard(|| self.0.log_params(&parse_json(params_json)?))
    }

    fn log_metrics(&mut self, step: u64, scope: RStr<'_>, metrics: RSlice<'_, Metric>) -> RResult<(), PluginError> {
        guard(|| {
            let metrics: Vec<(String, f64)> = metrics.iter().map(|m| (m.name.to_string(), m.value)).collect();
            self.0.log_metrics(step, scope.as_str(), &metrics)
        })
    }

    fn finish(&mut self, status: RStr<'_>) -> RResult<(), PluginError> {
        guard(|| self.0.finish(status.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages_are_one_line_and_libtorch_errors_lose_their_backtrace() {
        let torch = "called `Result::unwrap()` on an `Err` value: Torch(\"mat1 and mat2 shapes cannot be multiplied (16x13 and 14x3)\\nException raised from meta at LinearAlgebra.cpp:205\\nframe #0: ...\")";
        assert_eq!(first_line(torch), "libtorch: mat1 and mat2 shapes cannot be multiplied (16x13 and 14x3)");
        assert_eq!(first_line("boom\nsecond line"), "boom");
        let err = guard::<()>(|| panic!("index out of range")).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Panic);
        assert!(
            err.message.as_str().starts_with("at ") && err.message.as_str().ends_with(": index out of range"),
            "{}",
            err.message
        );
    }
}
