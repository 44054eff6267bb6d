//! `run` and `resume` with `--nproc-per-node N`: N engine processes on this machine, each a
//! rank of one data-parallel run, with torchrun's variables (the engine's c10d store is served by
//! rank 0 on a free port). On the CPU the cores are split between them (`OMP_NUM_THREADS`,
//! unless set); with GPUs each rank takes the GPU of its local rank.
//!
//! The supervisor passes Ctrl-C and SIGTERM on to every rank, forwards what they say (rank 0 as
//! it is, the others prefixed `[rank r]`), and ends with one line. When a rank fails or dies,
//! the others stop by themselves (their next collective fails, naming it); any still running
//! after a grace period are terminated, then killed. A rank that died of a signal is recorded
//! in the run's record by name.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Child, ExitCode, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use gymnos_host::{cli_args::RUN_DIR_FILE_ENV, record};

use super::engine::{engine, FORWARDED};

/// How long the other ranks get to stop by themselves once one has ended badly.
const GRACE: Duration = Duration::from_secs(20);
/// How long a terminated rank gets before it is killed.
const TERM_GRACE: Duration = Duration::from_secs(5);

/// A free TCP port on this machine for rank 0's store.
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port for the ranks' store")?;
    Ok(listener.local_addr()?.port())
}

/// What a rank's stderr ended with: its last `error:` line.
type LastError = Arc<Mutex<Option<String>>>;

struct Rank {
    rank: u32,
    child: Child,
    last_error: LastError,
    forwarder: Option<std::thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

/// Forwards a rank's stderr, holding back its `error:` lines (the supervisor ends with one).
fn forward(rank: u32, stderr: std::process::ChildStderr, last_error: LastError) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(error) = line.strip_prefix("error: ") {
                *last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
                continue;
            }
            let mut err = std::io::stderr().lock();
            let _ = match rank {
                0 => writeln!(err, "{line}"),
                _ => writeln!(err, "[rank {rank}] {line}"),
            };
        }
    })
}

fn spawn(registry: &Path, rank: u32, n: u32, port: u16, run_dir_file: &Path) -> Result<Rank> {
    let mut command = engine()?;
    command.arg("--registry").arg(registry);
    for (name, value) in [
        ("RANK", rank.to_string()),
        ("WORLD_SIZE", n.to_string()),
        ("LOCAL_RANK", rank.to_string()),
        ("LOCAL_WORLD_SIZE", n.to_string()),
        ("GROUP_RANK", "0".to_string()),
        ("MASTER_ADDR", "127.0.0.1".to_string()),
        ("MASTER_PORT", port.to_string()),
        ("GYMNOS_LAUNCHER", "local".to_string()),
    ] {
        command.env(name, value);
    }
    // On the CPU, the cores split between the ranks (a user's setting wins).
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get() as u32);
    let threads = (cores / n).max(1).to_string();
    for name in ["OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
        if std::env::var_os(name).is_none() {
            command.env(name, &threads);
        }
    }
    if rank == 0 {
        command.env(RUN_DIR_FILE_ENV, run_dir_file);
    } else {
        command.stdout(Stdio::null());
    }
    command.stderr(Stdio::piped()).stdin(Stdio::null());
    gymnos_host::child::die_with_parent(&mut command);
    let mut child = command.spawn().with_context(|| format!("cannot start rank {rank} of the training engine"))?;
    let last_error = LastError::default();
    let stderr = child.stderr.take().expect("stderr is piped");
    let forwarder = Some(forward(rank, stderr, last_error.clone()));
    Ok(Rank { rank, child, last_error, forwarder, status: None })
}

fn signal_all(ranks: &[Rank], signal: i32) {
    for rank in ranks.iter().filter(|r| r.status.is_none()) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(rank.child.id() as i32, signal) };
    }
}

