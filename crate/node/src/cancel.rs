//! Cancelling a solver that runs on the libuv pool: a [`CancelFlag`] made on the JavaScript
//! thread, handed to an async function, and set by `cancel()` (the TypeScript wrapper calls it
//! when the caller's `AbortSignal` aborts). The task reads it through the core's
//! [`omnibal_core::progress::Progress::cancel_flag`], so the solver stops at its next check
//! with `ERR_OMNIBAL_CANCELLED`.

use napi_derive::napi;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A flag that asks a running async solver to stop.
#[napi]
#[derive(Default)]
pub struct CancelFlag {
    flag: Arc<AtomicBool>,
}

#[napi]
impl CancelFlag {
    /// A flag not yet set.
    #[napi(constructor)]
    pub fn new() -> Self {
        CancelFlag::default()
    }

    /// Sets the flag: the solver stops at its next check (a fraction of a second at most).
    #[napi]
    pub fn cancel(&self) {
        self.flag.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    #[napi(getter)]
    pub fn cancelled(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }
}

impl CancelFlag {
    /// The shared flag, for a task on the pool.
    pub fn shared(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }
}
