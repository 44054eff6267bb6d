//! Resolving an experiment's plugin sections against the registry: each reference to one
//! installed component, each configuration checked against the component's declared keys and
//! rules, completed with defaults, its `path` keys made absolute.

use std::path::{Path, PathBuf};

use gymnos_plugin_api::{
    config::{check_constraints, resolve_config},
    ComponentKind, ConfigType,
};
use serde_json::Value;

use super::{
    format::{ResolvedLibrary, SectionRef},
    shape::Shape,
    Experiment, Problem,
};
use crate::{
    compat::HostCompat,
    plugin_ref::{find_installed, PluginRef},
    registry::{LibraryRecord, Registry},
};

/// A plugin reference resolved to one installed library, with its configuration completed
/// with defaults.
#[derive(Clone, Debug)]
pub struct ResolvedPlugin {
    /// Where it appears in the experiment (`model`, `preprocessors[1]`...).
    pub path: String,
    pub kind: ComponentKind,
    pub name: String,
    pub version: semver::Version,
    pub library: LibraryRecord,
    pub config: Value,
}

impl ResolvedPlugin {
    /// `model `mlp@1.0.0``, for messages.
    pub fn label(&self) -> String {
        format!("{} `{}@{}`", self.kind, self.name, self.version)
    }
}

/// An experiment whose plugins are all resolved; `experiment` is what `training_config.json`
/// records (exact versions, library hashes, completed configurations).
#[derive(Clone, Debug)]
pub struct ResolvedExperiment {
    pub experiment: Experiment,
    /// Every plugin, in pipeline order (as [`Experiment::plugin_sections`]).
    pub plugins: Vec<ResolvedPlugin>,
    /// The folder relative paths of the experiment were resolved against.
    pub base_dir: PathBuf,
}

impl ResolvedExperiment {
    pub fn of_kind(&self, kind: ComponentKind) -> impl Iterator<Item = &ResolvedPlugin> {
        self.plugins.iter().filter(move |p| p.kind == kind)
    }

    pub fn dataset(&self) -> &ResolvedPlugin {
        self.of_kind(ComponentKind::Dataset).next().expect("an experiment has a dataset")
    }

    pub fn model(&self) -> &ResolvedPlugin {
        self.of_kind(ComponentKind::Model).next().expect("an experiment has a model")
    }
}

impl ResolvedExperiment {
    /// Writes the exact versions (`mlp@=1.0.0`), library paths (absolute) and hashes, and the
    /// completed configurations into `experiment`.
    pub(super) fn record_resolution(&mut self, registry: &Registry) {
        let sections = self.experiment.plugin_sections_mut();
        for (section, plugin) in sections.into_iter().zip(&self.plugins) {
            let resolved = ResolvedLibrary {
                version: plugin.version.to_string(),
                library: registry.resolve(&plugin.library.path).display().to_string(),
                sha256: plugin.library.sha256.clone(),
                package: format!("{} {}", plugin.library.package, plugin.library.package_version),
                api_version: plugin.library.api_version.clone(),
            };
            section.record(format!("{}@={}", plugin.name, plugin.version), plugin.config.clone(), resolved);
        }
    }
}

/// What every plugin section is resolved with.
pub struct Resolver<'a> {
    pub registry: &'a Registry,
    pub compat: &'a HostCompat,
    /// Relative `path` values are relative to this folder (the experiment file's).
    pub base_dir: &'a Path,
}

impl Resolver<'_> {
    /// Resolves every plugin of `exp`, or reports every problem.
    pub fn resolve_all(&self, exp: &Experiment) -> Result<ResolvedExperiment, Vec<Problem>> {
        let mut problems = Vec::new();
        let plugins: Vec<Option<ResolvedPlugin>> =
            exp.plugin_sections().iter().map(|section| self.resolve_section(section, &mut problems)).collect();
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut resolved = ResolvedExperiment {
            experiment: exp.clone(),
            plugins: plugins.into_iter().map(|p| p.expect("no problems")).collect(),
            base_dir: self.base_dir.to_path_buf(),
        };
        resolved.record_resolution(self.registry);
        Ok(resolved)
    }

    /// Resolves one plugin section and checks its configuration.
    pub fn resolve_section(&self, section: &SectionRef<'_>, problems: &mut Vec<Problem>) -> Option<ResolvedPlugin> {
        let (reference, config, recorded) = section.section.spec();
        let at = |suffix: &str| format!("{}.{suffix}", section.path);
        let mut fail = |path: String, message: String| {
            problems.push(Problem { path, message });
            None
        };
        let reference: PluginRef = match reference.parse() {
            Ok(r) => r,
            Err(e) => return fail(at("plugin"), e.to_string()),
        };
        let (library, component) = match find_installed(self.registry, self.compat, Some(section.kind), &reference) {
            Ok(found) => found,
            Err(e) => return fail(at("plugin"), e.to_string()),
        };
        if let Some(recorded) = recorded.filter(|r| r.sha256 != library.sha256) {
            return fail(
                at("plugin"),
                format!(
                    "`{}@{}` is installed from another build (sha256 {}) than the one recorded ({}); reinstall the recorded build",
                    component.name, component.version, library.sha256, recorded.sha256
                ),
            );
        }
        let config_at = |key: &str| if key.is_empty() { at("config") } else { at(&format!("config.{key}")) };
        let mut completed = match resolve_config(&component.config_keys(), config) {
            Ok(completed) => completed,
            Err(config_problems) => {
                for p in config_problems {
                    problems.push(Problem {
                        path: config_at(&p.key),
                        message: format!("{} ({})", p.message, component.name),
                    });
                }
                return None;
            }
        };
        // Relative paths are relative to the experiment file; the record keeps them absolute so
        // that resume and predict work from any folder.
        for key in component.config.iter().filter(|k| k.ty == ConfigType::Path.as_str()) {
            if let Some(Value::String(p)) = completed.get_mut(&key.name) {
                if Path::new(p.as_str()).is_relative() {
                    let joined = self.base_dir.join(p.as_str());
                    *p = joined.canonicalize().unwrap_or(joined).to_string_lossy().into_owned();
                }
            }
        }
        // `json` keys against the JSON Schemas their plugin declares (a model's layer list).
        let before = problems.len();
        for key in &component.config {
            let (Some(schema), Some(value)) = (&key.schema, completed.get(&key.name)) else { continue };
            if value.is_null() {
                continue;
            }
            for p in Shape::from_schema(schema.clone()).check_at(value, &config_at(&key.name)) {
                problems.push(Problem { path: p.path, message: format!("{} ({})", p.message, component.name) });
            }
        }
        if problems.len() > before {
            return None;
        }
        let violations = check_constraints(&completed, &component.key_rules());
        if !violations.is_empty() {
            for v in violations {
                problems
                    .push(Problem { path: config_at(&v.key), message: format!("{} ({})", v.message, component.name) });
            }
            return None;
        }
        Some(ResolvedPlugin {
            path: section.path.clone(),
            kind: section.kind,
            name: component.name.clone(),
            version: component.version.clone(),
            library: library.clone(),
            config: Value::Object(completed),
        })
    }
}
