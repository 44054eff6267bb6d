//! The few calls of MLflow's REST API the tracker makes (`/api/2.0/mlflow/...` and the
//! artifacts proxy, `/api/2.0/mlflow-artifacts/...`), each bounded by the configured timeout.

use std::{fs::File, path::Path, time::Duration};

use serde_json::Value;
use ureq::{http::Response, Agent, Body};

/// Why a call did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// No answer: the connection failed, timed out or broke, or a gateway said the server is
    /// unavailable (HTTP 502, 503, 504). The tracker stops talking to the server.
    Unreachable(String),
    /// The server answered with an error: MLflow's `error_code` (empty if none) and message.
    Refused { code: String, message: String },
}

/// A tracking server's REST API.
pub struct Client {
    agent: Agent,
    /// The tracking URI, without a trailing `/`.
    base: String,
    /// The `Authorization` header, from `MLFLOW_TRACKING_TOKEN` or `MLFLOW_TRACKING_USERNAME`
    /// and `MLFLOW_TRACKING_PASSWORD`, as MLflow's own client reads them.
    authorization: Option<String>,
}

impl Client {
    pub fn new(base: &str, timeout: Duration, authorization: Option<String>) -> Self {
        let agent: Agent = Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .user_agent(concat!("gymnos-mlflow-tracker/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Self { agent, base: base.trim_end_matches('/').to_string(), authorization }
    }

    fn api(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.base)
    }

    /// `POST /api/2.0/mlflow/<endpoint>` with a JSON body; the answer's JSON.
    pub fn post(&self, endpoint: &str, body: &Value) -> Result<Value, Failure> {
        let mut request = self.agent.post(self.api(endpoint)).header("Content-Type", "application/json");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        answer(request.send(body.to_string()))
    }

    /// `GET /api/2.0/mlflow/<endpoint>?<query>`; the answer's JSON.
    pub fn get(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value, Failure> {
        let mut request = self.agent.get(self.api(endpoint));
        for (k, v) in query {
            request = request.query(*k, *v);
        }
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        answer(request.call())
    }

    /// Uploads `file` through the server's artifacts proxy, as `<artifact_path>/<name>`:
    /// `PUT /api/2.0/mlflow-artifacts/artifacts/<artifact_path>/<name>`. `artifact_path` is
    /// the run's `artifact_uri` without its `mlflow-artifacts:` scheme (and authority).
    pub fn upload(&self, artifact_path: &str, name: &str, file: &Path) -> Result<(), Failure> {
        let url =
            format!("{}/api/2.0/mlflow-artifacts/artifacts/{}/{name}", self.base, artifact_path.trim_matches('/'));
        let body = File::open(file)
            .map_err(|e| Failure::Refused { code: String::new(), message: format!("{}: {e}", file.display()) })?;
        let mut request = self.agent.put(url).header("Content-Type", "application/octet-stream");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        answer(request.send(body)).map(drop)
    }
}

/// The path part of an `mlflow-artifacts:` URI (`mlflow-artifacts:/1/<run>/artifacts`, or with
/// a host, `mlflow-artifacts://host:5000/1/<run>/artifacts`): what the artifacts proxy takes.
/// `None` for any other scheme (`s3://`, `file:///`, a plain path): a location the tracking
/// server does not proxy.
pub fn proxied_artifact_path(artifact_uri: &str) -> Option<String> {
    let rest = artifact_uri.strip_prefix("mlflow-artifacts:")?;
    let path = match rest.strip_prefix("//") {
        Some(authority_and_path) => &authority_and_path[authority_and_path.find('/')?..],
        None => rest,
    };
    Some(path.to_string())
}

fn answer(result: Result<Response<Body>, ureq::Error>) -> Result<Value, Failure> {
    let mut response = result.map_err(|e| Failure::Unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().map_err(|e| Failure::Unreachable(e.to_string()))?;
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    match status {
        200..=299 => Ok(json),
        502..=504 => Err(Failure::Unreachable(format!("HTTP {status}"))),
        _ => {
            let code = json["error_code"].as_str().unwrap_or_default().to_string();
            let message = match json["message"].as_str() {
                Some(message) => format!("HTTP {status} {code}: {message}"),
                None => format!("HTTP {status}: {}", first_line(&text)),
            };
            Err(Failure::Refused { code, message })
        }
    }
}

fn first_line(text: &str) -> String {
    crate::names::truncate(text.lines().next().unwrap_or_default().trim(), 200)
}

/// The `Authorization` header MLflow's own client would send, from its environment variables.
pub fn authorization_from_env() -> Option<String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(token) = var("MLFLOW_TRACKING_TOKEN") {
        return Some(format!("Bearer {token}"));
    }
    let user = var("MLFLOW_TRACKING_USERNAME")?;
    let password = var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default();
    Some(format!("Basic {}", base64(format!("{user}:{password}").as_bytes())))
}

/// Standard base64, with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass word"), "dXNlcjpwYXNzIHdvcmQ=");
    }

    #[test]
    fn only_proxied_artifact_locations_are_used() {
        assert_eq!(proxied_artifact_path("mlflow-artifacts:/1/abc/artifacts").as_deref(), Some("/1/abc/artifacts"));
        assert_eq!(
            proxied_artifact_path("mlflow-artifacts://h:5000/1/abc/artifacts").as_deref(),
            Some("/1/abc/artifacts")
        );
        assert_eq!(proxied_artifact_path("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(proxied_artifact_path("/srv/mlruns/1/abc/artifacts"), None);
    }
}
