//! The preprocessors, in order: fitted on the training split (whole, or batch by batch when the
//! data set streams), then applied to every split and, in a streaming run, to each batch read.

use std::sync::Mutex;

use anyhow::{anyhow, bail, Result};
use gymnos_host::experiment::ResolvedPlugin;
use gymnos_plugin_api::{
    abi_stable::std_types::RResult, IncrementalPreprocessorBox, PluginError, PreprocessorBox, TensorHandle,
};
use gymnos_plugin_sdk::{from_handle, from_named, to_handle, to_named, to_samples};
use tch::Tensor;

use super::{call, named, to_abi, Form};
use crate::{
    checkpoint::with_prefix,
    data::{first_non_finite, Samples},
};

/// A preprocessor in the form its plugin gave.
enum PreprocessorForm {
    /// Fits on the whole training split at once (the 1.0 contract). Its transform may not run
    /// on several threads at once.
    Whole(Mutex<PreprocessorBox>),
    /// Fits batch by batch; transforms concurrently (API 1.2).
    Incremental(IncrementalPreprocessorBox),
}

impl PreprocessorForm {
    fn transform(&self, x: TensorHandle) -> RResult<TensorHandle, PluginError> {
        match self {
            PreprocessorForm::Whole(p) => p.lock().unwrap_or_else(|e| e.into_inner()).transform(x),
            PreprocessorForm::Incremental(p) => p.transform(x),
        }
    }
}

/// The preprocessors, in order.
pub struct Preprocessors(Vec<(ResolvedPlugin, PreprocessorForm)>);

impl Preprocessors {
    pub(super) fn new(list: Vec<(ResolvedPlugin, Form<IncrementalPreprocessorBox, PreprocessorBox>)>) -> Self {
        let forms = list.into_iter().map(|(plugin, form)| {
            let form = match form {
                Form::Whole(p) => PreprocessorForm::Whole(Mutex::new(p)),
                Form::Streaming(p) => PreprocessorForm::Incremental(p),
            };
            (plugin, form)
        });
        Self(forms.collect())
    }

    /// Fits each preprocessor on the training split as transformed by the ones before it, and
    /// returns the transformed training split.
    pub fn fit_transform(&mut self, train: Samples) -> Result<Samples> {
        let mut current = train;
        for (plugin, p) in &mut self.0 {
            match p {
                PreprocessorForm::Whole(p) => {
                    let p = p.get_mut().unwrap_or_else(|e| e.into_inner());
                    call(plugin, "fit", p.fit(to_abi(&current)))?;
                }
                PreprocessorForm::Incremental(p) => {
                    call(plugin, "begin_fit", p.begin_fit())?;
                    call(plugin, "fit_batch", p.fit_batch(to_abi(&current)))?;
                    call(plugin, "end_fit", p.end_fit())?;
                }
            }
            let rows = current.len();
            let x = checked_rows(plugin, rows, call(plugin, "transform", p.transform(to_handle(current.x)))?)?;
            current = Samples { x, y: current.y };
        }
        Ok(current)
    }

    /// The preprocessors that cannot fit batch by batch (built against an API before 1.2, or
    /// without that form), as `label (path)`.
    pub fn not_incremental(&self) -> Vec<String> {
        let whole = self.0.iter().filter(|(_, p)| matches!(p, PreprocessorForm::Whole(_)));
        whole.map(|(plugin, _)| named(plugin)).collect()
    }

