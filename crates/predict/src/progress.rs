//! The one progress display of the binaries: a bar on a terminal, a line every 10 s in a
//! log. It implements the runtime's [`lamoda_inference::Progress`], so the libraries count
//! and only the binaries draw (`predict-tags --input`, `lamoda-tags train | eval |
//! calibrate | consolidate | map | audit`).

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a log (stderr not a terminal) gets a progress line.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// A stage being shown.
struct Stage {
    what: String,
    total: u64,
    done: u64,
    bar: ProgressBar,
    last_line: Instant,
}

/// Progress on stderr: a bar when stderr is a terminal, else a line every 10 s (and one at
/// the end of each stage). [`Display::quiet`] shows nothing.
pub struct Display {
    terminal: bool,
    quiet: bool,
    stage: Mutex<Option<Stage>>,
}

impl Default for Display {
    fn default() -> Self {
        Self::new()
    }
}

impl Display {
    /// A display on stderr, a bar when it is a terminal.
    pub fn new() -> Self {
        Display {
            terminal: std::io::stderr().is_terminal(),
            quiet: false,
            stage: Mutex::new(None),
        }
    }

    /// A display that shows nothing.
    pub fn quiet() -> Self {
        Display {
            terminal: false,
            quiet: true,
            stage: Mutex::new(None),
        }
    }

    /// Moves the current stage to `done` of `total` steps (for work that knows absolute
    /// positions, such as a table read while tagged), with `message` after the bar. In a
    /// log it prints nothing: the caller's own lines ([`Display::log_line`]) say more.
    pub fn set(&self, done: u64, total: u64, message: &str) {
        self.with_stage(false, |stage, terminal| {
            stage.total = total;
            stage.done = done;
            if terminal {
                stage.bar.set_length(total);
                stage.bar.set_position(done);
                stage.bar.set_message(message.to_owned());
            }
        });
    }

    /// In a log (stderr not a terminal), prints `line()` when 10 s have passed since the
    /// stage's last line, or at once when `last`; on a terminal (the bar says it) or
    /// quiet, nothing. For callers whose own lines say more than `what: done/total`.
    pub fn log_line(&self, last: bool, line: impl FnOnce() -> String) {
        if self.quiet || self.terminal {
            return;
        }
        let Ok(mut slot) = self.stage.lock() else {
            return;
        };
        if let Some(stage) = slot.as_mut()
            && (last || stage.last_line.elapsed() >= LINE_EVERY)
        {
            stage.last_line = Instant::now();
            eprintln!("{}", line());
        }
    }

    /// Applies `change` to the current stage; `log`: print the 10-second line in a log.
    fn with_stage(&self, log: bool, change: impl FnOnce(&mut Stage, bool)) {
        if self.quiet {
            return;
        }
        let Ok(mut slot) = self.stage.lock() else {
            return;
        };
        let Some(stage) = slot.as_mut() else {
            return;
        };
        change(stage, self.terminal);
        let due = stage.last_line.elapsed() >= LINE_EVERY;
        if log && !self.terminal && due && stage.total > 0 {
            stage.last_line = Instant::now();
            eprintln!("{}: {}/{}", stage.what, stage.done, stage.total);
        }
    }
}

impl lamoda_inference::Progress for Display {
    fn start(&self, what: &str, total: u64) {
        if self.quiet {
            return;
        }
        let bar = if self.terminal {
            let bar = ProgressBar::new(total);
            let template = format!(
                "{what} {{bar:30}} {{pos}}/{{len}} {{msg}} [{{elapsed_precise}} < {{eta_precise}}]"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        if let Ok(mut slot) = self.stage.lock() {
            *slot = Some(Stage {
                what: what.to_owned(),
                total,
                done: 0,
                bar,
                last_line: Instant::now(),
            });
        }
    }

    fn advance(&self, steps: u64) {
        self.with_stage(true, |stage, _| {
            stage.done += steps;
            stage.bar.inc(steps);
        });
    }

    fn finish(&self) {
        let Ok(mut slot) = self.stage.lock() else {
            return;
        };
        if let Some(stage) = slot.take() {
            stage.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamoda_inference::Progress as _;

    #[test]
    fn a_stage_counts_its_steps_and_ends() {
        let display = Display {
            terminal: false,
            quiet: false,
            stage: Mutex::new(None),
        };
        let counts = |d: &Display| {
            d.stage
                .lock()
                .expect("lock")
                .as_ref()
                .map(|s| (s.done, s.total))
        };
        display.start("caching", 10);
        display.advance(3);
        display.advance(4);
        assert_eq!(counts(&display), Some((7, 10)));
        display.set(9, 12, "");
        assert_eq!(counts(&display), Some((9, 12)));
        // A caller's line: at once when last, else not before 10 s.
        let printed = std::cell::Cell::new(0);
        display.log_line(false, || {
            printed.set(printed.get() + 1);
            String::new()
        });
        assert_eq!(printed.get(), 0);
        display.log_line(true, || {
            printed.set(printed.get() + 1);
            String::new()
        });
        assert_eq!(printed.get(), 1);
        display.finish();
        assert!(display.stage.lock().expect("lock").is_none());
        // The quiet display holds nothing.
        let quiet = Display::quiet();
        quiet.start("x", 5);
        quiet.advance(1);
        assert!(quiet.stage.lock().expect("lock").is_none());
    }
}
