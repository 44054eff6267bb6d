//! `mlflow`: records a run on an MLflow tracking server, through its REST API.
//!
//! - `start`: the MLflow experiment named `experiment_name` (by default the gymnos experiment's
//!   name) is found or created, and a run is created in it, named after the run folder and
//!   tagged with it (`gymnos.run_dir`).
//! - `log_params`: the resolved experiment (what `training_config.json` records) as parameters
//!   with dotted keys (`training.optimizer.lr` = `0.01`); each plugin's exact version and
//!   library hash as tags (`gymnos.plugin.model` = `mlp@1.0.0`, `gymnos.plugin.model.sha256`).
//! - `log_metrics`: metrics named `<scope>/<name>` (`train_step/loss` at the optimizer step,
//!   `epoch/val_accuracy` at the epoch counted from 1, `test/accuracy` at the last epoch).
//! - `finish`: the run folder's `training_config.json`, `metrics.json` and `model.safetensors`
//!   uploaded through the server's artifacts proxy, then the run's status (`FINISHED`,
//!   `FAILED` or `KILLED`) and end time.
//!
//! The training never waits on the network: calls put their work on a bounded queue that a
//! background thread sends (metrics batched, up to 1000 a request), each request bounded by
//! `timeout_seconds`. A full queue drops metrics and says how many at the end. A server that
//! cannot be reached, at the start or later, is reported once and then left alone; `finish`
//! waits at most 3 × `timeout_seconds` for the rest to be sent.

mod client;
mod names;
mod worker;

use std::{
    sync::{
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use gymnos_plugin_sdk::{
    api::{constraint::url_problem, Constraint},
    Config, ConfigSchema, ConfigValues, Configurable, Context, KeySpec, PluginError, Result, Tracker,
};
use serde_json::Value;
use worker::{Command, Settings, Shared};

/// Commands the queue holds (one per `log_metrics` call) before metrics are dropped.
pub const QUEUE_CAPACITY: usize = 4096;
/// How many request timeouts `finish` waits at most for the queue to drain, the artifacts to
/// upload and the status to be set.
pub const FINISH_WAIT_TIMEOUTS: u32 = 3;

/// The configuration of `mlflow`.
#[derive(Config)]
pub struct MlflowConfig {
    /// URL of the MLflow tracking server (http:// or https://host[:port][/path]); MLFLOW_TRACKING_TOKEN, or
    /// MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, authenticate as with MLflow's client
    #[config(default = "http://127.0.0.1:5000", non_empty)]
    pub tracking_uri: String,
    /// MLflow experiment to record the run in, created if missing (empty: the gymnos
    /// experiment's name)
    // A `String` with an empty default rather than an `Option`: the host's registry records a
    // `null` default as no default, and would take the key for a required one.
    #[config(default = "", max_len = 500)]
    pub experiment_name: String,
    /// Limit on each request to the server, in seconds; finish waits at most 3 times this
    #[config(default = 5.0, range = 0.1..=60.0)]
    pub timeout_seconds: f64,
}

/// The schemes `tracking_uri` takes.
const SCHEMES: [&str; 2] = ["http", "https"];

/// The configuration with the rule `#[derive(Config)]` cannot write: `tracking_uri` is an http or
/// https URL, declared so that `gymnos-host validate` refuses `not a url` without creating the
/// tracker (hosts that predate the rule ignore it; create checks it all the same).
pub struct Declared(pub MlflowConfig);

impl ConfigSchema for Declared {
    fn keys() -> Vec<KeySpec> {
        let mut keys = MlflowConfig::keys();
        let uri = keys.iter_mut().find(|k| k.name == "tracking_uri").expect("declared above");
        uri.rules.push(Constraint::Url { schemes: SCHEMES.map(String::from).to_vec() });
        keys
    }

    fn from_config(config: &ConfigValues) -> Result<Self> {
        MlflowConfig::from_config(config).map(Declared)
    }
}

pub struct MlflowTracker {
    settings: Settings,
    link: Option<Link>,
    /// Metrics dropped because the queue was full.
    dropped: u64,
}

/// The tracker's end of the worker thread.
struct Link {
    commands: SyncSender<Command>,
    done: Receiver<()>,
    shared: Arc<Shared>,
}

/// Milliseconds since the Unix epoch, as MLflow's timestamps.
fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// `tracking_uri` checked (by the declared rule's own check) and without a trailing `/`.
pub fn tracking_url(uri: &str) -> Result<String> {
    let schemes = SCHEMES.map(String::from);
    match url_problem(uri, &schemes) {
        None => Ok(uri.trim_end_matches('/').into()),
        Some(problem) => Err(PluginError::config(format!(
            "tracking_uri: `{uri}` {problem}; it needs the http:// or https:// URL of an MLflow tracking server"
        ))),
    }
}

impl Configurable for MlflowTracker {
    const NAME: &'static str = "mlflow";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Records the run's parameters, metrics, files and status on an MLflow tracking server";
    type Config = Declared;

    fn build(Declared(config): Declared, ctx: &Context) -> Result<Self> {
        let settings = Settings {
            url: tracking_url(&config.tracking_uri)?,
            experiment_name: Some(config.experiment_name.trim().to_string()).filter(|n| !n.is_empty()),
            timeout: Duration::from_secs_f64(config.timeout_seconds),
            output_dir: ctx.output_dir.clone(),
            authorization: client::authorization_from_env(),
        };
        Ok(Self { settings, link: None, dropped: 0 })
    }
}

impl MlflowTracker {
    /// The worker's thread, started at the first call.
    fn link(&mut self) -> Result<&Link> {
        if self.link.is_none() {
            let (commands, receiver) = mpsc::sync_channel(QUEUE_CAPACITY);
            let (done_sender, done) = mpsc::channel();
            let shared = Arc::new(Shared::default());
            let (settings, for_worker) = (self.settings.clone(), shared.clone());
            std::thread::Builder::new()
                .name("mlflow-tracker".into())
                .spawn(move || worker::run(settings, for_worker, receiver, done_sender))
                .map_err(|e| PluginError::io(format!("mlflow: cannot start its thread: {e}")))?;
            self.link = Some(Link { commands, done, shared });
        }
        Ok(self.link.as_ref().expect("just set"))
    }

    /// Queues a command that must not be lost (start, parameters, finish): waits for room
    /// until `deadline`, which the queue has unless the server is far behind.
    fn send(&mut self, mut command: Command, deadline: Instant) -> Result<()> {
        let link = self.link()?;
        loop {
            match link.commands.try_send(command) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    command = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => {
                    return Err(PluginError::io(format!(
                        "MLflow at {}: the queue of requests stayed full; the server is not keeping up",
                        self.settings.url
                    )))
                }
                // The worker ended (it never does before the tracker, short of a panic).
                Err(TrySendError::Disconnected(_)) => return Ok(()),
            }
        }
    }

    /// What went wrong since the last call, reported once.
    fn reported(&self) -> Result<()> {
        let errors = self.link.as_ref().map(|l| l.shared.take()).unwrap_or_default();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PluginError::io(errors.join("; ")))
        }
    }

    fn control_deadline(&self) -> Instant {
        Instant::now() + self.settings.timeout
    }
}

