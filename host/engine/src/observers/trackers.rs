//! The experiment's tracker plugins, fed from the run's events. A failing tracker never stops
//! the training: its failures come back as warnings, which the record keeps.

use anyhow::Result;
use serde_json::json;

use crate::{
    components::Trackers,
    events::{Event, Flow, Observer},
    outcome::Outcome,
};

pub struct TrackerHost {
    trackers: Trackers,
    /// What `start` tells the trackers of the run.
    run: serde_json::Value,
    /// The resolved experiment, sent as the run's parameters (a fresh run, `log_params`).
    params: Option<serde_json::Value>,
    /// Send training-step metrics every this many steps (0: never).
    log_every: u64,
    epochs_done: u32,
}

impl TrackerHost {
    pub fn new(
        trackers: Trackers,
        experiment: &str,
        run_dir: &std::path::Path,
        resumed_at: Option<u32>,
        params: Option<serde_json::Value>,
        log_every: u32,
    ) -> Self {
        let run = json!({ "experiment": experiment, "run_dir": run_dir, "resumed_at_epoch": resumed_at });
        Self { trackers, run, params, log_every: log_every as u64, epochs_done: resumed_at.unwrap_or(0) }
    }
}

impl Observer for TrackerHost {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        match event {
            Event::RunStarted(_) => {
                self.trackers.start(&self.run);
                if let Some(params) = self.params.take() {
                    self.trackers.log_params(&params);
                }
            }
            Event::StepEnded(step) => {
                if let (true, Some(loss)) =
                    (self.log_every > 0 && step.global_step.is_multiple_of(self.log_every), step.loss)
                {
                    self.trackers.log_metrics(
                        step.global_step,
                        "train_step",
                        &[("loss".into(), loss), ("lr".into(), step.lr)],
                    );
                }
            }
            Event::EpochEnded(end) => {
                self.epochs_done = end.epoch;
                let metrics: Vec<(String, f64)> = end.metrics.iter().map(|(k, v)| (k.clone(), *v)).collect();
                self.trackers.log_metrics(end.epoch as u64, "epoch", &metrics);
            }
            Event::TestEnded(report) => self.trackers.log_metrics(self.epochs_done as u64, "test", &report.headline()),
            Event::RunEnded(outcome) => {
                // Trackers know completed, failed and interrupted; a paused or preempted run is an
                // interrupted one.
                let status = match outcome {
                    Outcome::Paused { .. } | Outcome::Preempted { .. } => gymnos_host::record::RunStatus::Interrupted,
                    other => other.status(),
                };
                self.trackers.finish(status.name());
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }

    fn take_warnings(&mut self) -> Vec<String> {
        self.trackers.take_failures()
    }
}
