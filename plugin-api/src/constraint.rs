//! Rules on configuration values that a component declares with its keys (plugin API 1.1):
//! ranges, allowed values, lengths, existing paths, paths that stay inside the run folder, URLs.
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
    /// An absolute URL, `scheme://host[:port][/path]`, whose scheme is one of `schemes` (any
    /// scheme when the list is empty), without spaces, query or fragment: a server's address
    /// (the `mlflow` tracker's `tracking_uri`). Added after 1.2's rules; a host that predates it
    /// reads it as [`Constraint::Unknown`] and ignores it, as it ignores every newer rule.
    Url {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        schemes: Vec<String>,
    },
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
    shorten(&value.to_string())
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
            Constraint::Url { schemes } if schemes.is_empty() => "a URL (scheme://host[:port][/path])".into(),
            Constraint::Url { schemes } => {
                let shown: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
                format!("a URL ({}host[:port][/path])", shown.join(" or "))
            }
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
                return Err(Violation(if p.is_empty() {
                    "is empty; give a relative path inside the run folder".to_string()
                } else if names_the_folder_itself(Path::new(p)) {
                    format!("`{p}` names the run folder itself; give a relative path inside it")
                } else {
                    format!("`{p}` leaves the run folder; give a relative path inside it")
                }));
            }
            (Constraint::Url { schemes }, Value::String(text)) => {
                if let Some(problem) = url_problem(text, schemes) {
                    return Err(Violation(match text.is_empty() {
                        true => format!("is empty; it needs {}", rule.describe()),
                        false => format!("`{}` {problem}; it needs {}", shorten(text), rule.describe()),
                    }));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A string shortened for messages (60 characters at most).
fn shorten(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

/// Why `text` is not an absolute URL with one of `schemes` (any scheme when empty), or `None`.
/// The form is `scheme://[user@]host[:port][/path]`: a scheme of letters, digits, `+`, `-`, `.`
/// (starting with a letter, compared without case), an ASCII host name (an international one in
/// its `xn--` form) or an IPv6 literal in brackets, a port from 1 to 65535, a path of RFC 3986's
/// characters; no whitespace, control characters, query or fragment.
pub fn url_problem(text: &str, schemes: &[String]) -> Option<String> {
    if text.is_empty() {
        return Some("is empty".into());
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(match c {
            ' ' => "contains a space".into(),
            c => format!("contains the character {c:?}"),
        });
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Some("has no scheme:// (such as http://)".into());
    };
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Some(format!("has no valid scheme before :// (`{}`)", shorten(scheme)));
    }
    if !schemes.is_empty() && !schemes.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        return Some(format!("has the scheme `{scheme}`, not {}", schemes.join(" or ")));
    }
    if rest.contains(['?', '#']) {
        return Some("has a query or fragment (`?`, `#`)".into());
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // RFC 3986's characters: unreserved, sub-delims, `:`, `@`, `/` and percent escapes.
    let uri_char = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c);
    if let Some(c) = path.chars().find(|&c| !uri_char(c)) {
        return Some(format!("has the character `{c}` in its path (write it as a %-escape)"));
    }
    let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
    if let Some(c) = userinfo.chars().find(|&c| !uri_char(c) || matches!(c, '/' | '@')) {
        return Some(format!("has the character `{c}` in its user name or password (write it as a %-escape)"));
    }
    let port = if let Some(literal) = host_port.strip_prefix('[') {
        let Some((inside, after)) = literal.split_once(']') else {
            return Some("has an IPv6 host without its closing `]`".into());
        };
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, ':' | '.')) {
            return Some(format!("has the host `[{}]`, not an IPv6 address", shorten(inside)));
        }
        match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Some("has characters after its IPv6 host".into()),
        }
    } else {
        let (host, port) = match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        };
        if host.is_empty() {
            return Some("has no host".into());
        }
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '%')) {
            return Some(format!("has the host `{}`, not a host name or address", shorten(host)));
        }
        port
    };
    if let Some(port) = port {
        if !(port.chars().all(|c| c.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0)) {
            return Some(format!("has the port `{}`, not a number from 1 to 65535", shorten(port)));
        }
    }
    None
}

/// How many folders below the folder it is joined to a relative path ends (`a/b`: 2, `a/..`:
/// 0), or `None` when it is absolute or climbs above that folder on the way.
fn depth_below(path: &Path) -> Option<u64> {
    let mut depth = 0u64;
    for part in path.components() {
        match part {
            PathPart::Normal(_) => depth += 1,
            PathPart::CurDir => {}
            PathPart::ParentDir => depth = depth.checked_sub(1)?,
            PathPart::RootDir | PathPart::Prefix(_) => return None,
        }
    }
    Some(depth)
}

/// Whether a relative path resolves to the folder it is joined to (`.`, `a/..`).
fn names_the_folder_itself(path: &Path) -> bool {
    depth_below(path) == Some(0) && !path.as_os_str().is_empty()
}

