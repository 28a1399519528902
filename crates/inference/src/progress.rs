//! How long passes report progress without drawing it: the library counts steps through a
//! [`Progress`] the caller gives; the binaries implement it (a bar on a terminal, a line
//! every few seconds in a log: `lamoda_predict::progress`). The runtime itself never
//! draws, so the server links no terminal code.

/// A listener for the steps of long work. Every method has a do-nothing default, so
/// [`Silent`] (or any type) implements only what it shows.
pub trait Progress: Sync {
    /// A stage of `total` steps starts (`what`: "caching lower layers", "training", …).
    fn start(&self, what: &str, total: u64) {
        let _ = (what, total);
    }

    /// `steps` more steps of the current stage are done.
    fn advance(&self, steps: u64) {
        let _ = steps;
    }

    /// The current stage is over.
    fn finish(&self) {}
}

/// Progress nobody watches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records what it hears.
    #[derive(Default)]
    struct Log(Mutex<Vec<String>>);

    impl Progress for Log {
        fn start(&self, what: &str, total: u64) {
            self.0.lock().expect("lock").push(format!("{what}/{total}"));
        }
        fn advance(&self, steps: u64) {
            self.0.lock().expect("lock").push(format!("+{steps}"));
        }
    }

    #[test]
    fn a_listener_hears_only_what_it_implements() {
        let log = Log::default();
        let p: &dyn Progress = &log;
        p.start("caching", 3);
        p.advance(2);
        p.finish();
        assert_eq!(*log.0.lock().expect("lock"), ["caching/3", "+2"]);
        // The silent one accepts everything.
        let s: &dyn Progress = &Silent;
        s.start("x", 1);
        s.advance(1);
        s.finish();
    }
}
