//! Reading an experiment file and checking all of it before anything runs: every problem is
//! reported with its JSON path.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use gymnos_plugin_api::{config::resolve_config, ComponentKind, ConfigType};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{apply_override, format::*};
use crate::{
    compat::HostCompat,
    registry::{LibraryRecord, Registry},
    resolve::{resolve, PluginRef},
};

/// One thing wrong with an experiment, and where.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    /// JSON path, e.g. `training.optimizer.lr` or `preprocessors[0].config.epsilon`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { path: path.into(), message: message.into() }
}

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("{}: cannot read the experiment: {cause}", path.display())]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("{}: invalid JSON at line {line}, column {column}: {message}", path.display())]
    Json { path: PathBuf, line: usize, column: usize, message: String },
    #[error("--set {assignment}: {reason}")]
    Override { assignment: String, reason: String },
    #[error("{}: {}", path.display(), list(problems))]
    Invalid { path: PathBuf, problems: Vec<Problem> },
}

fn list(problems: &[Problem]) -> String {
    let joined: Vec<String> = problems.iter().map(ToString::to_string).collect();
    match problems.len() {
        1 => joined[0].clone(),
        n => format!("{n} problems: {}", joined.join("; ")),
    }
}

/// A plugin reference resolved to one installed library, with its configuration completed
/// with defaults.
#[derive(Clone, Debug)]
pub struct ResolvedPlugin {
    /// Where it appears in the experiment (`model`, `preprocessors[1]`...).
    pub path: String,
    pub kind: ComponentKind,
    pub name: String,
    pub version: semver::Version,
    pub library: LibraryRecord,
    pub config: Value,
}

impl ResolvedPlugin {
    /// `name@version`, for messages.
    pub fn label(&self) -> String {
        format!("{} `{}@{}`", self.kind, self.name, self.version)
    }
}

/// An experiment whose plugins are all resolved; `experiment` is what `training_config.json`
/// records (exact versions, library hashes, completed configurations).
#[derive(Clone, Debug)]
pub struct ResolvedExperiment {
    pub experiment: Experiment,
    pub dataset: ResolvedPlugin,
    pub preprocessors: Vec<ResolvedPlugin>,
    pub data_augmentors: Vec<ResolvedPlugin>,
    pub model: ResolvedPlugin,
    pub trackers: Vec<ResolvedPlugin>,
}

const SECTIONS: [&str; 7] =
    ["experiment", "dataset", "preprocessors", "data_augmentors", "model", "training", "tracking"];

fn section<T: DeserializeOwned>(value: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(value.clone()) {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." { path.to_string() } else { format!("{path}.{inner}") };
            problems.push(problem(at, e.inner().to_string()));
            None
        }
    }
}

fn list_section(root: &Map<String, Value>, key: &str, problems: &mut Vec<Problem>) -> Vec<PluginSpec> {
    match root.get(key) {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| section(item, &format!("{key}[{i}]"), problems))
            .collect(),
        Some(_) => {
            problems.push(problem(key, "expected a list of plugin sections"));
            Vec::new()
        }
    }
}

/// Reads `path`, applies `overrides` and checks the structure of every section.
/// Returns the experiment and the JSON it was read from (after overrides).
pub fn load(path: &Path, overrides: &[String]) -> Result<(Experiment, Value), ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ExperimentError::Read { path: path.to_path_buf(), cause })?;
    let mut value: Value = serde_json::from_str(&text).map_err(|e| ExperimentError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line").next().unwrap_or_default().to_string(),
    })?;
    for assignment in overrides {
        apply_override(&mut value, assignment)
            .map_err(|reason| ExperimentError::Override { assignment: assignment.clone(), reason })?;
    }
    let invalid = |problems| ExperimentError::Invalid { path: path.to_path_buf(), problems };
    let Value::Object(root) = &value else {
        return Err(invalid(vec![problem("$", "an experiment is a JSON object")]));
    };
    let mut problems = Vec::new();
    for key in root.keys().filter(|k| !SECTIONS.contains(&k.as_str())) {
        problems.push(problem(key.as_str(), format!("unknown section (sections: {})", SECTIONS.join(", "))));
    }
    let required = |key: &str, problems: &mut Vec<Problem>| {
        if !root.contains_key(key) {
            problems.push(problem(key, "missing section"));
        }
    };
    required("experiment", &mut problems);
    required("dataset", &mut problems);
    required("model", &mut problems);
    let get = |key: &str| root.get(key).cloned().unwrap_or(Value::Object(Map::new()));
    let experiment: Option<ExperimentInfo> = root.get("experiment").and_then(|v| section(v, "experiment", &mut problems));
    let dataset: Option<DatasetSection> = root.get("dataset").and_then(|v| section(v, "dataset", &mut problems));
    let preprocessors = list_section(root, "preprocessors", &mut problems);
    let data_augmentors = list_section(root, "data_augmentors", &mut problems);
    let model: Option<PluginSpec> = root.get("model").and_then(|v| section(v, "model", &mut problems));
    let training: Option<Training> = section(&get("training"), "training", &mut problems);
    let tracking: Option<Tracking> = section(&get("tracking"), "tracking", &mut problems);
    match (experiment, dataset, model, training, tracking) {
        (Some(experiment), Some(dataset), Some(model), Some(training), Some(tracking)) if problems.is_empty() => Ok((
            Experiment { experiment, dataset, preprocessors, data_augmentors, model, training, tracking },
            value,
        )),
        _ => Err(invalid(problems)),
    }
}

