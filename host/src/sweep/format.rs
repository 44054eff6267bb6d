//! The sweep file: a base experiment, the parameters to vary (as `--set` paths), the metric to
//! optimise, and where the trials run.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `sweep.json`, as a user writes it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepFile {
    /// Names the sweep's folder: `<output_root>/<name>/`.
    pub name: String,
    /// The base experiment file, relative to the sweep file's folder.
    pub experiment: String,
    /// Where the sweep's folder goes, relative to the sweep file's folder (default: `sweeps/`
    /// in the current folder).
    #[serde(default)]
    pub output_root: Option<String>,
    /// Each varied field, by its `--set` path (`training.optimizer.lr`). (Each parameter's
    /// form is checked by `read`, which names the forms.)
    #[schemars(with = "BTreeMap<String, serde_json::Map<String, Value>>")]
    pub parameters: BTreeMap<String, Parameter>,
    /// Trials to draw when a parameter is random (the grid's product otherwise).
    #[serde(default)]
    pub trials: Option<u32>,
    /// Seeds the random draws.
    #[serde(default)]
    pub seed: u64,
    pub metric: Metric,
    #[serde(default)]
    pub executor: Executor,
    /// How many times a failed trial is tried again (on re-runs of the sweep too).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// Successive halving over epochs: stop the trials that fall behind early.
    #[serde(default)]
    pub early_stopping: Option<Halving>,
}

/// Successive halving: every trial trains `min_epochs` epochs; the best 1/`reduction_factor`
/// of them (by the metric, a per-epoch one) go on to `min_epochs × reduction_factor`, and so on
/// until the last epoch; the others stop there (`pruned`), paused and resumable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Halving {
    pub min_epochs: u32,
    #[serde(default = "default_reduction")]
    pub reduction_factor: u32,
}

fn default_reduction() -> u32 {
    3
}

impl Halving {
    /// The epochs at which trials are compared, below `epochs`: `min_epochs`, times the factor,
    /// and so on.
    pub fn rungs(&self, epochs: u32) -> Vec<u32> {
        let mut rungs = Vec::new();
        let mut rung = self.min_epochs.max(1);
        while rung < epochs {
            rungs.push(rung);
            rung = match rung.checked_mul(self.reduction_factor.max(2)) {
                Some(next) => next,
                None => break,
            };
        }
        rungs
    }

    /// How many of `n` trials go on past a rung.
    pub fn kept(&self, n: usize) -> usize {
        n.div_ceil(self.reduction_factor.max(2) as usize).max(1)
    }
}

fn default_retries() -> u32 {
    1
}

/// How one parameter varies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Parameter {
    /// Each of these values (a grid axis).
    Values(Vec<Value>),
    /// `[start, stop, step]`: start, start + step, ... up to stop included (a grid axis).
    Range([f64; 3]),
    /// A random number in `[low, high)`.
    Uniform([f64; 2]),
    /// A random number whose logarithm is uniform in `[ln low, ln high)` (learning rates).
    LogUniform([f64; 2]),
    /// A random integer in `[low, high]`.
    IntUniform([i64; 2]),
}

impl Parameter {
    /// Whether it is drawn at random (else it is a grid axis).
    pub fn is_random(&self) -> bool {
        matches!(self, Parameter::Uniform(_) | Parameter::LogUniform(_) | Parameter::IntUniform(_))
    }
}

/// What the sweep optimises: `test.<name>` (the test report's `accuracy`, `f1_macro`, `loss`,
/// `mse`, `mae`, `r2`) or a per-epoch metric (`val_loss`, `val_accuracy`...), whose best epoch
/// counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub name: String,
    pub direction: Direction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Min,
    Max,
}

impl Direction {
    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Min => a < b,
            Direction::Max => a > b,
        }
    }
}

