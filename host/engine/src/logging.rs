//! Logging: short lines on stderr, and the full log with stage durations in the run's
//! `execution.log`. The file is only known once the run folder exists, so lines logged before
//! are kept and written first.

use std::{
    fs::File,
    io::{self, Write},
    path::Path,
    sync::{Arc, Mutex},
};

use tracing_subscriber::fmt::FormatFields as _;
use tracing_subscriber::{
    fmt::format::FmtSpan, fmt::MakeWriter, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter, Layer,
};

#[derive(Default)]
struct Sink {
    pending: Vec<u8>,
    file: Option<File>,
}

/// The execution log's writer; cheap to clone.
#[derive(Clone, Default)]
pub struct LogFile(Arc<Mutex<Sink>>);

impl LogFile {
    /// Starts writing to `path` (appending: a resumed run continues its log).
    pub fn attach(&self, path: &Path) -> io::Result<()> {
        let mut file = File::options().create(true).append(true).open(path)?;
        let mut sink = self.0.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(&sink.pending)?;
        sink.pending.clear();
        sink.file = Some(file);
        Ok(())
    }
}

pub struct LogWriter(Arc<Mutex<Sink>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sink = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &mut sink.file {
            // A log line that cannot be written (full disk) must not stop the training: the
            // failure surfaces where the run writes its record.
            Some(file) => {
                let _ = file.write_all(buf);
            }
            None => sink.pending.extend_from_slice(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(self.0.clone())
    }
}

/// How much goes to stderr (the execution log always has the stages and epochs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    /// Warnings and errors only (the ranks of a data-parallel run other than 0).
    Quiet,
    Normal,
    Debug,
    Trace,
}

impl From<u8> for Verbosity {
    /// The count of `-v` flags.
    fn from(count: u8) -> Self {
        match count {
            0 => Verbosity::Normal,
            1 => Verbosity::Debug,
            _ => Verbosity::Trace,
        }
    }
}

/// Installs the subscriber; returns the execution log to attach once the run folder exists.
pub fn init(verbosity: Verbosity, progress: Option<indicatif::MultiProgress>) -> LogFile {
    let file = LogFile::default();
    let file_level = if matches!(verbosity, Verbosity::Debug | Verbosity::Trace) { "debug" } else { "info" };
    let stderr_level = match verbosity {
        Verbosity::Quiet => "warn",
        Verbosity::Normal => "info",
        Verbosity::Debug => "debug",
        Verbosity::Trace => "trace",
    };
    let stderr_filter = EnvFilter::try_from_env("GYMNOS_LOG")
        .unwrap_or_else(|_| EnvFilter::new(stderr_level))
        .add_directive("log_only=off".parse().expect("directive"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr = tracing_subscriber::fmt::layer()
        .event_format(Brief { ansi })
        // A field formatter of its own type: tracing caches formatted span fields per type, and
        // the log file must not get this layer's colours.
        .fmt_fields(tracing_subscriber::fmt::format::PrettyFields::new())
        .with_writer(StderrWriter(progress))
        .with_filter(stderr_filter);
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_target(false)
        .with_span_events(FmtSpan::CLOSE)
        .with_writer(file.clone())
        .with_filter(EnvFilter::new(file_level));
    tracing_subscriber::registry().with(stderr).with(log).init();
    file
}

/// One short line per event on stderr: the level (unless INFO) and the message.
struct Brief {
    ansi: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for Brief
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        let (on, off) = match (self.ansi, level) {
            (true, tracing::Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
            (true, tracing::Level::WARN) => ("\x1b[33m", "\x1b[0m"),
            _ => ("", ""),
        };
        if level != tracing::Level::INFO {
            write!(writer, "{on}{}{off}: ", level.as_str().to_lowercase())?;
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// stderr, printed above the progress bars when they are shown.
#[derive(Clone)]
struct StderrWriter(Option<indicatif::MultiProgress>);

pub struct StderrLine(Option<indicatif::MultiProgress>, Vec<u8>);

impl Write for StderrLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for StderrLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.1);
        match &self.0 {
            Some(bars) => {
                let _ = bars.println(text.trim_end());
            }
            None => {
                let _ = io::stderr().write_all(text.as_bytes());
            }
        }
    }
}

impl<'a> MakeWriter<'a> for StderrWriter {
    type Writer = StderrLine;
    fn make_writer(&'a self) -> Self::Writer {
        StderrLine(self.0.clone(), Vec::new())
    }
}
