//! Where each trial stands, read from its run folder, and the sweep's results file
//! (`<sweep folder>/sweep.json`).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    format::{Direction, Metric},
    trials::Assignment,
};
use crate::record::{self, RunStatus, RunSummary};

/// Where a trial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialStatus {
    /// Not started.
    Pending,
    /// Started and not ended (or ended without a word: its process was killed).
    Running,
    Completed,
    /// Stopped by Ctrl-C; resumed by the next run of the sweep.
    Interrupted,
    Failed,
    /// Stopped at a rung of successive halving, to be compared with the others.
    Paused,
    /// Stopped for good by successive halving: it fell behind at a rung.
    Pruned,
}

impl TrialStatus {
    pub fn name(self) -> &'static str {
        match self {
            TrialStatus::Pending => "pending",
            TrialStatus::Running => "running",
            TrialStatus::Completed => "completed",
            TrialStatus::Interrupted => "interrupted",
            TrialStatus::Failed => "failed",
            TrialStatus::Paused => "paused",
            TrialStatus::Pruned => "pruned",
        }
    }
}

/// One trial in the results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrialResult {
    pub trial: u32,
    pub parameters: Assignment,
    pub status: TrialStatus,
    /// Attempts that ended failed (a failed trial is retried up to the sweep's limit).
    pub failures: u32,
    #[serde(default)]
    pub run_dir: Option<PathBuf>,
    /// Epochs its run has completed.
    #[serde(default)]
    pub epochs: u32,
    #[serde(default)]
    pub metric: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
    /// The sha256 of what defines the trial: the base experiment with the trial's values set
    /// ([`super::definition::trial_fingerprint`]). A re-run of the sweep whose trial differs is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl TrialResult {
    /// A trial not started yet.
    pub fn pending(trial: u32, parameters: Assignment, fingerprint: Option<String>) -> Self {
        Self {
            trial,
            parameters,
            status: TrialStatus::Pending,
            failures: 0,
            run_dir: None,
            epochs: 0,
            metric: None,
            error: None,
            fingerprint,
        }
    }
}

/// The best trial so far.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BestTrial {
    pub trial: u32,
    pub metric: f64,
    pub run_dir: PathBuf,
}

/// `sweep.json` in the sweep's folder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SweepResults {
    pub name: String,
    /// The sweep file it was started from.
    pub sweep_file: PathBuf,
    pub metric: Metric,
    pub max_retries: u32,
    pub trials: Vec<TrialResult>,
    #[serde(default)]
    pub best: Option<BestTrial>,
    /// The rungs of successive halving already decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rungs_done: Vec<u32>,
    /// What the trials were made of (absent in sweeps started by gymnos-host before it was
    /// recorded): compared on each re-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<super::definition::Definition>,
}

pub const RESULTS: &str = "sweep.json";

/// The name of trial `i`'s experiment and run folder.
pub fn trial_name(i: u32) -> String {
    format!("trial-{i:04}")
}

/// The files of a sweep's folder.
#[derive(Clone, Debug)]
pub struct SweepDir(pub PathBuf);

impl SweepDir {
    pub fn results(&self) -> PathBuf {
        self.0.join(RESULTS)
    }
    /// The experiment file of trial `i`: the base experiment with the trial's values, resolved.
    pub fn experiment(&self, i: u32) -> PathBuf {
        self.0.join("trials").join(format!("{}.json", trial_name(i)))
    }
    /// The output root of every trial's runs.
    pub fn runs(&self) -> PathBuf {
        self.0.join("runs")
    }
    /// The log of trial `i`'s attempts (the output of `gymnos-host run`/`resume`).
    pub fn log(&self, i: u32) -> PathBuf {
        self.0.join("logs").join(format!("{}.log", trial_name(i)))
    }

    /// Trial `i`'s latest run folder, if it has one.
    pub fn latest_run(&self, i: u32) -> Option<PathBuf> {
        let executions = self.runs().join(trial_name(i)).join(record::EXECUTIONS);
        let mut runs: Vec<PathBuf> = std::fs::read_dir(executions).ok()?.filter_map(|e| Some(e.ok()?.path())).collect();
        runs.sort();
        runs.pop()
    }

