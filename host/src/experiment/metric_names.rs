//! The metric names a run records, by what the host can tell of its task before anything runs,
//! and the check of a name an experiment or a sweep refers to (a callback's `monitor`, a
//! sweep's `metric.name`) against them, with a suggestion for a misspelt one.
//!
//! What the engine records (its trainer and `EvaluationReport::headline`): every epoch
//! `train_loss`, `lr`, `epoch_seconds`, `train_samples_per_second`, `data_wait_seconds`, and for
//! classification `train_accuracy`; with a validation split `val_` and each headline number of
//! the task (classification: loss, accuracy, f1_macro; regression: loss, mse, mae, r2); at the
//! end `test.` and the same headline numbers.

use gymnos_plugin_api::ComponentKind;

use super::{resolve::ResolvedExperiment, Experiment, Loss};

/// The learning task of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    Classification,
    Regression,
}

impl TaskKind {
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Classification => "classification",
            TaskKind::Regression => "regression",
        }
    }

    fn other(self) -> TaskKind {
        match self {
            TaskKind::Classification => TaskKind::Regression,
            TaskKind::Regression => TaskKind::Classification,
        }
    }

    /// The numbers of an evaluation report (`val_<name>`, `test.<name>`).
    pub fn headline(self) -> &'static [&'static str] {
        match self {
            TaskKind::Classification => &["loss", "accuracy", "f1_macro"],
            TaskKind::Regression => &["loss", "mse", "mae", "r2"],
        }
    }
}

/// Per-epoch numbers every run records, whatever its task.
const ALWAYS: [&str; 5] = ["train_loss", "lr", "epoch_seconds", "train_samples_per_second", "data_wait_seconds"];

/// Of the per-epoch numbers, those that say how well the model does (what callbacks watch);
/// the others are the schedule and timings.
fn is_quality(name: &str) -> bool {
    name == "train_loss" || name == "train_accuracy" || name.starts_with("val_")
}

/// What the runs of an experiment will record, as far as the host can tell without loading a
/// plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Produced {
    /// `None`: the task cannot be told before the data set loads (a plugin of another package
    /// without a `task` key and `training.loss` auto): names of either task are accepted.
    pub task: Option<TaskKind>,
    /// Where the task was read from (`dataset.config.task`...), for messages.
    pub task_from: String,
    /// Whether there is a validation split (`dataset.split.val` above 0).
    pub validation: bool,
}

impl Produced {
    /// The task of `exp`: the data set's `task` key (with its default, when resolved), else a
    /// built-in data set without that key (`idx`, `image-folder`: classification), else an
    /// explicit `training.loss` (cross_entropy: classification; mse, l1: regression).
    pub fn of(exp: &Experiment, resolved: Option<&ResolvedExperiment>) -> Produced {
        let validation = exp.dataset.split.val > 0.0;
        let dataset = resolved.and_then(|r| r.of_kind(ComponentKind::Dataset).next());
        let config = dataset.map_or(&exp.dataset.config, |d| &d.config);
        let from_key = match config.get("task").and_then(|t| t.as_str()) {
            Some("classification") => Some(TaskKind::Classification),
            Some("regression") => Some(TaskKind::Regression),
            _ => None,
        };
        let (task, task_from) = if let Some(task) = from_key {
            let given = exp.dataset.config.get("task").is_some();
            (Some(task), if given { "dataset.config.task" } else { "dataset.config.task's default" }.to_string())
        } else if let Some(d) = dataset.filter(|d| {
            crate::builtin::PACKAGES.contains(&d.library.package.as_str()) && d.config.get("task").is_none()
        }) {
            (Some(TaskKind::Classification), format!("data set `{}`", d.name))
        } else {
            match exp.training.loss {
                Loss::CrossEntropy => (Some(TaskKind::Classification), "training.loss `cross_entropy`".to_string()),
                Loss::Mse => (Some(TaskKind::Regression), "training.loss `mse`".to_string()),
                Loss::L1 => (Some(TaskKind::Regression), "training.loss `l1`".to_string()),
                Loss::Auto => (None, String::new()),
            }
        };
        Produced { task, task_from, validation }
    }

    fn tasks(&self) -> Vec<TaskKind> {
        match self.task {
            Some(task) => vec![task],
            None => vec![TaskKind::Classification, TaskKind::Regression],
        }
    }

