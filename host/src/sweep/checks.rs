//! What a sweep's parameters may vary, checked before any trial runs: not a field the sweep
//! sets itself in every trial, not a field another parameter sets too, and no value at a
//! parameter's edges that breaks a rule of the experiment (the experiment's own validation
//! decides, whatever its rules are).

use std::path::Path;

use serde_json::Value;

use super::{
    format::SweepFile,
    state::{trial_name, SweepDir},
    trials::{edges, Assignment},
};
use crate::{
    compat::HostCompat,
    experiment::{self, ExperimentError, Problem, ResolvedExperiment},
    registry::Registry,
};

/// The fields the sweep sets in every trial's experiment, and what it sets them to.
pub const OWN_FIELDS: [(&str, &str); 2] = [
    ("experiment.name", "each trial's name, trial-NNNN"),
    ("experiment.output_root", "where the trial's runs go, the sweep folder's runs/"),
];

/// The `--set` overrides the sweep gives trial `trial`'s experiment besides its values: the
/// fields of [`OWN_FIELDS`].
pub fn own_overrides(trial: u32, dir: &SweepDir) -> Vec<String> {
    let values = [Value::String(trial_name(trial)), Value::String(dir.runs().to_string_lossy().into_owned())];
    OWN_FIELDS.iter().zip(values).map(|((field, _), value)| format!("{field}={value}")).collect()
}

/// `experiment` (a trial's experiment as JSON) without the fields the sweep sets itself, which
/// say where the sweep's folder is rather than what the trial is.
pub fn without_own_fields(mut experiment: Value) -> Value {
    for (field, _) in OWN_FIELDS {
        let path = segments(field);
        let (last, parents) = path.split_last().expect("a field");
        let parent = parents.iter().try_fold(&mut experiment, |node, key| node.get_mut(key.as_str()));
        if let Some(Value::Object(map)) = parent {
            map.remove(last);
        }
    }
    experiment
}

