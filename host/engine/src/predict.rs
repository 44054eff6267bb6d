//! `predict RUN_DIR INPUT`: the run's preprocessors and model applied to new samples.

use std::{fmt::Write as _, path::Path};

use anyhow::{bail, Context, Result};
use gymnos_host::{
    cli_args::{PredictArgs, PredictFormat},
    experiment,
    record::{self, RunStatus, RunSummary},
    runs, terminal, PluginManager,
};
use gymnos_plugin_api::{ComponentKind, Task};
use serde_json::{json, Value};
use tch::{Kind, Tensor};

use crate::{
    checkpoint,
    components::{ComponentFactory, ModelShape},
    device,
    evaluation::forward_in_batches,
};

pub fn predict(registry: &Path, args: PredictArgs) -> Result<()> {
    let run_dir = &args.run_dir;
    record::check_run_dir(run_dir)?;
    let weights = match args.best {
        true => run_dir.join(record::CHECKPOINTS).join(record::BEST),
        false => run_dir.join(record::MODEL),
    };
    if !weights.is_file() {
        bail!("{}", missing_weights(run_dir, &weights, args.best));
    }
    let data =
        RunSummary::load(run_dir)?.data.with_context(|| format!("{}: no data description", run_dir.display()))?;
    let task = Task::from(data.task);

    let config = run_dir.join(record::TRAINING_CONFIG);
    let exp = experiment::load(&config, &[])?;
    let manager = PluginManager::open(registry)?;
    let resolved = experiment::validate(&config, &exp, &manager.registry, &manager.compat)?;
    let placement = device::select(exp.training.device)?;
    let factory = ComponentFactory {
        manager: &manager,
        device: placement.spec,
        seed: exp.experiment.seed,
        base_dir: &resolved.base_dir,
        output_dir: None,
    };
    let tensors = checkpoint::load_tensors(&weights)?;

    let mut dataset = factory.dataset(resolved.dataset())?;
    let raw = dataset.read_inputs(&std::path::absolute(&args.input)?)?;
    check_finite_inputs(&raw, &args.input)?;
    let mut preprocessors =
        factory.preprocessors(&resolved.of_kind(ComponentKind::Preprocessor).collect::<Vec<_>>())?;
    preprocessors.load_states(&tensors)?;
    let x = preprocessors.transform(&raw)?;
    let shape = ModelShape { input_shape: x.size()[1..].to_vec(), num_outputs: data.num_outputs, task };
    let mut model = factory.model(resolved.model(), &shape)?;
    model.load_state(checkpoint::with_prefix(&tensors, "model."))?;

    let out = forward_in_batches(&mut model, &x, exp.training.eval_batch_size as i64, placement.device, None)?;
    if let Some((row, value)) = non_finite_value(&out) {
        bail!(
            "{}: the model's output for row {} of {} is {value}, not a finite number (its weights, or the \
             inputs once preprocessed, are too large or not numbers); no predictions written",
            weights.display(),
            row.0 + 1,
            args.input.display()
        );
    }
    let rows = to_rows(&out.to_kind(Kind::Double), task, &data.class_names)?;
    let format = args.format.unwrap_or(match args.output.as_ref().and_then(|p| p.extension()) {
        Some(ext) if ext == "csv" => PredictFormat::Csv,
        _ => PredictFormat::Json,
    });
    let text = match format {
        PredictFormat::Json => serde_json::to_string_pretty(&rows)? + "\n",
        PredictFormat::Csv => to_csv(&rows, task, &data.class_names, data.num_outputs),
    };
    match &args.output {
        Some(path) => checkpoint::write_atomically(path, text.as_bytes())?,
        None => terminal::write_stdout(&text),
    }
    tracing::info!("{} predictions", rows.len());
    Ok(())
}

