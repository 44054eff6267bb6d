//! `name[@requirement]` references and their resolution to one installed component.

use std::{fmt, str::FromStr};

use gymnos_plugin_api::{normalized_name, ComponentKind};
use semver::VersionReq;

use crate::{
    compat::HostCompat,
    registry::{ComponentRecord, Installed, LibraryRecord, Registry, Status},
};

/// A reference such as `mlp`, `mlp@^1.2` or `mlp@=2.0.1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginRef {
    pub name: String,
    pub req: VersionReq,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("`{input}` is not a plugin reference: {reason} (expected NAME or NAME@VERSION_REQ, e.g. mlp@^1.2)")]
    Syntax { input: String, reason: String },
    #[error("no {kind} named `{name}` is installed (installed {kind}s: {installed})")]
    Unknown { kind: String, name: String, installed: String },
    #[error("no installed version of {kind} `{name}` matches `{req}` (installed: {installed})")]
    NoMatch { kind: String, name: String, req: String, installed: String },
    #[error("{kind} `{name}@{version}` matches `{req}` but is not loadable: {status}")]
    NotLoadable { kind: String, name: String, version: String, req: String, status: String },
    #[error("`{name}` names installed plugins of several kinds ({kinds}); say which with --kind")]
    Ambiguous { name: String, kinds: String },
}

impl FromStr for PluginRef {
    type Err = ResolveError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let syntax = |reason: String| ResolveError::Syntax { input: input.to_string(), reason };
        let (name, req) = match input.split_once('@') {
            Some((name, req)) => (name.trim(), Some(req.trim())),
            None => (input.trim(), None),
        };
        if name.is_empty() {
            return Err(syntax("the name is empty".into()));
        }
        let req = match req {
            None => VersionReq::STAR,
            Some(req) => VersionReq::parse(req).map_err(|e| syntax(e.to_string()))?,
        };
        Ok(Self { name: name.to_string(), req })
    }
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.req == VersionReq::STAR {
            f.write_str(&self.name)
        } else {
            write!(f, "{}@{}", self.name, self.req)
        }
    }
}

/// "model plugin", or "plugin" when any kind will do.
fn kind_label(kind: Option<ComponentKind>) -> String {
    kind.map_or_else(|| "plugin".to_string(), |k| format!("{k} plugin"))
}

/// Components renamed since users typed their old names: (kind, old name, new name). An old
/// name still finds the component (when nothing installed bears it), with a warning.
pub const RENAMED: &[(ComponentKind, &str, &str)] = &[(ComponentKind::Tracker, "csv-log", "csv")];

/// The current name of a renamed component, when `name` (of `kind`, if known) is an old one.
pub fn renamed(kind: Option<ComponentKind>, name: &str) -> Option<&'static str> {
    let wanted = normalized_name(name);
    RENAMED
        .iter()
        .find(|(k, old, _)| kind.is_none_or(|kind| kind == *k) && normalized_name(old) == wanted)
        .map(|(_, _, new)| *new)
}

/// Picks the highest installed version of `reference` that satisfies its requirement and can
/// be loaded by this host. `kind` restricts the search (as an experiment section does). Names
/// compare with `-` and `_` alike; an old name of a renamed component finds it under its new
/// name.
pub fn find_installed<'r>(
    registry: &'r Registry,
    compat: &HostCompat,
    kind: Option<ComponentKind>,
    reference: &PluginRef,
) -> Result<(&'r LibraryRecord, &'r ComponentRecord), ResolveError> {
    let of_kind: Vec<Installed<'r>> =
        registry.installed().filter(|i| kind.is_none() || i.declared.kind() == kind).collect();
    let named_as = |name: &str| -> Vec<Installed<'r>> {
        let wanted = normalized_name(name);
        of_kind.iter().filter(|i| normalized_name(&i.declared.name) == wanted).copied().collect()
    };
    let mut named = named_as(&reference.name);
    if let (true, Some(new)) = (named.is_empty(), renamed(kind, &reference.name)) {
        tracing::warn!("`{}` is deprecated: the plugin is now called `{new}`", reference.name);
        named = named_as(new);
    }
    // Without a kind, one name must mean one kind of plugin.
    let mut kinds: Vec<&str> = named.iter().map(|i| i.declared.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    if kinds.len() > 1 {
        return Err(ResolveError::Ambiguous { name: reference.name.clone(), kinds: kinds.join(", ") });
    }
    if named.is_empty() {
        let mut names: Vec<&str> = of_kind.iter().map(|i| i.declared.name.as_str()).collect();
        names.sort();
        names.dedup();
        return Err(ResolveError::Unknown {
            kind: kind_label(kind),
            name: reference.name.clone(),
            installed: if names.is_empty() { "none".into() } else { names.join(", ") },
        });
    }
    named.sort_by(|a, b| b.declared.version.cmp(&a.declared.version));
    let matching: Vec<Installed<'r>> =
        named.iter().filter(|i| reference.req.matches(&i.declared.version)).copied().collect();
    if matching.is_empty() {
        let versions: Vec<String> = named.iter().map(|i| i.declared.version.to_string()).collect();
        return Err(ResolveError::NoMatch {
            kind: kind_label(kind),
            name: reference.name.clone(),
            req: reference.req.to_string(),
            installed: versions.join(", "),
        });
    }
    let mut first_refusal = None;
    for installed in &matching {
        match (installed.status(registry, compat), installed.found) {
            (Status::Loadable, Some(found)) => return Ok(found),
            (status, _) => {
                first_refusal.get_or_insert((installed.declared, status));
            }
        }
    }
    let (declared, status) = first_refusal.expect("matching is not empty");
    Err(ResolveError::NotLoadable {
        kind: kind_label(kind),
        name: declared.name.clone(),
        version: declared.version.to_string(),
        req: reference.req.to_string(),
        status: status.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r: PluginRef = "mlp@^1.2".parse().unwrap();
        assert_eq!((r.name.as_str(), r.req.to_string().as_str()), ("mlp", "^1.2"));
        assert_eq!("mlp".parse::<PluginRef>().unwrap().req, VersionReq::STAR);
        let err = "mlp@banana".parse::<PluginRef>().unwrap_err().to_string();
        assert!(err.starts_with("`mlp@banana` is not a plugin reference:"), "{err}");
        assert!("@1".parse::<PluginRef>().is_err());
    }
}