/// A trial's values as `--set` overrides.
pub fn value_overrides(assignment: &Assignment) -> Vec<String> {
    assignment.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// A `--set` path's segments, however it is written: `a.b[0].c`, `a.b.0.c`, ` a . b `.
fn segments(path: &str) -> Vec<String> {
    path.replace('[', ".").replace(']', "").split('.').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

/// Whether one path is the other or holds it.
fn related(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// The first parameter that varies a field the sweep sets itself, or a field another
/// parameter sets too, as (field, why).
pub fn dimension_problem(file: &SweepFile) -> Option<(String, String)> {
    let names: Vec<(&String, Vec<String>)> = file.parameters.keys().map(|n| (n, segments(n))).collect();
    for (name, path) in &names {
        let at = format!("parameters.{name}");
        if path.is_empty() {
            return Some((at, "names no field".into()));
        }
        for (own, what) in OWN_FIELDS {
            let own_path = segments(own);
            if !related(path, &own_path) {
                continue;
            }
            let message = if path.len() <= own_path.len() && path[..] != own_path[..] {
                format!(
                    "`{name}` holds `{own}`, which the sweep sets itself in every trial ({what}); vary the other \
                     fields of `{name}` one by one"
                )
            } else {
                format!(
                    "the sweep sets `{own}` itself in every trial ({what}), so the values here would never \
                     apply; vary another field"
                )
            };
            return Some((at, message));
        }
    }
    for (i, (a, path_a)) in names.iter().enumerate() {
        for (b, path_b) in &names[i + 1..] {
            if !related(path_a, path_b) {
                continue;
            }
            let (outer, inner) = if path_a.len() <= path_b.len() { (a, b) } else { (b, a) };
            let message = if path_a == path_b {
                format!("names the same field as `parameters.{outer}`; vary it once")
            } else {
                format!("overlaps `parameters.{outer}`, which sets `{inner}` too; vary one or the other")
            };
            return Some((format!("parameters.{inner}"), message));
        }
    }
    None
}

/// What one check of the base experiment with some overrides found.
pub enum Checked {
    /// The experiment as read (with the overrides), and resolved.
    Valid(Box<(experiment::Experiment, ResolvedExperiment)>),
    Problems(Vec<Problem>),
}

/// The validation a trial gets: read with its overrides, then settings and plugins. Problems
/// come back as a list; errors that are not about fields (an unreadable file, an override that
/// points at nothing) as the error.
pub fn check(
    base: &Path,
    overrides: &[String],
    registry: &Registry,
    compat: &HostCompat,
) -> Result<Checked, ExperimentError> {
    let problems = |e: ExperimentError| match e {
        ExperimentError::Invalid { problems, .. } => Ok(Checked::Problems(problems)),
        other => Err(other),
    };
    match experiment::load(base, overrides) {
        Ok(exp) => match experiment::validate(base, &exp, registry, compat) {
            Ok(resolved) => Ok(Checked::Valid(Box::new((exp, resolved)))),
            Err(e) => problems(e),
        },
        Err(e) => problems(e),
    }
}

/// A value at a parameter's edge the experiment refuses.
#[derive(Debug)]
pub enum EdgeProblem {
    /// The parameter's path points at nothing (or through a plain value).
    Path(String),
    /// `label`'s value breaks these rules of the experiment.
    Rules { label: String, problems: Vec<Problem> },
    /// Something not about the parameter (the base experiment cannot be read).
    Other(ExperimentError),
}

/// The problems `overrides` plus `name=value` brings that `known` (the context's own) does not.
fn brings(
    base: &Path,
    context: &[String],
    known: &[Problem],
    name: &str,
    value: &Value,
    registry: &Registry,
    compat: &HostCompat,
) -> Result<Vec<Problem>, EdgeProblem> {
    let mut overrides = context.to_vec();
    overrides.push(format!("{name}={value}"));
    match check(base, &overrides, registry, compat) {
        Ok(Checked::Valid(_)) => Ok(Vec::new()),
        Ok(Checked::Problems(problems)) => Ok(problems.into_iter().filter(|p| !known.contains(p)).collect()),
        Err(ExperimentError::Override { reason, assignment }) if assignment.starts_with(&format!("{name}=")) => {
            Err(EdgeProblem::Path(reason))
        }
        Err(e) => Err(EdgeProblem::Other(e)),
    }
}

/// Each parameter's edge values ([`edges`]: every listed value, a range's ends, a random
/// parameter's bounds) applied to the base experiment (with the sweep's own fields) and
/// validated as a trial is: the first edge value that brings a problem of its own, with the
/// parameter's name. A value refused only beside the base's value of another parameter (two
/// fields with a rule between them) is tried again beside the first trial's values, and passes
/// if it passes there.
pub fn check_edges(
    file: &SweepFile,
    base: &Path,
    own: &[String],
    first_trial: &Assignment,
    registry: &Registry,
    compat: &HostCompat,
) -> Result<(), (String, EdgeProblem)> {
    let known_of = |context: &[String]| -> Result<Vec<Problem>, EdgeProblem> {
        match check(base, context, registry, compat) {
            Ok(Checked::Valid(_)) => Ok(Vec::new()),
            Ok(Checked::Problems(problems)) => Ok(problems),
            Err(e) => Err(EdgeProblem::Other(e)),
        }
    };
    let at = |name: &str| format!("parameters.{name}");
    let base_known = known_of(own).map_err(|e| ("experiment".to_string(), e))?;
    for (name, parameter) in &file.parameters {
        let edges = edges(parameter).map_err(|message| (at(name), EdgeProblem::Path(message)))?;
        // The first trial's values of the other parameters.
        let mut beside: Vec<String> = own.to_vec();
        beside.extend(first_trial.iter().filter(|(k, _)| *k != name).map(|(k, v)| format!("{k}={v}")));
        let mut beside_known: Option<Vec<Problem>> = None;
        for edge in edges {
            let value = edge.below.as_ref().unwrap_or(&edge.value);
            let mut found =
                brings(base, own, &base_known, name, &edge.value, registry, compat).map_err(|e| (at(name), e))?;
            if !found.is_empty() && edge.below.is_some() {
                // A bound no draw reaches: what counts is the largest value drawn.
                if brings(base, own, &base_known, name, value, registry, compat).map_err(|e| (at(name), e))?.is_empty()
                {
                    found.clear();
                }
            }
            if !found.is_empty() && file.parameters.len() > 1 {
                let known = match &beside_known {
                    Some(known) => known,
                    None => beside_known.insert(known_of(&beside).map_err(|e| (at(name), e))?),
                };
                if brings(base, &beside, known, name, value, registry, compat).map_err(|e| (at(name), e))?.is_empty() {
                    found.clear();
                }
            }
            if !found.is_empty() {
                return Err((at(name), EdgeProblem::Rules { label: edge.label, problems: found }));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn file(parameters: Value) -> SweepFile {
        serde_json::from_value(json!({
            "name": "s", "experiment": "e.json", "parameters": parameters,
            "metric": { "name": "val_loss", "direction": "min" }
        }))
        .unwrap()
    }

    #[test]
    fn the_sweeps_own_fields_and_overlapping_parameters_are_refused() {
        let problem = |p: Value| dimension_problem(&file(p));
        assert_eq!(
            problem(json!({ "training.optimizer.lr": { "values": [1] }, "experiment.seed": { "values": [1] } })),
            None
        );
        let (field, message) = problem(json!({ "experiment.name": { "values": ["a", "b"] } })).unwrap();
        assert_eq!(field, "parameters.experiment.name");
        assert_eq!(
            message,
            "the sweep sets `experiment.name` itself in every trial (each trial's name, trial-NNNN), so the values \
             here would never apply; vary another field"
        );
        let (field, message) = problem(json!({ " experiment . output_root ": { "values": ["/x"] } })).unwrap();
        assert_eq!(field, "parameters. experiment . output_root ");
        assert!(message.starts_with("the sweep sets `experiment.output_root` itself"), "{message}");
        let (_, message) = problem(json!({ "experiment": { "values": [{ "name": "x" }] } })).unwrap();
        assert!(message.starts_with("`experiment` holds `experiment.name`"), "{message}");
        let (field, message) =
            problem(json!({ "training.optimizer": { "values": [{ "name": "sgd", "lr": 0.1 }] }, "training.optimizer.lr": { "values": [1] } }))
                .unwrap();
        assert_eq!(
            (field.as_str(), message.as_str()),
            ("parameters.training.optimizer.lr", "overlaps `parameters.training.optimizer`, which sets `training.optimizer.lr` too; vary one or the other")
        );
        let (field, message) = problem(
            json!({ "preprocessors.0.config.x": { "values": [1] }, "preprocessors[0].config.x": { "values": [2] } }),
        )
        .unwrap();
        assert_eq!(field, "parameters.preprocessors[0].config.x");
        assert_eq!(message, "names the same field as `parameters.preprocessors.0.config.x`; vary it once");
    }

    /// A base experiment whose settings are valid (its plugins are not installed in the empty
    /// registry of these tests: those problems belong to every context alike).
    fn base(dir: &Path) -> std::path::PathBuf {
        let base = dir.join("base.json");
        let experiment = json!({
            "experiment": { "name": "b", "seed": 1, "output_root": "runs" },
            "dataset": { "plugin": "csv", "split": { "train": 0.6, "val": 0.2, "test": 0.2 } },
            "model": { "plugin": "mlp" },
            "training": { "epochs": 2, "batch_size": 8, "optimizer": { "name": "sgd", "lr": 0.1, "momentum": 0.5 } }
        });
        std::fs::write(&base, experiment.to_string()).unwrap();
        base
    }

    /// The problems `overrides` bring to the base that it does not have alone.
    fn brought(base: &Path, own: &[String], overrides: &[String], registry: &Registry) -> Vec<Problem> {
        let compat = HostCompat::default();
        let problems = |o: &[String]| match check(base, o, registry, &compat) {
            Ok(Checked::Valid(_)) => Vec::new(),
            Ok(Checked::Problems(p)) => p,
            Err(e) => vec![Problem { path: "$".into(), message: e.to_string() }],
        };
        let known = problems(own);
        let mut all = own.to_vec();
        all.extend_from_slice(overrides);
        problems(&all).into_iter().filter(|p| !known.contains(p)).collect()
    }

    #[test]
    fn an_edge_that_breaks_a_rule_is_refused_naming_the_parameter_and_the_rule() {
        let tmp = tempfile::tempdir().unwrap();
        let base = base(tmp.path());
        let registry = Registry::empty(&tmp.path().join("registry.json"));
        let dir = SweepDir(tmp.path().join("sweeps/s"));
        let own = own_overrides(0, &dir);
        let edges_of = |parameters: Value| {
            let mut f = file(parameters);
            f.trials = Some(4);
            let first = super::super::expand(&f).unwrap().remove(0);
            check_edges(&f, &base, &own, &first, &registry, &HostCompat::default())
        };
        // [0.5, 1) never draws 1: accepted; a range that reaches 1 is not.
        assert!(edges_of(json!({ "training.optimizer.momentum": { "uniform": [0.5, 1.0] } })).is_ok());
        let (field, problem) =
            edges_of(json!({ "training.optimizer.momentum": { "range": [0, 1, 0.5] } })).unwrap_err();
        assert_eq!(field, "parameters.training.optimizer.momentum");
        let EdgeProblem::Rules { label, problems } = problem else { panic!("{problem:?}") };
        assert_eq!(label, "the range's last point 1.0");
        assert_eq!(
            problems,
            [Problem { path: "training.optimizer.momentum".into(), message: "1 is not in [0, 1)".into() }]
        );
        let (_, problem) = edges_of(json!({ "training.optimizr.lr": { "values": [0.1] } })).unwrap_err();
        assert!(
            matches!(&problem, EdgeProblem::Path(m) if m.starts_with("`training.optimizr` points at nothing")),
            "{problem:?}"
        );
        // Two fields with a rule between them: min_lr < lr holds beside the first trial's lr.
        let coupled = json!({
            "training.lr_schedule": { "values": [{ "name": "cosine", "min_lr": 0.5 }] },
            "training.optimizer.lr": { "values": [1.0, 2.0] }
        });
        assert!(edges_of(coupled).is_ok());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        /// Whatever the space of a field with rules, it is refused before any trial runs when
        /// one of its edge values breaks a rule, and when it is accepted every trial drawn
        /// from it keeps the rules.
        #[test]
        fn a_space_is_refused_at_its_edges_or_all_its_trials_are_valid(
            field in proptest::sample::select(vec!["training.epochs", "training.batch_size", "training.optimizer.momentum", "training.optimizer.lr", "training.grad_clip_norm"]),
            form in 0..4u8,
            a in -2.0f64..3.0,
            b in -2.0f64..3.0,
            big in proptest::prelude::any::<bool>(),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let base = base(tmp.path());
            let registry = Registry::empty(&tmp.path().join("registry.json"));
            let dir = SweepDir(tmp.path().join("sweeps/s"));
            let own = own_overrides(0, &dir);
            let (low, high) = (a.min(b), a.max(b) + if big { 1e300 } else { 0.5 });
            let parameter = match form {
                0 => json!({ "uniform": [low, high] }),
                1 => json!({ "values": [low.round(), high.round()] }),
                2 => json!({ "int_uniform": [low.round() as i64, high.min(1e6).round() as i64] }),
                _ => json!({ "range": [low.round(), high.min(50.0).round(), 1] }),
            };
            let mut f = file(json!({ field: parameter }));
            f.trials = Some(8);
            let trials = super::super::expand(&f).unwrap();
            let outcome = check_edges(&f, &base, &own, &trials[0], &registry, &HostCompat::default());
            match outcome {
                Ok(()) => for trial in &trials {
                    let problems = brought(&base, &own, &value_overrides(trial), &registry);
                    proptest::prop_assert!(problems.is_empty(), "{trial:?} accepted, but: {problems:?}");
                },
                Err((at, _)) => proptest::prop_assert_eq!(at, format!("parameters.{field}")),
            }
        }
    }

    #[test]
    fn own_overrides_set_the_own_fields() {
        let dir = SweepDir("/s/x".into());
        assert_eq!(own_overrides(3, &dir), ["experiment.name=\"trial-0003\"", "experiment.output_root=\"/s/x/runs\""]);
    }
}
