//! The terminal progress bar: epochs, and batches with loss and throughput. Hidden when
//! stderr is not a terminal.

use std::{io::IsTerminal, time::Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// The bars of one run.
pub struct Progress {
    bars: Option<MultiProgress>,
    epochs: Option<ProgressBar>,
    batches: Option<ProgressBar>,
    started: Instant,
    samples: u64,
}

impl Progress {
    /// The bars' owner, if bars are to be drawn (the log prints above them).
    pub fn terminal(disabled: bool) -> Option<MultiProgress> {
        (!disabled && std::io::stderr().is_terminal()).then(MultiProgress::new)
    }

    pub fn new(bars: Option<MultiProgress>, epochs: u32, done: u32) -> Self {
        let epochs_bar = bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(epochs as u64));
            bar.set_style(
                ProgressStyle::with_template("epoch {pos}/{len} {wide_bar} {elapsed_precise} {msg}").expect("template"),
            );
            bar.set_position(done as u64);
            bar
        });
        Self { bars, epochs: epochs_bar, batches: None, started: Instant::now(), samples: 0 }
    }

    pub fn start_epoch(&mut self, batches: usize) {
        self.started = Instant::now();
        self.samples = 0;
        if let Some(m) = &self.bars {
            let bar = m.add(ProgressBar::new(batches as u64));
            bar.set_style(ProgressStyle::with_template("  batch {pos}/{len} {bar:40} {msg}").expect("template"));
            self.batches = Some(bar);
        }
    }

    pub fn batch(&mut self, done: usize, samples: u64, loss: Option<f64>) {
        self.samples += samples;
        if let (Some(bar), Some(loss)) = (&self.batches, loss) {
            let rate = self.samples as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!("loss {loss:.4}  {rate:.0} samples/s"));
        }
        if let Some(bar) = &self.batches {
            bar.set_position(done as u64);
        }
    }

    pub fn end_epoch(&mut self, summary: &str) {
        if let Some(bar) = self.batches.take() {
            bar.finish_and_clear();
        }
        if let Some(bar) = &self.epochs {
            bar.inc(1);
            bar.set_message(summary.to_string());
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.epochs {
            bar.finish_and_clear();
        }
    }
}

/// The progress bars, driven by the run's events.
pub struct ProgressDisplay {
    bars: Option<MultiProgress>,
    progress: Option<Progress>,
}

impl ProgressDisplay {
    /// Bars drawn into `bars` (none: nothing is drawn).
    pub fn new(bars: Option<MultiProgress>) -> Self {
        Self { bars, progress: None }
    }
}

impl crate::events::Observer for ProgressDisplay {
    fn on_event(&mut self, event: &crate::events::Event<'_>) -> anyhow::Result<crate::events::Flow> {
        use crate::events::Event;
        match (event, &mut self.progress) {
            (Event::RunStarted(start), _) => {
                let done = start.resumed.as_ref().map_or(0, |r| r.epoch);
                self.progress = Some(Progress::new(self.bars.clone(), start.epochs, done));
            }
            (Event::EpochStarted { batches, .. }, Some(p)) => p.start_epoch(*batches),
            (Event::StepEnded(step), Some(p)) => p.batch(step.step + 1, step.samples as u64, step.loss),
            (Event::EpochEnded(end), Some(p)) => p.end_epoch(&super::headline(&end.metrics).join("  ")),
            (Event::TrainingEnded, Some(p)) => p.finish(),
            _ => {}
        }
        Ok(crate::events::Flow::Continue)
    }
}
