//! What `omnibal doctor` reports about the native binary.

use napi_derive::napi;

/// Facts about the loaded native binary.
#[napi(object)]
pub struct NativeInfo {
    /// Version of the binding crate (matches the npm package version).
    pub version: String,
    /// Version of the solver crate it was built with.
    pub core_version: String,
    /// Whether it was built with optimisations.
    pub release: bool,
}

/// Facts about the loaded native binary.
#[napi]
pub fn native_info() -> NativeInfo {
    NativeInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        core_version: omnibal_core::VERSION.to_owned(),
        release: !cfg!(debug_assertions),
    }
}
