//! `metrics.json`: the run's record, written whole at the start, after every epoch and at the
//! end (see `gymnos_host::record::RunSummary`).

use std::path::PathBuf;

use anyhow::Result;
use gymnos_host::record::{self, RunStatus, RunSummary, SweepTrial};

use crate::events::{CheckpointDue, Event, Flow, Observer};

/// The most tracker failures a record keeps.
const MAX_WARNINGS: usize = 100;

pub struct RecordWriter {
    run_dir: PathBuf,
    summary: RunSummary,
    /// The run has ended: a late warning is saved at once.
    ended: bool,
}

impl RecordWriter {
    /// A new run's record.
    pub fn fresh(run_dir: PathBuf, sweep: Option<SweepTrial>) -> Self {
        let summary = RunSummary { started_at: record::now(), sweep, ..RunSummary::default() };
        Self { run_dir, summary, ended: false }
    }

    /// The record of the run in `run_dir`, continued.
    pub fn resumed(run_dir: PathBuf) -> Result<Self> {
        let summary = RunSummary::load(&run_dir)?;
        Ok(Self { run_dir, summary, ended: false })
    }

    fn save(&self) -> Result<()> {
        Ok(self.summary.save(&self.run_dir)?)
    }
}

impl Observer for RecordWriter {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        let summary = &mut self.summary;
        match event {
            Event::RunStarted(start) => {
                summary.hardware = Some(start.hardware.clone());
                for (stage, seconds) in &start.stage_seconds {
                    summary.add_elapsed(stage, *seconds);
                }
                summary.data = Some(start.data.clone());
                // Every session's world size, a single-process one as 1 once a run went parallel.
                match (&mut summary.distributed, &start.distributed) {
                    (Some(recorded), None) => {
                        recorded.world_sizes.push(1);
                        recorded.world_size = 1;
                    }
                    (recorded, Some(now)) => {
                        let mut sizes = recorded.take().map(|r| r.world_sizes).unwrap_or_default();
                        sizes.push(now.world_size);
                        *recorded = Some(gymnos_host::record::DistributedRun { world_sizes: sizes, ..now.clone() });
                    }
                    (None, None) => {}
                }
                if let Some(resumed) = &start.resumed {
                    summary.history = resumed.history.clone();
                    summary.epochs_completed = resumed.epoch;
                    summary.resumed_at_epochs.push(resumed.epoch);
                    summary.status = RunStatus::Running;
                    summary.error = None;
                }
                self.save()?;
            }
            Event::StageEnded { stage, seconds } => summary.add_elapsed(stage, *seconds),
            Event::CheckpointDue(CheckpointDue { best: Some(best), .. }) => summary.best = Some(best.clone()),
            Event::EpochEnded(end) => {
                summary.add_epoch(&end.metrics);
                if let Some(reason) = &end.stop {
                    summary.stopped_early = Some(reason.clone());
                }
                self.save()?;
            }
            Event::TestEnded(report) => summary.test = Some((*report).clone()),
            Event::DatasetNotes { notes, .. } => {
                if let Some(data) = summary.data.as_mut() {
                    data.dataset_notes = Some((*notes).clone());
                }
            }
            Event::Warning(warning) if summary.tracker_errors.len() < MAX_WARNINGS => {
                summary.tracker_errors.push(warning.to_string());
                if self.ended {
                    self.save()?;
                }
            }
            Event::RunEnded(outcome) => {
                summary.finished_at = Some(record::now());
                summary.status = outcome.status();
                summary.error = outcome.error(&self.run_dir);
                self.ended = true;
                self.save()?;
            }
            _ => {}
        }
        Ok(Flow::Continue)
    }
}
