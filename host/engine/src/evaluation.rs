//! Losses and evaluation: the loss of the task, the running sums of a training epoch, and the
//! evaluation of a model on a split (accuracy, per-class precision/recall/F1 and the confusion
//! matrix for classification; MSE, MAE and R² for regression). [`Evaluation::evaluate`] runs a
//! model over a split (validation, test), [`forward_in_batches`] over new samples (`predict`).

use anyhow::{bail, Result};
use gymnos_host::{
    experiment::Loss,
    record::{ClassMetrics, ClassificationReport, EvaluationReport, RegressionReport},
};
use gymnos_plugin_api::Task;
use tch::{Device, Kind, Reduction, Tensor};

use gymnos_plugin_sdk::fitting::Moments;

use crate::{
    components::Model,
    data::{BatchRanges, BatchSource},
    distributed::DataParallel,
    loader::{Loader, LoaderSettings},
};

/// The loss actually used, once the task is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossFn {
    CrossEntropy,
    Mse,
    L1,
}

impl LossFn {
    pub fn for_task(setting: Loss, task: Task) -> Result<Self> {
        Ok(match (setting, task) {
            (Loss::Auto, Task::Classification) | (Loss::CrossEntropy, Task::Classification) => LossFn::CrossEntropy,
            (Loss::Auto, Task::Regression) | (Loss::Mse, Task::Regression) => LossFn::Mse,
            (Loss::L1, Task::Regression) => LossFn::L1,
            (Loss::CrossEntropy, Task::Regression) => {
                bail!("training.loss: cross_entropy needs a classification data set; this one is regression")
            }
            (_, Task::Classification) => {
                let name =
                    serde_json::to_value(setting).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
                bail!("training.loss: {name} needs a regression data set; this one is classification (use cross_entropy or auto)")
            }
        })
    }

    /// Mean loss of a batch (outputs already checked to be `[n, k]`).
    pub fn compute(self, output: &Tensor, target: &Tensor) -> Tensor {
        match self {
            // Soft targets (probability rows from a mixing augmentor).
            LossFn::CrossEntropy if target.is_floating_point() => {
                -(target * output.log_softmax(1, Kind::Float)).sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float)
            }
            LossFn::CrossEntropy => output.cross_entropy_for_logits(target),
            LossFn::Mse => output.mse_loss(target, Reduction::Mean),
            LossFn::L1 => output.l1_loss(target, Reduction::Mean),
        }
    }
}

/// The class index of each target: hard labels as they are, soft ones (probability rows from a
/// mixing augmentor) by their most probable class.
fn class_indices(target: &Tensor) -> Tensor {
    if target.is_floating_point() {
        target.argmax(1, false)
    } else {
        target.shallow_clone()
    }
}

/// Sums over an epoch kept on the device, read once at the end (no sync per batch).
pub struct Running {
    loss_sum: Tensor,
    correct: Tensor,
    pub samples: i64,
}

impl Running {
    pub fn new(device: Device) -> Self {
        Self {
            loss_sum: Tensor::zeros([], (Kind::Double, device)),
            correct: Tensor::zeros([], (Kind::Int64, device)),
            samples: 0,
        }
    }

    /// The sums of an epoch that stopped in the middle (a preemption), to continue from.
    pub fn restored(device: Device, loss_sum: f64, correct: i64, samples: i64) -> Self {
        Self {
            loss_sum: Tensor::from(loss_sum).to_device(device),
            correct: Tensor::from(correct).to_device(device),
            samples,
        }
    }

    /// The sums so far: Σ loss × batch size, correct predictions, samples.
    pub fn sums(&self) -> (f64, i64, i64) {
        (self.loss_sum.double_value(&[]), self.correct.int64_value(&[]), self.samples)
    }

    pub fn add(&mut self, loss: &Tensor, output: &Tensor, target: &Tensor, classification: bool) {
        let n = target.size()[0];
        tch::no_grad(|| {
            self.loss_sum += loss.to_kind(Kind::Double) * n as f64;
            if classification {
                self.correct += output.argmax(1, false).eq_tensor(&class_indices(target)).sum(Kind::Int64);
            }
        });
        self.samples += n;
    }

    pub fn mean_loss(&self) -> f64 {
        self.loss_sum.double_value(&[]) / self.samples.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct.int64_value(&[]) as f64 / self.samples.max(1) as f64
    }

    /// The sums over every rank's samples (a data-parallel run), in place.
    pub fn reduce(&mut self, dp: &DataParallel) -> Result<()> {
        let mut sums = [self.loss_sum.double_value(&[]), self.correct.int64_value(&[]) as f64, self.samples as f64];
        dp.sum_values(&mut sums)?;
        let device = self.loss_sum.device();
        self.loss_sum = Tensor::from(sums[0]).to_device(device);
        self.correct = Tensor::from(sums[1] as i64).to_device(device);
        self.samples = sums[2] as i64;
        Ok(())
    }
}