/// Why the weights `predict` wants are not there: a run that has not completed has none yet; a
/// completed one had them, so the file was deleted or moved (or, for `--best`, never kept).
fn missing_weights(run_dir: &Path, weights: &Path, best: bool) -> String {
    let what = weights.display();
    match RunSummary::load(run_dir) {
        Ok(summary) if summary.status == RunStatus::Completed => {
            let kept_best = runs::read_config(run_dir)
                .ok()
                .and_then(|c| c.pointer("/training/callbacks/checkpoint/save_best").and_then(|v| v.as_bool()))
                .unwrap_or(true);
            if best && !kept_best {
                format!("{what}: missing; the run kept no best checkpoint (training.callbacks.checkpoint.save_best is false)")
            } else {
                format!("{what}: missing, though the run completed: the file was deleted or moved")
            }
        }
        Ok(summary) if best => {
            format!("{what}: missing; the run has not saved a best checkpoint (it is {})", summary.status)
        }
        Ok(summary) => format!("{what}: missing; the run has not completed (it is {})", summary.status),
        Err(e) => format!("{what}: missing, and the run's record cannot be read: {e}"),
    }
}

/// Refuses inputs that are not finite numbers, which would give predictions of NaN: named by the
/// input file and the sample and feature as the data set read them. Where in the file the value
/// stands is the data set's to say (its `read_inputs` knows the format; `csv` refuses such a
/// cell itself, by line and column); this catches what a data set lets through.
fn check_finite_inputs(raw: &Tensor, input: &Path) -> Result<()> {
    let Some(((row, feature), value)) = non_finite_value(raw) else { return Ok(()) };
    bail!(
        "{}: sample {} of what the data set read, feature {}: {value} is not a finite number; predictions need \
         finite inputs",
        input.display(),
        row + 1,
        feature + 1
    )
}

/// The first value of `t` that is NaN or infinite, by (sample, feature), and the value.
fn non_finite_value(t: &Tensor) -> Option<((i64, i64), f64)> {
    let (row, column) = crate::data::first_non_finite(t)?;
    Some(((row, column), t.reshape([t.size()[0], -1]).double_value(&[row, column])))
}

fn to_rows(out: &Tensor, task: Task, class_names: &[String]) -> Result<Vec<Value>> {
    let n = out.size()[0];
    let values: Vec<Vec<f64>> = (0..n).map(|i| Vec::<f64>::try_from(&out.get(i))).collect::<Result<_, _>>()?;
    Ok(match task {
        Task::Classification => {
            let probs = out.softmax(1, Kind::Double);
            (0..n as usize)
                .map(|i| {
                    let p: Vec<f64> = Vec::<f64>::try_from(&probs.get(i as i64)).unwrap_or_default();
                    let class = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(c, _)| c);
                    json!({ "index": i, "class": class, "label": class_names.get(class), "probabilities": p })
                })
                .collect()
        }
        Task::Regression => {
            values.into_iter().enumerate().map(|(i, v)| json!({ "index": i, "prediction": v })).collect()
        }
    })
}

fn to_csv(rows: &[Value], task: Task, class_names: &[String], num_outputs: i64) -> String {
    let mut text = String::new();
    match task {
        Task::Classification => {
            let header: Vec<String> = class_names.iter().map(|c| format!("p_{}", c.replace([',', '"'], "_"))).collect();
            let _ = writeln!(text, "index,class,label,{}", header.join(","));
            for row in rows {
                let probs: Vec<String> =
                    row["probabilities"].as_array().into_iter().flatten().map(|p| p.to_string()).collect();
                let label = row["label"].as_str().unwrap_or("").replace('"', "\"\"");
                let _ = writeln!(text, "{},{},\"{label}\",{}", row["index"], row["class"], probs.join(","));
            }
        }
        Task::Regression => {
            let header: Vec<String> = (0..num_outputs).map(|i| format!("prediction_{i}")).collect();
            let _ = writeln!(text, "index,{}", header.join(","));
            for row in rows {
                let values: Vec<String> =
                    row["prediction"].as_array().into_iter().flatten().map(|p| p.to_string()).collect();
                let _ = writeln!(text, "{},{}", row["index"], values.join(","));
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_that_is_no_finite_number_is_found_with_its_value() {
        let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, f32::NAN, 5.0, f32::INFINITY]).view([3, 2]);
        let ((row, feature), value) = non_finite_value(&t).unwrap();
        assert_eq!((row, feature), (1, 1));
        assert!(value.is_nan());
        let t = Tensor::from_slice(&[1.0f64, f64::NEG_INFINITY]).view([2, 1]);
        assert_eq!(non_finite_value(&t), Some(((1, 0), f64::NEG_INFINITY)));
        assert_eq!(non_finite_value(&Tensor::from_slice(&[1i64, 2]).view([2, 1])), None);
    }
}
