//! Checks a component against its contract, for plugin authors' own tests (and the built-in
//! plugins'). Each check builds the component exactly as the host does (configuration
//! validated against the declared keys and rules, then `create`) and calls it through the same
//! ABI objects, with tensors passed as handles, so what passes here behaves the same in the host.
//!
//! ```ignore
//! #[test]
//! fn contract() {
//!     gymnos_plugin_sdk::harness::check_model::<MyModel>(json!({"hidden": 8}), &[1, 28, 28], 10).unwrap();
//! }
//! ```

use std::path::Path;

use gymnos_plugin_api::{
    abi_stable::std_types::{RSlice, RStr, RVec},
    check_component_name, Component as AbiComponent, CreateContext, DatasetBox, DeviceSpec, Metric, Samples, Task,
};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

pub use crate::contract::{check_split, Check};
use crate::{
    component::{DataAugmentor, Dataset, IncrementalPreprocessor, IndexedDataset, Model, Preprocessor, Tracker},
    contract::{check_augmented, check_soft_targets, ensure},
    convert::{from_handle, from_samples, to_handle},
    export::Entry,
};

fn context<'a>(input_shape: &[i64], num_outputs: i64, task: Task, output_dir: &'a str) -> CreateContext<'a> {
    CreateContext {
        device: DeviceSpec::Cpu,
        seed: 0,
        input_shape: RVec::from(input_shape.to_vec()),
        num_outputs,
        task,
        output_dir: RStr::from_str(output_dir),
        base_dir: RStr::from_str(""),
    }
}

/// Creates through the export path: metadata checks, configuration validation, `create`.
fn build(entry: Entry, config: &Value, ctx: &CreateContext<'_>) -> Check<AbiComponent> {
    let meta = crate::export::components(std::slice::from_ref(&entry)).into_result().map_err(|e| e.to_string())?;
    let meta = &meta[0];
    check_component_name(&meta.name)?;
    let parts: Vec<&str> = meta.version.split('.').collect();
    ensure(
        parts.len() == 3 && parts.iter().all(|p| p.split(['-', '+']).next().is_some_and(|n| n.parse::<u64>().is_ok())),
        || format!("version `{}` is not semver (MAJOR.MINOR.PATCH)", meta.version),
    )?;
    for key in meta.config.iter().filter(|k| !k.default_json.is_empty()) {
        let default: Value = serde_json::from_str(key.default_json.as_str())
            .map_err(|e| format!("key `{}`: default is not JSON: {e}", key.name))?;
        ensure(key.ty.matches(&default) || default.is_null(), || {
            format!("key `{}`: default {default} is not of its declared type {}", key.name, key.ty.as_str())
        })?;
    }
    let details =
        crate::export::component_details(std::slice::from_ref(&entry)).into_result().map_err(|e| e.to_string())?;
    serde_json::from_str::<gymnos_plugin_api::LibraryDetails>(&details)
        .map_err(|e| format!("component details: {e}"))?;
    crate::export::create(
        std::slice::from_ref(&entry),
        RStr::from_str(entry.name),
        RStr::from_str(&config.to_string()),
        ctx,
    )
    .into_result()
    .map_err(|e| format!("create: {e}"))
}

fn dataset(entry: Entry, config: &Value) -> Check<DatasetBox> {
    match build(entry, config, &context(&[], 0, Task::Classification, ""))? {
        AbiComponent::Dataset(d) => Ok(d),
        _ => unreachable!("built a dataset"),
    }
}

/// A data set loads CPU tensors whose shapes, dtypes and labels agree with what it declares.
/// Returns the number of samples (and of test samples).
pub fn check_dataset<T: Dataset>(config: Value) -> Check<(i64, i64)> {
    let mut dataset = dataset(Entry::dataset::<T>(), &config)?;
    let loaded = dataset.load().into_result().map_err(|e| format!("load: {e}"))?;
    let info = loaded.info.clone();
    let check = |name: &str, samples: Samples| {
        let (x, y) = from_samples(samples);
        check_split(&info, &x, &y, name)
    };
    let n = check("samples", loaded.samples)?;
    let n_test = match loaded.test.into_option() {
        Some(test) => check("test", test)?,
        None => 0,
    };
    Ok((n, n_test))
}