/// The model's outputs (eval mode, on the CPU) for the first `limit` batches of `x`, or all
/// (`predict`).
pub fn forward_in_batches(
    model: &mut Model,
    x: &Tensor,
    batch_size: i64,
    device: Device,
    limit: Option<u32>,
) -> Result<Tensor> {
    let mut outputs = Vec::new();
    for (start, len) in BatchRanges::new(x.size()[0], batch_size, false, limit).iter() {
        let out = tch::no_grad(|| model.forward(&x.narrow(0, start, len).to_device(device), false))?;
        outputs.push(out.to_device(Device::Cpu).to_kind(Kind::Float));
    }
    Ok(match outputs.is_empty() {
        true => Tensor::zeros([0, 0], (Kind::Float, Device::Cpu)),
        false => Tensor::cat(&outputs, 0),
    })
}

/// What an evaluation needs to know besides the model and the data.
pub struct Evaluation {
    /// How batches are made: the batch size and limit (`training.eval_batch_size`,
    /// `limit_eval_batches`); a streamed split's are read by the loader's threads.
    pub loader: LoaderSettings,
    pub device: Device,
    pub loss: LossFn,
    pub task: Task,
    pub class_names: Vec<String>,
    /// The model's outputs per sample (the classes, in classification).
    pub outputs: i64,
    /// In a data-parallel run each rank evaluates every `size`-th batch and the sums are
    /// reduced, so that the report is the whole split's.
    pub parallel: Option<std::rc::Rc<DataParallel>>,
}

impl Evaluation {
    /// The model's report on a split, in eval mode without autograd. What it keeps between
    /// batches does not grow with the split (see [`Tally`]).
    pub fn evaluate(&self, model: &mut Model, split: Box<dyn BatchSource>) -> Result<EvaluationReport> {
        let loader = Loader::new(split, self.device, false, self.loader, 0);
        let mut tally = Tally::new(self.task, self.outputs, self.device);
        std::thread::scope(|scope| -> Result<()> {
            for batch in loader.in_order(scope) {
                let batch = batch?;
                if batch.is_empty() {
                    continue; // every sample was skipped by the data set, as configured
                }
                let output = tch::no_grad(|| model.forward(&batch.x, false))?.to_kind(Kind::Float);
                tally.add(self.loss, &output, &batch.y);
            }
            Ok(())
        })?;
        if let Some(dp) = &self.parallel {
            tally.reduce(dp)?;
        }
        Ok(tally.report(&self.class_names))
    }
}

/// What an evaluation keeps between batches: sums of a fixed size, on the device and read once
/// at the end (no sync per batch).
pub struct Tally {
    samples: i64,
    /// Σ batch loss × batch size, float64.
    loss_sum: Tensor,
    sums: Sums,
}

enum Sums {
    /// `confusion[true * k + predicted]`, int64.
    Classification { classes: i64, confusion: Tensor },
    /// Σ squared and Σ absolute errors over every output (float64), and the targets' moments
    /// per output (of `outputs`), for R².
    Regression { squared_error: Tensor, absolute_error: Tensor, targets: Option<Moments>, outputs: i64 },
}

impl Tally {
    /// `outputs`: the classes (classification) or the values per sample (regression).
    pub fn new(task: Task, outputs: i64, device: Device) -> Self {
        let zero = || Tensor::zeros([], (Kind::Double, device));
        let sums = match task {
            Task::Classification => Sums::Classification {
                classes: outputs,
                confusion: Tensor::zeros([outputs * outputs], (Kind::Int64, device)),
            },
            Task::Regression => {
                Sums::Regression { squared_error: zero(), absolute_error: zero(), targets: None, outputs }
            }
        };
        Self { samples: 0, loss_sum: zero(), sums }
    }

    /// One batch's outputs (float32 `[n, k]`) against its targets.
    pub fn add(&mut self, loss: LossFn, output: &Tensor, target: &Tensor) {
        let n = target.size()[0];
        self.samples += n;
        self.loss_sum += loss.compute(output, target).to_kind(Kind::Double) * n as f64;
        match &mut self.sums {
            Sums::Classification { classes, confusion } => {
                let cells = class_indices(target) * *classes + output.argmax(1, false);
                *confusion += cells.bincount(None::<Tensor>, *classes * *classes);
            }
            Sums::Regression { squared_error, absolute_error, targets, .. } => {
                let target = target.to_kind(Kind::Double);
                let error = output.to_kind(Kind::Double) - &target;
                *squared_error += error.square().sum(Kind::Double);
                *absolute_error += error.abs().sum(Kind::Double);
                *targets = Some(Moments::merged(targets.take(), Moments::of_rows(&target)));
            }
        }
    }