/// Whether a path, joined to a folder, names something inside that folder.
pub fn stays_inside(path: &Path) -> bool {
    depth_below(path).is_some_and(|d| d > 0)
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
    fn an_empty_or_self_naming_path_is_said_as_such() {
        let rule = [Constraint::InsideRunFolder];
        assert_eq!(check(&json!(""), &rule).unwrap_err().0, "is empty; give a relative path inside the run folder");
        assert_eq!(
            check(&json!("."), &rule).unwrap_err().0,
            "`.` names the run folder itself; give a relative path inside it"
        );
        assert_eq!(
            check(&json!("logs/.."), &rule).unwrap_err().0,
            "`logs/..` names the run folder itself; give a relative path inside it"
        );
        assert_eq!(
            check(&json!("/tmp/x"), &rule).unwrap_err().0,
            "`/tmp/x` leaves the run folder; give a relative path inside it"
        );
        assert_eq!(check(&json!("logs/metrics.jsonl"), &rule), Ok(()));
    }

    #[test]
    fn urls_need_a_listed_scheme_and_a_host() {
        let http = Constraint::Url { schemes: vec!["http".into(), "https".into()] };
        assert_eq!(http.describe(), "a URL (http:// or https://host[:port][/path])");
        let rule = std::slice::from_ref(&http);
        for good in [
            "http://127.0.0.1:5000",
            "https://mlflow.example.com/",
            "HTTP://host/prefix/path",
            "http://user:secret@host:8080",
            "http://[::1]:5000",
            "http://[2001:db8::1]",
            "http://my_host.local",
        ] {
            assert_eq!(check(&json!(good), rule), Ok(()), "{good}");
        }
        let wants = "it needs a URL (http:// or https://host[:port][/path])";
        for (bad, why) in [
            ("not a url", "contains a space"),
            ("localhost:5000", "has no scheme:// (such as http://)"),
            ("ftp://host", "has the scheme `ftp`, not http or https"),
            ("http://", "has no host"),
            ("http:///path", "has no host"),
            ("http://:5000", "has no host"),
            ("http://host:http", "has the port `http`, not a number from 1 to 65535"),
            ("http://host:0", "has the port `0`, not a number from 1 to 65535"),
            ("http://host:99999", "has the port `99999`, not a number from 1 to 65535"),
            ("http://host:", "has the port ``, not a number from 1 to 65535"),
            ("http://host/?x=1", "has a query or fragment (`?`, `#`)"),
            ("http://ho<st", "has the host `ho<st`, not a host name or address"),
            ("http://é.fr", "has the host `é.fr`, not a host name or address"),
            ("http://host/a|b", "has the character `|` in its path (write it as a %-escape)"),
            ("http://us er@host", "contains a space"),
            ("http://u<r@host", "has the character `<` in its user name or password (write it as a %-escape)"),
            ("http://[::1", "has an IPv6 host without its closing `]`"),
            ("http://[zz]", "has the host `[zz]`, not an IPv6 address"),
            ("://host", "has no valid scheme before :// (``)"),
            ("http://a\tb", "contains the character '\\t'"),
        ] {
            assert_eq!(check(&json!(bad), rule).unwrap_err().0, format!("`{bad}` {why}; {wants}"), "{bad}");
        }
        assert_eq!(check(&json!(""), rule).unwrap_err().0, format!("is empty; {wants}"));
        let any = Constraint::Url { schemes: Vec::new() };
        assert_eq!(check(&json!("s3+x://bucket"), std::slice::from_ref(&any)), Ok(()));
        assert_eq!(any.describe(), "a URL (scheme://host[:port][/path])");
    }

    #[test]
    fn the_url_rule_travels_as_json_and_older_readers_ignore_it() {
        let rule = Constraint::Url { schemes: vec!["http".into()] };
        let text = serde_json::to_value(&rule).unwrap();
        assert_eq!(text, json!({ "rule": "url", "schemes": ["http"] }));
        assert_eq!(serde_json::from_value::<Constraint>(text).unwrap(), rule);
        assert_eq!(serde_json::to_value(Constraint::Url { schemes: Vec::new() }).unwrap(), json!({ "rule": "url" }));
        // What a reader without the variant does with it: the `#[serde(other)]` fallback.
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(tag = "rule", rename_all = "snake_case")]
        enum Older {
            InsideRunFolder,
            #[serde(other)]
            Unknown,
        }
        assert_eq!(
            serde_json::from_value::<Older>(json!({ "rule": "url", "schemes": ["http"] })).unwrap(),
            Older::Unknown
        );
    }

    #[test]
    fn unknown_rules_from_newer_apis_are_read_and_ignored() {
        let rules: Vec<Constraint> =
            serde_json::from_value(json!([{ "rule": "prime" }, { "rule": "length", "min": 2 }])).unwrap();
        assert_eq!(rules[0], Constraint::Unknown);
        assert_eq!(check(&json!("ab"), &rules), Ok(()));
    }
}