/// `read_inputs` of `path` gives CPU features of the declared shape (run after `check_dataset`).
pub fn check_dataset_inputs<T: Dataset>(config: Value, path: &Path, feature_shape: &[i64]) -> Check<i64> {
    let mut dataset = dataset(Entry::dataset::<T>(), &config)?;
    let x = from_handle(
        dataset
            .read_inputs(RStr::from_str(&path.to_string_lossy()))
            .into_result()
            .map_err(|e| format!("read_inputs: {e}"))?,
    );
    ensure(x.size()[1..] == *feature_shape, || {
        format!("read_inputs: features {:?}, expected [n, {feature_shape:?}]", x.size())
    })?;
    Ok(x.size()[0])
}

/// A preprocessor keeps the number of samples, transforms rows independently, and its saved
/// state, loaded into a fresh instance, reproduces its transform.
pub fn check_preprocessor<T: Preprocessor>(config: Value, features: &Tensor, targets: &Tensor) -> Check {
    let make = || match build(Entry::preprocessor::<T>(), &config, &context(&[], 0, Task::Classification, "")) {
        Ok(AbiComponent::Preprocessor(p)) => Ok(p),
        Ok(_) => unreachable!("built a preprocessor"),
        Err(e) => Err(e),
    };
    let mut p = make()?;
    let data = Samples { features: to_handle(features.shallow_clone()), targets: to_handle(targets.shallow_clone()) };
    p.fit(data).into_result().map_err(|e| format!("fit: {e}"))?;
    let transform = |p: &gymnos_plugin_api::PreprocessorBox, x: &Tensor| -> Check<Tensor> {
        Ok(from_handle(p.transform(to_handle(x.shallow_clone())).into_result().map_err(|e| format!("transform: {e}"))?))
    };
    let y = transform(&p, features)?;
    let n = features.size()[0];
    ensure(y.size().first() == Some(&n), || {
        format!("transform changed the number of samples from {n} to {:?}", y.size().first())
    })?;
    ensure(y.isfinite().all().int64_value(&[]) == 1, || "transform produced NaN or infinite values".into())?;
    let half = (n / 2).max(1);
    let head = transform(&p, &features.narrow(0, 0, half))?;
    ensure(head.allclose(&y.narrow(0, 0, half), 1e-5, 1e-6, false), || {
        "transforming a subset differs from the subset of the transform".into()
    })?;
    let state = p.state().into_result().map_err(|e| format!("state: {e}"))?;
    let mut fresh = make()?;
    fresh.load_state(state).into_result().map_err(|e| format!("load_state: {e}"))?;
    ensure(transform(&fresh, features)?.allclose(&y, 1e-6, 1e-7, false), || {
        "a fresh instance with the saved state transforms differently".into()
    })
}

fn streaming(entry: Entry, config: &Value) -> Check<Option<gymnos_plugin_api::StreamingComponent>> {
    let ctx = context(&[], 0, Task::Classification, "");
    // The 1.0 form must build too (hosts before 1.2, and `streams() == false`).
    build(entry, config, &ctx)?;
    let created = crate::export::create_streaming(
        std::slice::from_ref(&entry),
        RStr::from_str(entry.name),
        RStr::from_str(&config.to_string()),
        &ctx,
    );
    created.into_result().map(|c| c.into_option()).map_err(|e| format!("create_streaming: {e}"))
}

/// An indexed data set (SDK 1.2): `describe` agrees with what `read` returns, reads of the
/// same indices (in any grouping and order) give the same samples, every sample of each part
/// can be read, and the 1.0 form (`load`) gives the same samples. Reads everything: use a
/// small configuration. Returns the number of samples (and of test samples).
pub fn check_indexed_dataset<T: IndexedDataset>(config: Value) -> Check<(i64, i64)> {
    use gymnos_plugin_api::{abi_stable::std_types::RSlice, DataPart, StreamingComponent};
    let Some(StreamingComponent::IndexedDataset(d)) = streaming(Entry::indexed_dataset::<T>(), &config)? else {
        return Err("this configuration does not stream (`streams()` is false)".into());
    };
    let description = d.describe().into_result().map_err(|e| format!("describe: {e}"))?;
    let info = description.info.clone();
    let read = |part: DataPart, indices: &[u64]| -> Check<(Tensor, Tensor)> {
        let samples = d.read(part, RSlice::from_slice(indices)).into_result().map_err(|e| format!("read: {e}"))?;
        Ok(from_samples(samples))
    };
    let mut counts = (0, 0);
    let parts = [(DataPart::Samples, Some(description.len)), (DataPart::Test, description.test_len.into_option())];
    for (part, len) in parts {
        let Some(len) = len else { continue };
        ensure(len > 0, || format!("describe: {part:?} has no samples"))?;
        let every: Vec<u64> = (0..len).collect();
        let (x, y) = read(part, &every)?;
        let n = check_split(&info, &x, &y, &format!("{part:?}"))?;
        ensure(n as u64 == len, || format!("read {n} of the {len} samples of {part:?} (skipped some?)"))?;
        let picked: Vec<u64> = [len - 1, 0, len / 2].into_iter().collect();
        let (px, py) = read(part, &picked)?;
        let expected = Tensor::from_slice(&picked.iter().map(|&i| i as i64).collect::<Vec<_>>());
        ensure(px.equal(&x.index_select(0, &expected)) && py.equal(&y.index_select(0, &expected)), || {
            format!("reading indices {picked:?} of {part:?} alone differs from reading them with the rest")
        })?;
        match part {
            DataPart::Samples => counts.0 = n,
            DataPart::Test => counts.1 = n,
        }
    }
    let notes = d.notes().into_result().map_err(|e| format!("notes: {e}"))?;
    ensure(serde_json::from_str::<Value>(&notes).is_ok_and(|v| v.is_object()), || {
        format!("notes must be a JSON object, got {notes}")
    })?;
    let (whole, whole_test) = check_dataset_whole::<T>(&config)?;
    ensure((whole, whole_test) == counts, || {
        format!("load (the 1.0 form) gives {whole} and {whole_test} samples, read gives {counts:?}")
    })?;
    Ok(counts)
}