    /// The sums over every rank's batches (a data-parallel run), in place: counts and sums
    /// add; the targets' moments merge in rank order.
    pub fn reduce(&mut self, dp: &DataParallel) -> Result<()> {
        let mut head = [self.samples as f64, self.loss_sum.double_value(&[])];
        dp.sum_values(&mut head)?;
        self.samples = head[0] as i64;
        self.loss_sum = Tensor::from(head[1]).to_device(self.loss_sum.device());
        match &mut self.sums {
            Sums::Classification { confusion, .. } => {
                let mut counts: Vec<f64> = Vec::<i64>::try_from(&confusion.to_device(Device::Cpu))
                    .map_err(|e| anyhow::anyhow!("reading the confusion matrix: {e}"))?
                    .into_iter()
                    .map(|c| c as f64)
                    .collect();
                dp.sum_values(&mut counts)?;
                let counts: Vec<i64> = counts.into_iter().map(|c| c as i64).collect();
                *confusion = Tensor::from_slice(&counts).to_device(confusion.device());
            }
            Sums::Regression { squared_error, absolute_error, targets, outputs } => {
                let mut errors = [squared_error.double_value(&[]), absolute_error.double_value(&[])];
                dp.sum_values(&mut errors)?;
                *squared_error = Tensor::from(errors[0]).to_device(squared_error.device());
                *absolute_error = Tensor::from(errors[1]).to_device(absolute_error.device());
                *targets = gather_moments(targets.take(), *outputs, dp)?;
            }
        }
        Ok(())
    }

    pub fn report(self, class_names: &[String]) -> EvaluationReport {
        let loss = match self.samples {
            0 => f64::NAN,
            n => self.loss_sum.double_value(&[]) / n as f64,
        };
        match self.sums {
            Sums::Classification { classes, confusion } => {
                let confusion = confusion.to_device(Device::Cpu).view([classes, classes]);
                let rows = (0..classes).map(|i| Vec::<i64>::try_from(&confusion.get(i)).unwrap_or_default()).collect();
                EvaluationReport::Classification(classification_report(rows, class_names, loss))
            }
            Sums::Regression { squared_error, absolute_error, targets, .. } => {
                let values = targets.as_ref().map_or(0, |t| t.count * t.mean.numel() as i64).max(1) as f64;
                let mse = squared_error.double_value(&[]) / values;
                let mae = absolute_error.double_value(&[]) / values;
                // The targets' variance around each output's mean, averaged over the outputs.
                let variance = targets.map_or(0.0, |t| t.m2.sum(Kind::Double).double_value(&[]) / values);
                EvaluationReport::Regression(RegressionReport {
                    loss,
                    mse,
                    mae,
                    r2: if variance > 0.0 { 1.0 - mse / variance } else { 0.0 },
                })
            }
        }
    }
}

/// Every rank's targets' moments merged in rank order (a rank that saw none adds nothing).
fn gather_moments(mine: Option<Moments>, outputs: i64, dp: &DataParallel) -> Result<Option<Moments>> {
    // [count, mean..., m2...] in float64, the same length on every rank.
    let packed = match &mine {
        Some(m) => Tensor::cat(
            &[
                Tensor::from_slice(&[m.count as f64]),
                m.mean.reshape([-1]).to_device(Device::Cpu),
                m.m2.reshape([-1]).to_device(Device::Cpu),
            ],
            0,
        ),
        None => Tensor::zeros([1 + 2 * outputs], (Kind::Double, Device::Cpu)),
    };
    let device = mine.as_ref().map_or(Device::Cpu, |m| m.mean.device());
    let mut merged = None;
    for part in dp.gather(&packed)? {
        let count = part.double_value(&[0]) as i64;
        if count > 0 {
            let mean = part.narrow(0, 1, outputs).to_device(device);
            let m2 = part.narrow(0, 1 + outputs, outputs).to_device(device);
            merged = Some(Moments::merged(merged, Moments { count, mean, m2 }));
        }
    }
    Ok(merged)
}