impl Tracker for MlflowTracker {
    fn start(&mut self, run: &Value) -> Result<()> {
        let deadline = self.control_deadline();
        self.send(Command::Start { run: run.clone(), at_ms: now_ms() }, deadline)?;
        self.reported()
    }

    fn log_params(&mut self, params: &Value) -> Result<()> {
        let deadline = self.control_deadline();
        self.send(Command::Params { params: params.clone() }, deadline)?;
        self.reported()
    }

    fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) -> Result<()> {
        let command = Command::Metrics { step, scope: scope.into(), metrics: metrics.to_vec(), at_ms: now_ms() };
        match self.link()?.commands.try_send(command) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => self.dropped += metrics.len() as u64,
        }
        self.reported()
    }

    fn finish(&mut self, status: &str) -> Result<()> {
        let deadline = Instant::now() + FINISH_WAIT_TIMEOUTS * self.settings.timeout;
        let dropped = self.dropped;
        let command = Command::Finish { status: status.into(), at_ms: now_ms(), deadline, dropped };
        let sent = self.send(command, deadline);
        let mut errors: Vec<String> = Vec::new();
        match &sent {
            Ok(()) => {
                let link = self.link.as_ref().expect("sent through it");
                if !worker::wait(&link.done, deadline) {
                    errors.push(format!(
                        "MLflow at {}: gave up after {:.1}s waiting for the server to take the run's last \
                         metrics, files and status",
                        self.settings.url,
                        (FINISH_WAIT_TIMEOUTS * self.settings.timeout).as_secs_f64()
                    ));
                }
            }
            Err(e) => errors.push(e.message.to_string()),
        }
        if let Some(link) = &self.link {
            errors.splice(0..0, link.shared.take());
        }
        if dropped > 0 {
            errors.push(format!(
                "MLflow at {}: {dropped} metrics were dropped because the server did not keep up (queue of \
                 {QUEUE_CAPACITY} calls full)",
                self.settings.url
            ));
        }
        // The worker ends once the queue closes; a request in flight is bounded by the timeout.
        self.link = None;
        self.dropped = 0;
        if errors.is_empty() {
            Ok(())
        } else {
            Err(PluginError::io(errors.join("; ")))
        }
    }
}

gymnos_plugin_sdk::export_plugin!(tracker(MlflowTracker));

#[cfg(test)]
mod tests;