/// Where the trials run.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Executor {
    /// On this machine, `parallel` trials at once (default: one per GPU, else one per two
    /// cores), each with `threads_per_trial` CPU threads and, with GPUs, one GPU per process.
    Local {
        #[serde(default)]
        parallel: Option<u32>,
        #[serde(default)]
        threads_per_trial: Option<u32>,
        /// Data-parallel processes per trial (`run --nproc-per-node`), sharing its threads.
        #[serde(default)]
        processes_per_trial: Option<u32>,
    },
    /// As one Slurm job array (`sbatch --array`), at most `parallel` tasks at once.
    Slurm {
        #[serde(default)]
        parallel: Option<u32>,
        #[serde(default)]
        threads_per_trial: Option<u32>,
        #[serde(default)]
        partition: Option<String>,
        /// Memory per task, as Slurm writes it (`4G`).
        #[serde(default)]
        memory: Option<String>,
        /// Time limit per task, as Slurm writes it (`01:00:00`).
        #[serde(default)]
        time_limit: Option<String>,
        /// GPUs per task (`--gres=gpu:N`).
        #[serde(default)]
        gpus_per_trial: Option<u32>,
        /// Data-parallel processes per trial: `--ntasks` of each array task, started by `srun`
        /// (`run --distributed`), each with `threads_per_trial` CPUs.
        #[serde(default)]
        processes_per_trial: Option<u32>,
        /// More `sbatch` arguments, as given.
        #[serde(default)]
        sbatch_args: Vec<String>,
    },
}

impl Default for Executor {
    fn default() -> Self {
        Executor::Local { parallel: None, threads_per_trial: None, processes_per_trial: None }
    }
}

/// Most attempts of a failed trial a sweep may ask for.
pub const MAX_RETRIES: u32 = 100;

/// Most CPU threads, processes or parallel trials a count of the executor may ask for.
const MAX_COUNT: u32 = 65_536;

impl SweepFile {
    /// The first of the sweep's own counts and bounds that is out of range, as (field, why):
    /// trials, retries, the executor's counts, successive halving, and the Slurm values written
    /// into the batch script.
    pub fn settings_problem(&self) -> Option<(String, String)> {
        let problem = |field: &str, message: String| Some((field.to_string(), message));
        if let Some(trials) = self.trials {
            if trials == 0 || trials as usize > super::trials::MAX_TRIALS {
                return problem("trials", format!("{trials} is not between 1 and {}", super::trials::MAX_TRIALS));
            }
        }
        if self.max_retries > MAX_RETRIES {
            return problem("max_retries", format!("{} is not between 0 and {MAX_RETRIES}", self.max_retries));
        }
        let counts: Vec<(&str, Option<u32>)> = match &self.executor {
            Executor::Local { parallel, threads_per_trial, processes_per_trial } => vec![
                ("parallel", *parallel),
                ("threads_per_trial", *threads_per_trial),
                ("processes_per_trial", *processes_per_trial),
            ],
            Executor::Slurm { parallel, threads_per_trial, processes_per_trial, .. } => vec![
                ("parallel", *parallel),
                ("threads_per_trial", *threads_per_trial),
                ("processes_per_trial", *processes_per_trial),
            ],
        };
        for (name, count) in counts {
            if let Some(n) = count.filter(|n| !(1..=MAX_COUNT).contains(n)) {
                return problem(&format!("executor.{name}"), format!("{n} is not between 1 and {MAX_COUNT}"));
            }
        }
        if let Executor::Slurm { partition, memory, time_limit, .. } = &self.executor {
            for (name, value) in [("partition", partition), ("memory", memory), ("time_limit", time_limit)] {
                let Some(value) = value else { continue };
                if value.trim().is_empty() || value.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return problem(
                        &format!("executor.{name}"),
                        format!("{value:?} is not a Slurm value (one word, without spaces or control characters)"),
                    );
                }
            }
        }
        if let Some(halving) = &self.early_stopping {
            if halving.min_epochs == 0 {
                return problem("early_stopping.min_epochs", "must be at least 1".into());
            }
            if halving.reduction_factor < 2 {
                return problem("early_stopping.reduction_factor", "must be at least 2".into());
            }
        }
        None
    }
}

/// The names of the forms a parameter takes, as a sweep file writes them.
pub const PARAMETER_FORMS: [&str; 5] = ["values", "range", "uniform", "log_uniform", "int_uniform"];