fn check_dataset_whole<T: IndexedDataset>(config: &Value) -> Check<(i64, i64)> {
    let mut dataset = dataset(Entry::indexed_dataset::<T>(), config)?;
    let loaded = dataset.load().into_result().map_err(|e| format!("load: {e}"))?;
    let info = loaded.info.clone();
    let (x, y) = from_samples(loaded.samples);
    let n = check_split(&info, &x, &y, "samples")?;
    let n_test = match loaded.test.into_option() {
        Some(test) => {
            let (x, y) = from_samples(test);
            check_split(&info, &x, &y, "test")?
        }
        None => 0,
    };
    Ok((n, n_test))
}

/// An incremental preprocessor (SDK 1.2) passes [`check_preprocessor`], and fitting it batch by
/// batch gives the state (and transform) that fitting it on the whole split gives.
pub fn check_incremental_preprocessor<T: IncrementalPreprocessor>(
    config: Value,
    features: &Tensor,
    targets: &Tensor,
    batch_size: i64,
) -> Check {
    use gymnos_plugin_api::StreamingComponent;
    check_preprocessor::<T>(config.clone(), features, targets)?;
    let make = || match streaming(Entry::incremental_preprocessor::<T>(), &config)? {
        Some(StreamingComponent::IncrementalPreprocessor(p)) => Ok(p),
        _ => Err("create_streaming gave no incremental preprocessor".to_string()),
    };
    let fit = |batch: i64| -> Check<Tensor> {
        let mut p = make()?;
        let err = |what: &'static str| move |e: gymnos_plugin_api::PluginError| format!("{what}: {e}");
        p.begin_fit().into_result().map_err(err("begin_fit"))?;
        let n = features.size()[0];
        for start in (0..n).step_by(batch as usize) {
            let len = batch.min(n - start);
            let samples = Samples {
                features: to_handle(features.narrow(0, start, len)),
                targets: to_handle(targets.narrow(0, start, len)),
            };
            p.fit_batch(samples).into_result().map_err(err("fit_batch"))?;
        }
        p.end_fit().into_result().map_err(err("end_fit"))?;
        Ok(from_handle(p.transform(to_handle(features.shallow_clone())).into_result().map_err(err("transform"))?))
    };
    let whole = fit(features.size()[0])?;
    let batched = fit(batch_size.max(1))?;
    ensure(whole.size() == batched.size() && whole.allclose(&batched, 1e-4, 1e-5, false), || {
        format!("fitting in batches of {batch_size} transforms differently from fitting on the whole split")
    })
}

