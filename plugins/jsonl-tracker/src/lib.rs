//! `jsonl`: writes every event of a run as one JSON object per line.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Write},
    path::PathBuf,
};

use gymnos_plugin_sdk::{Config, Configurable, Context, ErrorKind, PluginError, Result, ResultExt, Tracker};
use serde_json::{json, Map, Value};

/// The configuration of `jsonl`.
#[derive(Config)]
pub struct JsonlConfig {
    /// Output file name, in the run folder
    #[config(default = "metrics.jsonl", inside_run_folder)]
    pub file: String,
}

pub struct JsonlTracker {
    path: PathBuf,
    out: Option<BufWriter<File>>,
}

impl JsonlTracker {
    fn write(&mut self, event: Value) -> Result<()> {
        let out = match &mut self.out {
            Some(out) => out,
            None => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir).or_kind(ErrorKind::Io, &dir.display().to_string())?;
                }
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .or_kind(ErrorKind::Io, &self.path.display().to_string())?;
                self.out.insert(BufWriter::new(file))
            }
        };
        writeln!(out, "{event}").or_kind(ErrorKind::Io, &self.path.display().to_string())
    }
}

impl Configurable for JsonlTracker {
    const NAME: &'static str = "jsonl";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Appends the run's parameters and metrics to a JSON-lines file";
    type Config = JsonlConfig;

    fn build(config: JsonlConfig, ctx: &Context) -> Result<Self> {
        let path = match &ctx.output_dir {
            Some(dir) => dir.join(&config.file),
            None => ctx.resolve(config.file.as_ref()),
        };
        Ok(Self { path, out: None })
    }
}

impl Tracker for JsonlTracker {
    fn start(&mut self, run: &Value) -> Result<()> {
        self.write(json!({ "event": "start", "run": run }))
    }

    fn log_params(&mut self, params: &Value) -> Result<()> {
        self.write(json!({ "event": "params", "params": params }))
    }

    fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) -> Result<()> {
        let values: Map<String, Value> = metrics.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        self.write(json!({ "event": "metrics", "step": step, "scope": scope, "metrics": values }))
    }

    fn finish(&mut self, status: &str) -> Result<()> {
        self.write(json!({ "event": "finish", "status": status }))?;
        match self.out.take() {
            Some(mut out) => out.flush().map_err(|e| PluginError::io(format!("{}: {e}", self.path.display()))),
            None => Ok(()),
        }
    }
}

gymnos_plugin_sdk::export_plugin!(tracker(JsonlTracker));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{
        harness,
        serde_json::{self, json, Value},
    };

    #[test]
    fn meets_the_tracker_contract_and_writes_one_event_per_line() {
        let dir = std::env::temp_dir().join(format!("gymnos-jsonl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        harness::check_tracker::<super::JsonlTracker>(json!({ "file": "events.jsonl" }), &dir).unwrap();
        let events: Vec<Value> = std::fs::read_to_string(dir.join("events.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let kinds: Vec<&str> = events.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["start", "params", "metrics", "finish"]);
        assert_eq!(events[2]["metrics"], json!({ "loss": 0.5 }));
        let err =
            harness::check_tracker::<super::JsonlTracker>(json!({ "file": "../events.jsonl" }), &dir).unwrap_err();
        assert_eq!(err, "create: configuration error: file: `../events.jsonl` leaves the run folder; give a relative path inside it");
        let err = harness::check_tracker::<super::JsonlTracker>(json!({ "file": "" }), &dir).unwrap_err();
        assert_eq!(err, "create: configuration error: file: is empty; give a relative path inside the run folder");
        let err = harness::check_tracker::<super::JsonlTracker>(json!({ "file": "." }), &dir).unwrap_err();
        assert_eq!(
            err,
            "create: configuration error: file: `.` names the run folder itself; give a relative path inside it"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
