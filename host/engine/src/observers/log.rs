//! The run's story in `execution.log` and on stderr: a line per epoch, the test's figures,
//! what a streaming data set noted, and why training stopped early.

use anyhow::Result;

use crate::events::{Event, Flow, Observer};

pub struct ExecutionLog;

impl Observer for ExecutionLog {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        match event {
            Event::EpochEnded(end) => {
                tracing::info!(
                    "epoch {}/{}: {} ({:.1}s)",
                    end.epoch,
                    end.epochs,
                    super::headline(&end.metrics).join(", "),
                    end.metrics.get("epoch_seconds").copied().unwrap_or_default()
                );
                if let Some(reason) = &end.stop {
                    tracing::info!("{reason}");
                }
            }
            Event::TestEnded(report) => {
                let line: Vec<String> = report.headline().iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                tracing::info!("test: {}", line.join(", "));
            }
            Event::DatasetNotes { plugin, notes } => tracing::info!("{plugin}: {notes}"),
            _ => {}
        }
        Ok(Flow::Continue)
    }
}
