//! The safe first load: a library this registry has not seen (by its sha256) is first opened in
//! a child process (`gymnos-host plugins probe LIB`, hidden) with a time limit, before this
//! process ever loads it. A library whose loading crashes, aborts or hangs is refused with one
//! line saying which, and nothing is installed; one that opens is described by the child (its
//! components and their keys), so that installing it never loads it here at all.

use std::{
    io::Read,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use crate::registry::LibraryDescription;

/// How long a library's first load may take (`GYMNOS_PROBE_TIMEOUT`, seconds, changes it).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The child process that opens libraries on this process's behalf.
#[derive(Clone, Debug)]
pub struct Probe {
    /// `gymnos-host`, run as `PROGRAM plugins probe LIB`.
    pub program: PathBuf,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("loading it crashed the probe process: {0}; not installed")]
    Crashed(String),
    #[error("loading it did not finish within {0} s (it hangs at load); not installed")]
    Hung(u64),
    /// The child's own refusal, without the library's path it began with (so that the caller
    /// names the library as the user gave it, not the store's copy).
    #[error("{0}")]
    Refused(String),
    #[error("the probe process could not run: {0}")]
    Spawn(String),
}

impl ProbeError {
    /// The error as one line about `path`: `PATH: why`, or `PATH (package): why` when the
    /// child named the library's package.
    pub fn about(&self, path: &Path) -> String {
        match self {
            ProbeError::Refused(rest) if rest.starts_with(" (") => format!("{}{rest}", path.display()),
            _ => format!("{}: {self}", path.display()),
        }
    }
}

impl Probe {
    /// The probe of this `gymnos-host`, with the time limit `GYMNOS_PROBE_TIMEOUT` names.
    pub fn of_this_binary() -> std::io::Result<Probe> {
        let timeout = std::env::var("GYMNOS_PROBE_TIMEOUT")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        Ok(Probe { program: std::env::current_exe()?, timeout })
    }

    /// Opens `library` in a child process; what it says of itself.
    pub fn describe(&self, library: &Path) -> Result<LibraryDescription, ProbeError> {
        let mut command = Command::new(&self.program);
        command
            .args(["plugins", "probe"])
            .arg(library)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        crate::child::die_with_parent(&mut command);
        let mut child = command.spawn().map_err(|e| ProbeError::Spawn(format!("{}: {e}", self.program.display())))?;
        let started = Instant::now();
        // Reads the pipes as the child writes, so that a chatty child never blocks on them.
        let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let out = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stdout.read_to_string(&mut text);
            text
        });
        let err = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() > self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ProbeError::Hung(self.timeout.as_secs()));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(ProbeError::Spawn(e.to_string())),
            }
        };
        let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
        if let Some(signal) = status.signal() {
            return Err(ProbeError::Crashed(crate::child::signal_name(signal)));
        }
        if !status.success() {
            let line = err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it failed without a word");
            let line = line.trim_start_matches("error: ");
            let line =
                line.strip_prefix(&*library.display().to_string()).map_or(line, |rest| rest.trim_start_matches(": "));
            return Err(ProbeError::Refused(line.to_string()));
        }
        serde_json::from_str(&out)
            .map_err(|e| ProbeError::Refused(format!("the probe's answer is not a description ({e})")))
    }
}
