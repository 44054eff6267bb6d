//! `validate` and `schema`: answered here, without libtorch.

use std::path::Path;

use anyhow::Result;
use gymnos_host::{experiment, registry::Registry, HostCompat};

pub fn validate(registry_path: &Path, file: &Path, overrides: &[String], json: bool) -> Result<()> {
    let registry = Registry::load(registry_path)?;
    let outcome = experiment::load(file, overrides)
        .and_then(|(exp, _)| experiment::validate(file, &exp, &registry, &HostCompat::default()));
    match outcome {
        Ok(resolved) => {
            if json {
                super::output::print_json(&serde_json::json!({ "valid": true, "resolved": resolved.experiment }));
            } else {
                println!("{}: valid", file.display());
                for p in resolved.plugins() {
                    println!("  {:<24} {} {}", p.path, p.label(), p.library.sha256.get(..12).unwrap_or(""));
                }
            }
            Ok(())
        }
        Err(experiment::ExperimentError::Invalid { problems, .. }) if json => {
            super::output::print_json(&serde_json::json!({ "valid": false, "problems": problems }));
            anyhow::bail!("{}: {} problem(s)", file.display(), problems.len())
        }
        Err(e) => Err(e.into()),
    }
}

pub fn schema() {
    let schema = schemars::schema_for!(experiment::Experiment);
    super::output::print_json(&schema);
}
