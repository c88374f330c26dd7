//! Turning core errors and panics into JavaScript exceptions.
//!
//! A core [`omnibal_core::Error`] becomes a `TypeError`, `RangeError` or `Error` (by its class)
//! whose `code` property is the core's stable code. The exception object is built on the JS
//! thread and handed to napi-rs as a retained value, so the same object is thrown (sync) or
//! used to reject the Promise (async).

use napi::bindgen_prelude::{JsError, JsRangeError, JsTypeError};
use napi::Env;
use omnibal_core::{Error, ErrorClass};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Builds the JS exception for a core error; returned as a napi error that carries it.
pub fn to_js_error(env: &Env, error: &Error) -> napi::Error {
    let inner = napi::Error::new(error.code().to_owned(), error.to_string());
    let value = match error.class() {
        ErrorClass::Type => JsTypeError::from(inner).into_unknown(*env),
        ErrorClass::Range => JsRangeError::from(inner).into_unknown(*env),
        ErrorClass::Plain => JsError::from(inner).into_unknown(*env),
    };
    napi::Error::from(value)
}

/// Runs `f`, turning a panic into [`Error::Panic`] so it can never unwind into Node.
pub fn guard<T>(f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = if let Some(s) = payload.downcast_ref::<&str>() {
                (*s).to_owned()
            } else if let Some(s) = payload.downcast_ref::<String>() {
                s.clone()
            } else {
                "unknown panic payload".to_owned()
            };
            Err(Error::Panic { message })
        }
    }
}

/// [`guard`] for a synchronous binding: the result, or the JS exception to throw.
pub fn run_sync<T>(env: &Env, f: impl FnOnce() -> Result<T, Error>) -> napi::Result<T> {
    guard(f).map_err(|e| to_js_error(env, &e))
}