    /// The last line of trial `i`'s log that says what went wrong.
    pub fn last_error(&self, i: u32) -> Option<String> {
        let text = std::fs::read_to_string(self.log(i)).ok()?;
        text.lines().rev().find(|l| l.starts_with("error: ")).map(|l| l["error: ".len()..].to_string())
    }
}

/// The value of `metric` in a run's record: `test.<name>` from the test report, else the best
/// epoch of the per-epoch metric of that name.
pub fn metric_of(summary: &RunSummary, metric: &Metric) -> Option<f64> {
    if let Some(name) = metric.name.strip_prefix("test.") {
        return summary.test.as_ref()?.get(name).filter(|v| v.is_finite());
    }
    let history = summary.history.get(&metric.name)?;
    history.iter().copied().filter(|v| v.is_finite()).reduce(|a, b| if metric.direction.better(b, a) { b } else { a })
}

/// A trial whose run cannot be read back: nothing of it counts. One that had finished or was
/// under way is pending again (failed and pruned ones stay so: retries and pruning decide).
fn forget(t: &mut TrialResult, why: String) {
    let again = !matches!(t.status, TrialStatus::Failed | TrialStatus::Pruned);
    if again {
        t.status = TrialStatus::Pending;
    }
    t.metric = None;
    t.epochs = 0;
    t.error = Some(if again { format!("{why}; it runs again") } else { why });
}

impl SweepResults {
    /// Reads every trial's state from its run folder (what happened since the last write).
    pub fn refresh(&mut self, dir: &SweepDir) {
        for i in 0..self.trials.len() {
            self.read_trial(dir, i);
        }
        self.update_best();
    }

    /// Reads one trial's state from its run folder (after an attempt of it: the others have not
    /// changed), and the best trial.
    pub fn refresh_trial(&mut self, dir: &SweepDir, trial: u32) {
        self.read_trial(dir, trial as usize);
        self.update_best();
    }

    /// A trial's state is what its latest run folder records, and nothing else: a trial
    /// whose folder is gone, or holds no readable record, counts as not run (it runs again).
    fn read_trial(&mut self, dir: &SweepDir, i: usize) {
        let metric = &self.metric;
        let t = &mut self.trials[i];
        let Some(run_dir) = dir.latest_run(t.trial) else {
            if let Some(gone) = t.run_dir.take() {
                forget(t, format!("its run folder {} is gone", gone.display()));
            }
            return;
        };
        match RunSummary::load(&run_dir) {
            Ok(summary) => {
                // Pruning is the sweep's decision; the run itself stays paused.
                if t.status != TrialStatus::Pruned {
                    t.status = match summary.status {
                        RunStatus::Completed => TrialStatus::Completed,
                        RunStatus::Failed => TrialStatus::Failed,
                        RunStatus::Interrupted | RunStatus::Preempted => TrialStatus::Interrupted,
                        RunStatus::Running => TrialStatus::Running,
                        RunStatus::Paused => TrialStatus::Paused,
                    };
                }
                t.epochs = summary.epochs_completed;
                t.metric = metric_of(&summary, metric);
                t.error = summary.error.clone();
                t.run_dir = Some(run_dir);
            }
            Err(e) => {
                t.run_dir = None;
                forget(t, format!("its run folder has no readable record ({e})"));
            }
        }
    }

    fn update_best(&mut self) {
        self.best = self
            .trials
            .iter()
            .filter(|t| t.status == TrialStatus::Completed)
            .filter_map(|t| Some((t, t.metric?, t.run_dir.clone()?)))
            .reduce(|a, b| if self.metric.direction.better(b.1, a.1) { b } else { a })
            .map(|(t, metric, run_dir)| BestTrial { trial: t.trial, metric, run_dir });
    }

    /// The trials best first: completed ones by their metric, then the others by number.
    pub fn ranked(&self) -> Vec<&TrialResult> {
        let mut ranked: Vec<&TrialResult> = self.trials.iter().collect();
        let direction = self.metric.direction;
        ranked.sort_by(|a, b| {
            let key = |t: &TrialResult| match (t.status, t.metric) {
                (TrialStatus::Completed, Some(m)) => Some(m),
                _ => None,
            };
            match (key(a), key(b)) {
                (Some(x), Some(y)) => match direction {
                    Direction::Max => y.total_cmp(&x),
                    Direction::Min => x.total_cmp(&y),
                }
                .then(a.trial.cmp(&b.trial)),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.trial.cmp(&b.trial),
            }
        });
        ranked
    }

