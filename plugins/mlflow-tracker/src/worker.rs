//! The background thread that talks to the tracking server, so that the training loop never
//! waits on the network: the tracker's calls only put commands on a bounded queue.
//!
//! The worker reports problems through [`Shared`]; the tracker hands each one to the host once,
//! at its next call. When the server cannot be reached, the worker says so once and drops
//! everything after (a run is recorded there completely or up to the failure, never in pieces
//! over retries).

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{
        mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::{
    client::{proxied_artifact_path, Client, Failure},
    names::{self, MAX_METRICS_PER_BATCH, MAX_PARAMS_PER_BATCH, MAX_TAG_VALUE_CHARS},
};

/// The run folder's files uploaded as artifacts at the end, in this order.
pub const ARTIFACTS: [&str; 3] = ["training_config.json", "metrics.json", "model.safetensors"];

/// What the tracker asks of the worker.
pub enum Command {
    Start {
        run: Value,
        at_ms: i64,
    },
    Params {
        params: Value,
    },
    Metrics {
        step: u64,
        scope: String,
        metrics: Vec<(String, f64)>,
        at_ms: i64,
    },
    /// The last command: the run's final status (`completed`, `failed`, `interrupted`), when it
    /// ended, when the tracker stops waiting, and how many metrics a full queue dropped.
    Finish {
        status: String,
        at_ms: i64,
        deadline: Instant,
        dropped: u64,
    },
}

/// What the worker and the tracker share.
#[derive(Default)]
pub struct Shared {
    /// Problems not yet reported to the host.
    pub errors: Mutex<Vec<String>>,
}

impl Shared {
    fn report(&self, message: String) {
        self.errors.lock().unwrap_or_else(|e| e.into_inner()).push(message);
    }

    /// The problems not yet reported, each once.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Fixed for the whole run.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The tracking URI as configured, without a trailing `/`: the messages name it.
    pub url: String,
    /// The MLflow experiment; `None`: the gymnos experiment's name.
    pub experiment_name: Option<String>,
    /// Bounds each request.
    pub timeout: Duration,
    /// The run folder when `start` does not name one (the component's output folder).
    pub output_dir: Option<PathBuf>,
    pub authorization: Option<String>,
}

/// The MLflow run being recorded.
struct Run {
    id: String,
    /// The path the artifacts proxy takes; `None` when the run's artifact location is not
    /// proxied by the server.
    artifact_path: Option<String>,
    artifact_uri: String,
    dir: Option<PathBuf>,
}

struct Worker {
    client: Client,
    settings: Settings,
    shared: Arc<Shared>,
    run: Option<Run>,
    /// The server was unreachable, or the run could not be created: everything is dropped.
    stopped: bool,
    /// Endpoints that refused a call already: each is reported once.
    refused: BTreeSet<String>,
}

/// Runs the worker until the tracker goes; acknowledges `Finish` on `done`.
pub fn run(settings: Settings, shared: Arc<Shared>, commands: Receiver<Command>, done: Sender<()>) {
    let client = Client::new(&settings.url, settings.timeout, settings.authorization.clone());
    let mut worker = Worker { client, settings, shared, run: None, stopped: false, refused: BTreeSet::new() };
    let mut pending: Vec<Value> = Vec::new();
    loop {
        // Metrics wait while more are queued, to go in as few requests as possible.
        let next = if pending.is_empty() {
            commands.recv().ok()
        } else {
            match commands.try_recv() {
                Ok(command) => Some(command),
                Err(TryRecvError::Empty) => {
                    worker.log_metrics(&mut pending);
                    continue;
                }
                Err(TryRecvError::Disconnected) => None,
            }
        };
        let Some(command) = next else {
            worker.log_metrics(&mut pending);
            return;
        };
        match command {
            Command::Metrics { step, scope, metrics, at_ms } => {
                if worker.active() {
                    pending.extend(metrics.iter().map(|(name, value)| {
                        json!({
                            "key": names::metric_key(&scope, name),
                            "value": names::metric_value(*value),
                            "timestamp": at_ms,
                            "step": step,
                        })
                    }));
                }
                if pending.len() >= MAX_METRICS_PER_BATCH {
                    worker.log_metrics(&mut pending);
                }
            }
            Command::Start { run, at_ms } => worker.start(&run, at_ms),
            Command::Params { params } => worker.log_params(&params),
            Command::Finish { status, at_ms, deadline, dropped } => {
                worker.log_metrics(&mut pending);
                worker.finish(&status, at_ms, deadline, dropped);
                let _ = done.send(());
            }
        }
    }
}

impl Worker {
    fn active(&self) -> bool {
        !self.stopped && self.run.is_some()
    }

    /// Handles a failed call: an unreachable server stops the worker (said once); a refusal is
    /// reported once per endpoint.
    fn failed(&mut self, endpoint: &str, failure: Failure) {
        match failure {
            Failure::Unreachable(cause) => {
                if !self.stopped {
                    self.stopped = true;
                    self.shared.report(format!(
                        "MLflow at {} is unreachable: {cause}; metrics are not being recorded there",
                        self.settings.url
                    ));
                }
            }
            Failure::Refused { message, .. } => {
                if self.refused.insert(endpoint.to_string()) {
                    self.shared.report(format!("MLflow at {} refused {endpoint}: {message}", self.settings.url));
                }
            }
        }
    }

    fn start(&mut self, run: &Value, at_ms: i64) {
        if self.stopped || self.run.is_some() {
            return;
        }
        let experiment = match &self.settings.experiment_name {
            Some(name) => name.clone(),
            None => run["experiment"].as_str().unwrap_or("gymnos").to_string(),
        };
        let experiment_id = match self.experiment_id(&experiment) {
            Ok(id) => id,
            Err((endpoint, failure)) => {
                self.failed(endpoint, failure);
                // Without a run nothing else can be recorded; the message above says why.
                self.stopped = true;
                return;
            }
        };
        let dir = run["run_dir"].as_str().map(PathBuf::from).or_else(|| self.settings.output_dir.clone());
        let run_name = dir
            .as_ref()
            .and_then(|d| d.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| experiment.clone());
        let mut tags = vec![
            tag("gymnos.experiment", run["experiment"].as_str().unwrap_or_default()),
            tag("mlflow.source.name", "gymnos-host"),
            tag("mlflow.source.type", "LOCAL"),
        ];
        if let Some(dir) = &dir {
            tags.push(tag("gymnos.run_dir", &dir.to_string_lossy()));
        }
        if let Some(epoch) = run["resumed_at_epoch"].as_u64() {
            tags.push(tag("gymnos.resumed_at_epoch", &epoch.to_string()));
        }
        if let Some(user) = std::env::var("USER").ok().filter(|u| !u.is_empty()) {
            tags.push(tag("mlflow.user", &user));
        }
        let body = json!({ "experiment_id": experiment_id, "run_name": run_name, "start_time": at_ms, "tags": tags });
        match self.client.post("runs/create", &body) {
            Ok(answer) => {
                let info = &answer["run"]["info"];
                let id = info["run_id"].as_str().or_else(|| info["run_uuid"].as_str()).unwrap_or_default();
                if id.is_empty() {
                    self.shared.report(format!(
                        "MLflow at {} answered runs/create without a run id; the run is not recorded there",
                        self.settings.url
                    ));
                    self.stopped = true;
                    return;
                }
                let artifact_uri = info["artifact_uri"].as_str().unwrap_or_default().to_string();
                let artifact_path = proxied_artifact_path(&artifact_uri);
                self.run = Some(Run { id: id.to_string(), artifact_path, artifact_uri, dir });
            }
            Err(failure) => {
                self.failed("runs/create", failure);
                self.stopped = true;
            }
        }
    }

    /// The id of the experiment named `name`, created if there is none.
    fn experiment_id(&self, name: &str) -> Result<String, (&'static str, Failure)> {
        let get = || self.client.get("experiments/get-by-name", &[("experiment_name", name)]);
        let found = match get() {
            Ok(answer) => answer,
            Err(Failure::Refused { code, .. }) if code == "RESOURCE_DOES_NOT_EXIST" => {
                match self.client.post("experiments/create", &json!({ "name": name })) {
                    Ok(answer) => return id_of(&answer["experiment_id"], "experiments/create"),
                    // Another run created it meanwhile.
                    Err(Failure::Refused { code, .. }) if code == "RESOURCE_ALREADY_EXISTS" => {
                        get().map_err(|f| ("experiments/get-by-name", f))?
                    }
                    Err(failure) => return Err(("experiments/create", failure)),
                }
            }
            Err(failure) => return Err(("experiments/get-by-name", failure)),
        };
        let experiment = &found["experiment"];
        if experiment["lifecycle_stage"] == "deleted" {
            return Err((
                "runs/create",
                Failure::Refused {
                    code: String::new(),
                    message: format!(
                        "the experiment `{name}` is deleted; restore it (`mlflow experiments restore`) or set \
                         `experiment_name`"
                    ),
                },
            ));
        }
        id_of(&experiment["experiment_id"], "experiments/get-by-name")
    }

    fn log_batch(&mut self, body: Value) {
        if let Err(failure) = self.client.post("runs/log-batch", &body) {
            self.failed("runs/log-batch", failure);
        }
    }

    /// The resolved experiment as parameters, and its plugins' versions and hashes as tags,
    /// in batches MLflow accepts.
    fn log_params(&mut self, experiment: &Value) {
        let params = names::params(experiment);
        let tags = names::plugin_tags(experiment);
        let batches = params.len().max(tags.len()).div_ceil(MAX_PARAMS_PER_BATCH);
        for i in 0..batches {
            let Some(run) = self.run.as_ref().filter(|_| !self.stopped) else { return };
            let part = |list: &[(String, String)]| -> Vec<Value> {
                list.iter()
                    .skip(i * MAX_PARAMS_PER_BATCH)
                    .take(MAX_PARAMS_PER_BATCH)
                    .map(|(k, v)| json!({ "key": k, "value": v }))
                    .collect()
            };
            let body = json!({ "run_id": run.id, "params": part(&params), "tags": part(&tags) });
            self.log_batch(body);
        }
    }

    /// Sends the pending metrics, at most [`MAX_METRICS_PER_BATCH`] per request.
    fn log_metrics(&mut self, pending: &mut Vec<Value>) {
        while !pending.is_empty() {
            let Some(run) = self.run.as_ref().filter(|_| !self.stopped) else {
                pending.clear();
                return;
            };
            let batch: Vec<Value> = pending.drain(..pending.len().min(MAX_METRICS_PER_BATCH)).collect();
            let body = json!({ "run_id": run.id, "metrics": batch });
            self.log_batch(body);
        }
    }

    /// The run folder's files as artifacts, then the run's final status. Each upload starts only
    /// with time left for it and the status before `deadline`.
    fn finish(&mut self, status: &str, at_ms: i64, deadline: Instant, dropped: u64) {
        let Some(run) = self.run.as_ref().filter(|_| !self.stopped) else { return };
        let run_id = run.id.clone();
        if dropped > 0 {
            let body = json!({ "run_id": run_id, "tags": [tag("gymnos.dropped_metrics", &dropped.to_string())] });
            self.log_batch(body);
        }
        self.upload_artifacts(deadline);
        if self.stopped {
            return;
        }
        let mlflow_status = match status {
            "completed" => "FINISHED",
            "interrupted" => "KILLED",
            _ => "FAILED",
        };
        let body = json!({ "run_id": run_id, "status": mlflow_status, "end_time": at_ms });
        if let Err(failure) = self.client.post("runs/update", &body) {
            self.failed("runs/update", failure);
        }
    }

    fn upload_artifacts(&mut self, deadline: Instant) {
        let Some(run) = &self.run else { return };
        let Some(dir) = run.dir.clone() else { return };
        let files: Vec<&str> = ARTIFACTS.into_iter().filter(|f| dir.join(f).is_file()).collect();
        if files.is_empty() {
            return;
        }
        let Some(path) = run.artifact_path.clone() else {
            let message = format!(
                "MLflow at {}: the run's artifact location `{}` is not served by the tracking server (start it \
                 with --serve-artifacts, the default); {} not uploaded",
                self.settings.url,
                run.artifact_uri,
                files.join(", ")
            );
            self.shared.report(message);
            return;
        };
        let mut late = Vec::new();
        for file in files {
            let left = deadline.saturating_duration_since(Instant::now());
            if left < 2 * self.settings.timeout {
                late.push(file);
                continue;
            }
            if let Err(failure) = self.client.upload(&path, file, &dir.join(file)) {
                self.failed("mlflow-artifacts", failure);
                if self.stopped {
                    return;
                }
            }
        }
        if !late.is_empty() {
            self.shared.report(format!(
                "MLflow at {}: {} not uploaded: out of time (each request may take timeout_seconds = {}s)",
                self.settings.url,
                late.join(", "),
                self.settings.timeout.as_secs_f64()
            ));
        }
    }
}

fn tag(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": names::truncate(value, MAX_TAG_VALUE_CHARS) })
}

fn id_of(id: &Value, endpoint: &'static str) -> Result<String, (&'static str, Failure)> {
    match id {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => {
            Err((endpoint, Failure::Refused { code: String::new(), message: "no experiment_id in the answer".into() }))
        }
    }
}

/// Waits for `done` until `deadline`: whether the worker acknowledged in time.
pub fn wait(done: &Receiver<()>, deadline: Instant) -> bool {
    match done.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(()) => true,
        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => false,
    }
}