    /// Fits each preprocessor on a stream of training batches: one pass over the split per
    /// preprocessor, each batch transformed by the ones before it. `pass` starts a pass.
    pub fn fit_streamed(
        &mut self,
        mut pass: impl FnMut(&mut dyn FnMut(Samples) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        for i in 0..self.0.len() {
            let (before, rest) = self.0.split_at_mut(i);
            let (plugin, PreprocessorForm::Incremental(p)) = &mut rest[0] else {
                bail!("{} cannot fit batch by batch", named(&rest[0].0));
            };
            call(plugin, "begin_fit", p.begin_fit())?;
            pass(&mut |batch: Samples| {
                let x = transform_with(before, &batch.x)?;
                call(plugin, "fit_batch", p.fit_batch(to_samples(x, batch.y)))
            })?;
            call(plugin, "end_fit", p.end_fit())?;
        }
        Ok(())
    }

    pub fn transform(&self, x: &Tensor) -> Result<Tensor> {
        transform_with(&self.0, x)
    }

    pub fn transform_samples(&self, samples: Samples) -> Result<Samples> {
        Ok(Samples { x: self.transform(&samples.x)?, y: samples.y })
    }

    /// Fitted states, named `preprocessors.<index>.<name>`.
    pub fn states(&self) -> Result<Vec<(String, Tensor)>> {
        let mut all = Vec::new();
        for (i, (plugin, p)) in self.0.iter().enumerate() {
            let state = match p {
                PreprocessorForm::Whole(p) => p.lock().unwrap_or_else(|e| e.into_inner()).state(),
                PreprocessorForm::Incremental(p) => p.state(),
            };
            for (name, t) in from_named(call(plugin, "state", state)?) {
                all.push((format!("preprocessors.{i}.{name}"), t));
            }
        }
        Ok(all)
    }

    pub fn load_states(&mut self, tensors: &[(String, Tensor)]) -> Result<()> {
        for (i, (plugin, p)) in self.0.iter_mut().enumerate() {
            let mine = to_named(with_prefix(tensors, &format!("preprocessors.{i}.")));
            let loaded = match p {
                PreprocessorForm::Whole(p) => p.get_mut().unwrap_or_else(|e| e.into_inner()).load_state(mine),
                PreprocessorForm::Incremental(p) => p.load_state(mine),
            };
            call(plugin, "load_state", loaded)?;
        }
        Ok(())
    }
}

impl Preprocessors {
    /// Why `split`'s inputs, `x` as the data set gave them, hold NaN or infinite values once
    /// preprocessed: the data set gave them, or the first preprocessor whose output has them.
    pub fn blame_non_finite(&self, x: &Tensor, split: &str, dataset: &ResolvedPlugin) -> anyhow::Error {
        let at = |(sample, feature): (i64, i64)| {
            format!("the first at sample {sample}, feature {feature} of the {split} split")
        };
        if let Some(first) = first_non_finite(x) {
            return anyhow!(
                "{} gave NaN or infinite inputs ({}), and no preprocessor replaces them",
                named(dataset),
                at(first)
            );
        }
        let mut current = x.shallow_clone();
        for (plugin, p) in &self.0 {
            current = match call(plugin, "transform", p.transform(to_handle(current))) {
                Ok(handle) => from_handle(handle),
                Err(e) => return e,
            };
            if let Some(first) = first_non_finite(&current) {
                return anyhow!(
                    "{} turned finite inputs into NaN or infinite values ({}): look at its configuration (a division by a statistic that is zero, such as a constant feature's spread?)",
                    named(plugin),
                    at(first)
                );
            }
        }
        anyhow!("the {split} split's inputs hold NaN or infinite values after preprocessing")
    }
}

/// `x` through each of `preprocessors`, in order.
fn transform_with(preprocessors: &[(ResolvedPlugin, PreprocessorForm)], x: &Tensor) -> Result<Tensor> {
    let mut current = x.shallow_clone();
    for (plugin, p) in preprocessors {
        let rows = current.size()[0];
        current = checked_rows(plugin, rows, call(plugin, "transform", p.transform(to_handle(current)))?)?;
    }
    Ok(current)
}

fn checked_rows(plugin: &ResolvedPlugin, rows: i64, handle: TensorHandle) -> Result<Tensor> {
    let out = from_handle(handle);
    if out.size().first() != Some(&rows) {
        bail!("{} transform changed the number of samples from {rows} to {:?}", named(plugin), out.size().first());
    }
    Ok(out)
}
