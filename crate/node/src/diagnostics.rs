//! Functions that exist to prove the error paths of the binding: a deliberate panic, sync and
//! on the libuv pool. Not part of the public TypeScript API (the loader keeps them internal).

use crate::error::{guard, run_sync, to_js_error};
use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;
use omnibal_core::Error;

fn panic_with(message: &str) -> Result<u32, Error> {
    panic!("{}", message)
}

/// Panics inside the binding; the panic must surface as an `ERR_OMNIBAL_PANIC` exception.
#[napi(js_name = "__panicForTest")]
pub fn panic_for_test(env: Env, message: String) -> napi::Result<u32> {
    run_sync(&env, || panic_with(&message))
}

/// A panic on a libuv worker thread.
pub struct PanicTask(String);

impl Task for PanicTask {
    type Output = Result<u32, Error>;
    type JsValue = u32;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(guard(|| panic_with(&self.0)))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> napi::Result<u32> {
        output.map_err(|e| to_js_error(&env, &e))
    }
}

/// Panics on a libuv worker; the Promise must reject with an `ERR_OMNIBAL_PANIC` exception.
#[napi(js_name = "__panicForTestAsync")]
pub fn panic_for_test_async(message: String) -> AsyncTask<PanicTask> {
    AsyncTask::new(PanicTask(message))
}
