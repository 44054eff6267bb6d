//! A sweep's trials: the grid's product, or random draws seeded from the sweep's seed.

use std::collections::BTreeMap;

use gymnos_plugin_api::rng::{derive_seed, SplitMix64};
use serde_json::{json, Value};

use super::format::{Parameter, SweepFile};

/// One trial: the value of each varied parameter.
pub type Assignment = BTreeMap<String, Value>;

/// Most trials a sweep may have.
pub const MAX_TRIALS: usize = 100_000;

/// The grid points of a grid parameter.
fn grid_values(parameter: &Parameter) -> Result<Vec<Value>, String> {
    match parameter {
        Parameter::Values(values) if values.is_empty() => Err("`values` is empty".into()),
        Parameter::Values(values) => Ok(values.clone()),
        &Parameter::Range([start, stop, step]) => {
            if !(step > 0.0 && step.is_finite() && start.is_finite() && stop.is_finite() && start <= stop) {
                return Err(format!("`range` [{start}, {stop}, {step}] needs start <= stop and a positive step"));
            }
            let count = ((stop - start) / step + 1e-9).floor() as usize + 1;
            if count > MAX_TRIALS {
                return Err(format!("`range` [{start}, {stop}, {step}] has {count} points"));
            }
            let integral = [start, stop, step].iter().all(|v| v.fract() == 0.0);
            Ok((0..count)
                .map(|i| start + step * i as f64)
                .map(|v| if integral { json!(v as i64) } else { json!(v) })
                .collect())
        }
        _ => unreachable!("grid parameters only"),
    }
}

fn check_random(parameter: &Parameter) -> Result<(), String> {
    match *parameter {
        Parameter::Uniform([low, high]) if !(low < high && low.is_finite() && high.is_finite()) => {
            Err(format!("`uniform` [{low}, {high}] needs low < high"))
        }
        Parameter::LogUniform([low, high]) if !(low > 0.0 && low < high && high.is_finite()) => {
            Err(format!("`log_uniform` [{low}, {high}] needs 0 < low < high"))
        }
        Parameter::IntUniform([low, high]) if low > high => {
            Err(format!("`int_uniform` [{low}, {high}] needs low <= high"))
        }
        _ => Ok(()),
    }
}

fn draw(parameter: &Parameter, rng: &mut SplitMix64) -> Value {
    match parameter {
        Parameter::Values(_) | Parameter::Range(_) => {
            let values = grid_values(parameter).expect("checked");
            values[rng.below(values.len() as u64) as usize].clone()
        }
        &Parameter::Uniform([low, high]) => json!(low + (high - low) * rng.next_f64()),
        &Parameter::LogUniform([low, high]) => json!((low.ln() + (high.ln() - low.ln()) * rng.next_f64()).exp()),
        &Parameter::IntUniform([low, high]) => {
            let span = (high as i128 - low as i128 + 1) as u128;
            let offset = if span > u64::MAX as u128 { rng.next_u64() as u128 } else { rng.below(span as u64) as u128 };
            json!((low as i128 + offset as i128) as i64)
        }
    }
}

