//! Rules on configuration values that a component declares with its keys (plugin API 1.1):
//! ranges, allowed values, lengths, existing paths, paths that stay inside the run folder.
//!
//! They travel as JSON (see [`crate::details`]) and are recorded in the registry at install,
//! so `gymnos-host validate` checks them without loading any library; the SDK checks the
//! same rules again when a component is created. [`check`] is the one implementation.

use std::{
    fmt,
    path::{Component as PathPart, Path},
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What kind of file system entry a path must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    File,
    Dir,
    Any,
}

/// One rule on a configuration value. For lists, value rules (`Range`, `OneOf`) apply to every
/// item, and `Length` counts the items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Constraint {
    /// A number within bounds (each bound optional, inclusive unless said otherwise).
    Range {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        #[serde(default, skip_serializing_if = "is_false")]
        exclusive_min: bool,
        #[serde(default, skip_serializing_if = "is_false")]
        exclusive_max: bool,
    },
    /// One of the listed values.
    OneOf { values: Vec<Value> },
    /// A string's length in characters, or a list's number of items.
    Length {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<u64>,
    },
    /// A path (already made absolute by the host) that exists and is of this kind.
    Exists { kind: PathKind },
    /// A relative path that stays inside the folder it is resolved against: the run folder.
    /// Trackers use it for the files they write.
    InsideRunFolder,
    /// A rule from a newer API that this reader does not know; ignored.
    #[serde(other)]
    Unknown,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A value that breaks a rule, with what the rule wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Short JSON text of a value for messages (`1.5`, `"swish"`).