/// Parses `auto`, `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(device: &str) -> Result<Option<gymnos_plugin_api::DeviceSpec>, String> {
    use gymnos_plugin_api::DeviceSpec;
    match device {
        "auto" => Ok(None),
        "cpu" => Ok(Some(DeviceSpec::Cpu)),
        "cuda" => Ok(Some(DeviceSpec::Cuda(0))),
        other => other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse().ok())
            .map(|i| Some(DeviceSpec::Cuda(i)))
            .ok_or_else(|| format!("`{other}` is not auto, cpu, cuda or cuda:N")),
    }
}

fn check_settings(exp: &Experiment, problems: &mut Vec<Problem>) {
    let mut check = |ok: bool, path: &str, message: String| {
        if !ok {
            problems.push(problem(path, message));
        }
    };
    let name = &exp.experiment.name;
    check(
        !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']),
        "experiment.name",
        format!("`{name}` cannot name a folder"),
    );
    let s = &exp.dataset.split;
    for (field, v) in [("train", s.train), ("val", s.val), ("test", s.test)] {
        check((0.0..=1.0).contains(&v), &format!("dataset.split.{field}"), format!("{v} is not a fraction in [0, 1]"));
    }
    check(s.train > 0.0, "dataset.split.train", "the training split cannot be empty".into());
    let total = s.train + s.val + s.test;
    check((total - 1.0).abs() < 1e-6, "dataset.split", format!("train + val + test = {total}, not 1"));

    let t = &exp.training;
    check(t.epochs >= 1, "training.epochs", "must be at least 1".into());
    check(t.batch_size >= 1, "training.batch_size", "must be at least 1".into());
    check(t.eval_batch_size >= 1, "training.eval_batch_size", "must be at least 1".into());
    check(t.num_workers <= 64, "training.num_workers", format!("{} threads is more than 64", t.num_workers));
    check(t.prefetch_batches >= 1, "training.prefetch_batches", "must be at least 1".into());
    let positive = |v: f64| v.is_finite() && v > 0.0;
    let lr = t.optimizer.lr();
    check(positive(lr), "training.optimizer.lr", format!("{lr} is not a positive learning rate"));
    match &t.optimizer {
        Optimizer::Sgd { momentum, weight_decay, nesterov, .. } => {
            check((0.0..1.0).contains(momentum), "training.optimizer.momentum", format!("{momentum} is not in [0, 1)"));
            check(*weight_decay >= 0.0, "training.optimizer.weight_decay", "must not be negative".into());
            check(!*nesterov || *momentum > 0.0, "training.optimizer.nesterov", "needs a momentum above 0".into());
        }
        Optimizer::Adam { betas, eps, weight_decay, .. } | Optimizer::Adamw { betas, eps, weight_decay, .. } => {
            for (i, b) in betas.iter().enumerate() {
                check((0.0..1.0).contains(b), &format!("training.optimizer.betas[{i}]"), format!("{b} is not in [0, 1)"));
            }
            check(positive(*eps), "training.optimizer.eps", "must be positive".into());
            check(*weight_decay >= 0.0, "training.optimizer.weight_decay", "must not be negative".into());
        }
    }
    match &t.lr_schedule {
        LrSchedule::Step { step_size, gamma } => {
            check(*step_size >= 1, "training.lr_schedule.step_size", "must be at least 1".into());
            check(positive(*gamma), "training.lr_schedule.gamma", "must be positive".into());
        }
        LrSchedule::Cosine { min_lr } => {
            check(*min_lr >= 0.0 && *min_lr < lr, "training.lr_schedule.min_lr", format!("{min_lr} is not in [0, lr)"));
        }
        LrSchedule::Constant => {}
    }
    if let Err(e) = parse_device(&t.device) {
        check(false, "training.device", e);
    }
    if let Some(norm) = t.grad_clip_norm {
        check(positive(norm), "training.grad_clip_norm", format!("{norm} is not positive"));
    }
    let c = &t.callbacks;
    let monitor_ok = |m: &str| MONITORABLE.contains(&m);
    let monitors = format!("one of {}", MONITORABLE.join(", "));
    check(monitor_ok(&c.checkpoint.monitor), "training.callbacks.checkpoint.monitor", monitors.clone());
    check(c.checkpoint.every_n_epochs >= 1, "training.callbacks.checkpoint.every_n_epochs", "must be at least 1".into());
    if let Some(es) = &c.early_stopping {
        check(monitor_ok(&es.monitor), "training.callbacks.early_stopping.monitor", monitors.clone());
        check(es.min_delta >= 0.0, "training.callbacks.early_stopping.min_delta", "must not be negative".into());
    }
    if let Some(rp) = &c.reduce_on_plateau {
        check(monitor_ok(&rp.monitor), "training.callbacks.reduce_on_plateau.monitor", monitors.clone());
        check(rp.factor > 0.0 && rp.factor < 1.0, "training.callbacks.reduce_on_plateau.factor", format!("{} is not in (0, 1)", rp.factor));
        check(rp.min_lr >= 0.0, "training.callbacks.reduce_on_plateau.min_lr", "must not be negative".into());
    }
}

