//! The trackers. A failing tracker is reported and never stops the training.

use gymnos_host::experiment::ResolvedPlugin;
use gymnos_plugin_api::{
    abi_stable::std_types::{RResult, RSlice, RStr},
    Metric, PluginError, TrackerBox,
};

use super::call;

pub struct Trackers {
    list: Vec<(ResolvedPlugin, TrackerBox)>,
    /// What failed since the last [`Trackers::take_failures`].
    failures: Vec<String>,
}

impl Trackers {
    pub(super) fn new(list: Vec<(ResolvedPlugin, TrackerBox)>) -> Self {
        Self { list, failures: Vec::new() }
    }

    fn each(&mut self, what: &str, mut f: impl FnMut(&mut TrackerBox) -> RResult<(), PluginError>) {
        for (plugin, tracker) in &mut self.list {
            if let Err(e) = call(plugin, what, f(tracker)) {
                tracing::warn!("{e:#}");
                self.failures.push(format!("{e:#}"));
            }
        }
    }

    /// The failures since the last call.
    pub fn take_failures(&mut self) -> Vec<String> {
        std::mem::take(&mut self.failures)
    }

    pub fn start(&mut self, run: &serde_json::Value) {
        let text = run.to_string();
        self.each("start", |t| t.start(RStr::from_str(&text)));
    }

    pub fn log_params(&mut self, params: &serde_json::Value) {
        let text = params.to_string();
        self.each("log_params", |t| t.log_params(RStr::from_str(&text)));
    }

    pub fn log_metrics(&mut self, step: u64, scope: &str, metrics: &[(String, f64)]) {
        let metrics: Vec<Metric> = metrics.iter().map(|(n, v)| Metric { name: n.as_str().into(), value: *v }).collect();
        self.each("log_metrics", |t| t.log_metrics(step, RStr::from_str(scope), RSlice::from_slice(&metrics)));
    }

    pub fn finish(&mut self, status: &str) {
        self.each("finish", |t| t.finish(RStr::from_str(status)));
    }
}
