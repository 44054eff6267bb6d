//! Reading an experiment file: JSON syntax, duplicate keys, its structure against the
//! experiment's schema, `--set` overrides, and the typed experiment.

use std::path::Path;

use serde_json::Value;

use super::{duplicates, overrides, shape::Shape, Experiment, ExperimentError, Problem};
use crate::record::one_line;

/// Reads `path`, applies `overrides` and checks the structure of every section; every problem
/// is reported, each at its JSON path. A UTF-8 byte order mark before the JSON is ignored; a
/// file whose absolute path is not UTF-8 is refused (relative paths in it are resolved against
/// its folder and recorded in UTF-8 JSON, which could not name that folder).
pub fn load(path: &Path, overrides: &[String]) -> Result<Experiment, ExperimentError> {
    let read_error = |cause| ExperimentError::Read { path: path.to_path_buf(), cause };
    if std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).to_str().is_none() {
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "its path is not UTF-8 text, which the run's records (UTF-8 JSON) cannot name; rename it",
        )));
    }
    let text = crate::fsio::read_text(path).map_err(read_error)?;
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
        overrides::apply_override(&mut value, defaults.as_ref(), assignment).map_err(|reason| {
            ExperimentError::Override { assignment: one_line(assignment), reason: one_line(&reason) }
        })?;
    }
    let structure = if overrides.is_empty() { file_problems } else { shape.check(&value) };
    problems.extend(structure.into_iter().map(|p| attribute(p, overrides)));
    if !problems.is_empty() {
        return Err(ExperimentError::Invalid {
            path: path.to_path_buf(),
            problems: problems.into_iter().map(plain).collect(),
        });
    }
    serde_path_to_error::deserialize(value).map_err(|e| ExperimentError::Invalid {
        path: path.to_path_buf(),
        problems: vec![plain(Problem { path: e.path().to_string(), message: e.inner().to_string() })],
    })
}

/// A problem said on one line: the keys and values it quotes from the file may hold control
/// characters (`"trai\n"` is a key), which are written escaped.
fn plain(problem: Problem) -> Problem {
    Problem { path: one_line(&problem.path), message: one_line(&problem.message) }
}

/// A problem an override caused names the override.
fn attribute(mut problem: Problem, overrides: &[String]) -> Problem {
    if let Some(assignment) = overrides.iter().rev().find(|a| {
        let set = overrides::problem_path(a);
        problem.path == set
            || problem.path.starts_with(&format!("{set}."))
            || problem.path.starts_with(&format!("{set}["))
    }) {
        problem.message = format!("{} (set by --set {})", problem.message, overrides::shown(assignment));
    }
    problem
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;

    #[test]
    fn a_byte_order_mark_is_ignored_and_positions_are_those_an_editor_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exp.json");
        std::fs::write(&path, "\u{feff}{\"experiment\": {\"name\": \"x\",}}").unwrap();
        let err = load(&path, &[]).unwrap_err().to_string();
        assert_eq!(err, format!("{}: invalid JSON at line 1, column 29: trailing comma", path.display()));
        std::fs::write(&path, "\u{feff}{\"experiment\": {\"name\": \"x\"}}").unwrap();
        let err = load(&path, &[]).unwrap_err().to_string();
        assert_eq!(err, format!("{}: 2 problems: dataset: missing section; model: missing section", path.display()));
    }

    #[test]
    fn a_path_that_is_not_utf8_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(std::ffi::OsStr::from_bytes(b"e\xff.json"));
        std::fs::write(&path, "{}").unwrap();
        let err = load(&path, &[]).unwrap_err().to_string();
        assert!(err.ends_with(": cannot read the experiment: its path is not UTF-8 text, which the run's records (UTF-8 JSON) cannot name; rename it"), "{err}");
    }
}
