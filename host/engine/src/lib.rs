//! `gymnos-engine`: trains a resolved experiment on libtorch, from plugin components.
//!
//! The public face is small. A [`Session`] is made from a resolved experiment;
//! [`Session::prepare`] runs every stage up to the first epoch and writes nothing (a run refused
//! there leaves no folder); [`Session::train`] runs the epochs, the test and the final model with
//! the run's [`Observers`] attached, and returns an [`Outcome`]: completed, stopped by a
//! callback, paused, interrupted or failed. The loop emits [`Event`]s; what is written (the
//! record, checkpoints, trackers, the log, the progress bars) is each an [`Observer`]
//! (`observers`).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use gymnos_engine::{observers, Observers, Session};
//! let manager = gymnos_host::PluginManager::open(std::path::Path::new("registry.json"))?;
//! let file = std::path::Path::new("experiments/wine-mlp.json");
//! let experiment = gymnos_host::experiment::load(file, &[])?;
//! let resolved = gymnos_host::experiment::validate(file, &experiment, &manager.registry, &manager.compat)?;
//! let session = Session::new(&manager, resolved)?;
//! let prepared = session.prepare(None)?;
//! let run_dir = std::path::PathBuf::from("/tmp/my-run");
//! let mut observers = Observers::new()
//!     .with(observers::RecordWriter::fresh(run_dir.clone(), None))
//!     .with(observers::Checkpointer::new(run_dir.clone()));
//! println!("{:?}", session.train(prepared, &mut observers).status());
//! # Ok(()) }
//! ```
//!
//! The `gymnos-engine` binary (`main.rs`) is a thin command line over this library, started by
//! `gymnos-host run|resume|predict|validate --deep`.

mod allocator;
mod autocast;
mod callbacks;
pub mod checkpoint;
pub mod components;
pub mod data;
pub mod device;
pub mod distributed;
mod evaluation;
pub mod events;
pub mod fingerprint;
mod fused;
mod generator;
mod learner;
mod loader;
pub mod logging;
pub mod observers;
mod optim;
mod outcome;
pub mod predict;
pub mod selftest;
mod session;
mod shim;
mod trainer;

pub use allocator::keep_freed_memory;
pub use events::{Event, Flow, Observer, Observers};
pub use outcome::Outcome;
pub use session::{Prepared, Session};
pub use trainer::{DataSpeed, FirstBatch, Trainer};
