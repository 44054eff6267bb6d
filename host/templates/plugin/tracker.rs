//! `{{name}}`: a gymnos tracker plugin. The example appends every metric to a CSV file in the
//! run folder. The host reports a tracker's errors and keeps training.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::PathBuf,
};

use gymnos_plugin_sdk::{serde_json::Value, Config, Configurable, Context, PluginError, Result, Tracker};

/// The configuration: each field is a key of the experiment's `config` object, its doc comment
/// the key's description. The host checks the types, defaults and rules before anything runs.
#[derive(Config)]
pub struct {{Type}}Config {
    /// File name, in the run folder
    #[config(default = "{{name}}.csv", inside_run_folder)]
    pub file: String,
}

pub struct {{Type}} {
    path: PathBuf,
    file: Option<File>,
}

impl {{Type}} {
    fn write(&mut self, line: &str) -> Result<()> {
        let io = |e: std::io::Error| PluginError::io(format!("{}: {e}", self.path.display()));
        if self.file.is_none() {
            let file = OpenOptions::new().create(true).append(true).open(&self.path).map_err(io)?;
            self.file = Some(file);
        }
        writeln!(self.file.as_mut().expect("opened above"), "{line}").map_err(io)
    }
}

impl Configurable for {{Type}} {
    const NAME: &'static str = "{{name}}";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Appends metrics to a CSV file in the run folder";
    type Config = {{Type}}Config;

    fn build(config: {{Type}}Config, ctx: &Context) -> Result<Self> {
        let dir = ctx.output_dir.clone().unwrap_or_else(|| ctx.base_dir.clone());
        Ok(Self { path: dir.join(config.file), file: None })
    }
}

impl Tracker for {{Type}} {
    fn start(&mut self, _run: &Value) -> Result<()> {
        self.write("step,scope,metric,value")
    }

    fn log_params(&mut self, _params: &Value) -> Result<()> {
        Ok(())
    }

    fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) -> Result<()> {
        for (name, value) in metrics {
            self.write(&format!("{step},{scope},{name},{value}"))?;
        }
        Ok(())
    }

    fn finish(&mut self, _status: &str) -> Result<()> {
        self.file.take().map_or(Ok(()), |mut f| f.flush().map_err(|e| PluginError::io(e.to_string())))
    }
}

gymnos_plugin_sdk::export_plugin!(tracker({{Type}}));

#[cfg(test)]
mod tests {
    use gymnos_plugin_sdk::{harness, serde_json::json};

    #[test]
    fn meets_the_tracker_contract() {
        let dir = std::env::temp_dir().join(format!("{{name}}-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        harness::check_tracker::<super::{{Type}}>(json!({}), &dir).unwrap();
        let text = std::fs::read_to_string(dir.join("{{name}}.csv")).unwrap();
        assert_eq!(text, "step,scope,metric,value\n1,epoch,loss,0.5\n");
        let err = harness::check_tracker::<super::{{Type}}>(json!({ "file": "/tmp/x.csv" }), &dir).unwrap_err();
        assert!(err.ends_with("leaves the run folder; give a relative path inside it"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
