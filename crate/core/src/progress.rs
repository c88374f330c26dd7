//! Progress reporting for long-running solvers.
//!
//! A solver calls [`Progress::report`] at coarse, work-based points (every few tens of thousands
//! of items); the listener decides how often to pass that on (the binding throttles by time
//! before it crosses to the JavaScript thread). `()` is the listener that ignores everything.

/// Receives `(done, total)` in units the solver chooses (samples, layers, candidates).
pub trait Progress {
    /// Called with monotonically non-decreasing `done <= total`.
    fn report(&mut self, done: u64, total: u64);
}

impl Progress for () {
    fn report(&mut self, _done: u64, _total: u64) {}
}

impl<F: FnMut(u64, u64)> Progress for F {
    fn report(&mut self, done: u64, total: u64) {
        self(done, total)
    }
}
