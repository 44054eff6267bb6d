//! Arguments of the commands the engine carries out, shared by `gymnos-host` (for parsing
//! and `--help`) and `gymnos-engine` (which does the work).

/// The file (named by this environment variable) where the engine writes the run folder it
/// created, so that `gymnos-host` can record the run if the engine dies.
pub const RUN_DIR_FILE_ENV: &str = "GYMNOS_RUN_DIR_FILE";

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
};

use clap::{builder::TypedValueParser, error::ErrorKind, Args, ValueEnum};

use crate::record::SweepTrial;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The experiment file.
    #[arg(value_parser = Utf8Path)]
    pub file: PathBuf,
    /// Override a field, e.g. --set training.epochs=3 (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub overrides: Vec<String>,
    /// Root folder for the run record (overrides experiment.output_root).
    #[arg(long, value_name = "DIR", value_parser = Utf8Path)]
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
    #[arg(value_parser = Utf8Path)]
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
    #[arg(value_parser = Utf8Path)]
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
    #[arg(value_parser = Utf8Path)]
    pub run_dir: PathBuf,
    /// A file of new samples in a format the run's dataset plugin reads.
    #[arg(value_parser = Utf8Path)]
    pub input: PathBuf,
    /// Where to write the predictions (default: standard output).
    #[arg(long, short, value_parser = Utf8Path)]
    pub output: Option<PathBuf>,
    /// Output format (default: from the output's extension, else JSON).
    #[arg(long, value_enum)]
    pub format: Option<PredictFormat>,
    /// Use the best checkpoint instead of the final model.
    #[arg(long)]
    pub best: bool,
}

/// Why `path` cannot be given to a command that records it: the run's records (and the
/// plugins' configuration) are UTF-8 JSON, so a path that is not UTF-8 text, as given or made
/// absolute against the current folder, could only be recorded altered (and would then name
/// another folder). `None` when it is fine.
pub fn utf8_path_problem(path: &Path) -> Option<String> {
    if path.to_str().is_none() {
        return Some(format!(
            "{:?} is not UTF-8 text, which the run's records (UTF-8 JSON) cannot name; use a UTF-8 name",
            path.as_os_str()
        ));
    }
    match std::path::absolute(path) {
        Ok(absolute) if absolute.to_str().is_none() => Some(format!(
            "{:?} is not UTF-8 text once made absolute (the current folder's name is not), which the run's \
             records (UTF-8 JSON) cannot name; give an absolute UTF-8 path",
            absolute.as_os_str()
        )),
        _ => None,
    }
}

/// clap's parser of the path arguments of `run`, `validate`, `resume` and `predict` (and of
/// any other command that records a path; use it with `#[arg(value_parser = Utf8Path)]`): a
/// path [`utf8_path_problem`] refuses is an error of one line naming the argument, before
/// anything is read or written.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Path;

impl TypedValueParser for Utf8Path {
    type Value = PathBuf;

    fn parse_ref(&self, _cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<PathBuf, clap::Error> {
        let path = PathBuf::from(value);
        if value.is_empty() {
            let name = arg.map_or_else(|| "a path".to_string(), ToString::to_string);
            return Err(clap::Error::raw(ErrorKind::InvalidValue, format!("{name}: the path is empty\n")));
        }
        match utf8_path_problem(&path) {
            None => Ok(path),
            Some(why) => {
                let name = arg.map_or_else(|| "a path".to_string(), ToString::to_string);
                Err(clap::Error::raw(ErrorKind::InvalidUtf8, format!("{name}: {why}\n")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn a_path_that_is_not_utf8_is_refused_naming_the_argument() {
        let bad = OsStr::from_bytes(b"/tmp/o\xff");
        let err = Cli::try_parse_from([OsStr::new("x"), OsStr::new("e.json"), OsStr::new("--output-root"), bad])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "error: --output-root <DIR>: \"/tmp/o\\xFF\" is not UTF-8 text, which the run's records (UTF-8 JSON) \
             cannot name; use a UTF-8 name\n"
        );
        let err = Cli::try_parse_from([OsStr::new("x"), OsStr::from_bytes(b"e\xfe.json")]).unwrap_err().to_string();
        assert!(err.starts_with("error: <FILE>: \"e\\xFE.json\" is not UTF-8 text"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        let err = Cli::try_parse_from(["x", ""]).unwrap_err().to_string();
        assert_eq!(err, "error: <FILE>: the path is empty\n");
        let ok = Cli::try_parse_from(["x", "é.json", "--output-root", "runs"]).unwrap();
        assert_eq!(ok.run.file, PathBuf::from("é.json"));
        assert_eq!(ok.run.output_root, Some(PathBuf::from("runs")));
    }
}
