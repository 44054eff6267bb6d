//! Checkpoints (`checkpoints/last.safetensors`, `best.safetensors`) and the final model
//! (`model.safetensors`), each written whole (see `checkpoint`).

use std::path::PathBuf;

use anyhow::Result;
use gymnos_host::record;

use crate::{
    checkpoint,
    events::{Event, Flow, Observer, Slot},
};

pub struct Checkpointer {
    run_dir: PathBuf,
}

impl Checkpointer {
    pub fn new(run_dir: PathBuf) -> Self {
        Self { run_dir }
    }
}

impl Observer for Checkpointer {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        match event {
            Event::CheckpointDue(due) => {
                let file = match due.slot {
                    Slot::Last => record::LAST,
                    Slot::Best => record::BEST,
                };
                due.checkpoint.save(&self.run_dir.join(record::CHECKPOINTS).join(file))?;
            }
            Event::ModelReady(model) => checkpoint::save_model(
                &self.run_dir.join(record::MODEL),
                &model.tensors,
                model.task,
                &model.class_names,
            )?,
            _ => {}
        }
        Ok(Flow::Continue)
    }
}
