//! The observers a run attaches (see `events`): each does one thing with what the loop emits.
//!
//! - [`RecordWriter`] writes `metrics.json`;
//! - [`Checkpointer`] writes `checkpoints/*.safetensors` and `model.safetensors`;
//! - [`TrackerHost`] feeds the experiment's tracker plugins;
//! - [`ReportWriter`] draws the pictures and `report.html` of a completed run;
//! - [`ExecutionLog`] writes the epoch and test lines of `execution.log` (and stderr);
//! - [`ProgressDisplay`] draws the terminal's progress bars;
//! - [`StopOnSignal`], [`PreemptOnSignal`] and [`PauseAfter`] end a run early.

mod checkpointer;
mod control;
mod log;
mod progress;
mod record;
mod report;
mod trackers;

pub use checkpointer::Checkpointer;
pub use control::{PauseAfter, PreemptOnSignal, StopOnSignal};
pub use log::ExecutionLog;
pub use progress::{Progress, ProgressDisplay};
pub use record::RecordWriter;
pub use report::ReportWriter;
pub use trackers::TrackerHost;

use gymnos_host::record::EpochMetrics;

/// The metrics an epoch's line shows, each as `name value`.
fn headline(metrics: &EpochMetrics) -> Vec<String> {
    ["train_loss", "val_loss", "val_accuracy", "val_mae"]
        .iter()
        .filter_map(|k| metrics.get(*k).map(|v| format!("{k} {v:.4}")))
        .collect()
}
