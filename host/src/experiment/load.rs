//! Reading an experiment file: JSON syntax, duplicate keys, its structure against the
//! experiment's schema, `--set` overrides, and the typed experiment.

use std::path::Path;

use serde_json::Value;

use super::{duplicates, overrides, shape::Shape, Experiment, ExperimentError, Problem};

/// Reads `path`, applies `overrides` and checks the structure of every section; every problem
/// is reported, each at its JSON path.
pub fn load(path: &Path, overrides: &[String]) -> Result<Experiment, ExperimentError> {
    let text =
        std::fs::read_to_string(path).map_err(|cause| ExperimentError::Read { path: path.to_path_buf(), cause })?;
    let mut value: Value = serde_json::from_str(&text).map_err(|e| ExperimentError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line").next().unwrap_or_default().to_string(),
    })?;
    let shape = Shape::of::<Experiment>();
    let mut problems = duplicates::find(&text);
    let file_problems = shape.check(&value);
    // The experiment as it would run, defaults in: what overrides may point at.
    let defaults = file_problems
        .is_empty()
        .then(|| serde_json::from_value::<Experiment>(value.clone()).ok())
        .flatten()
        .map(|e| serde_json::to_value(e).expect("experiments serialize"));
    for assignment in overrides {
        overrides::apply_override(&mut value, defaults.as_ref(), assignment)
            .map_err(|reason| ExperimentError::Override { assignment: assignment.clone(), reason })?;
    }
    let structure = if overrides.is_empty() { file_problems } else { shape.check(&value) };
    problems.extend(structure.into_iter().map(|p| attribute(p, overrides)));
    if !problems.is_empty() {
        return Err(ExperimentError::Invalid { path: path.to_path_buf(), problems });
    }
    serde_path_to_error::deserialize(value).map_err(|e| ExperimentError::Invalid {
        path: path.to_path_buf(),
        problems: vec![Problem { path: e.path().to_string(), message: e.inner().to_string() }],
    })
}

/// A problem an override caused names the override.
fn attribute(mut problem: Problem, overrides: &[String]) -> Problem {
    if let Some(assignment) = overrides.iter().rev().find(|a| {
        let set = overrides::problem_path(a);
        problem.path == set
            || problem.path.starts_with(&format!("{set}."))
            || problem.path.starts_with(&format!("{set}["))
    }) {
        problem.message = format!("{} (set by --set {assignment})", problem.message);
    }
    problem
}
