//! `predict RUN_DIR INPUT`: the run's preprocessors and model applied to new samples.

use std::{fmt::Write as _, path::Path};

use anyhow::{bail, Context, Result};
use gymnos_host::{
    cli_args::{PredictArgs, PredictFormat},
    experiment,
    record::{self, RunSummary},
    terminal, PluginManager,
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
        let missing = if args.best { "saved a best checkpoint" } else { "completed" };
        bail!("{}: missing; the run has not {missing}", weights.display());
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
    let mut preprocessors =
        factory.preprocessors(&resolved.of_kind(ComponentKind::Preprocessor).collect::<Vec<_>>())?;
    preprocessors.load_states(&tensors)?;
    let x = preprocessors.transform(&raw)?;
    let shape = ModelShape { input_shape: x.size()[1..].to_vec(), num_outputs: data.num_outputs, task };
    let mut model = factory.model(resolved.model(), &shape)?;
    model.load_state(checkpoint::with_prefix(&tensors, "model."))?;

    let out = forward_in_batches(&mut model, &x, exp.training.eval_batch_size as i64, placement.device, None)?;
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
