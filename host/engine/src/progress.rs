//! The terminal progress bar: epochs, and batches with loss and throughput. Hidden when
//! stderr is not a terminal.

use std::{io::IsTerminal, time::Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

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
