//! Progress of a long transfer on stderr: a bar (bytes, rate, ETA) on a
//! terminal, a plain line every few seconds otherwise, nothing with
//! `--json` (whose output is for scripts).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::output::bytes;

/// How often a plain line is printed when stderr is not a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Progress {
    shown: Shown,
    done: u64,
    total: u64,
}

enum Shown {
    Bar(ProgressBar),
    Lines { label: String, last: Instant },
    Quiet,
}

impl Progress {
    /// A transfer of `total` bytes named `label` (already safe to print).
    pub(crate) fn new(total: u64, label: &str, quiet: bool) -> Progress {
        let shown = if quiet {
            Shown::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_string());
            Shown::Bar(bar)
        } else {
            Shown::Lines {
                label: label.to_string(),
                last: Instant::now(),
            }
        };
        Progress {
            shown,
            done: 0,
            total,
        }
    }

    pub(crate) fn advance(&mut self, n: u64) {
        self.done = self.done.saturating_add(n);
        match &mut self.shown {
            Shown::Bar(bar) => bar.inc(n),
            Shown::Lines { label, last } => {
                if last.elapsed() >= LINE_EVERY {
                    *last = Instant::now();
                    eprintln!(
                        "comity: {label}: {} of {} ({}%)",
                        bytes(self.done),
                        bytes(self.total),
                        percent(self.done, self.total)
                    );
                }
            }
            Shown::Quiet => {}
        }
    }

    /// Removes the bar (the command prints its own result).
    pub(crate) fn finish(&self) {
        if let Shown::Bar(bar) = &self.shown {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `done` of `total` in whole percent (100 for an empty total).
pub(crate) fn percent(done: u64, total: u64) -> u64 {
    if total == 0 {
        100
    } else {
        (u128::from(done) * 100 / u128::from(total)) as u64
    }
}