/// Runs `n` ranks of the engine for `run`/`resume` and ends with one line for all of them.
pub fn supervise_ranks(registry: &Path, n: u32, known_run_dir: Option<PathBuf>) -> Result<ExitCode> {
    let port = free_port()?;
    let run_dir_file = tempfile::NamedTempFile::new().context("creating a temporary file")?;
    let mut signals = signal_hook::iterator::Signals::new(FORWARDED).context("installing the signal handlers")?;
    let mut ranks = Vec::with_capacity(n as usize);
    for rank in 0..n {
        match spawn(registry, rank, n, port, run_dir_file.path()) {
            Ok(started) => ranks.push(started),
            Err(e) => {
                signal_all(&ranks, libc::SIGKILL);
                return Err(e);
            }
        }
    }
    // The first rank to end badly, and when.
    let mut first_bad: Option<(u32, Instant)> = None;
    let mut terminated_at: Option<Instant> = None;
    loop {
        for signal in signals.pending() {
            signal_all(&ranks, signal);
        }
        for rank in ranks.iter_mut().filter(|r| r.status.is_none()) {
            if let Some(status) = rank.child.try_wait().context("waiting for the training engine")? {
                rank.status = Some(status);
                if !status.success() && first_bad.is_none() {
                    first_bad = Some((rank.rank, Instant::now()));
                }
            }
        }
        if ranks.iter().all(|r| r.status.is_some()) {
            break;
        }
        // A rank ended badly: the others get a grace period to stop by themselves.
        if let Some((_, since)) = first_bad {
            match terminated_at {
                None if since.elapsed() > GRACE => {
                    signal_all(&ranks, libc::SIGTERM);
                    terminated_at = Some(Instant::now());
                }
                Some(at) if at.elapsed() > TERM_GRACE => signal_all(&ranks, libc::SIGKILL),
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signals.handle().close();
    for rank in &mut ranks {
        if let Some(forwarder) = rank.forwarder.take() {
            let _ = forwarder.join();
        }
    }
    let written = std::fs::read_to_string(run_dir_file.path()).ok().filter(|s| !s.trim().is_empty());
    let run_dir = known_run_dir.or_else(|| written.map(|s| PathBuf::from(s.trim())));
    end(&ranks, first_bad.map(|(rank, _)| rank), run_dir.as_deref())
}

/// The one line (and exit code) for all ranks.
fn end(ranks: &[Rank], first_bad: Option<u32>, run_dir: Option<&Path>) -> Result<ExitCode> {
    let last_error = |r: &Rank| r.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(culprit) = first_bad.map(|b| &ranks[b as usize]) else {
        return Ok(ExitCode::SUCCESS);
    };
    let status = culprit.status.expect("it ended");
    // Every rank stopped after the same step, as asked (Ctrl-C: 130; a preemption, checkpointed:
    // 75): rank 0 said where to continue.
    let codes: Vec<Option<i32>> = ranks.iter().map(|r| r.status.and_then(|s| s.code())).collect();
    if let Some(code @ (75 | 130)) = codes[0] {
        if codes.iter().all(|c| *c == Some(code)) {
            if let Some(line) = last_error(&ranks[0]) {
                eprintln!("error: {line}");
            }
            return Ok(ExitCode::from(code as u8));
        }
    }
    let resume = |dir: &Path| format!("continue from its last checkpoint with `gymnos-host resume {}`", dir.display());
    match status.signal() {
        Some(signal) => {
            let reason = format!("rank {} died of {}", culprit.rank, gymnos_host::child::signal_name(signal));
            match run_dir {
                Some(dir) => {
                    record::record_failure(dir, &reason)
                        .with_context(|| format!("{reason}, and the run's record could not be updated"))?;
                    anyhow::bail!("run {}: {reason}; the run is recorded as failed; {}", dir.display(), resume(dir))
                }
                None => anyhow::bail!("{reason} before the run folder was created"),
            }
        }
        None => {
            // The rank said why: its line names it (rank 0's names the run folder).
            let line = last_error(culprit).unwrap_or_else(|| format!("rank {} exited with {status}", culprit.rank));
            anyhow::bail!("{line}")
        }
    }
}
