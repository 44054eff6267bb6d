//! Arguments of the commands the engine carries out, shared by `gymnos-host` (for parsing
//! and `--help`) and `gymnos-engine` (which does the work).

/// The file (named by this environment variable) where the engine writes the run folder it
/// created, so that `gymnos-host` can record the run if the engine dies.
pub const RUN_DIR_FILE_ENV: &str = "GYMNOS_RUN_DIR_FILE";

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::record::SweepTrial;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Override a field, e.g. --set training.epochs=3 (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Root folder for the run record (overrides experiment.output_root).
    #[arg(long, value_name = "DIR")]
    pub output_root: Option<PathBuf>,
    /// Hide the progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Stops the run at the end of this epoch, checkpointed, status `paused`; `resume` continues
    /// it (a sweep's early stopping).
    #[arg(long, hide = true, value_name = "EPOCH")]
    pub stop_after_epoch: Option<u32>,
    /// Records the run as trial N of a sweep (set by `gymnos-host sweep`).
    #[arg(long, hide = true, value_name = "SWEEP:N", value_parser = parse_sweep_trial)]
    pub sweep_trial: Option<SweepTrial>,
    #[command(flatten)]
    pub parallel: ParallelArgs,
}

/// How a run is spread over processes (data-parallel training).
#[derive(Args, Debug, Clone, Default)]
pub struct ParallelArgs {
    /// Train data-parallel in N processes on this machine: one GPU each (NCCL), or on the CPU
    /// the cores split between them (Gloo). `training.batch_size` is the global batch.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub nproc_per_node: Option<u32>,
    /// Take part in a data-parallel run whose processes a launcher started: torchrun's variables
    /// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or Slurm's
    /// under srun (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NODEID, SLURM_JOB_NODELIST).
    #[arg(long, conflicts_with = "nproc_per_node")]
    pub distributed: bool,
    /// Seconds a process waits for the others (to start, and in every collective) before the
    /// run fails naming the process that stopped or hangs.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub dist_timeout: u64,
    /// The communication backend: nccl (CUDA tensors) or gloo (CPU, or CUDA through the host).
    /// Default: nccl when training on CUDA, else gloo.
    #[arg(long, value_enum, value_name = "BACKEND")]
    pub dist_backend: Option<DistBackend>,
}

impl ParallelArgs {
    /// Whether this process is one of several.
    pub fn enabled(&self) -> bool {
        self.distributed || self.nproc_per_node.is_some_and(|n| n > 1)
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DistBackend {
    Gloo,
    Nccl,
}

fn parse_sweep_trial(text: &str) -> Result<SweepTrial, String> {
    let (sweep, trial) = text.rsplit_once(':').ok_or("expected SWEEP:N")?;
    let trial = trial.parse().map_err(|_| format!("`{trial}` is not a trial number"))?;
    Ok(SweepTrial { sweep: sweep.to_string(), trial })
}

#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    /// The experiment file.
    pub file: PathBuf,
    /// Override a field, e.g. --set training.epochs=3 (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Also load the plugins, create every component, load and split the data, fit the
    /// preprocessors, build the model and take one training step (what `run` does first),
    /// writing nothing.
    #[arg(long)]
    pub deep: bool,
    /// With --deep: also time this many training batches of the data pipeline alone (reading,
    /// preprocessing, augmentation and the copy to the device, in the loader's threads; no
    /// model) and report the samples per second it can feed.
    #[arg(long, value_name = "BATCHES", requires = "deep")]
    pub measure_data: Option<u32>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ResumeArgs {
    /// The run folder (…/executions/<timestamp>/).
    pub run_dir: PathBuf,
    #[arg(long)]
    pub no_progress: bool,
    /// Stops again at the end of this epoch (a sweep's early stopping).
    #[arg(long, hide = true, value_name = "EPOCH")]
    pub stop_after_epoch: Option<u32>,
    #[command(flatten)]
    pub parallel: ParallelArgs,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PredictFormat {
    Json,
    Csv,
}

#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// The run folder whose model to use.
    pub run_dir: PathBuf,
    /// A file of new samples in a format the run's dataset plugin reads.
    pub input: PathBuf,
    /// Where to write the predictions (default: standard output).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Output format (default: from the output's extension, else JSON).
    #[arg(long, value_enum)]
    pub format: Option<PredictFormat>,
    /// Use the best checkpoint instead of the final model.
    #[arg(long)]
    pub best: bool,
}
