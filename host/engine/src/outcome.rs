//! How a run ended, as a value: the loop returns it, the observers record it, the command turns
//! it into its last line and exit code. Nothing downcasts an error to learn it.

use std::path::Path;

use gymnos_host::record::RunStatus;

/// The exit status of a preempted run: EX_TEMPFAIL, "try again" (a batch script requeues the job
/// on it; see the README).
pub const PREEMPTED_EXIT: u8 = 75;

/// How a run (or its training, which never ends `Failed` by itself) ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every epoch trained, then the test.
    Completed,
    /// A callback stopped training early (early stopping); the test ran. Recorded as completed,
    /// with the reason in `stopped_early`.
    Stopped { reason: String },
    /// Stopped, checkpointed, at the end of epoch `epoch` as asked (a sweep's rung); `resume`
    /// continues it.
    Paused { epoch: u32 },
    /// Stopped by a signal (Ctrl-C, SIGTERM) after step `step` of epoch `epoch` (1-based);
    /// `resume` continues from the last epoch's checkpoint.
    Interrupted { epoch: u32, step: usize },
    /// Checkpointed after step `step` of epoch `epoch` (1-based; step 0: at the epoch's end) and
    /// stopped, at a cluster's notice; `resume` continues at the next step.
    Preempted { epoch: u32, step: usize },
    /// An error ended it.
    Failed(anyhow::Error),
}

impl Outcome {
    pub fn status(&self) -> RunStatus {
        match self {
            Outcome::Completed | Outcome::Stopped { .. } => RunStatus::Completed,
            Outcome::Paused { .. } => RunStatus::Paused,
            Outcome::Interrupted { .. } => RunStatus::Interrupted,
            Outcome::Preempted { .. } => RunStatus::Preempted,
            Outcome::Failed(_) => RunStatus::Failed,
        }
    }

    /// What the record says went wrong, or how to continue an interrupted run.
    pub fn error(&self, run_dir: &Path) -> Option<String> {
        match self {
            Outcome::Failed(e) => Some(format!("{e:#}")),
            Outcome::Interrupted { .. } | Outcome::Preempted { .. } => self.message(run_dir),
            _ => None,
        }
    }

    /// The line a user reads about a run that stopped before its end.
    pub fn message(&self, run_dir: &Path) -> Option<String> {
        let resume = format!("continue with `gymnos-host resume {}`", run_dir.display());
        match self {
            Outcome::Paused { epoch } => Some(format!("paused after epoch {epoch}, as asked; {resume}")),
            Outcome::Interrupted { epoch, step } => {
                Some(format!("interrupted at epoch {epoch}, step {step}; {resume}"))
            }
            Outcome::Preempted { epoch, step: 0 } => {
                Some(format!("preempted after epoch {epoch}, as the cluster asked; checkpointed; {resume}"))
            }
            Outcome::Preempted { epoch, step } => Some(format!(
                "preempted at epoch {epoch}, step {step}, as the cluster asked; checkpointed there; {resume}"
            )),
            Outcome::Failed(e) => Some(format!("{e:#}")),
            Outcome::Completed | Outcome::Stopped { .. } => None,
        }
    }

    /// The exit status of a command that ended so: 130 (the shells' code for Ctrl-C) for an
    /// interrupted run, 75 for a preempted one (a batch script requeues the job on it), 1 for a
    /// failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Completed | Outcome::Stopped { .. } | Outcome::Paused { .. } => 0,
            Outcome::Interrupted { .. } => 130,
            Outcome::Preempted { .. } => PREEMPTED_EXIT,
            Outcome::Failed(_) => 1,
        }
    }

    /// Whether the test and the final model come next.
    pub fn trained(&self) -> bool {
        matches!(self, Outcome::Completed | Outcome::Stopped { .. })
    }
}
