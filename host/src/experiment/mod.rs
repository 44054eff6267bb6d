//! The experiment file: its format, reading it (syntax, duplicate keys, structure, `--set`
//! overrides), its settings, and the resolution of its plugins against the registry into the
//! form each run records (`training_config.json`).
//!
//! `load` → [`Experiment`] → [`validate`] (settings + [`Resolver`]) → [`ResolvedExperiment`].

mod duplicates;
mod format;
mod load;
pub mod metric_names;
mod overrides;
mod plugin_schema;
mod resolve;
mod run_files;
mod settings;
mod shape;

use std::{
    fmt,
    path::{Path, PathBuf},
};

pub use format::*;
pub use load::load;
pub use overrides::apply_override;
pub use plugin_schema::add_plugin_schemas;
pub use resolve::{ResolvedExperiment, ResolvedPlugin, Resolver};
pub use settings::{check_writable, folder_name_problem, output_root};
pub use shape::Shape;

use crate::{compat::HostCompat, registry::Registry};

/// One thing wrong with an experiment, and where.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// JSON path, e.g. `training.optimizer.lr` or `preprocessors[0].config.epsilon`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{}: cannot read the experiment: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: invalid JSON at line {line}, column {column}: {message}", path.display())]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    #[error("--set {}: {reason}", overrides::shown(assignment))]
    Override { assignment: String, reason: String },
    #[error("{}: {}", path.display(), list(problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn list(problems: &[Problem]) -> String {
    let joined: Vec<String> = problems.iter().map(ToString::to_string).collect();
    match problems.len() {
        1 => joined[0].clone(),
        n => format!("{n} problems: {}", joined.join("; ")),
    }
}

/// The absolute folder of an experiment file.
pub fn experiment_dir(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// Checks everything that can be checked without loading a plugin: the settings, and every
/// plugin against the registry (versions, keys, rules). Reports every problem.
pub fn validate(
    path: &Path,
    exp: &Experiment,
    registry: &Registry,
    compat: &HostCompat,
) -> Result<ResolvedExperiment, ExperimentError> {
    let base_dir = experiment_dir(path);
    let mut problems = Vec::new();
    settings::check(exp, &base_dir, &mut problems);
    let resolver = Resolver { registry, compat, base_dir: &base_dir };
    let resolved = resolver.resolve_all(exp);
    // The task, and so the metrics runs record, is the resolved data set's when it resolves.
    let produced = metric_names::Produced::of(exp, resolved.as_ref().ok());
    settings::check_monitors(exp, &produced, &mut problems);
    if let Ok(resolved) = &resolved {
        run_files::check(resolved, &mut problems);
    }
    match resolved {
        Ok(resolved) if problems.is_empty() => Ok(resolved),
        Ok(_) => Err(ExperimentError::Invalid { path: path.to_path_buf(), problems }),
        Err(plugin_problems) => {
            problems.extend(plugin_problems);
            Err(ExperimentError::Invalid { path: path.to_path_buf(), problems })
        }
    }
}