    /// Every per-epoch number of the task (with or without a validation split), in the order
    /// a person reads them.
    pub fn epoch_metrics(&self) -> Vec<String> {
        let mut names: Vec<String> = vec!["train_loss".into()];
        if self.tasks().contains(&TaskKind::Classification) {
            names.push("train_accuracy".into());
        }
        if self.validation {
            for task in self.tasks() {
                for h in task.headline() {
                    let name = format!("val_{h}");
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        names.extend(ALWAYS[1..].iter().map(|s| s.to_string()));
        names
    }

    /// The test report's numbers, as a sweep names them (`test.accuracy`).
    pub fn test_metrics(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for task in self.tasks() {
            for h in task.headline() {
                let name = format!("test.{h}");
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// What a callback may watch: the per-epoch numbers of the model's quality.
    pub fn monitorable(&self) -> Vec<String> {
        self.epoch_metrics().into_iter().filter(|n| is_quality(n)).collect()
    }

    /// Why `monitor` cannot be watched by a callback, if it cannot.
    pub fn monitor_problem(&self, monitor: &str) -> Option<String> {
        let allowed = self.monitorable();
        if allowed.iter().any(|m| m == monitor) {
            return None;
        }
        let listed = format!("one of {}", allowed.join(", "));
        Some(self.why_not(monitor, &allowed).unwrap_or_else(|| {
            if ALWAYS.contains(&monitor) {
                format!("`{monitor}` is not a measure of the model that callbacks can watch; {listed}")
            } else {
                unknown(monitor, &allowed, &listed)
            }
        }))
    }

    /// Why a sweep cannot rank trials by `name` (a per-epoch number, at its best epoch, or
    /// `test.<name>`), if it cannot.
    pub fn sweep_metric_problem(&self, name: &str) -> Option<String> {
        let mut allowed = self.epoch_metrics();
        allowed.extend(self.test_metrics());
        if allowed.iter().any(|m| m == name) {
            return None;
        }
        if name.is_empty() {
            return Some("the metric name is empty".into());
        }
        let listed =
            format!("per epoch: {}; at the end: {}", self.epoch_metrics().join(", "), self.test_metrics().join(", "));
        Some(self.why_not(name, &allowed).unwrap_or_else(|| unknown(name, &allowed, &listed)))
    }

    /// A name the runs would record in other circumstances: the other task's, or a
    /// validation number without a validation split.
    fn why_not(&self, name: &str, allowed: &[String]) -> Option<String> {
        let (prefix, number) = split_metric(name)?;
        if let Some(task) = self.task {
            let other = task.other();
            let other_tasks =
                (prefix != "train_" && other.headline().contains(&number) && !task.headline().contains(&number))
                    || (name == "train_accuracy" && task == TaskKind::Regression);
            if other_tasks {
                let ours: Vec<&str> = allowed.iter().map(String::as_str).filter(|m| m.starts_with(prefix)).collect();
                return Some(format!(
                    "`{name}` is recorded for {} only; this experiment is {} ({}), whose runs record {}",
                    other.name(),
                    task.name(),
                    self.task_from,
                    if ours.is_empty() { allowed.join(", ") } else { ours.join(", ") }
                ));
            }
        }
        let any_task =
            TaskKind::Classification.headline().contains(&number) || TaskKind::Regression.headline().contains(&number);
        if prefix == "val_" && !self.validation && any_task {
            return Some(format!("`{name}` needs a validation split, but dataset.split.val is 0"));
        }
        None
    }
}

/// `val_` / `test.` / `train_` and the number's name, for a name of that form.
fn split_metric(name: &str) -> Option<(&'static str, &str)> {
    ["val_", "test.", "train_"].into_iter().find_map(|p| name.strip_prefix(p).map(|rest| (p, rest)))
}

fn unknown(name: &str, allowed: &[String], listed: &str) -> String {
    match suggest(name, allowed.iter().map(String::as_str)) {
        Some(near) => format!("`{name}` is not a metric the runs record; did you mean `{near}`? ({listed})"),
        None => format!("`{name}` is not a metric the runs record ({listed})"),
    }
}

/// Levenshtein distance between `a` and `b`, in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The candidate `word` most likely meant: the nearest by edit distance when it is near (a
/// third of the word, at least 2 edits), else one that starts with it or ends with it after a
/// separator (`acc` → `val_accuracy`... only when just one does).
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let lower = word.to_lowercase();
    let limit = (lower.chars().count() / 3).max(2);
    let nearest = candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    if nearest.is_some() || lower.chars().count() < 3 {
        return nearest;
    }
    let mut partial = candidates.iter().filter(|c| {
        let c = c.to_lowercase();
        c.starts_with(&lower) || c.ends_with(&format!("_{lower}")) || c.ends_with(&format!(".{lower}"))
    });
    match (partial.next(), partial.next()) {
        (Some(only), None) => Some(*only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn produced(task: Option<TaskKind>, validation: bool) -> Produced {
        Produced { task, task_from: "dataset.config.task".into(), validation }
    }

    #[test]
    fn each_task_records_its_own_numbers() {
        let c = produced(Some(TaskKind::Classification), true);
        assert_eq!(
            c.monitorable(),
            ["train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_f1_macro"].map(String::from)
        );
        assert_eq!(c.test_metrics(), ["test.loss", "test.accuracy", "test.f1_macro"].map(String::from));
        let r = produced(Some(TaskKind::Regression), false);
        assert_eq!(r.monitorable(), ["train_loss"].map(String::from));
        assert_eq!(r.test_metrics(), ["test.loss", "test.mse", "test.mae", "test.r2"].map(String::from));
        let unknown = produced(None, true);
        assert!(unknown.monitorable().contains(&"val_r2".to_string()));
        assert!(unknown.monitorable().contains(&"val_accuracy".to_string()));
        assert_eq!(unknown.monitorable().iter().filter(|m| *m == "val_loss").count(), 1);
    }

    #[test]
    fn a_name_of_the_other_task_a_typo_and_a_missing_split_are_told_apart() {
        let c = produced(Some(TaskKind::Classification), true);
        assert_eq!(
            c.monitor_problem("val_r2").unwrap(),
            "`val_r2` is recorded for regression only; this experiment is classification (dataset.config.task), \
             whose runs record val_loss, val_accuracy, val_f1_macro"
        );
        assert_eq!(
            c.sweep_metric_problem("val_los").unwrap(),
            "`val_los` is not a metric the runs record; did you mean `val_loss`? (per epoch: train_loss, \
             train_accuracy, val_loss, val_accuracy, val_f1_macro, lr, epoch_seconds, train_samples_per_second, \
             data_wait_seconds; at the end: test.loss, test.accuracy, test.f1_macro)"
        );
        assert!(c.sweep_metric_problem("test.acuracy").unwrap().contains("did you mean `test.accuracy`?"));
        assert!(c.sweep_metric_problem("test.mse").unwrap().starts_with("`test.mse` is recorded for regression only"));
        assert_eq!(c.sweep_metric_problem("lr"), None);
        assert!(c.monitor_problem("lr").unwrap().starts_with("`lr` is not a measure of the model"));
        let no_val = produced(Some(TaskKind::Classification), false);
        assert_eq!(
            no_val.monitor_problem("val_loss").unwrap(),
            "`val_loss` needs a validation split, but dataset.split.val is 0"
        );
        let r = produced(Some(TaskKind::Regression), true);
        assert!(r
            .monitor_problem("train_accuracy")
            .unwrap()
            .starts_with("`train_accuracy` is recorded for classification only"));
        assert_eq!(r.monitor_problem("val_r2"), None);
        assert_eq!(produced(None, true).monitor_problem("val_r2"), None);
        assert!(produced(None, true).monitor_problem("val_acuracy").unwrap().contains("did you mean `val_accuracy`?"));
    }

    #[test]
    fn suggestions() {
        let names = ["val_loss", "val_accuracy", "test.accuracy", "train_loss"];
        assert_eq!(suggest("val_los", names), Some("val_loss"));
        assert_eq!(suggest("VAL_LOSS", names), Some("val_loss"));
        assert_eq!(suggest("val_acc", names), Some("val_accuracy"));
        assert_eq!(suggest("accuracy", names), None, "two end with it");
        assert_eq!(suggest("zzz", names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    proptest! {
        /// Every name one edit away from a recorded one (and not itself recorded) is refused
        /// with a suggestion; every recorded name is accepted.
        #[test]
        fn one_edit_from_a_recorded_name_is_caught(
            task in prop_oneof![Just(Some(TaskKind::Classification)), Just(Some(TaskKind::Regression)), Just(None)],
            validation in any::<bool>(),
            pick in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            c in "[a-z_.0-9]",
            op in 0..3u8,
        ) {
            let p = produced(task, validation);
            let mut all = p.epoch_metrics();
            all.extend(p.test_metrics());
            for name in &all {
                prop_assert_eq!(p.sweep_metric_problem(name), None);
            }
            let name = pick.get(&all).clone();
            let mut chars: Vec<char> = name.chars().collect();
            let i = at.index(chars.len());
            match op {
                0 => { chars.remove(i); }
                1 => chars.insert(i, c.chars().next().unwrap()),
                _ => chars[i] = c.chars().next().unwrap(),
            }
            let typo: String = chars.into_iter().collect();
            prop_assume!(!all.contains(&typo) && !typo.is_empty());
            let problem = p.sweep_metric_problem(&typo);
            prop_assert!(problem.is_some(), "{typo} accepted");
            let problem = problem.unwrap();
            prop_assert!(problem.contains("did you mean") || problem.contains("only") || problem.contains("validation split"), "{problem}");
        }
    }
}
