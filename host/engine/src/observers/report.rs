//! The pictures and `report.html` of a completed run (`gymnos_host::report`).

use std::path::PathBuf;

use anyhow::Result;

use crate::{
    events::{Event, Flow, Observer},
    outcome::Outcome,
};

pub struct ReportWriter {
    run_dir: PathBuf,
}

impl ReportWriter {
    pub fn new(run_dir: PathBuf) -> Self {
        Self { run_dir }
    }
}

impl Observer for ReportWriter {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        if let Event::RunEnded(Outcome::Completed | Outcome::Stopped { .. }) = event {
            // A run that trained well does not fail for its pictures.
            if let Err(e) = gymnos_host::report::write_report(&self.run_dir) {
                tracing::warn!("the run's report was not written: {e}");
            }
        }
        Ok(Flow::Continue)
    }
}