    /// How many trials are in each state.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for t in &self.trials {
            *counts.entry(t.status.name()).or_default() += 1;
        }
        counts
    }

    pub fn load(path: &Path) -> Result<Self, record::RecordError> {
        let text = std::fs::read_to_string(path)
            .map_err(|cause| record::RecordError::Read { path: path.to_path_buf(), cause })?;
        serde_json::from_str(&text).map_err(|cause| record::RecordError::Parse { path: path.to_path_buf(), cause })
    }

    pub fn save(&self, dir: &SweepDir) -> Result<(), record::RecordError> {
        record::write_json(&dir.results(), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_per_epoch_metric_counts_at_its_best_epoch() {
        let mut summary = RunSummary::default();
        summary.history.insert("val_loss".into(), vec![0.9, 0.4, f64::NAN, 0.5]);
        let min = Metric { name: "val_loss".into(), direction: Direction::Min };
        let max = Metric { name: "val_loss".into(), direction: Direction::Max };
        assert_eq!(metric_of(&summary, &min), Some(0.4));
        assert_eq!(metric_of(&summary, &max), Some(0.9));
        assert_eq!(metric_of(&summary, &Metric { name: "test.accuracy".into(), direction: Direction::Max }), None);
    }

    fn completed_trial(dir: &SweepDir, trial: u32, val_loss: f64) -> TrialResult {
        let run = dir.runs().join(trial_name(trial)).join(record::EXECUTIONS).join("2026-01-01_00-00-00");
        std::fs::create_dir_all(&run).unwrap();
        let mut summary = RunSummary { status: RunStatus::Completed, epochs_completed: 1, ..RunSummary::default() };
        summary.history.insert("val_loss".into(), vec![val_loss]);
        std::fs::write(run.join(record::METRICS), serde_json::to_string(&summary).unwrap()).unwrap();
        TrialResult::pending(trial, Assignment::new(), None)
    }

    #[test]
    fn a_trial_whose_run_is_gone_or_unreadable_never_counts_as_completed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SweepDir(tmp.path().to_path_buf());
        let mut results = SweepResults {
            name: "s".into(),
            sweep_file: "s.json".into(),
            metric: Metric { name: "val_loss".into(), direction: Direction::Min },
            max_retries: 0,
            trials: vec![completed_trial(&dir, 0, 0.5), completed_trial(&dir, 1, 0.2), completed_trial(&dir, 2, 0.9)],
            best: None,
            rungs_done: Vec::new(),
            definition: None,
        };
        results.refresh(&dir);
        assert!(results.trials.iter().all(|t| t.status == TrialStatus::Completed));
        assert_eq!(results.best.as_ref().map(|b| b.trial), Some(1));

        std::fs::remove_dir_all(dir.runs().join(trial_name(1))).unwrap();
        let broken = results.trials[2].run_dir.clone().unwrap();
        std::fs::write(broken.join(record::METRICS), "{\"status\": \"completed\", \"epochs").unwrap();
        results.refresh(&dir);
        let t = &results.trials[1];
        assert_eq!((t.status, t.metric, t.run_dir.as_ref()), (TrialStatus::Pending, None, None));
        assert!(t.error.as_ref().unwrap().ends_with("is gone; it runs again"), "{:?}", t.error);
        let t = &results.trials[2];
        assert_eq!((t.status, t.metric, t.run_dir.as_ref()), (TrialStatus::Pending, None, None));
        assert!(t.error.as_ref().unwrap().starts_with("its run folder has no readable record"), "{:?}", t.error);
        assert_eq!(results.best.as_ref().map(|b| b.trial), Some(0), "the best is one that is still there");
        assert_eq!(results.ranked()[0].trial, 0);

        // A changed metric ranks again from the records.
        results.metric = Metric { name: "val_loss".into(), direction: Direction::Max };
        results.refresh(&dir);
        assert_eq!(results.best.as_ref().map(|b| (b.trial, b.metric)), Some((0, 0.5)));
    }
}
