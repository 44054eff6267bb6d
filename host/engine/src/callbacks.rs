//! The callbacks built into the host: learning-rate schedule, reduce-on-plateau, early
//! stopping, best-checkpoint tracking. Their state is serializable so a resumed run continues
//! exactly where the checkpoint left off.

use std::collections::BTreeMap;

use gymnos_host::experiment::{Callbacks, CosineSchedule, LrSchedule, Mode, StepSchedule};
use serde::{Deserialize, Serialize};

/// Tracks the best value of one metric.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Monitor {
    pub metric: String,
    pub maximize: bool,
    pub min_delta: f64,
    pub best: Option<f64>,
    /// Epochs since the last improvement.
    pub stale: u32,
}

impl Monitor {
    pub fn new(metric: &str, mode: Mode, min_delta: f64) -> Self {
        Self {
            metric: metric.to_string(),
            maximize: mode.resolve(metric) == Mode::Max,
            min_delta,
            best: None,
            stale: 0,
        }
    }

    /// Records this epoch's value; true when it improved on the best.
    pub fn update(&mut self, metrics: &BTreeMap<String, f64>) -> bool {
        let Some(&value) = metrics.get(&self.metric) else { return false };
        let improved = match self.best {
            None => true,
            Some(best) if self.maximize => value > best + self.min_delta,
            Some(best) => value < best - self.min_delta,
        };
        if improved {
            self.best = Some(value);
            self.stale = 0;
        } else {
            self.stale += 1;
        }
        improved
    }
}

/// All callback state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallbackState {
    pub best_checkpoint: Monitor,
    pub early_stopping: Option<Monitor>,
    pub plateau: Option<Monitor>,
    /// Product of the reductions reduce-on-plateau applied so far.
    pub lr_factor: f64,
}

/// What the callbacks decided at the end of an epoch.
pub struct Decision {
    pub save_best: bool,
    pub stop: Option<String>,
}

impl CallbackState {
    pub fn new(settings: &Callbacks) -> Self {
        Self {
            best_checkpoint: Monitor::new(&settings.checkpoint.monitor, settings.checkpoint.mode, 0.0),
            early_stopping: settings.early_stopping.as_ref().map(|e| Monitor::new(&e.monitor, e.mode, e.min_delta)),
            plateau: settings.reduce_on_plateau.as_ref().map(|p| Monitor::new(&p.monitor, p.mode, p.min_delta)),
            lr_factor: 1.0,
        }
    }

    /// Updates every monitor with the epoch's metrics.
    pub fn end_epoch(&mut self, settings: &Callbacks, metrics: &BTreeMap<String, f64>, lr: f64) -> Decision {
        let save_best = settings.checkpoint.save_best && self.best_checkpoint.update(metrics);
        if let (Some(monitor), Some(cfg)) = (&mut self.plateau, &settings.reduce_on_plateau) {
            monitor.update(metrics);
            if monitor.stale > cfg.patience && lr * cfg.factor >= cfg.min_lr {
                self.lr_factor *= cfg.factor;
                monitor.stale = 0;
                tracing::info!(
                    "reduce-on-plateau: {} did not improve for {} epochs; learning rate x{}",
                    monitor.metric,
                    cfg.patience + 1,
                    cfg.factor
                );
            }
        }
        let mut stop = None;
        if let (Some(monitor), Some(cfg)) = (&mut self.early_stopping, &settings.early_stopping) {
            monitor.update(metrics);
            if monitor.stale >= cfg.patience {
                let best = monitor.best.map_or("none".into(), |b| format!("{b:.6}"));
                stop = Some(format!(
                    "early stopping: {} did not improve for {} epochs (best {best})",
                    monitor.metric, cfg.patience
                ));
            }
        }
        Decision { save_best, stop }
    }
}

/// The scheduled learning rate for `epoch` (0-based) of `epochs`.
pub fn scheduled_lr(schedule: &LrSchedule, base: f64, epoch: u32, epochs: u32) -> f64 {
    match schedule {
        LrSchedule::Constant => base,
        LrSchedule::Step(StepSchedule { step_size, gamma }) => base * gamma.powi((epoch / (*step_size).max(1)) as i32),
        LrSchedule::Cosine(CosineSchedule { min_lr }) => {
            let progress = epoch as f64 / epochs.max(1) as f64;
            min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gymnos_host::experiment::{EarlyStopping, ReduceOnPlateau};

    fn metrics(v: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([("val_loss".to_string(), v)])
    }

    #[test]
    fn schedules() {
        let step = LrSchedule::Step(StepSchedule { step_size: 2, gamma: 0.5 });
        let lrs: Vec<f64> = (0..5).map(|e| scheduled_lr(&step, 1.0, e, 5)).collect();
        assert_eq!(lrs, [1.0, 1.0, 0.5, 0.5, 0.25]);
        let cosine = LrSchedule::Cosine(CosineSchedule { min_lr: 0.0 });
        assert_eq!(scheduled_lr(&cosine, 1.0, 0, 4), 1.0);
        assert!((scheduled_lr(&cosine, 1.0, 2, 4) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn early_stopping_plateau_and_best_checkpoint() {
        let settings = Callbacks {
            early_stopping: Some(EarlyStopping {
                monitor: "val_loss".into(),
                mode: Mode::Auto,
                patience: 2,
                min_delta: 0.0,
            }),
            reduce_on_plateau: Some(ReduceOnPlateau {
                monitor: "val_loss".into(),
                mode: Mode::Auto,
                factor: 0.5,
                patience: 0,
                min_lr: 0.0,
                min_delta: 0.0,
            }),
            ..Callbacks::default()
        };
        let mut state = CallbackState::new(&settings);
        let d = state.end_epoch(&settings, &metrics(1.0), 1.0);
        assert!(d.save_best && d.stop.is_none());
        let d = state.end_epoch(&settings, &metrics(0.5), 1.0);
        assert!(d.save_best && d.stop.is_none());
        let d = state.end_epoch(&settings, &metrics(0.7), 1.0);
        assert!(!d.save_best && d.stop.is_none());
        assert_eq!(state.lr_factor, 0.5);
        let d = state.end_epoch(&settings, &metrics(0.6), 0.5);
        assert_eq!(d.stop.as_deref(), Some("early stopping: val_loss did not improve for 2 epochs (best 0.500000)"));
    }
}
