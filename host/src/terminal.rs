//! What the binaries print, and how they end: a panic as one line, and output to a closed pipe
//! (`gymnos-host plugins list | head -1`) as a quiet, successful end, as Unix tools do.

use std::io::Write;

/// A panic is a bug, but it must still reach the user as one line, not a backtrace.
pub fn one_line_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error{at}: {}", message.lines().next().unwrap_or_default());
    }));
}

/// Writes `text` to standard output. When the reader has gone (a closed pipe), the process ends
/// here with status 0: nobody is left to read the rest, and that is not an error.
pub fn write_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` through [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => { $crate::terminal::write_stdout("\n") };
    ($($arg:tt)*) => { $crate::terminal::write_stdout(&format!("{}\n", format_args!($($arg)*))) };
}
