//! A sweep's trials: the grid's product, or random draws seeded from the sweep's seed.

use std::collections::BTreeMap;

use gymnos_plugin_api::rng::{derive_seed, SplitMix64};
use serde_json::{json, Value};

use super::format::{Parameter, SweepFile};

/// One trial: the value of each varied parameter.
pub type Assignment = BTreeMap<String, Value>;

/// Most trials a sweep may have.
pub const MAX_TRIALS: usize = 100_000;

/// A number as a person reads it: `1e308`, `0.001`, `5` (not 309 digits, nor `5.0`).
pub fn number(v: f64) -> String {
    if v == 0.0 || (1e-4..1e15).contains(&v.abs()) {
        v.to_string()
    } else {
        format!("{v:e}")
    }
}

/// The grid points of a grid parameter.
fn grid_values(parameter: &Parameter) -> Result<Vec<Value>, String> {
    match parameter {
        Parameter::Values(values) if values.is_empty() => Err("`values` is empty".into()),
        Parameter::Values(values) => Ok(values.clone()),
        &Parameter::Range([start, stop, step]) => {
            if !(step > 0.0 && step.is_finite() && start.is_finite() && stop.is_finite() && start <= stop) {
                let [start, stop, step] = [start, stop, step].map(number);
                return Err(format!("`range` [{start}, {stop}, {step}] needs start <= stop and a positive step"));
            }
            // Counted as a float: a span of 1e308 by 1e-308 has more points than any integer.
            let points = ((stop - start) / step + 1e-9).floor() + 1.0;
            if points.is_nan() || points > MAX_TRIALS as f64 {
                let [start, stop, step] = [start, stop, step].map(number);
                let points = number(points);
                return Err(format!("`range` [{start}, {stop}, {step}] has {points} points, more than {MAX_TRIALS}"));
            }
            let count = points as usize;
            // Whole numbers stay integers (`training.epochs` takes no 3.0), within f64's exact ones.
            let integral = [start, stop, step].iter().all(|v| v.fract() == 0.0 && v.abs() < 2f64.powi(53));
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
            Err(format!("`uniform` [{}, {}] needs low < high", number(low), number(high)))
        }
        Parameter::LogUniform([low, high]) if !(low > 0.0 && low < high && high.is_finite()) => {
            Err(format!("`log_uniform` [{}, {}] needs 0 < low < high", number(low), number(high)))
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
        // In [low, high): rounding may reach `high`, which is kept out.
        &Parameter::Uniform([low, high]) => json!((low + (high - low) * rng.next_f64()).clamp(low, high.next_down())),
        &Parameter::LogUniform([low, high]) => {
            json!((low.ln() + (high.ln() - low.ln()) * rng.next_f64()).exp().clamp(low, high.next_down()))
        }
        &Parameter::IntUniform([low, high]) => {
            let span = (high as i128 - low as i128 + 1) as u128;
            let offset = if span > u64::MAX as u128 { rng.next_u64() as u128 } else { rng.below(span as u64) as u128 };
            json!((low as i128 + offset as i128) as i64)
        }
    }
}

/// The values of a parameter at its edges, each with how a message names it: every listed
/// value, a range's first and last points, a random parameter's bounds. A uniform draw never
/// reaches its upper bound; [`Edge::below`] is the largest value it can take.
pub fn edges(parameter: &Parameter) -> Result<Vec<Edge>, String> {
    let edge = |label: String, value: Value| Edge { label, value, below: None };
    Ok(match parameter {
        Parameter::Values(_) => {
            let values = grid_values(parameter)?;
            let single = values.len() == 1;
            let mut seen: Vec<Value> = Vec::new();
            let mut edges = Vec::new();
            for (i, v) in values.into_iter().enumerate() {
                if seen.contains(&v) {
                    continue;
                }
                seen.push(v.clone());
                let label = if single { format!("value {v}") } else { format!("value {v} (values[{i}])") };
                edges.push(edge(label, v));
            }
            edges
        }
        Parameter::Range(_) => {
            let values = grid_values(parameter)?;
            let (Some(first), Some(last)) = (values.first().cloned(), values.last().cloned()) else {
                return Err("`range` has no point".into());
            };
            let mut edges = vec![edge(format!("the range's first point {first}"), first.clone())];
            if last != first {
                edges.push(edge(format!("the range's last point {last}"), last));
            }
            edges
        }
        &Parameter::Uniform([low, high]) | &Parameter::LogUniform([low, high]) => {
            check_random(parameter)?;
            let form = if matches!(parameter, Parameter::Uniform(_)) { "uniform" } else { "log_uniform" };
            vec![
                edge(format!("the lower bound {} of `{form}`", number(low)), json!(low)),
                Edge {
                    label: format!("the upper bound {} of `{form}`", number(high)),
                    value: json!(high),
                    below: Some(json!(high.next_down())),
                },
            ]
        }
        &Parameter::IntUniform([low, high]) => {
            check_random(parameter)?;
            let mut edges = vec![edge(format!("the lower bound {low} of `int_uniform`"), json!(low))];
            if high != low {
                edges.push(edge(format!("the upper bound {high} of `int_uniform`"), json!(high)));
            }
            edges
        }
    })
}

/// A value at a parameter's edge.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    /// How a message names it: `the upper bound 1e308 of `uniform``.
    pub label: String,
    pub value: Value,
    /// For a bound no draw reaches (a uniform draw's upper bound): the largest value a draw takes,
    /// which is what must be valid.
    pub below: Option<Value>,
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
    if let Some(trials) = sweep.trials.filter(|&t| t == 0 || t as usize > MAX_TRIALS) {
        return Err(("trials".into(), format!("{trials} is not between 1 and {MAX_TRIALS}")));
    }
    if sweep.parameters.values().any(Parameter::is_random) {
        let trials =
            sweep.trials.ok_or(("trials".to_string(), "random parameters need a number of trials".to_string()))?;
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
