//! Progress reporting for long-running solvers, and their cooperative cancellation.
//!
//! A solver calls [`Progress::report`] at coarse, work-based points (every few tens of thousands
//! of items); the listener decides how often to pass that on (the binding throttles by time
//! before it crosses to the JavaScript thread). `()` is the listener that ignores everything.
//!
//! A listener may also carry a cancel flag ([`Progress::cancel_flag`]): the long solvers check
//! it with [`checkpoint`] at their report points and phase boundaries (never in their hot
//! loops), and their worker threads between runs of windows or steps, and stop with
//! [`Error::Cancelled`]. A run that is never cancelled gives the same result as without a flag.

use crate::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Receives `(done, total)` in units the solver chooses (samples, layers, candidates).
pub trait Progress {
    /// Called with monotonically non-decreasing `done <= total`.
    fn report(&mut self, done: u64, total: u64);

    /// The flag that, once set (from any thread), asks the solver to stop; `None` (the default):
    /// the run cannot be cancelled.
    fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
        None
    }

    /// Whether the caller asked the solver to stop.
    fn cancelled(&self) -> bool {
        is_set(self.cancel_flag().as_deref())
    }
}

impl Progress for () {
    fn report(&mut self, _done: u64, _total: u64) {}
}

impl<F: FnMut(u64, u64)> Progress for F {
    fn report(&mut self, done: u64, total: u64) {
        self(done, total)
    }
}

/// Whether a cancel flag (if any) is set; what worker threads check between their runs.
pub fn is_set(flag: Option<&AtomicBool>) -> bool {
    flag.is_some_and(|f| f.load(Ordering::Relaxed))
}

/// [`Error::Cancelled`] when `progress` was cancelled, else `Ok`: a solver's stopping point.
pub fn checkpoint(progress: &dyn Progress) -> Result<(), Error> {
    if progress.cancelled() {
        Err(Error::Cancelled)
    } else {
        Ok(())
    }
}

/// A listener that drops reports and carries a cancel flag (tests, and callers without a
/// progress callback that still want to cancel).
#[derive(Debug, Clone, Default)]
pub struct Cancellable {
    /// Set it to stop the run.
    pub flag: Arc<AtomicBool>,
}

impl Progress for Cancellable {
    fn report(&mut self, _done: u64, _total: u64) {}

    fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
        Some(self.flag.clone())
    }
}