/// Resolves one plugin section against the registry and checks its configuration.
fn resolve_one(
    base_dir: &Path,
    registry: &Registry,
    compat: &HostCompat,
    kind: ComponentKind,
    path: &str,
    spec: (&str, &Value, Option<&ResolvedLibrary>),
    problems: &mut Vec<Problem>,
) -> Option<ResolvedPlugin> {
    let (reference, config, recorded) = spec;
    let reference: PluginRef = match reference.parse() {
        Ok(r) => r,
        Err(e) => {
            problems.push(problem(format!("{path}.plugin"), e.to_string()));
            return None;
        }
    };
    let (library, component) = match resolve(registry, compat, Some(kind), &reference) {
        Ok(found) => found,
        Err(e) => {
            problems.push(problem(format!("{path}.plugin"), e.to_string()));
            return None;
        }
    };
    if let Some(recorded) = recorded {
        if recorded.sha256 != library.sha256 {
            problems.push(problem(
                format!("{path}.plugin"),
                format!(
                    "`{}@{}` is installed from another build (sha256 {}) than the one recorded ({}); reinstall the recorded build",
                    component.name, component.version, library.sha256, recorded.sha256
                ),
            ));
            return None;
        }
    }
    match resolve_config(&component.config_keys(), config) {
        Ok(mut completed) => {
            // Relative paths are relative to the experiment file; the record keeps them
            // absolute so that resume and predict work from any folder.
            for key in component.config.iter().filter(|k| k.ty == ConfigType::Path.as_str()) {
                if let Some(Value::String(p)) = completed.get_mut(&key.name) {
                    if Path::new(p.as_str()).is_relative() {
                        let joined = base_dir.join(p.as_str());
                        *p = joined.canonicalize().unwrap_or(joined).to_string_lossy().into_owned();
                    }
                }
            }
            Some(ResolvedPlugin {
            path: path.to_string(),
            kind,
            name: component.name.clone(),
            version: component.version.clone(),
            library: library.clone(),
            config: Value::Object(completed),
            })
        }
        Err(config_problems) => {
            for p in config_problems {
                let at = if p.key.is_empty() { format!("{path}.config") } else { format!("{path}.config.{}", p.key) };
                problems.push(problem(at, format!("{} ({})", p.message, component.name)));
            }
            None
        }
    }
}

