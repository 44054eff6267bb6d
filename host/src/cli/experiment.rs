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
    if gymnos_host::sweep::is_sweep_file(&args.file) {
        return validate_sweep(&registry, args);
    }
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

/// A sweep file: every check `sweep` makes before a trial runs (its fields, its parameters'
/// edges against the experiment's rules, its metric, each trial's experiment), writing nothing.
fn validate_sweep(registry: &Registry, args: &ValidateArgs) -> Result<()> {
    if !args.overrides.is_empty() {
        anyhow::bail!("{}: a sweep file takes no --set (vary fields in its parameters)", args.file.display());
    }
    let checked = gymnos_host::sweep::check(&args.file, registry, &HostCompat::default())?;
    if args.json {
        print_json(&json!({ "valid": true, "sweep": checked }));
    } else {
        outln!(
            "{}: valid sweep: {} trials of {}, recorded in {}{}",
            args.file.display(),
            checked.trials,
            checked.experiment.display(),
            checked.dir.display(),
            match checked.finished {
                0 => String::new(),
                n => format!(" ({n} finished there)"),
            }
        );
    }
    Ok(())
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
