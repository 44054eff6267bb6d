//! The experiment file: its format, `--set` overrides, validation against the installed
//! plugins, and the resolved form recorded with each run (`training_config.json`).

mod format;
mod overrides;
mod validate;

pub use format::*;
pub use overrides::apply_override;
pub use validate::{experiment_dir, load, parse_device, resolve_plugins, validate, ExperimentError, Problem, ResolvedExperiment, ResolvedPlugin};
