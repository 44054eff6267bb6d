//! What a run records of its plugins: the resolved experiment, as `training_config.json`
//! holds it, which is itself a valid experiment file.

use super::{format::ResolvedLibrary, resolve::ResolvedExperiment};
use crate::registry::Registry;

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
