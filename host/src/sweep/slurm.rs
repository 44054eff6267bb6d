//! The Slurm executor: the trials as one job array (`sbatch --array`), followed with `squeue`
//! until every task has left the queue, cancelled with `scancel` on Ctrl-C. Each task runs one
//! trial through `gymnos-host` (and so `gymnos-engine`) on the node Slurm gives it.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use super::executor::{HostCall, Launch, Task};
use super::state::SweepDir;

/// What each array task asks Slurm for.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub parallel: Option<u32>,
    pub threads: u32,
    pub partition: Option<String>,
    pub memory: Option<String>,
    pub time_limit: Option<String>,
    pub gpus: Option<u32>,
    pub sbatch_args: Vec<String>,
    /// Data-parallel processes per trial: the array task's `--ntasks`, started by `srun`.
    pub processes: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("`{command}` could not be run: {cause} (is Slurm installed, and SLURM_CONF set?)")]
    Spawn { command: String, cause: std::io::Error },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("{}: cannot write: {cause}", path.display())]
    Write { path: PathBuf, cause: std::io::Error },
}

fn run(program: &str, args: &[&str]) -> Result<String, SlurmError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|cause| SlurmError::Spawn { command: command.clone(), cause })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr).trim().lines().last().unwrap_or("").to_string();
        return Err(SlurmError::Failed { command, stderr });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The batch script of one array: task `i` runs `tasks[i]`.
pub fn script(tasks: &[Task], resources: &Resources, call: &HostCall, dir: &SweepDir, job: &str) -> String {
    let mut s = String::from("#!/bin/bash\n");
    let n = tasks.len();
    let limit = resources.parallel.map(|p| format!("%{p}")).unwrap_or_default();
    let _ = writeln!(s, "#SBATCH --job-name={}", quote(&format!("gymnos-{}", call.sweep)));
    let _ = writeln!(s, "#SBATCH --array=0-{}{limit}", n - 1);
    let _ = writeln!(s, "#SBATCH --cpus-per-task={}", resources.threads);
    if resources.processes > 1 {
        let _ = writeln!(s, "#SBATCH --ntasks={}", resources.processes);
    }
    let _ = writeln!(s, "#SBATCH --output={}", dir.0.join("slurm").join(format!("{job}-%a.out")).display());
    for (flag, value) in
        [("partition", &resources.partition), ("mem", &resources.memory), ("time", &resources.time_limit)]
    {
        if let Some(value) = value {
            let _ = writeln!(s, "#SBATCH --{flag}={value}");
        }
    }
    if let Some(gpus) = resources.gpus {
        let _ = writeln!(s, "#SBATCH --gres=gpu:{gpus}");
    }
    s.push_str("set -u\n");
    let _ = writeln!(s, "export OMP_NUM_THREADS={0} MKL_NUM_THREADS={0}", resources.threads);
    s.push_str("case \"$SLURM_ARRAY_TASK_ID\" in\n");
    // Several processes per trial: srun starts them (one per task), and a rank that fails ends
    // the step.
    let (launch, srun) = match resources.processes {
        1 => (Launch::Single, ""),
        _ => (Launch::Srun, "srun --kill-on-bad-exit=1 "),
    };
    for (i, task) in tasks.iter().enumerate() {
        let log = dir.log(task.trial);
        let args: Vec<String> = call.args(task, launch).iter().map(|a| quote(a)).collect();
        let _ = writeln!(
            s,
            "  {i}) exec {srun}{} {} >> {} 2>&1 ;;",
            quote(&call.host.to_string_lossy()),
            args.join(" "),
            quote(&log.to_string_lossy())
        );
    }
    s.push_str("  *) echo \"no task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\nesac\n");
    s
}

/// Submits `tasks` as one array and follows it to its end. On `stop`, cancels it.
pub fn run_array(
    tasks: &[Task],
    resources: &Resources,
    call: &HostCall,
    dir: &SweepDir,
    stop: &AtomicBool,
) -> Result<(), SlurmError> {
    if tasks.is_empty() {
        return Ok(());
    }
    let slurm_dir = dir.0.join("slurm");
    let logs = dir.log(0).parent().map(Path::to_path_buf).unwrap_or_default();
    for d in [&slurm_dir, &logs] {
        fs::create_dir_all(d).map_err(|cause| SlurmError::Write { path: d.clone(), cause })?;
    }
    let job = format!("array-{}", chrono::Local::now().format("%Y%m%d-%H%M%S"));
    let path = slurm_dir.join(format!("{job}.sh"));
    crate::fsio::write_atomically(&path, script(tasks, resources, call, dir, &job).as_bytes(), 0o755)
        .map_err(|cause| SlurmError::Write { path: path.clone(), cause })?;
    let mut args: Vec<&str> = vec!["--parsable"];
    args.extend(resources.sbatch_args.iter().map(String::as_str));
    let path_text = path.to_string_lossy().into_owned();
    args.push(&path_text);
    let submitted = run("sbatch", &args)?;
    let job_id = submitted.trim().split(';').next().unwrap_or_default().to_string();
    tracing::info!("submitted {} trials as Slurm job {job_id}", tasks.len());
    let mut cancelled = false;
    loop {
        if stop.load(Ordering::Relaxed) && !cancelled {
            cancelled = true;
            // Tasks not started are dropped; running ones get SIGTERM, which a run takes as
            // Ctrl-C: they stop after their batch, resumable.
            run("scancel", &["--state=PENDING", &job_id])?;
            run("scancel", &["--signal=TERM", "--full", &job_id])?;
        }
        let queued = match run("squeue", &["-h", "-j", &job_id, "-o", "%i %T"]) {
            Ok(queued) => queued,
            // A job that ended a while ago is forgotten by the controller.
            Err(SlurmError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => return Ok(()),
            Err(e) => return Err(e),
        };
        if queued.trim().is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::executor::Action;

    #[test]
    fn a_trial_of_several_processes_asks_for_its_tasks_and_starts_them_with_srun() {
        let call = HostCall { host: "/bin/gymnos-host".into(), registry: "/r/registry.json".into(), sweep: "s".into() };
        let task = Task { trial: 0, action: Action::Run { experiment: "/e/t0.json".into() }, stop_after_epoch: None };
        let dir = SweepDir(PathBuf::from("/sweeps/s"));
        let two = Resources { threads: 3, processes: 2, ..Resources::default() };
        let script = script_of(&task, &two, &call, &dir);
        assert!(script.contains("#SBATCH --cpus-per-task=3\n#SBATCH --ntasks=2\n"), "{script}");
        assert!(
            script.contains("  0) exec srun --kill-on-bad-exit=1 '/bin/gymnos-host' '--registry' '/r/registry.json' 'run' '/e/t0.json' '--no-progress' '--sweep-trial=s:0' '--distributed' >> "),
            "{script}"
        );
        let one = Resources { threads: 3, processes: 1, ..Resources::default() };
        let script = script_of(&task, &one, &call, &dir);
        assert!(
            !script.contains("--ntasks") && !script.contains("srun") && !script.contains("--distributed"),
            "{script}"
        );
    }

    fn script_of(task: &Task, resources: &Resources, call: &HostCall, dir: &SweepDir) -> String {
        script(std::slice::from_ref(task), resources, call, dir, "job")
    }
}