fn show(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

fn number(n: f64) -> String {
    // 1.0 reads as `1`, as users write it.
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

impl Constraint {
    /// `[0, 1)`, `>= 1`, ... for messages and `plugins info`.
    pub fn describe(&self) -> String {
        match self {
            Constraint::Range { min, max, exclusive_min, exclusive_max } => match (min, max) {
                (Some(lo), Some(hi)) => format!(
                    "{}{}, {}{}",
                    if *exclusive_min { "(" } else { "[" },
                    number(*lo),
                    number(*hi),
                    if *exclusive_max { ")" } else { "]" }
                ),
                (Some(lo), None) => format!("{} {}", if *exclusive_min { ">" } else { ">=" }, number(*lo)),
                (None, Some(hi)) => format!("{} {}", if *exclusive_max { "<" } else { "<=" }, number(*hi)),
                (None, None) => "any number".into(),
            },
            Constraint::OneOf { values } => {
                let shown: Vec<String> =
                    values.iter().map(|v| v.as_str().map_or_else(|| show(v), str::to_string)).collect();
                format!("one of {}", shown.join(", "))
            }
            Constraint::Length { min, max } => match (min, max) {
                (Some(lo), Some(hi)) if lo == hi => format!("length {lo}"),
                (Some(lo), Some(hi)) => format!("length {lo} to {hi}"),
                (Some(1), None) => "non-empty".into(),
                (Some(lo), None) => format!("length >= {lo}"),
                (None, Some(hi)) => format!("length <= {hi}"),
                (None, None) => "any length".into(),
            },
            Constraint::Exists { kind: PathKind::File } => "an existing file".into(),
            Constraint::Exists { kind: PathKind::Dir } => "an existing folder".into(),
            Constraint::Exists { kind: PathKind::Any } => "an existing path".into(),
            Constraint::InsideRunFolder => "a relative path inside the run folder".into(),
            Constraint::Unknown => "a rule of a newer plugin API".into(),
        }
    }

    fn check_item(&self, value: &Value) -> Result<(), Violation> {
        match self {
            Constraint::Range { min, max, exclusive_min, exclusive_max } => {
                let Some(n) = value.as_f64() else { return Ok(()) };
                let below = min.is_some_and(|lo| if *exclusive_min { n <= lo } else { n < lo });
                let above = max.is_some_and(|hi| if *exclusive_max { n >= hi } else { n > hi });
                if below || above || n.is_nan() {
                    return Err(Violation(format!("{} is not {}", show(value), self.range_phrase())));
                }
                Ok(())
            }
            Constraint::OneOf { values } => {
                if values.contains(value) {
                    Ok(())
                } else {
                    Err(Violation(format!("{} is not {}", show(value), self.describe())))
                }
            }
            _ => Ok(()),
        }
    }

    fn range_phrase(&self) -> String {
        match self {
            Constraint::Range { min: Some(_), max: Some(_), .. } => format!("in {}", self.describe()),
            _ => self.describe(),
        }
    }
}

/// Checks one configuration value against its key's rules. Path rules see the value as the
/// host resolved it (absolute, for `path` keys). Returns the first rule broken.
pub fn check(value: &Value, rules: &[Constraint]) -> Result<(), Violation> {
    for rule in rules {
        match (rule, value) {
            // A key whose default is null and that the user left unset has no value to check.
            (_, Value::Null) => {}
            (Constraint::Range { .. } | Constraint::OneOf { .. }, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    rule.check_item(item).map_err(|v| Violation(format!("item {i}: {v}")))?;
                }
            }
            (Constraint::Range { .. } | Constraint::OneOf { .. }, item) => rule.check_item(item)?,
            (Constraint::Length { min, max }, v) => {
                let (len, unit) = match v {
                    Value::String(s) => (s.chars().count() as u64, "characters"),
                    Value::Array(a) => (a.len() as u64, "items"),
                    _ => continue,
                };
                if min.is_some_and(|lo| len < lo) || max.is_some_and(|hi| len > hi) {
                    return Err(Violation(match (len, min) {
                        (0, Some(1)) => "must not be empty".to_string(),
                        (0, _) => format!("is empty; it needs {}", rule.describe()),
                        _ => format!("has {len} {unit}; it needs {}", rule.describe()),
                    }));
                }
            }
            (Constraint::Exists { kind }, Value::String(p)) => {
                let path = Path::new(p);
                let problem = match (kind, std::fs::metadata(path)) {
                    (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
                    (_, Err(_)) => Some("cannot be read"),
                    (PathKind::File, Ok(m)) if !m.is_file() => Some("is not a file"),
                    (PathKind::Dir, Ok(m)) if !m.is_dir() => Some("is not a folder"),
                    _ => None,
                };
                if let Some(problem) = problem {
                    return Err(Violation(format!("{p} {problem}")));
                }
            }
            (Constraint::InsideRunFolder, Value::String(p)) if !stays_inside(Path::new(p)) => {
                return Err(Violation(format!("`{p}` leaves the run folder; give a relative path inside it")));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether a path, joined to a folder, names something inside that folder.
pub fn stays_inside(path: &Path) -> bool {
    let mut depth = 0i64;
    for part in path.components() {
        match part {
            PathPart::Normal(_) => depth += 1,
            PathPart::CurDir => {}
            PathPart::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            PathPart::RootDir | PathPart::Prefix(_) => return false,
        }
    }
    depth > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn range(min: f64, max: f64, exclusive_max: bool) -> Constraint {
        Constraint::Range { min: Some(min), max: Some(max), exclusive_min: false, exclusive_max }
    }

    #[test]
    fn rules_report_the_value_and_what_they_want() {
        assert_eq!(check(&json!(0.5), &[range(0.0, 1.0, true)]), Ok(()));
        assert_eq!(check(&json!(1.0), &[range(0.0, 1.0, true)]).unwrap_err().0, "1.0 is not in [0, 1)");
        let positive = Constraint::Range { min: Some(1.0), max: None, exclusive_min: false, exclusive_max: false };
        assert_eq!(check(&json!([4, 0]), std::slice::from_ref(&positive)).unwrap_err().0, "item 1: 0 is not >= 1");
        let one_of = Constraint::OneOf { values: vec![json!("relu"), json!("gelu")] };
        assert_eq!(
            check(&json!("swish"), std::slice::from_ref(&one_of)).unwrap_err().0,
            "\"swish\" is not one of relu, gelu"
        );
        let non_empty = Constraint::Length { min: Some(1), max: None };
        assert_eq!(check(&json!([]), std::slice::from_ref(&non_empty)).unwrap_err().0, "must not be empty");
        assert_eq!(check(&json!(""), &[non_empty]).unwrap_err().0, "must not be empty");
        let two = Constraint::Length { min: Some(2), max: Some(2) };
        assert_eq!(check(&json!([1, 2, 3]), &[two]).unwrap_err().0, "has 3 items; it needs length 2");
        assert_eq!(check(&Value::Null, &[positive]), Ok(()), "an unset optional key");
    }

    #[test]
    fn paths_exist_and_stay_inside_the_run_folder() {
        let dir = std::env::temp_dir();
        let dir_text = dir.to_string_lossy().into_owned();
        assert_eq!(check(&json!(dir_text), &[Constraint::Exists { kind: PathKind::Dir }]), Ok(()));
        assert_eq!(
            check(&json!(dir_text), &[Constraint::Exists { kind: PathKind::File }]).unwrap_err().0,
            format!("{dir_text} is not a file")
        );
        assert!(check(&json!("/no/such/thing"), &[Constraint::Exists { kind: PathKind::Any }])
            .unwrap_err()
            .0
            .ends_with("does not exist"));
        for inside in ["metrics.csv", "logs/tb", "a/../b"] {
            assert!(stays_inside(Path::new(inside)), "{inside}");
        }
        for outside in ["../x", "/tmp/x", "a/../../x", ".", ""] {
            assert!(!stays_inside(Path::new(outside)), "{outside}");
        }
    }

    #[test]
    fn unknown_rules_from_newer_apis_are_read_and_ignored() {
        let rules: Vec<Constraint> =
            serde_json::from_value(json!([{ "rule": "prime" }, { "rule": "length", "min": 2 }])).unwrap();
        assert_eq!(rules[0], Constraint::Unknown);
        assert_eq!(check(&json!("ab"), &rules), Ok(()));
    }
}