/// An augmentor keeps the batch size and the targets (or, mixing classes, returns soft targets
/// that are probability rows), and is a function of its seed.
pub fn check_augmentor<T: DataAugmentor>(config: Value, features: &Tensor, targets: &Tensor) -> Check {
    let num_classes =
        if targets.kind() == Kind::Int64 { targets.max().int64_value(&[]) + 1 } else { targets.size()[1] };
    let ctx = context(&features.size()[1..], num_classes, Task::Classification, "");
    let AbiComponent::DataAugmentor(a) = build(Entry::data_augmentor::<T>(), &config, &ctx)? else {
        unreachable!("built an augmentor");
    };
    let run = |seed: u64| -> Check<(Tensor, Tensor)> {
        let batch =
            Samples { features: to_handle(features.shallow_clone()), targets: to_handle(targets.shallow_clone()) };
        let out = a.augment(batch, seed).into_result().map_err(|e| format!("augment: {e}"))?;
        Ok(from_samples(out))
    };
    let (x1, y1) = run(7)?;
    let (x2, y2) = run(7)?;
    let n = features.size()[0];
    check_augmented(Task::Classification, num_classes, n, &x1, &y1).map_err(|e| format!("augment {e}"))?;
    ensure(x1.size() == features.size(), || format!("augment changed the features' shape to {:?}", x1.size()))?;
    if y1.is_floating_point() && targets.kind() == Kind::Int64 {
        check_soft_targets(&y1)?;
    } else {
        ensure(y1.equal(targets), || "augment changed the targets".into())?;
    }
    ensure(x1.equal(&x2) && y1.equal(&y2), || "two calls with the same seed gave different batches".into())
}

/// A model maps `[n, ...input_shape]` to `[n, num_outputs]`, lets gradients reach every
/// trainable parameter, is deterministic in eval mode, and its saved state reproduces it.
pub fn check_model<T: Model>(config: Value, input_shape: &[i64], num_outputs: i64) -> Check {
    let make = |seed: i64| {
        tch::manual_seed(seed);
        match build(Entry::model::<T>(), &config, &context(input_shape, num_outputs, Task::Classification, "")) {
            Ok(AbiComponent::Model(m)) => Ok(m),
            Ok(_) => unreachable!("built a model"),
            Err(e) => Err(e),
        }
    };
    let mut model = make(1)?;
    let mut shape = vec![4];
    shape.extend_from_slice(input_shape);
    tch::manual_seed(2);
    let x = Tensor::randn(shape.as_slice(), (Kind::Float, tch::Device::Cpu));
    let forward = |m: &mut gymnos_plugin_api::ModelBox, train: bool| -> Check<Tensor> {
        Ok(from_handle(
            m.forward(to_handle(x.shallow_clone()), train).into_result().map_err(|e| format!("forward: {e}"))?,
        ))
    };
    let out = forward(&mut model, true)?;
    ensure(out.size() == [4, num_outputs], || {
        format!("forward returned {:?}, expected [4, {num_outputs}]", out.size())
    })?;
    let params: Vec<(String, Tensor)> = model
        .parameters()
        .into_result()
        .map_err(|e| format!("parameters: {e}"))?
        .into_iter()
        .map(|n| (n.name.into_string(), from_handle(n.tensor)))
        .collect();
    ensure(!params.is_empty(), || "the model has no trainable parameters".into())?;
    out.square().mean(Kind::Float).backward();
    for (name, p) in &params {
        let g = p.grad();
        ensure(g.defined(), || format!("parameter `{name}` got no gradient"))?;
        ensure(g.isfinite().all().int64_value(&[]) == 1, || format!("parameter `{name}` has a non-finite gradient"))?;
    }
    let eval = forward(&mut model, false)?;
    ensure(eval.equal(&forward(&mut model, false)?), || "eval-mode forward is not deterministic".into())?;
    let state = model.state().into_result().map_err(|e| format!("state: {e}"))?;
    let mut fresh = make(99)?;
    fresh.load_state(state).into_result().map_err(|e| format!("load_state: {e}"))?;
    ensure(forward(&mut fresh, false)?.allclose(&eval, 1e-6, 1e-7, false), || {
        "a fresh model with the saved state gives other outputs".into()
    })
}

/// A tracker accepts a whole run's calls. Files go to `output_dir`.
pub fn check_tracker<T: Tracker>(config: Value, output_dir: &Path) -> Check {
    let dir = output_dir.to_string_lossy();
    let AbiComponent::Tracker(mut t) =
        build(Entry::tracker::<T>(), &config, &context(&[], 0, Task::Classification, &dir))?
    else {
        unreachable!("built a tracker");
    };
    let err = |what: &'static str| move |e: gymnos_plugin_api::PluginError| format!("{what}: {e}");
    t.start(RStr::from_str(&json!({ "experiment": "harness" }).to_string())).into_result().map_err(err("start"))?;
    t.log_params(RStr::from_str(&json!({ "lr": 0.1 }).to_string())).into_result().map_err(err("log_params"))?;
    let metrics = [Metric { name: "loss".into(), value: 0.5 }];
    t.log_metrics(1, RStr::from_str("epoch"), RSlice::from_slice(&metrics))
        .into_result()
        .map_err(err("log_metrics"))?;
    t.finish(RStr::from_str("completed")).into_result().map_err(err("finish"))
}
