//! The tracker against a small in-process stand-in for MLflow's REST API (the end-to-end tests
//! in `tests/mlflow.rs` use a real `mlflow server`).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use gymnos_plugin_sdk::{harness, serde_json::json, ConfigSchema, Configurable, Context, Tracker};
use serde_json::Value;

use super::{tracking_url, Declared, MlflowTracker, QUEUE_CAPACITY};

#[derive(Clone, Debug)]
struct Request {
    method: String,
    /// Path and query, as sent.
    target: String,
    body: Vec<u8>,
}

impl Request {
    fn endpoint(&self) -> &str {
        let path = self.target.split('?').next().unwrap_or_default();
        path.strip_prefix("/api/2.0/mlflow/").or_else(|| path.strip_prefix("/api/2.0/")).unwrap_or(path)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
    experiments: Vec<String>,
    /// Added before every answer.
    delay: Duration,
    /// Reads requests and never answers.
    hang: bool,
    /// Answers `runs/log-batch` with HTTP 400.
    refuse_batches: bool,
}

/// A stand-in for an MLflow tracking server: answers what the tracker asks, and records it.
struct Mock {
    url: String,
    state: Arc<Mutex<State>>,
}

impl Mock {
    fn start(configure: impl FnOnce(&mut State)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        configure(&mut state.lock().unwrap());
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let state = shared.clone();
                std::thread::spawn(move || serve(conn, &state));
            }
        });
        Self { url, state }
    }

    fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (method, target) =
            (parts.next().unwrap_or_default().to_string(), parts.next().unwrap_or_default().to_string());
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request = Request { method, target, body };
        let (delay, hang) = {
            let mut state = state.lock().unwrap();
            state.requests.push(request.clone());
            (state.delay, state.hang)
        };
        if hang {
            std::thread::sleep(Duration::from_secs(60));
            return;
        }
        std::thread::sleep(delay);
        let (status, answer) = answer(&request, state);
        let text = answer.to_string();
        let head =
            format!("HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", text.len());
        if conn.write_all(head.as_bytes()).and_then(|()| conn.write_all(text.as_bytes())).is_err() {
            return;
        }
    }
}

fn answer(request: &Request, state: &Mutex<State>) -> (u16, Value) {
    let mut state = state.lock().unwrap();
    match (request.method.as_str(), request.endpoint()) {
        ("GET", "experiments/get-by-name") => {
            let name = request.target.split("experiment_name=").nth(1).unwrap_or_default().to_string();
            if state.experiments.contains(&name) {
                (200, json!({ "experiment": { "experiment_id": "7", "name": name, "lifecycle_stage": "active" } }))
            } else {
                (404, json!({ "error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such experiment" }))
            }
        }
        ("POST", "experiments/create") => {
            state.experiments.push(request.json()["name"].as_str().unwrap_or_default().to_string());
            (200, json!({ "experiment_id": "7" }))
        }
        ("POST", "runs/create") => (
            200,
            json!({ "run": { "info": { "run_id": "r1", "experiment_id": "7", "artifact_uri": "mlflow-artifacts:/7/r1/artifacts" } } }),
        ),
        ("POST", "runs/log-batch") if state.refuse_batches => {
            (400, json!({ "error_code": "INVALID_PARAMETER_VALUE", "message": "no thanks" }))
        }
        ("POST", "runs/log-batch") => (200, json!({})),
        ("POST", "runs/update") => (200, json!({ "run_info": {} })),
        ("PUT", e) if e.starts_with("mlflow-artifacts/artifacts/") => (200, json!({})),
        _ => (404, json!({ "error_code": "ENDPOINT_NOT_FOUND", "message": "not here" })),
    }
}

fn tracker(config: Value) -> MlflowTracker {
    MlflowTracker::build(Declared::from_json(config).unwrap(), &Context::standalone()).unwrap()
}

/// A whole run's calls, with `metrics` epochs; the errors the host would record.
fn drive(t: &mut MlflowTracker, metrics: u64) -> Vec<String> {
    let mut errors = Vec::new();
    let mut note = |r: gymnos_plugin_sdk::Result<()>| errors.extend(r.err().map(|e| e.to_string()));
    note(t.start(&json!({ "experiment": "exp", "run_dir": null, "resumed_at_epoch": null })));
    note(t.log_params(&json!({ "training": { "optimizer": { "lr": 0.01 } } })));
    for step in 1..=metrics {
        note(t.log_metrics(step, "epoch", &[("loss".into(), 1.0 / step as f64)]));
    }
    note(t.finish("completed"));
    errors
}

fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

