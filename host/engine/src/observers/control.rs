//! The controls that end a run before its last epoch: Ctrl-C (SIGINT, SIGTERM), a cluster's
//! notice before it preempts the job (SIGUSR1), and a sweep's pause at a rung.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use anyhow::Result;

use crate::events::{Event, Flow, Observer};

/// Interrupts the run after the step during which the flag was set (by a signal handler).
pub struct StopOnSignal(pub Arc<AtomicBool>);

impl StopOnSignal {
    /// A flag set by SIGINT and SIGTERM.
    pub fn install() -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, stop.clone())
                .map_err(|e| anyhow::anyhow!("installing the Ctrl-C handler: {e}"))?;
        }
        Ok(Self(stop))
    }
}

impl Observer for StopOnSignal {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        let stop = matches!(event, Event::EpochStarted { .. } | Event::StepEnded(_)) && self.0.load(Ordering::Relaxed);
        Ok(if stop { Flow::Interrupt } else { Flow::Continue })
    }
}

/// Checkpoints the run where it stands and stops it, after the step during which SIGUSR1 came
/// (Slurm sends it ahead of a preemption or the time limit with `--signal=USR1@SECONDS`); one
/// that comes between steps (validation) takes effect after the next.
pub struct PreemptOnSignal(pub Arc<AtomicBool>);

impl PreemptOnSignal {
    pub fn install() -> Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGUSR1, flag.clone())
            .map_err(|e| anyhow::anyhow!("installing the SIGUSR1 handler: {e}"))?;
        Ok(Self(flag))
    }
}

impl Observer for PreemptOnSignal {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        let now = matches!(event, Event::StepEnded(_)) && self.0.load(Ordering::Relaxed);
        Ok(if now { Flow::Preempt } else { Flow::Continue })
    }
}

/// Pauses the run, checkpointed, at the end of epoch `epoch` (1-based) unless it is the last
/// (a sweep's successive halving).
pub struct PauseAfter(pub u32);

impl Observer for PauseAfter {
    fn on_event(&mut self, event: &Event<'_>) -> Result<Flow> {
        Ok(match event {
            Event::EpochEnded(end) if end.epoch == self.0 && end.epoch < end.epochs => Flow::Pause,
            _ => Flow::Continue,
        })
    }
}
