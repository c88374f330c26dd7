//! Reading typed-array arguments. A value of the wrong kind is a `TypeError` with code
//! `ERR_OMNIBAL_INVALID_TYPE` that says what arrived (`src/validate.ts` words it the same way).

use crate::error::to_js_error;
use napi::bindgen_prelude::{TypedArray, Uint32Array, Unknown};
use napi::{Env, ValueType};
use omnibal_core::Error;

/// What a JS value is, as error messages name it: `Float64Array`, `an object`, `string`, ...
fn describe(value: &Unknown) -> napi::Result<String> {
    Ok(match value.get_type()? {
        ValueType::Object => {
            // SAFETY: `TypedArray::from_napi_value` asks Node whether the value is a typed array
            // and fails cleanly when it is not.
            match unsafe { value.cast::<TypedArray>() } {
                Ok(array) => format!("{}Array", array.typed_array_type.as_ref()),
                Err(_) => "an object".to_owned(),
            }
        }
        other => format!("{other:?}").to_lowercase(),
    })
}

/// Reads a `Uint32Array` argument without copying it.
pub fn expect_u32_array(env: &Env, value: Unknown, name: &str) -> napi::Result<Uint32Array> {
    if value.get_type()? == ValueType::Object {
        // SAFETY: `Uint32Array::from_napi_value` checks the typed-array kind and fails otherwise.
        if let Ok(array) = unsafe { value.cast::<Uint32Array>() } {
            return Ok(array);
        }
    }
    let what = describe(&value)?;
    Err(to_js_error(
        env,
        &Error::invalid_type(name, format!("must be a Uint32Array, got {what}")),
    ))
}