#[test]
fn meets_the_tracker_contract_and_records_the_run_through_the_rest_api() {
    let mock = Mock::start(|_| {});
    let dir = std::env::temp_dir().join(format!("gymnos-mlflow-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("training_config.json"), "{\"a\": 1}").unwrap();
    std::fs::write(dir.join("metrics.json"), "{}").unwrap();
    harness::check_tracker::<MlflowTracker>(json!({ "tracking_uri": format!("{}/", mock.url) }), &dir).unwrap();

    let requests = mock.requests();
    let calls: Vec<String> = requests.iter().map(|r| format!("{} {}", r.method, r.endpoint())).collect();
    assert_eq!(
        calls,
        [
            "GET experiments/get-by-name",
            "POST experiments/create",
            "POST runs/create",
            "POST runs/log-batch",
            "POST runs/log-batch",
            "PUT mlflow-artifacts/artifacts/7/r1/artifacts/training_config.json",
            "PUT mlflow-artifacts/artifacts/7/r1/artifacts/metrics.json",
            "POST runs/update",
        ]
    );
    assert_eq!(requests[1].json(), json!({ "name": "harness" }));
    let created = requests[2].json();
    assert_eq!(created["experiment_id"], "7");
    let run_name = dir.file_name().unwrap().to_str().unwrap();
    assert_eq!(created["run_name"], run_name);
    let tags = created["tags"].as_array().unwrap();
    assert!(tags.contains(&json!({ "key": "gymnos.run_dir", "value": dir.to_str().unwrap() })), "{tags:?}");
    assert_eq!(requests[3].json()["params"], json!([{ "key": "lr", "value": "0.1" }]));
    let metrics = requests[4].json()["metrics"].clone();
    assert_eq!(metrics[0]["key"], "epoch/loss");
    assert_eq!((metrics[0]["value"].as_f64(), metrics[0]["step"].as_u64()), (Some(0.5), Some(1)));
    assert_eq!(requests[5].body, b"{\"a\": 1}");
    let update = requests[7].json();
    assert_eq!((update["run_id"].as_str(), update["status"].as_str()), (Some("r1"), Some("FINISHED")));
    assert!(update["end_time"].as_i64().unwrap() >= created["start_time"].as_i64().unwrap());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_existing_experiment_is_used_and_statuses_map_to_mlflows() {
    let mock = Mock::start(|s| s.experiments.push("mine".into()));
    for (status, expected) in [("failed", "FAILED"), ("interrupted", "KILLED")] {
        let mut t = tracker(json!({ "tracking_uri": mock.url, "experiment_name": "mine" }));
        t.start(&json!({ "experiment": "exp" })).unwrap();
        t.finish(status).unwrap();
        let requests = mock.requests();
        assert!(requests.iter().all(|r| r.endpoint() != "experiments/create"));
        assert_eq!(requests.last().unwrap().json()["status"], expected);
    }
}

#[test]
fn an_unreachable_server_is_reported_once_and_costs_nothing() {
    let url = closed_port_url();
    let mut t = tracker(json!({ "tracking_uri": url, "timeout_seconds": 2 }));
    let started = Instant::now();
    let errors = drive(&mut t, 200);
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with(&format!("I/O error: MLflow at {url} is unreachable: ")), "{}", errors[0]);
    assert!(errors[0].ends_with("; metrics are not being recorded there"), "{}", errors[0]);
}

#[test]
fn a_server_that_never_answers_costs_one_timeout() {
    let mock = Mock::start(|s| s.hang = true);
    let mut t = tracker(json!({ "tracking_uri": mock.url, "timeout_seconds": 0.3 }));
    let started = Instant::now();
    let errors = drive(&mut t, 50);
    // One timeout (0.3 s) for the first request, then nothing: well within finish's 0.9 s.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("is unreachable: "), "{}", errors[0]);
    assert_eq!(mock.requests().len(), 1, "nothing more after the first timeout");
}

#[test]
fn refusals_are_reported_once_per_endpoint_and_the_run_still_ends() {
    let mock = Mock::start(|s| s.refuse_batches = true);
    let mut t = tracker(json!({ "tracking_uri": mock.url }));
    let errors = drive(&mut t, 20);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("refused runs/log-batch: HTTP 400 INVALID_PARAMETER_VALUE: no thanks"), "{}", errors[0]);
    assert_eq!(mock.requests().last().unwrap().endpoint(), "runs/update");
}

#[test]
fn a_full_queue_drops_metrics_counts_them_and_never_blocks() {
    let mock = Mock::start(|s| s.delay = Duration::from_millis(100));
    let mut t = tracker(json!({ "tracking_uri": mock.url, "timeout_seconds": 3 }));
    t.start(&json!({ "experiment": "exp" })).unwrap();
    let total = 3 * QUEUE_CAPACITY as u64;
    let started = Instant::now();
    for step in 0..total {
        t.log_metrics(step, "train_step", &[("loss".into(), 1.0)]).unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(1), "logging waited: {:?}", started.elapsed());
    let err = t.finish("completed").unwrap_err().to_string();
    let dropped: u64 = err.split(" metrics were dropped").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(dropped > 0 && dropped < total, "{err}");
    let requests = mock.requests();
    let sent: usize = requests
        .iter()
        .filter(|r| r.endpoint() == "runs/log-batch")
        .map(|r| r.json()["metrics"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(sent as u64 + dropped, total);
    let tags: Vec<Value> = requests.iter().filter_map(|r| r.json()["tags"].as_array().cloned()).flatten().collect();
    assert!(tags.contains(&json!({ "key": "gymnos.dropped_metrics", "value": dropped.to_string() })), "{tags:?}");
    assert_eq!(requests.last().unwrap().endpoint(), "runs/update");
}

#[test]
fn the_configuration_is_checked() {
    let err = |config: Value| match Declared::from_json(config) {
        Ok(c) => MlflowTracker::build(c, &Context::standalone()).err().unwrap().to_string(),
        Err(e) => e.to_string(),
    };
    // The declared rule: what `gymnos-host validate` says without creating the tracker.
    let wants = "it needs a URL (http:// or https://host[:port][/path])";
    for (uri, why) in [
        ("localhost:5000", "has no scheme:// (such as http://)"),
        ("not a url", "contains a space"),
        ("ftp://host", "has the scheme `ftp`, not http or https"),
        ("http://host:5000?x=1", "has a query or fragment (`?`, `#`)"),
    ] {
        assert_eq!(
            err(json!({ "tracking_uri": uri })),
            format!("configuration error: tracking_uri: `{uri}` {why}; {wants}")
        );
    }
    let keys = Declared::keys();
    let rules: Vec<String> = keys[0].rules.iter().map(|r| r.describe()).collect();
    assert_eq!(rules, ["non-empty", "a URL (http:// or https://host[:port][/path])"]);
    assert_eq!(tracking_url("https://mlflow.example/prefix/").unwrap(), "https://mlflow.example/prefix");
    assert_eq!(
        tracking_url("http://").unwrap_err().to_string(),
        "configuration error: tracking_uri: `http://` has no host; it needs the http:// or https:// URL of an \
         MLflow tracking server"
    );
    assert_eq!(err(json!({ "timeout_seconds": 0 })), "configuration error: timeout_seconds: 0 is not in [0.1, 60]");
    assert!(err(json!({ "experiment_name": "x".repeat(501) })).starts_with("configuration error: experiment_name: "));
    let Declared(config) = Declared::from_json(json!({})).unwrap();
    assert_eq!(
        (config.tracking_uri.as_str(), config.experiment_name.as_str(), config.timeout_seconds),
        ("http://127.0.0.1:5000", "", 5.0)
    );
}

/// Strings made of the pieces URLs (and near misses) are made of.
fn url_like() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let scheme = prop::sample::select(vec!["http://", "https://", "HTTPS://", "ftp://", "http:/", "", "://", "http"]);
    let userinfo = prop::sample::select(vec!["", "user@", "user:pw@", "@", "u<r@", "ü@"]);
    let host = prop::sample::select(vec![
        "localhost",
        "127.0.0.1",
        "mlflow.example.com",
        "[::1]",
        "[::1",
        "[zz]",
        "",
        "my host",
        "ho<st",
        "a_b",
        "é.fr",
    ]);
    let port = prop::sample::select(vec!["", ":5000", ":0", ":65535", ":65536", ":", ":http", ":-1"]);
    let path =
        prop::sample::select(vec!["", "/", "/mlflow", "/a/b/", "?x=1", "#top", "/a b", "/%20", "/a|b", "/é", "/a\"b"]);
    (scheme, userinfo, host, port, path).prop_map(|(s, u, h, p, a)| format!("{s}{u}{h}{p}{a}"))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

    /// What the declared rule accepts (`validate`), create accepts, and the HTTP client can send
    /// requests to; what it refuses, create refuses.
    #[test]
    fn validate_and_create_agree_on_tracking_uri(uri in url_like()) {
        let declared = Declared::from_json(json!({ "tracking_uri": uri }));
        let created = declared.as_ref().map_err(ToString::to_string).and_then(|_| tracking_url(&uri).map_err(|e| e.to_string()));
        proptest::prop_assert_eq!(declared.is_ok(), created.is_ok(), "{}: {:?}", uri, created);
        if let Ok(url) = created {
            let endpoint = format!("{url}/api/2.0/mlflow/runs/create");
            proptest::prop_assert!(ureq::http::Uri::try_from(endpoint.as_str()).is_ok(), "{}", endpoint);
        }
    }
}
