//! What a run tells the world as it goes: the loop emits [`Event`]s, in run order, to
//! [`Observer`]s that are independent of each other (the record writer, the checkpointer, the
//! trackers, the execution log, the progress display, the controls that stop a run). The loop
//! knows none of them by name; an observer added later touches no loop code.
//!
//! An observer answers each event with a [`Flow`]: it may ask the loop to stop (Ctrl-C, a
//! sweep's pause); an observer's error fails the run, as a failed write of the record or of a
//! checkpoint always has. An observer that only warns (a tracker whose server is down) hands its
//! warnings back, and the other observers receive each as an [`Event::Warning`] (the record keeps
//! them) right after the event that caused it.

use anyhow::Result;
use gymnos_host::record::{BestCheckpoint, DataDescription, EpochMetrics, EvaluationReport, Hardware};
use serde_json::Value;

use crate::{checkpoint::Checkpoint, outcome::Outcome};

/// Something that happened in a run, in the order the loop emits them.
pub enum Event<'a> {
    /// Training starts, or continues when the run is resumed; nothing before this event wrote
    /// into the run folder.
    RunStarted(&'a RunStart),
    /// Epoch `epoch` (0-based) begins: `batches` training batches at learning rate `lr`.
    EpochStarted { epoch: u32, batches: usize, lr: f64 },
    /// A training step ended.
    StepEnded(&'a StepEnd),
    /// The end of an epoch, after its checkpoints were due: its metrics, validation included.
    EpochEnded(&'a EpochEnd),
    /// The loop asks for its state to be saved.
    CheckpointDue(&'a CheckpointDue),
    /// The epochs are over (how they ended is the run's outcome, or the test comes next).
    TrainingEnded,
    /// The test split's report.
    TestEnded(&'a EvaluationReport),
    /// What a streaming data set noted while it was read (skipped files...), a JSON object.
    DatasetNotes { plugin: &'a str, notes: &'a Value },
    /// The trained model and fitted preprocessors, to be saved as the run's model.
    ModelReady(&'a FinalModel),
    /// A stage after the run folder exists (`train`, `test`, `save_model`) took `seconds`.
    StageEnded { stage: &'a str, seconds: f64 },
    /// Another observer's warning (a tracker that failed): the run goes on.
    Warning(&'a str),
    /// The run ended; the last event.
    RunEnded(&'a Outcome),
}

/// What the stages before the first epoch found, and where the run starts.
#[derive(Clone, Debug)]
pub struct RunStart {
    pub hardware: Hardware,
    pub data: DataDescription,
    /// The stages before the run folder existed, with their seconds.
    pub stage_seconds: Vec<(String, f64)>,
    pub epochs: u32,
    /// The epoch training continues after, and the history until then, when resumed.
    pub resumed: Option<Resumed>,
    /// How the run is spread over processes, when it is data-parallel.
    pub distributed: Option<gymnos_host::record::DistributedRun>,
}

#[derive(Clone, Debug)]
pub struct Resumed {
    pub epoch: u32,
    pub history: std::collections::BTreeMap<String, Vec<f64>>,
}

/// One training step.
#[derive(Clone, Debug)]
pub struct StepEnd {
    /// 0-based.
    pub epoch: u32,
    /// 0-based, within the epoch.
    pub step: usize,
    /// Optimizer steps so far in the run.
    pub global_step: u64,
    pub samples: i64,
    /// The batch's loss, when it was read: on the CPU every step, on a GPU the steps that
    /// log it (reading waits for the device).
    pub loss: Option<f64>,
    pub lr: f64,
}

/// One finished epoch.
#[derive(Clone, Debug)]
pub struct EpochEnd {
    /// 1-based: epochs done.
    pub epoch: u32,
    pub epochs: u32,
    pub metrics: EpochMetrics,
    /// Why the callbacks stop training here, if they do (early stopping).
    pub stop: Option<String>,
}

/// Which checkpoint file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// `checkpoints/last.safetensors`: what `resume` continues from.
    Last,
    /// `checkpoints/best.safetensors`: the best epoch of the monitored metric.
    Best,
}

pub struct CheckpointDue {
    pub slot: Slot,
    /// Epochs done.
    pub epoch: u32,
    pub checkpoint: Checkpoint,
    /// For [`Slot::Best`]: the metric, its best value and the epoch.
    pub best: Option<BestCheckpoint>,
}

/// The model at the end of training: its tensors (`model.*`) and the fitted preprocessors'
/// (`preprocessors.<i>.*`), with what the file says of itself.
pub struct FinalModel {
    pub tensors: Vec<(String, tch::Tensor)>,
    pub task: gymnos_host::record::TaskName,
    pub class_names: Vec<String>,
}

/// What an observer asks of the loop. The loop takes the most severe answer of all observers
/// (and, in a data-parallel run, of all processes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Flow {
    #[default]
    Continue,
    /// Stop, checkpointed, at the end of this epoch (answered to [`Event::EpochEnded`]).
    Pause,
    /// Stop after this step (Ctrl-C, SIGTERM); the last epoch's checkpoint stays for `resume`.
    Interrupt,
    /// Checkpoint where training stands, even in the middle of an epoch, and stop (a cluster's
    /// notice before it preempts or ends the job, SIGUSR1): `resume` continues at the next step.
    Preempt,
}

impl Flow {
    pub fn merge(self, other: Flow) -> Flow {
        self.max(other)
    }
}

/// Watches a run. Events arrive in run order, on the training thread.
pub trait Observer {
    /// Reacts to `event`. An error fails the run.
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow>;

    /// Warnings gathered since the last call; the others receive each as [`Event::Warning`].
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// The observers of a run, in the order they see each event.
#[derive(Default)]
pub struct Observers(Vec<Box<dyn Observer>>);

impl Observers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, observer: impl Observer + 'static) -> Self {
        self.push(observer);
        self
    }

    pub fn push(&mut self, observer: impl Observer + 'static) {
        self.0.push(Box::new(observer));
    }

    /// Sends `event` to every observer, in order; the first error stops the dispatch.
    pub fn emit(&mut self, event: &Event<'_>) -> Result<Flow> {
        let mut flow = Flow::Continue;
        for i in 0..self.0.len() {
            flow = flow.merge(self.0[i].on_event(event)?);
            for warning in self.0[i].take_warnings() {
                for (j, other) in self.0.iter_mut().enumerate() {
                    if j != i {
                        other.on_event(&Event::Warning(&warning))?;
                    }
                }
            }
        }
        Ok(flow)
    }

    /// Sends `event` to every observer, even when some fail; the first error is returned
    /// (the end of a run reaches every observer).
    pub fn emit_to_all(&mut self, event: &Event<'_>) -> Result<()> {
        let mut first = None;
        for i in 0..self.0.len() {
            if let Err(e) = self.0[i].on_event(event) {
                first.get_or_insert(e);
            }
            for warning in self.0[i].take_warnings() {
                for (j, other) in self.0.iter_mut().enumerate() {
                    if j != i {
                        if let Err(e) = other.on_event(&Event::Warning(&warning)) {
                            first.get_or_insert(e);
                        }
                    }
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what it sees; warns once on `TrainingEnded`; asks to pause on epoch 2.
    struct Probe {
        seen: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
        name: &'static str,
        warnings: Vec<String>,
    }

    impl Observer for Probe {
        fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
            let what = match event {
                Event::TrainingEnded => {
                    if self.name == "a" {
                        self.warnings.push("tracker down".into());
                    }
                    "training ended".to_string()
                }
                Event::Warning(w) => format!("warning {w}"),
                Event::EpochStarted { epoch, .. } => format!("epoch {epoch}"),
                _ => "other".to_string(),
            };
            self.seen.borrow_mut().push(format!("{}: {what}", self.name));
            Ok(match event {
                Event::EpochStarted { epoch: 2, .. } if self.name == "b" => Flow::Pause,
                _ => Flow::Continue,
            })
        }
        fn take_warnings(&mut self) -> Vec<String> {
            std::mem::take(&mut self.warnings)
        }
    }

    #[test]
    fn observers_see_events_in_order_and_each_other_s_warnings_right_after() {
        let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let probe = |name| Probe { seen: seen.clone(), name, warnings: Vec::new() };
        let mut observers = Observers::new().with(probe("a")).with(probe("b"));
        assert_eq!(observers.emit(&Event::EpochStarted { epoch: 1, batches: 3, lr: 0.1 }).unwrap(), Flow::Continue);
        assert_eq!(observers.emit(&Event::EpochStarted { epoch: 2, batches: 3, lr: 0.1 }).unwrap(), Flow::Pause);
        observers.emit(&Event::TrainingEnded).unwrap();
        assert_eq!(
            *seen.borrow(),
            [
                "a: epoch 1",
                "b: epoch 1",
                "a: epoch 2",
                "b: epoch 2",
                "a: training ended",
                "b: warning tracker down",
                "b: training ended"
            ]
        );
        assert_eq!(Flow::Pause.merge(Flow::Interrupt), Flow::Interrupt);
        assert_eq!(Flow::Continue.merge(Flow::Pause), Flow::Pause);
    }
}
