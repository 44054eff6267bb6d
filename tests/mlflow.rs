//! The `mlflow` tracker (plugins/mlflow-tracker) against a real MLflow tracking server: the
//! set-up's `.venv/bin/mlflow server` (version pinned in scripts/python-requirements.txt), with
//! a SQLite store and the artifacts proxy, on a free port; checked through MLflow's REST API.

use std::{
    fs::File,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use gymnos_tests::{library, read_json, wine_experiment, Sandbox};
use serde_json::{json, Value};

/// How long `mlflow server` may take to answer (it starts in about 10 s on an idle machine).
const SERVER_START: Duration = Duration::from_secs(120);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A tracking server in its own process group, killed with its workers when dropped (also when
/// a test panics).
struct MlflowServer {
    child: Option<Child>,
    url: String,
    dir: tempfile::TempDir,
    agent: ureq::Agent,
}

impl MlflowServer {
    fn start() -> Self {
        let mlflow = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/mlflow");
        assert!(
            mlflow.is_file(),
            "{} is missing: scripts/setup.sh installs scripts/python-requirements.txt into .venv",
            mlflow.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(&mlflow)
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.path().join("mlflow.db").display()))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            // No background job runner: nothing here uses it, and it takes CPU.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", mlflow.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut server = Self { child: Some(child), url: format!("http://127.0.0.1:{port}"), dir, agent };
        server.wait_until_ready();
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Ok(mut answer) = self.agent.get(format!("{}/health", self.url)).call() {
                if answer.status() == 200 && answer.body_mut().read_to_string().is_ok() {
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mlflow server exited ({status}) before answering:\n{}", self.log());
            }
            if started.elapsed() > SERVER_START {
                panic!("mlflow server did not answer within {SERVER_START:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills the server and every process it started (uvicorn and its workers).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `GET /api/2.0/mlflow/<endpoint>`: the status and the answer's JSON.
    fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let mut request = self.agent.get(format!("{}/api/2.0/mlflow/{endpoint}", self.url));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        json_of(request.call())
    }

    fn post(&self, endpoint: &str, body: &Value) -> (u16, Value) {
        let request = self
            .agent
            .post(format!("{}/api/2.0/mlflow/{endpoint}", self.url))
            .header("Content-Type", "application/json");
        json_of(request.send(body.to_string()))
    }

    /// The experiment's id, if it exists.
    fn experiment_id(&self, name: &str) -> Option<String> {
        let (status, answer) = self.get("experiments/get-by-name", &[("experiment_name", name)]);
        (status == 200).then(|| answer["experiment"]["experiment_id"].as_str().unwrap().to_string())
    }

    fn runs(&self, experiment_id: &str) -> Vec<Value> {
        let (status, answer) = self.post("runs/search", &json!({ "experiment_ids": [experiment_id] }));
        assert_eq!(status, 200, "{answer}");
        answer["runs"].as_array().cloned().unwrap_or_default()
    }

    /// A metric's values by step, in step order.
    fn history(&self, run_id: &str, key: &str) -> Vec<(u64, Value)> {
        let (status, answer) =
            self.get("metrics/get-history", &[("run_id", run_id), ("metric_key", key), ("max_results", "25000")]);
        assert_eq!(status, 200, "{key}: {answer}");
        let mut points: Vec<(u64, Value)> = answer["metrics"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|m| (m["step"].as_u64().unwrap(), m["value"].clone()))
            .collect();
        points.sort_by_key(|(step, _)| *step);
        points
    }

    /// An artifact's bytes, through the artifacts proxy.
    fn artifact(&self, experiment_id: &str, run_id: &str, path: &str) -> Vec<u8> {
        let url = format!("{}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/{path}", self.url);
        let mut answer = self.agent.get(url).call().unwrap();
        assert_eq!(answer.status(), 200, "{path}");
        answer.body_mut().with_config().limit(1 << 30).read_to_vec().unwrap()
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn json_of(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut answer = result.unwrap();
    let status = answer.status().as_u16();
    let text = answer.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"].as_array()?.iter().find(|t| t["key"] == key)?["value"].as_str()
}

fn param<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["params"].as_array()?.iter().find(|p| p["key"] == key)?["value"].as_str()
}

/// The wine experiment of tests/training.rs, recorded by the `mlflow` tracker at `url`.
fn wine(name: &str, url: &str, epochs: u32) -> Value {
    let mut experiment = wine_experiment(name);
    experiment["training"]["epochs"] = json!(epochs);
    experiment["tracking"] = json!({
        "trackers": [{ "plugin": "mlflow", "config": { "tracking_uri": url } }],
        "log_every_n_steps": 5
    });
    experiment
}

fn sandbox() -> Sandbox {
    let sandbox = Sandbox::new();
    sandbox.install_builtins();
    sandbox.host(&["plugins", "install", library("gymnos-mlflow-tracker").to_str().unwrap()]).ok();
    sandbox
}

/// The one run folder of experiment `name`.
fn only_run(sandbox: &Sandbox, name: &str) -> PathBuf {
    let runs = sandbox.runs(name);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn tracker_errors(metrics: &Value) -> Vec<String> {
    let errors = metrics.get("tracker_errors").and_then(Value::as_array).cloned().unwrap_or_default();
    errors.iter().map(|e| e.as_str().unwrap().to_string()).collect()
}

#[test]
fn a_run_is_recorded_in_mlflow_with_its_parameters_metrics_files_and_status() {
    let server = MlflowServer::start();
    let sandbox = sandbox();
    let exp = sandbox.experiment("wine-mlflow", &wine("wine-mlflow", &server.url, 8));
    sandbox.host(&["run", exp.to_str().unwrap(), "--no-progress"]).ok();
    let dir = only_run(&sandbox, "wine-mlflow");
    let metrics = read_json(&dir.join("metrics.json"));
    let config = read_json(&dir.join("training_config.json"));
    assert_eq!(metrics["status"], "completed");
    assert_eq!(tracker_errors(&metrics), Vec::<String>::new());

    // The experiment, by the gymnos experiment's name, with one finished run named after the
    // run folder.
    let experiment_id = server.experiment_id("wine-mlflow").expect("the experiment was created");
    let runs = server.runs(&experiment_id);
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    let info = &run["info"];
    let run_id = info["run_id"].as_str().unwrap();
    assert_eq!(info["status"], "FINISHED");
    assert_eq!(info["run_name"], dir.file_name().unwrap().to_str().unwrap());
    assert!(info["end_time"].as_i64().unwrap() >= info["start_time"].as_i64().unwrap());

    // Tags: the run folder, and each plugin's exact version and library hash.
    assert_eq!(tag(run, "gymnos.run_dir"), dir.to_str());
    assert_eq!(tag(run, "gymnos.experiment"), Some("wine-mlflow"));
    assert_eq!(tag(run, "gymnos.plugin.model"), Some("mlp@1.1.0"));
    assert_eq!(tag(run, "gymnos.plugin.model.sha256"), config["model"]["resolved"]["sha256"].as_str());
    assert_eq!(tag(run, "gymnos.plugin.dataset"), Some("csv@1.1.0"));
    assert_eq!(tag(run, "gymnos.plugin.preprocessors.0"), Some("standardize@1.1.0"));
    assert_eq!(tag(run, "gymnos.plugin.tracking.trackers.0"), Some("mlflow@1.0.0"));
    assert_eq!(
        tag(run, "gymnos.plugin.tracking.trackers.0.sha256"),
        config["tracking"]["trackers"][0]["resolved"]["sha256"].as_str()
    );

    // Parameters: the resolved experiment, flattened.
    assert_eq!(param(run, "training.optimizer.lr"), Some("0.01"));
    assert_eq!(param(run, "training.optimizer.name"), Some("adam"));
    assert_eq!(param(run, "training.epochs"), Some("8"));
    assert_eq!(param(run, "model.config.hidden"), Some("[16]"));
    assert_eq!(param(run, "model.config.activation"), Some("relu"), "defaults are recorded");
    assert_eq!(param(run, "preprocessors.0.config.per_feature"), Some("true"));
    assert_eq!(param(run, "dataset.plugin"), Some("csv@=1.1.0"));
    assert_eq!(param(run, "tracking.trackers.0.config.tracking_uri"), Some(server.url.as_str()));

    // Every epoch metric's history, as metrics.json has it, at epochs 1..=8.
    let history = metrics["history"].as_object().unwrap();
    assert!(history.len() >= 6, "{history:?}");
    for (key, values) in history {
        let recorded = server.history(run_id, &format!("epoch/{key}"));
        let steps: Vec<u64> = recorded.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, (1..=8).collect::<Vec<u64>>(), "epoch/{key}");
        let recorded: Vec<f64> = recorded.iter().map(|(_, v)| v.as_f64().unwrap()).collect();
        let expected: Vec<f64> = values.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(recorded, expected, "epoch/{key}");
    }
    // Training steps every 5 optimizer steps; the test split's metrics at the last epoch.
    let steps_per_epoch = metrics["data"]["train_samples"].as_u64().unwrap().div_ceil(16);
    let train_steps: Vec<u64> = server.history(run_id, "train_step/loss").iter().map(|(s, _)| *s).collect();
    assert_eq!(train_steps, (1..=8 * steps_per_epoch / 5).map(|i| i * 5).collect::<Vec<u64>>());
    assert!(server.history(run_id, "train_step/lr").iter().all(|(_, v)| v.as_f64() == Some(0.01)));
    let test_accuracy = server.history(run_id, "test/accuracy");
    assert_eq!(test_accuracy, [(8, metrics["test"]["accuracy"].clone())]);

    // The run folder's files, through the artifacts proxy.
    let (status, listing) = server.get("artifacts/list", &[("run_id", run_id)]);
    assert_eq!(status, 200, "{listing}");
    let mut files: Vec<(String, u64)> = listing["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["path"].as_str().unwrap().to_string(), f["file_size"].as_u64().unwrap()))
        .collect();
    files.sort();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["metrics.json", "model.safetensors", "training_config.json"]);
    assert_eq!(
        server.artifact(&experiment_id, run_id, "training_config.json"),
        std::fs::read(dir.join("training_config.json")).unwrap()
    );
    assert_eq!(
        server.artifact(&experiment_id, run_id, "model.safetensors"),
        std::fs::read(dir.join("model.safetensors")).unwrap()
    );
    // metrics.json as it was when the trackers finished: every epoch in it.
    let uploaded: Value = serde_json::from_slice(&server.artifact(&experiment_id, run_id, "metrics.json")).unwrap();
    assert_eq!(uploaded["history"], metrics["history"]);
}

#[test]
fn a_server_nobody_runs_is_reported_once_and_the_run_completes() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let sandbox = sandbox();
    let exp = sandbox.experiment("wine-down", &wine("wine-down", &url, 8));
    sandbox.host(&["run", exp.to_str().unwrap(), "--no-progress"]).ok();
    let metrics = read_json(&only_run(&sandbox, "wine-down").join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    assert_eq!(metrics["epochs_completed"], 8);
    let errors = tracker_errors(&metrics);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(&format!("MLflow at {url} is unreachable: ")), "{}", errors[0]);
    assert!(errors[0].contains("mlflow"), "names the plugin: {}", errors[0]);
}

#[test]
fn a_server_killed_during_the_run_is_reported_once_and_the_run_completes() {
    let mut server = MlflowServer::start();
    let sandbox = sandbox();
    let epochs = 150;
    let exp = sandbox.experiment("wine-killed", &wine("wine-killed", &server.url, epochs));
    let out = File::create(sandbox.dir.path().join("run.out")).unwrap();
    let mut run = sandbox
        .command(&["run", exp.to_str().unwrap(), "--no-progress"])
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();

    // Kill the server once the run's first epochs are in it.
    let started = Instant::now();
    loop {
        let logged = server
            .experiment_id("wine-killed")
            .and_then(|id| server.runs(&id).first().cloned())
            .map(|run| server.history(run["info"]["run_id"].as_str().unwrap(), "epoch/train_loss").len())
            .unwrap_or(0);
        if logged >= 2 {
            break;
        }
        assert!(run.try_wait().unwrap().is_none(), "the run ended before the server could be killed");
        assert!(started.elapsed() < Duration::from_secs(120), "no epoch reached MLflow in 120 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.kill();

    let started = Instant::now();
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = run.kill();
            panic!("the run did not end within 300 s of the server's death");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(sandbox.dir.path().join("run.out")).unwrap();
    assert!(status.success(), "{output}");
    let metrics = read_json(&only_run(&sandbox, "wine-killed").join("metrics.json"));
    assert_eq!(metrics["status"], "completed");
    assert_eq!(metrics["epochs_completed"], epochs);
    let errors = tracker_errors(&metrics);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(&format!("MLflow at {} is unreachable: ", server.url)), "{}", errors[0]);
}
