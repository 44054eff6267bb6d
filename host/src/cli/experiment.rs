//! `validate` and `schema`: answered here, without libtorch (`validate --deep` is the engine's).

use std::path::Path;

use anyhow::Result;
use gymnos_host::{
    cli_args::ValidateArgs,
    experiment::{self, Experiment},
    outln,
    registry::Registry,
    HostCompat,
};
use serde_json::json;

use super::output::print_json;

pub fn validate(registry_path: &Path, args: &ValidateArgs) -> Result<()> {
    let registry = Registry::load(registry_path)?;
    let outcome = experiment::load(&args.file, &args.overrides)
        .and_then(|exp| experiment::validate(&args.file, &exp, &registry, &HostCompat::default()));
    match outcome {
        Ok(resolved) => {
            if args.json {
                print_json(&json!({ "valid": true, "resolved": resolved.experiment }));
            } else {
                outln!("{}: valid", args.file.display());
                for p in &resolved.plugins {
                    outln!("  {:<24} {} {}", p.path, p.label(), p.library.sha256.get(..12).unwrap_or(""));
                }
            }
            Ok(())
        }
        Err(experiment::ExperimentError::Invalid { problems, .. }) if args.json => {
            print_json(&json!({ "valid": false, "problems": problems }));
            anyhow::bail!("{}: {} problem(s)", args.file.display(), problems.len())
        }
        Err(e) => Err(e.into()),
    }
}

/// The experiment format as JSON Schema; the plugin sections' `config` gets, per installed
/// plugin, the schema of its keys (and of its JSON keys, such as a model's layer list).
pub fn schema(registry_path: &Path) -> Result<()> {
    let mut schema = serde_json::to_value(schemars::schema_for!(Experiment))?;
    if let Ok(registry) = Registry::load(registry_path) {
        experiment::add_plugin_schemas(&mut schema, &registry);
    }
    print_json(&schema);
    Ok(())
}
