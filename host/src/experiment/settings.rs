//! The experiment's own settings (everything but its plugins): values in range, names that can
//! name folders, an output folder that can be written, monitors that have what they watch.
//! Checked by `validate` before anything runs, and so before a run folder exists.

use std::path::{Path, PathBuf};

use super::{format::*, metric_names::Produced, Problem};

/// The longest file name most file systems take.
const MAX_NAME_BYTES: usize = 255;

/// Why `name` cannot name a folder, if it cannot.
pub fn folder_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` cannot name a folder"));
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '/' | '\\') || c.is_control()) {
        return Some(format!("{name:?} cannot name a folder: it contains {c:?}"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Some(format!("the name is {} bytes long; a folder name takes at most {MAX_NAME_BYTES}", name.len()));
    }
    None
}

/// The absolute folder runs of `experiment` are recorded under: `output_root` relative to the
/// experiment file's folder, or `trainings/` in the current folder.
pub fn output_root(info: &ExperimentInfo, experiment_dir: &Path) -> PathBuf {
    match &info.output_root {
        Some(root) => crate::fsio::lexically_normal(&experiment_dir.join(root)),
        None => std::env::current_dir().unwrap_or_default().join(DEFAULT_OUTPUT_ROOT),
    }
}

/// Whether runs can be recorded under `root`: it, or the nearest folder above it that exists,
/// is a folder this process can create files in.
pub fn check_writable(root: &Path) -> Result<(), String> {
    let mut probe = root;
    loop {
        match std::fs::metadata(probe) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => return Err(format!("{} is not a folder", probe.display())),
            // ENOTDIR: a file stands where a folder of the path should be; the walk up finds it.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => {
                match probe.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => probe = parent,
                    _ => return Err(format!("{}: no folder of it exists", root.display())),
                }
            }
            Err(e) => return Err(format!("{}: {e}", probe.display())),
        }
    }
    tempfile::tempfile_in(probe).map(drop).map_err(|e| format!("{}: cannot create files there ({e})", probe.display()))
}

/// The largest learning rate accepted, at the start and anywhere a schedule takes it: beyond it
/// every optimizer here diverges to NaN within a few steps.
pub const MAX_LR: f64 = 100.0;

/// The most batches the loader keeps in flight (each takes a batch's memory).
pub const MAX_PREFETCH_BATCHES: u32 = 256;

/// A number as a person reads it: `1e308`, not 309 digits.
fn short(n: f64) -> String {
    if n != 0.0 && !(1e-4..1e6).contains(&n.abs()) {
        format!("{n:e}")
    } else {
        n.to_string()
    }
}

/// The first epoch (1-based) at which a step schedule (`lr × gamma^⌊(epoch-1)/step_size⌋`)
/// takes the learning rate above [`MAX_LR`] or to infinity, and the rate it reaches.
fn step_schedule_peak(lr: f64, gamma: f64, step_size: u32, epochs: u32) -> Option<(u32, f64)> {
    // NaN fails both comparisons and is refused elsewhere, with its own message.
    let grows = gamma > 1.0 && lr > 0.0 && step_size > 0;
    if !grows {
        return None;
    }
    // The rate grows with the number of steps taken: the last epoch's is the largest.
    let steps = epochs.saturating_sub(1) / step_size;
    let reached = lr * gamma.powf(f64::from(steps));
    if reached.is_finite() && reached <= MAX_LR {
        return None;
    }
    // The first epoch past the bound: `k` steps with lr·gamma^k > MAX_LR.
    let k = ((MAX_LR / lr).ln() / gamma.ln()).floor().max(0.0) as u32 + 1;
    let k = k.min(steps);
    let at = lr * gamma.powf(f64::from(k));
    Some((k.saturating_mul(step_size).saturating_add(1), at))
}

pub fn check(exp: &Experiment, experiment_dir: &Path, problems: &mut Vec<Problem>) {
    let mut check = |ok: bool, path: &str, message: String| {
        if !ok {
            problems.push(Problem { path: path.into(), message });
        }
    };
    let name = &exp.experiment.name;
    if let Some(problem) = folder_name_problem(name) {
        check(false, "experiment.name", problem);
    }
    if let Err(e) = check_writable(&output_root(&exp.experiment, experiment_dir)) {
        let at = if exp.experiment.output_root.is_some() { "experiment.output_root" } else { "experiment" };
        check(false, at, format!("runs cannot be recorded: {e}"));
    }
    let s = &exp.dataset.split;
    for (field, v) in [("train", s.train), ("val", s.val), ("test", s.test)] {
        check((0.0..=1.0).contains(&v), &format!("dataset.split.{field}"), format!("{v} is not a fraction in [0, 1]"));
    }
    check(s.train > 0.0, "dataset.split.train", "the training split cannot be empty".into());
    let total = s.train + s.val + s.test;
    check((total - 1.0).abs() < 1e-6, "dataset.split", format!("train + val + test = {total}, not 1"));

    let t = &exp.training;
    check(t.epochs >= 1, "training.epochs", "must be at least 1".into());
    check(t.batch_size >= 1, "training.batch_size", "must be at least 1".into());
    check(t.eval_batch_size >= 1, "training.eval_batch_size", "must be at least 1".into());
    check(t.num_workers <= 64, "training.num_workers", format!("{} threads is more than 64", t.num_workers));
    check(
        (1..=MAX_PREFETCH_BATCHES).contains(&t.prefetch_batches),
        "training.prefetch_batches",
        format!(
            "{} is not between 1 and {MAX_PREFETCH_BATCHES} (each batch in flight takes memory)",
            t.prefetch_batches
        ),
    );
    for (field, limit) in [("limit_train_batches", t.limit_train_batches), ("limit_eval_batches", t.limit_eval_batches)]
    {
        check(
            limit != Some(0),
            &format!("training.{field}"),
            "must be at least 1 (leave it out for all batches)".into(),
        );
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let lr = t.optimizer.lr();
    check(positive(lr), "training.optimizer.lr", format!("{lr} is not a positive learning rate"));
    check(
        lr <= MAX_LR,
        "training.optimizer.lr",
        format!("{} is larger than any learning rate that trains (at most {MAX_LR})", short(lr)),
    );
    // Weight decay takes lr × weight_decay of every weight each step (SGD and AdamW; Adam's
    // gradient term is as large): from 1 on, weights are zeroed or flipped and the run diverges.
    let decay = t.optimizer.weight_decay();
    check(
        decay * lr < 1.0,
        "training.optimizer.weight_decay",
        format!(
            "{} with a learning rate of {} takes lr × weight_decay = {} of every weight each step; keep it below 1",
            short(decay),
            short(lr),
            short(decay * lr)
        ),
    );
    let mut adam = |betas: &[f64; 2], eps: f64, weight_decay: f64| {
        for (i, b) in betas.iter().enumerate() {
            check((0.0..1.0).contains(b), &format!("training.optimizer.betas[{i}]"), format!("{b} is not in [0, 1)"));
        }
        check(positive(eps), "training.optimizer.eps", "must be positive".into());
        check(weight_decay >= 0.0, "training.optimizer.weight_decay", "must not be negative".into());
    };
    match &t.optimizer {
        Optimizer::Adam(a) => adam(&a.betas, a.eps, a.weight_decay),
        Optimizer::Adamw(a) => adam(&a.betas, a.eps, a.weight_decay),
        Optimizer::Sgd(s) => {
            check(
                (0.0..1.0).contains(&s.momentum),
                "training.optimizer.momentum",
                format!("{} is not in [0, 1)", s.momentum),
            );
            check(s.weight_decay >= 0.0, "training.optimizer.weight_decay", "must not be negative".into());
            check(!s.nesterov || s.momentum > 0.0, "training.optimizer.nesterov", "needs a momentum above 0".into());
        }
    }
    match &t.lr_schedule {
        LrSchedule::Step(step) => {
            check(step.step_size >= 1, "training.lr_schedule.step_size", "must be at least 1".into());
            check(positive(step.gamma), "training.lr_schedule.gamma", "must be positive".into());
            if let Some((epoch, reached)) = step_schedule_peak(lr, step.gamma, step.step_size, t.epochs) {
                check(
                    false,
                    "training.lr_schedule.gamma",
                    format!(
                        "{} takes the learning rate to {} by epoch {epoch} (at most {MAX_LR})",
                        short(step.gamma),
                        short(reached)
                    ),
                );
            }
        }
        LrSchedule::Cosine(cosine) => {
            let min_lr = cosine.min_lr;
            check(min_lr >= 0.0 && min_lr < lr, "training.lr_schedule.min_lr", format!("{min_lr} is not in [0, lr)"));
        }
        LrSchedule::Constant => {}
    }
    if t.device == DeviceSetting::Cpu && t.precision == Precision::Fp16 {
        check(
            false,
            "training.precision",
            "fp16 mixed precision needs a CUDA device; training.device is cpu (bf16 runs on the CPU)".into(),
        );
    }
    if let Some(norm) = t.grad_clip_norm {
        check(positive(norm), "training.grad_clip_norm", format!("{norm} is not positive"));
    }
    let c = &t.callbacks;
    check(
        c.checkpoint.every_n_epochs >= 1,
        "training.callbacks.checkpoint.every_n_epochs",
        "must be at least 1".into(),
    );
    if let Some(es) = &c.early_stopping {
        check(es.min_delta >= 0.0, "training.callbacks.early_stopping.min_delta", "must not be negative".into());
    }
    if let Some(rp) = &c.reduce_on_plateau {
        check(
            rp.factor > 0.0 && rp.factor < 1.0,
            "training.callbacks.reduce_on_plateau.factor",
            format!("{} is not in (0, 1)", rp.factor),
        );
        check(rp.min_lr >= 0.0, "training.callbacks.reduce_on_plateau.min_lr", "must not be negative".into());
    }
}

/// Every callback's `monitor` against the metrics the experiment's runs record (its task, its
/// validation split: [`Produced`]), with a suggestion for a misspelt one.
pub fn check_monitors(exp: &Experiment, produced: &Produced, problems: &mut Vec<Problem>) {
    let c = &exp.training.callbacks;
    let mut watched = vec![("training.callbacks.checkpoint.monitor", &c.checkpoint.monitor)];
    if let Some(es) = &c.early_stopping {
        watched.push(("training.callbacks.early_stopping.monitor", &es.monitor));
    }
    if let Some(rp) = &c.reduce_on_plateau {
        watched.push(("training.callbacks.reduce_on_plateau.monitor", &rp.monitor));
    }
    for (path, monitor) in watched {
        if let Some(message) = produced.monitor_problem(monitor) {
            problems.push(Problem { path: path.into(), message });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_schedule_that_grows_past_the_largest_rate_is_found_at_its_epoch() {
        assert_eq!(step_schedule_peak(0.01, 0.5, 1, 100), None);
        assert_eq!(step_schedule_peak(0.01, 2.0, 1, 5), None, "0.16 at the last epoch");
        assert_eq!(step_schedule_peak(1.0, 10.0, 1, 10), Some((4, 1000.0)));
        assert_eq!(step_schedule_peak(0.001, 1e308, 1, 3), Some((2, 1e305)));
        let (epoch, reached) = step_schedule_peak(0.001, 1e308, 1, 10).unwrap();
        assert_eq!((epoch, reached), (2, 1e305));
        assert_eq!(step_schedule_peak(0.01, 1e308, 5, 3), None, "the schedule never steps");
    }

    #[test]
    fn folder_names() {
        assert_eq!(folder_name_problem("wine-mlp"), None);
        assert_eq!(folder_name_problem("a/b").unwrap(), "\"a/b\" cannot name a folder: it contains '/'");
        assert_eq!(folder_name_problem("..").unwrap(), "`..` cannot name a folder");
        assert_eq!(folder_name_problem("tab\there").unwrap(), "\"tab\\there\" cannot name a folder: it contains '\\t'");
        assert!(folder_name_problem(&"x".repeat(256)).unwrap().starts_with("the name is 256 bytes long"));
    }

    #[test]
    fn output_folders_must_be_writable_folders() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_writable(&dir.path().join("new/runs")), Ok(()));
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert_eq!(check_writable(&file.join("runs")), Err(format!("{} is not a folder", file.display())));
        assert!(check_writable(Path::new("/proc/gymnos-runs"))
            .unwrap_err()
            .starts_with("/proc: cannot create files there"));
    }
}
