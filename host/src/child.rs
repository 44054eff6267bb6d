//! What the host's child processes (the engine, its ranks, the probe of a first load) share:
//! they die with the process that started them, and a death by a signal is said in words.

use std::{os::unix::process::CommandExt, process::Command};

/// `signal 6 (SIGABRT, an abort)`: a signal that ended a child, as a person reads it.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV, a segmentation fault",
        libc::SIGABRT => "SIGABRT, an abort",
        libc::SIGBUS => "SIGBUS, a bus error",
        libc::SIGFPE => "SIGFPE, an arithmetic fault",
        libc::SIGILL => "SIGILL, an illegal instruction",
        libc::SIGKILL => "SIGKILL, killed (perhaps by the out-of-memory killer)",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGUSR1 => "SIGUSR1",
        _ => return format!("signal {signal}"),
    };
    format!("signal {signal} ({name})")
}

/// Makes the child `command` starts be killed when this process dies, however it dies, so that
/// no engine or probe outlives the command that the user stopped.
pub fn die_with_parent(command: &mut Command) {
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signals_are_named() {
        assert_eq!(super::signal_name(libc::SIGABRT), "signal 6 (SIGABRT, an abort)");
        assert_eq!(super::signal_name(64), "signal 64");
    }
}
