//! Progress from a solver on a libuv worker to a JavaScript callback.
//!
//! The callback is wrapped in a non-blocking threadsafe function, and calls are throttled by
//! wall time (at most one every [`MIN_INTERVAL`], plus the final one), so a listener sees a few
//! updates a second however finely the solver reports.

use napi::bindgen_prelude::FnArgs;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use omnibal_core::progress::Progress;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time between two progress calls into JavaScript.
pub const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// `(done, total) => void`, callable from any thread.
pub type ProgressFn = ThreadsafeFunction<FnArgs<(f64, f64)>, (), FnArgs<(f64, f64)>, Status, false>;

/// A [`Progress`] listener that forwards to a JS callback, throttled, and carries the task's
/// cancel flag (if any).
pub struct JsProgress {
    callback: Option<ProgressFn>,
    last: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
}

impl JsProgress {
    /// Wraps an optional callback; without one, reports are dropped.
    pub fn new(callback: Option<ProgressFn>) -> Self {
        JsProgress {
            callback,
            last: None,
            cancel: None,
        }
    }

    /// The same, stopped by `cancel` once it is set.
    pub fn cancellable(callback: Option<ProgressFn>, cancel: Option<Arc<AtomicBool>>) -> Self {
        JsProgress {
            cancel,
            ..JsProgress::new(callback)
        }
    }
}

impl Progress for JsProgress {
    fn report(&mut self, done: u64, total: u64) {
        let Some(callback) = &self.callback else {
            return;
        };
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= MIN_INTERVAL);
        if due || done >= total {
            self.last = Some(now);
            callback.call(
                (done as f64, total as f64).into(),
                ThreadsafeFunctionCallMode::NonBlocking,
            );
        }
    }

    fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
        self.cancel.clone()
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}