/// The trials of `sweep`, in a fixed order: the grid's product (the last parameter, in name
/// order, varying fastest) when every parameter is a grid axis, else `trials` random draws,
/// each from its own seed derived from the sweep's seed and the trial's index.
pub fn expand(sweep: &SweepFile) -> Result<Vec<Assignment>, (String, String)> {
    let at = |name: &str| format!("parameters.{name}");
    for (name, parameter) in &sweep.parameters {
        match parameter.is_random() {
            true => check_random(parameter).map_err(|e| (at(name), e))?,
            false => drop(grid_values(parameter).map_err(|e| (at(name), e))?),
        }
    }
    if sweep.parameters.is_empty() {
        return Err(("parameters".into(), "no parameter to vary".into()));
    }
    if sweep.parameters.values().any(Parameter::is_random) {
        let trials =
            sweep.trials.ok_or(("trials".to_string(), "random parameters need a number of trials".to_string()))?;
        if trials == 0 || trials as usize > MAX_TRIALS {
            return Err(("trials".into(), format!("{trials} is not between 1 and {MAX_TRIALS}")));
        }
        return Ok((0..trials as u64)
            .map(|t| {
                let mut rng = SplitMix64::new(derive_seed(sweep.seed, "sweep", &[t]));
                sweep.parameters.iter().map(|(name, p)| (name.clone(), draw(p, &mut rng))).collect()
            })
            .collect());
    }
    let mut trials: Vec<Assignment> = vec![Assignment::new()];
    for (name, parameter) in &sweep.parameters {
        let values = grid_values(parameter).expect("checked above");
        if trials.len().saturating_mul(values.len()) > MAX_TRIALS {
            return Err(("parameters".into(), format!("the grid has more than {MAX_TRIALS} points")));
        }
        trials = trials
            .into_iter()
            .flat_map(|t| {
                values.iter().map(move |v| {
                    let mut t = t.clone();
                    t.insert(name.clone(), v.clone());
                    t
                })
            })
            .collect();
    }
    if let Some(limit) = sweep.trials {
        trials.truncate(limit as usize);
    }
    Ok(trials)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(parameters: serde_json::Value, trials: Option<u32>) -> SweepFile {
        serde_json::from_value(json!({
            "name": "s", "experiment": "e.json", "parameters": parameters, "trials": trials,
            "metric": { "name": "test.accuracy", "direction": "max" }
        }))
        .unwrap()
    }

    #[test]
    fn a_grid_is_the_product_of_its_axes_in_name_order() {
        let s = sweep(json!({ "b": { "values": [[16], [64]] }, "a": { "range": [1, 5, 2] } }), None);
        let trials = expand(&s).unwrap();
        let shown: Vec<String> = trials.iter().map(|t| format!("{}/{}", t["a"], t["b"])).collect();
        assert_eq!(shown, ["1/[16]", "1/[64]", "3/[16]", "3/[64]", "5/[16]", "5/[64]"]);
        let fractional = sweep(json!({ "lr": { "range": [0.1, 0.3, 0.1] } }), None);
        assert_eq!(expand(&fractional).unwrap().len(), 3);
    }

    #[test]
    fn random_draws_are_reproducible_and_in_range() {
        let s = sweep(
            json!({ "lr": { "log_uniform": [1e-4, 1e-1] }, "h": { "values": [8, 16] }, "n": { "int_uniform": [1, 3] } }),
            Some(50),
        );
        let a = expand(&s).unwrap();
        assert_eq!(a, expand(&s).unwrap());
        assert_eq!(a.len(), 50);
        for t in &a {
            let lr = t["lr"].as_f64().unwrap();
            assert!((1e-4..1e-1).contains(&lr), "{lr}");
            assert!([1, 2, 3].contains(&t["n"].as_i64().unwrap()));
        }
        assert!(a.iter().any(|t| t["h"] == 8) && a.iter().any(|t| t["h"] == 16));
        let mut other = s.clone();
        other.seed = 1;
        assert_ne!(a, expand(&other).unwrap());
    }

    #[test]
    fn bad_parameters_are_named() {
        let bad = |p: serde_json::Value, trials| expand(&sweep(p, trials)).unwrap_err();
        assert_eq!(bad(json!({ "x": { "values": [] } }), None), ("parameters.x".into(), "`values` is empty".into()));
        assert_eq!(bad(json!({ "x": { "uniform": [1, 0] } }), Some(2)).1, "`uniform` [1, 0] needs low < high");
        assert_eq!(bad(json!({ "x": { "uniform": [0, 1] } }), None).1, "random parameters need a number of trials");
        assert_eq!(
            bad(json!({ "x": { "range": [0, 1, 0] } }), None).1,
            "`range` [0, 1, 0] needs start <= stop and a positive step"
        );
    }
}
