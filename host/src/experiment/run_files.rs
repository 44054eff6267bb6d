//! The files trackers write into the run folder must not be the run's own record, nor each
//! other's. A tracker declares which of its keys name such files with the `inside_run_folder`
//! rule (plugin API 1.1), so this holds for any tracker, not only the built-in ones.

use std::path::{Component, Path};

use gymnos_plugin_api::{ComponentKind, Constraint};

use super::{Problem, ResolvedExperiment};
use crate::{record, report};

/// What the run folder holds besides the trackers' files.
const RECORD_ENTRIES: &[&str] = &[
    record::TRAINING_CONFIG,
    record::METRICS,
    record::LOG,
    record::MODEL,
    record::CHECKPOINTS,
    report::LEARNING_CURVES,
    report::CONFUSION_MATRIX,
    report::REPORT,
];

/// The folder the other processes of a data-parallel run log into, as `rank-<r>.log`; a
/// tracker may keep its own files there, under other names.
const RANK_LOGS: &str = "logs";

/// Why a tracker may not write at `path` in the run folder, if it may not.
fn taken_by_the_record(value: &str, path: &[String]) -> Option<String> {
    let first = path[0].as_str();
    if first == RANK_LOGS {
        return match path.get(1) {
            None => Some(format!("`{value}` is the run's own folder of the processes' logs; choose another name")),
            Some(name) if name.starts_with("rank-") && name.ends_with(".log") => {
                Some(format!("`{value}` is where a process of a data-parallel run logs; choose another name"))
            }
            Some(_) => None,
        };
    }
    RECORD_ENTRIES.contains(&first).then(|| match path.len() {
        1 => format!("`{value}` is one of the run's own files, which the record writes; choose another name"),
        _ => format!("`{value}` is inside the run's own `{first}`; choose another name"),
    })
}

/// A file a tracker writes: where its key is, and the path in the run folder.
struct Written {
    at: String,
    path: Vec<String>,
}

/// Adds a problem for each tracker file that is one of the record's entries (or inside one),
/// and for each that another tracker key also writes (or one inside the other).
pub fn check(resolved: &ResolvedExperiment, problems: &mut Vec<Problem>) {
    let mut written: Vec<Written> = Vec::new();
    for plugin in resolved.of_kind(ComponentKind::Tracker) {
        let Some(component) =
            plugin.library.components.iter().find(|c| c.name == plugin.name && c.version == plugin.version)
        else {
            continue;
        };
        for key in &component.config {
            if !key.rules.iter().any(|r| matches!(r, Constraint::InsideRunFolder)) {
                continue;
            }
            let Some(value) = plugin.config.get(&key.name).and_then(|v| v.as_str()) else { continue };
            let path: Vec<String> = Path::new(value)
                .components()
                .filter_map(|c| match c {
                    Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
                    _ => None,
                })
                .collect();
            if path.is_empty() {
                continue;
            }
            let at = format!("{}.config.{}", plugin.path, key.name);
            if let Some(message) = taken_by_the_record(value, &path) {
                problems.push(Problem { path: at, message });
                continue;
            }
            if let Some(other) = written.iter().find(|w| w.path.starts_with(&path) || path.starts_with(&w.path)) {
                problems.push(Problem {
                    path: at,
                    message: format!("`{value}` is also written by {}; give each its own file", other.at),
                });
                continue;
            }
            written.push(Written { at, path });
        }
    }
}