/// Accuracy, per-class precision, recall and F1, and macro F1 from `confusion[true][predicted]`.
fn classification_report(confusion: Vec<Vec<i64>>, class_names: &[String], loss: f64) -> ClassificationReport {
    let k = class_names.len();
    let total: i64 = confusion.iter().flatten().sum();
    let correct: i64 = (0..k).map(|i| confusion[i][i]).sum();
    let per_class: Vec<ClassMetrics> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted_c: i64 = confusion.iter().map(|row| row[c]).sum();
            let support: i64 = confusion[c].iter().sum();
            let precision = if predicted_c > 0 { tp / predicted_c as f64 } else { 0.0 };
            let recall = if support > 0 { tp / support as f64 } else { 0.0 };
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassMetrics { class: class_names[c].clone(), precision, recall, f1, support }
        })
        .collect();
    ClassificationReport {
        loss,
        accuracy: correct as f64 / total.max(1) as f64,
        f1_macro: per_class.iter().map(|c| c.f1).sum::<f64>() / k.max(1) as f64,
        per_class,
        confusion_matrix: confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(task: Task, classes: i64, batches: &[(Tensor, Tensor)], names: &[String]) -> EvaluationReport {
        let loss = if task == Task::Classification { LossFn::CrossEntropy } else { LossFn::Mse };
        let mut tally = Tally::new(task, classes, Device::Cpu);
        for (output, target) in batches {
            tally.add(loss, output, target);
        }
        tally.report(names)
    }

    #[test]
    fn classification_counts_by_hand_over_batches() {
        // true: 0 0 1 1 2; predicted: 0 1 1 1 0
        let logits = Tensor::from_slice(&[9.0f32, 0., 0., 0., 9., 0., 0., 9., 0., 0., 9., 0., 9., 0., 0.]).view([5, 3]);
        let targets = Tensor::from_slice(&[0i64, 0, 1, 1, 2]);
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let batches =
            [(logits.narrow(0, 0, 2), targets.narrow(0, 0, 2)), (logits.narrow(0, 2, 3), targets.narrow(0, 2, 3))];
        let EvaluationReport::Classification(r) = tally(Task::Classification, 3, &batches, &names) else { panic!() };
        assert_eq!(r.confusion_matrix, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]);
        assert!((r.accuracy - 0.6).abs() < 1e-12);
        assert!((r.per_class[1].precision - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!((r.per_class[1].recall, r.per_class[2].f1, r.per_class[0].support), (1.0, 0.0, 2));
        let whole = logits.cross_entropy_for_logits(&targets).double_value(&[]);
        assert!((r.loss - whole).abs() < 1e-6, "{} vs {whole}", r.loss);
    }

    #[test]
    fn regression_by_hand_over_batches() {
        let predictions = Tensor::from_slice(&[1.0f32, 2.0, 4.0]).view([3, 1]);
        let targets = Tensor::from_slice(&[1.0f32, 3.0, 5.0]).view([3, 1]);
        let batches = [
            (predictions.narrow(0, 0, 1), targets.narrow(0, 0, 1)),
            (predictions.narrow(0, 1, 2), targets.narrow(0, 1, 2)),
        ];
        let EvaluationReport::Regression(r) = tally(Task::Regression, 0, &batches, &[]) else { panic!() };
        assert!((r.mse - 2.0 / 3.0).abs() < 1e-9 && (r.mae - 2.0 / 3.0).abs() < 1e-9);
        assert!((r.loss - 2.0 / 3.0).abs() < 1e-7);
        assert!((r.r2 - (1.0 - (2.0 / 3.0) / (8.0 / 3.0))).abs() < 1e-9);
        // Two outputs: R² against each output's own mean.
        let p = Tensor::from_slice(&[0.0f32, 10.0, 2.0, 12.0, 4.0, 14.0]).view([3, 2]);
        let t = Tensor::from_slice(&[1.0f32, 10.0, 2.0, 13.0, 3.0, 16.0]).view([3, 2]);
        let EvaluationReport::Regression(r) = tally(
            Task::Regression,
            0,
            &[(p.narrow(0, 0, 2), t.narrow(0, 0, 2)), (p.narrow(0, 2, 1), t.narrow(0, 2, 1))],
            &[],
        ) else {
            panic!()
        };
        let mse = (1.0 + 0.0 + 0.0 + 1.0 + 1.0 + 4.0) / 6.0;
        let variance = ((1.0 + 0.0 + 1.0) + (9.0 + 0.0 + 9.0)) / 6.0;
        assert!((r.mse - mse).abs() < 1e-9 && (r.r2 - (1.0 - mse / variance)).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn nothing_evaluated_gives_a_nan_loss() {
        let EvaluationReport::Classification(r) = tally(Task::Classification, 2, &[], &["a".into(), "b".into()]) else {
            panic!()
        };
        assert!(r.loss.is_nan());
        assert_eq!((r.accuracy, r.confusion_matrix), (0.0, vec![vec![0, 0], vec![0, 0]]));
    }
}
