//! What a trial's attempt runs: `gymnos-host run` of its experiment file, or `resume` of its
//! run folder, as a command line the local and Slurm executors both use.

use std::path::{Path, PathBuf};

/// One attempt of one trial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub trial: u32,
    pub action: Action,
    /// Stop, paused, at the end of this epoch (successive halving's next rung).
    pub stop_after_epoch: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A fresh run of the trial's experiment file.
    Run { experiment: PathBuf },
    /// The trial's run folder, continued from its last checkpoint.
    Resume { run_dir: PathBuf },
}

/// How the host is called for a task.
#[derive(Clone, Debug)]
pub struct HostCall {
    /// The `gymnos-host` binary (absolute).
    pub host: PathBuf,
    /// The registry (absolute).
    pub registry: PathBuf,
    /// The sweep's name, recorded in each trial's run.
    pub sweep: String,
}

/// How a trial's processes are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launch {
    /// One process.
    Single,
    /// `n` data-parallel processes on this machine (`--nproc-per-node`).
    Local(u32),
    /// One of the data-parallel processes `srun` started (`--distributed`).
    Srun,
}

impl HostCall {
    /// The arguments after the binary.
    pub fn args(&self, task: &Task, launch: Launch) -> Vec<String> {
        let registry = self.registry.to_string_lossy().into_owned();
        let mut args = vec!["--registry".to_string(), registry];
        match &task.action {
            Action::Run { experiment } => {
                args.extend(["run".into(), path(experiment), "--no-progress".into()]);
                args.push(format!("--sweep-trial={}:{}", self.sweep, task.trial));
            }
            Action::Resume { run_dir } => args.extend(["resume".into(), path(run_dir), "--no-progress".into()]),
        }
        if let Some(epoch) = task.stop_after_epoch {
            args.push(format!("--stop-after-epoch={epoch}"));
        }
        match launch {
            Launch::Single => {}
            Launch::Local(n) => args.push(format!("--nproc-per-node={n}")),
            Launch::Srun => args.push("--distributed".into()),
        }
        args
    }
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// CPU threads for each of `parallel` trials on this machine.
pub fn threads_per_trial(parallel: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    (cores / parallel.max(1)).max(1)
}

/// The GPUs of this machine (`nvidia-smi -L`), none when it has none or no driver.
pub fn gpu_count() -> u32 {
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| String::from_utf8_lossy(&o.stdout).lines().filter(|l| l.starts_with("GPU ")).count() as u32)
}