/// Resolves every plugin of `exp` (without checking the training settings). Relative `path`
/// configuration values are made absolute against `base_dir`, the experiment file's folder.
pub fn resolve_plugins(exp: &Experiment, base_dir: &Path, registry: &Registry, compat: &HostCompat) -> Result<ResolvedExperiment, Vec<Problem>> {
    let mut problems = Vec::new();
    let one = |kind, path: String, spec: &PluginSpec, problems: &mut Vec<Problem>| {
        resolve_one(base_dir, registry, compat, kind, &path, (&spec.plugin, &spec.config, spec.resolved.as_ref()), problems)
    };
    let d = &exp.dataset;
    let dataset = resolve_one(base_dir, registry, compat, ComponentKind::Dataset, "dataset", (&d.plugin, &d.config, d.resolved.as_ref()), &mut problems);
    let preprocessors: Vec<_> = exp.preprocessors.iter().enumerate()
        .map(|(i, s)| one(ComponentKind::Preprocessor, format!("preprocessors[{i}]"), s, &mut problems)).collect();
    let data_augmentors: Vec<_> = exp.data_augmentors.iter().enumerate()
        .map(|(i, s)| one(ComponentKind::DataAugmentor, format!("data_augmentors[{i}]"), s, &mut problems)).collect();
    let model = one(ComponentKind::Model, "model".into(), &exp.model, &mut problems);
    let trackers: Vec<_> = exp.tracking.trackers.iter().enumerate()
        .map(|(i, s)| one(ComponentKind::Tracker, format!("tracking.trackers[{i}]"), s, &mut problems)).collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    let unwrap_all = |v: Vec<Option<ResolvedPlugin>>| v.into_iter().map(|p| p.expect("no problems")).collect::<Vec<_>>();
    let mut resolved = ResolvedExperiment {
        experiment: exp.clone(),
        dataset: dataset.expect("no problems"),
        preprocessors: unwrap_all(preprocessors),
        data_augmentors: unwrap_all(data_augmentors),
        model: model.expect("no problems"),
        trackers: unwrap_all(trackers),
    };
    resolved.record_resolution(registry);
    Ok(resolved)
}

impl ResolvedExperiment {
    /// Writes the exact versions, library hashes and completed configurations into
    /// `experiment`, which is what the run records.
    fn record_resolution(&mut self, registry: &Registry) {
        let stamp = |p: &ResolvedPlugin| ResolvedLibrary {
            version: p.version.to_string(),
            library: registry.resolve(&p.library.path).display().to_string(),
            sha256: p.library.sha256.clone(),
            package: format!("{} {}", p.library.package, p.library.package_version),
            api_version: p.library.api_version.clone(),
        };
        let exact = |p: &ResolvedPlugin| format!("{}@={}", p.name, p.version);
        let e = &mut self.experiment;
        e.dataset.plugin = exact(&self.dataset);
        e.dataset.config = self.dataset.config.clone();
        e.dataset.resolved = Some(stamp(&self.dataset));
        let lists = [
            (&mut e.preprocessors, &self.preprocessors),
            (&mut e.data_augmentors, &self.data_augmentors),
            (&mut e.tracking.trackers, &self.trackers),
        ];
        for (specs, plugins) in lists {
            for (spec, plugin) in specs.iter_mut().zip(plugins) {
                spec.plugin = exact(plugin);
                spec.config = plugin.config.clone();
                spec.resolved = Some(stamp(plugin));
            }
        }
        e.model.plugin = exact(&self.model);
        e.model.config = self.model.config.clone();
        e.model.resolved = Some(stamp(&self.model));
    }

    /// Every plugin, in pipeline order.
    pub fn plugins(&self) -> impl Iterator<Item = &ResolvedPlugin> {
        std::iter::once(&self.dataset)
            .chain(&self.preprocessors)
            .chain(&self.data_augmentors)
            .chain(std::iter::once(&self.model))
            .chain(&self.trackers)
    }
}

/// The absolute folder of an experiment file.
pub fn experiment_dir(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// Checks everything: settings, and every plugin against the registry.
pub fn validate(path: &Path, exp: &Experiment, registry: &Registry, compat: &HostCompat) -> Result<ResolvedExperiment, ExperimentError> {
    let mut problems = Vec::new();
    check_settings(exp, &mut problems);
    let base_dir = experiment_dir(path);
    let resolved = resolve_plugins(exp, &base_dir, registry, compat);
    match resolved {
        Ok(resolved) if problems.is_empty() => Ok(resolved),
        Ok(_) => Err(ExperimentError::Invalid { path: path.to_path_buf(), problems }),
        Err(plugin_problems) => {
            problems.extend(plugin_problems);
            Err(ExperimentError::Invalid { path: path.to_path_buf(), problems })
        }
    }
}
