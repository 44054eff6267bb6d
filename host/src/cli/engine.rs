//! `run`, `resume`, `predict` and `validate --deep` need libtorch; they are carried out by
//! `gymnos-engine`, which sits next to this binary, so that the commands that need no
//! libtorch never pay for loading it.
//!
//! `predict` and `validate --deep` replace this process with the engine (exec). `run` and
//! `resume` start it as a child and wait: if it dies of a signal (a plugin that segfaults or
//! aborts, the out-of-memory killer), the run's record says so, and its last checkpoint is still
//! there to `resume`. The child follows this process: Ctrl-C and SIGTERM are passed on, and if
//! this process is killed the engine is killed too.

use std::{
    os::unix::process::{CommandExt, ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context, Result};
use gymnos_host::{cli_args::RUN_DIR_FILE_ENV, record};

/// The signals a supervisor passes on to the engine: Ctrl-C and SIGTERM stop a run after its
/// batch; SIGUSR1 (a cluster's notice before preempting the job) checkpoints it where it stands.
pub(super) const FORWARDED: [i32; 3] =
    [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR1];

/// The engine binary's name; it is installed next to `gymnos-host`.
pub const ENGINE: &str = "gymnos-engine";

pub(super) fn engine() -> Result<Command> {
    let exe = std::env::current_exe().context("locating gymnos-host")?;
    let engine = exe.with_file_name(ENGINE);
    if !engine.is_file() {
        anyhow::bail!("{}: the training engine is missing; it must sit next to {}", engine.display(), exe.display());
    }
    let mut command = Command::new(engine);
    command.args(std::env::args_os().skip(1));
    Ok(command)
}

/// Replaces this process with the engine, given the same arguments and the resolved registry.
pub fn exec(registry: &Path) -> Result<()> {
    let mut command = engine()?;
    let err = command.arg("--registry").arg(registry).exec();
    Err(err).context("cannot start the training engine")
}

/// Runs the engine as a child for `run`/`resume` and records its death, if it dies.
pub fn supervise(registry: &Path, known_run_dir: Option<PathBuf>) -> Result<ExitCode> {
    let run_dir_file = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let mut command = engine()?;
    command.arg("--registry").arg(registry).env(RUN_DIR_FILE_ENV, run_dir_file.path());
    gymnos_host::child::die_with_parent(&mut command);
    let mut signals = signal_hook::iterator::Signals::new(FORWARDED).context("installing the signal handlers")?;
    let handle = signals.handle();
    let mut child = command.spawn().context("cannot start the training engine")?;
    let child_pid = child.id() as i32;
    let forwarder = std::thread::spawn(move || {
        for signal in signals.forever() {
            // SAFETY: sending a signal to our own child.
            unsafe { libc::kill(child_pid, signal) };
        }
    });
    let status = child.wait().context("waiting for the training engine")?;
    handle.close();
    let _ = forwarder.join();
    if let Some(code) = status.code() {
        return Ok(ExitCode::from(code.clamp(0, 255) as u8));
    }
    let signal = status.signal().unwrap_or(0);
    let written = std::fs::read_to_string(run_dir_file.path()).ok().filter(|s| !s.trim().is_empty());
    let run_dir = known_run_dir.or_else(|| written.map(|s| PathBuf::from(s.trim())));
    let reason = format!("the training process died of {}", gymnos_host::child::signal_name(signal));
    match run_dir {
        Some(dir) => {
            let recorded = record::record_death(&dir, &reason)
                .with_context(|| format!("{reason}, and its record could not be updated"))?;
            let note = if recorded { "; the run is recorded as failed" } else { "" };
            anyhow::bail!(
                "run {}: {reason}{note}; continue from its last checkpoint with `gymnos-host resume {}`",
                dir.display(),
                dir.display()
            )
        }
        None => anyhow::bail!("{reason} before it created a run folder"),
    }
}
