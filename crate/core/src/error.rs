//! Solver errors. Every variant carries a stable code (`ERR_OMNIBAL_...`) that the binding puts
//! on the JavaScript exception and that the TypeScript twins use as well.

use std::fmt;

/// Which JavaScript error class an error maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A value of the wrong type (`TypeError`).
    Type,
    /// A value outside its allowed range (`RangeError`).
    Range,
    /// Anything else (`Error`).
    Plain,
}

/// An error from a solver, with a stable code.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// An argument is outside its allowed range: negative, fractional, NaN, too large.
    OutOfRange { name: String, message: String },
    /// An argument has the wrong type.
    InvalidType { name: String, message: String },
    /// A sample that cannot be planned: zero text tokens, or inconsistent arrays.
    InvalidSample { index: usize, message: String },
    /// No samples at all.
    EmptyInput,
    /// Every sample is larger than a cap, so nothing can be packed.
    CapTooSmall { message: String },
    /// Not enough samples for one full step under the chosen tail policy.
    TooFewSamples { message: String },
    /// No plan satisfies the constraints (memory); says the least memory that would fit.
    Infeasible {
        message: String,
        min_memory_bytes: f64,
    },
    /// An unknown preset name; the message lists the known ones.
    UnknownPreset { message: String },
    /// Options that do not go together, or a required one missing.
    InvalidOptions { message: String },
    /// A strategy or tail policy name that does not exist.
    UnknownOption {
        name: String,
        value: String,
        known: &'static [&'static str],
    },
    /// A panic inside the solver, caught at the boundary.
    Panic { message: String },
    /// A file that cannot be read or parsed; the message names the file and line.
    Parse { message: String },
    /// A bad value in a file (`ERR_OMNIBAL_INVALID_SAMPLE`); the message names the file and line.
    InvalidRecord { message: String },
    /// The caller cancelled the run (its cancel flag was set; see [`crate::progress`]).
    Cancelled,
}

impl Error {
    /// Builds an [`Error::OutOfRange`] for argument `name`.
    pub fn out_of_range(name: &str, message: impl Into<String>) -> Self {
        Error::OutOfRange {
            name: name.to_owned(),
            message: message.into(),
        }
    }

    /// Builds the [`Error::OutOfRange`] of a problem too large for a solver's bounded work:
    /// "`layers` must be few enough for {solver} ({limit}; {sizes} need {need}): {advice}", the
    /// need printed exactly up to 2^53 - 1 and as "more" past it.
    pub fn too_much_work(solver: &str, limit: &str, sizes: &str, need: u64, advice: &str) -> Self {
        let need = if need > (1 << 53) - 1 {
            "more".to_string()
        } else {
            need.to_string()
        };
        Error::out_of_range(
            "layers",
            format!("must be few enough for {solver} ({limit}; {sizes} need {need}): {advice}"),
        )
    }

    /// Builds an [`Error::InvalidType`] for argument `name`.
    pub fn invalid_type(name: &str, message: impl Into<String>) -> Self {
        Error::InvalidType {
            name: name.to_owned(),
            message: message.into(),
        }
    }

    /// The stable code, identical in both backends.
    pub fn code(&self) -> &'static str {
        match self {
            Error::OutOfRange { .. } => "ERR_OMNIBAL_OUT_OF_RANGE",
            Error::InvalidType { .. } => "ERR_OMNIBAL_INVALID_TYPE",
            Error::InvalidSample { .. } => "ERR_OMNIBAL_INVALID_SAMPLE",
            Error::EmptyInput => "ERR_OMNIBAL_EMPTY_INPUT",
            Error::CapTooSmall { .. } => "ERR_OMNIBAL_CAP_TOO_SMALL",
            Error::TooFewSamples { .. } => "ERR_OMNIBAL_TOO_FEW_SAMPLES",
            Error::UnknownOption { .. } => "ERR_OMNIBAL_UNKNOWN_OPTION",
            Error::InvalidOptions { .. } => "ERR_OMNIBAL_INVALID_OPTIONS",
            Error::Infeasible { .. } => "ERR_OMNIBAL_INFEASIBLE",
            Error::UnknownPreset { .. } => "ERR_OMNIBAL_UNKNOWN_PRESET",
            Error::Panic { .. } => "ERR_OMNIBAL_PANIC",
            Error::Parse { .. } => "ERR_OMNIBAL_PARSE",
            Error::InvalidRecord { .. } => "ERR_OMNIBAL_INVALID_SAMPLE",
            Error::Cancelled => "ERR_OMNIBAL_CANCELLED",
        }
    }

    /// The JavaScript error class this error maps to.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::OutOfRange { .. } => ErrorClass::Range,
            Error::InvalidType { .. } => ErrorClass::Type,
            Error::InvalidSample { .. } | Error::CapTooSmall { .. } => ErrorClass::Range,
            Error::UnknownOption { .. } => ErrorClass::Range,
            Error::InvalidOptions { .. } => ErrorClass::Type,
            Error::Infeasible { .. } => ErrorClass::Plain,
            Error::UnknownPreset { .. } | Error::InvalidRecord { .. } => ErrorClass::Range,
            Error::Parse { .. } => ErrorClass::Plain,
            Error::EmptyInput
            | Error::TooFewSamples { .. }
            | Error::Panic { .. }
            | Error::Cancelled => ErrorClass::Plain,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OutOfRange { name, message } | Error::InvalidType { name, message } => {
                write!(f, "{name} {message}")
            }
            Error::InvalidSample { index, message } => write!(f, "sample {index} {message}"),
            Error::EmptyInput => write!(f, "no samples: the input is empty"),
            Error::Cancelled => write!(f, "cancelled: the operation was aborted"),
            Error::CapTooSmall { message }
            | Error::TooFewSamples { message }
            | Error::InvalidOptions { message }
            | Error::Infeasible { message, .. }
            | Error::UnknownPreset { message }
            | Error::Parse { message }
            | Error::InvalidRecord { message } => {
                write!(f, "{message}")
            }
            Error::UnknownOption { name, value, known } => {
                write!(
                    f,
                    "{name} must be one of {}, got {value:?}",
                    known.join(", ")
                )
            }
            Error::Panic { message } => {
                write!(f, "internal error (panic in the native core): {message}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// Checks that a JavaScript number is an integer in `0..=max` and returns it.
pub fn integer_in_range(name: &str, value: f64, max: u64) -> Result<u64, Error> {
    integer_between(name, value, 0, max)
}

/// Checks that a JavaScript number is an integer in `min..=max` and returns it.
///
/// This is the one place the rule "integer, not NaN, not fractional, within bounds" is written
/// for the native side; `src/validate.ts` holds its TypeScript twin.
pub fn integer_between(name: &str, value: f64, min: u64, max: u64) -> Result<u64, Error> {
    if value.is_nan() {
        return Err(Error::out_of_range(name, "must be an integer, got NaN"));
    }
    if value.fract() != 0.0 || value.is_infinite() {
        return Err(Error::out_of_range(
            name,
            format!("must be an integer, got {}", js_number(value)),
        ));
    }
    if value < min as f64 || value > max as f64 {
        return Err(Error::out_of_range(
            name,
            format!("must be between {min} and {max}, got {}", js_number(value)),
        ));
    }
    Ok(value as u64)
}

/// Checks that a JavaScript number is finite and at least `min`, and returns it.
pub fn number_at_least(name: &str, value: f64, min: f64) -> Result<f64, Error> {
    if !value.is_finite() || value < min {
        return Err(Error::out_of_range(
            name,
            format!(
                "must be a finite number >= {}, got {}",
                js_number(min),
                js_number(value)
            ),
        ));
    }
    Ok(value)
}

/// Formats a number exactly as JavaScript's `String(x)` does (ECMAScript Number::toString),
/// so both backends word their errors alike.
pub fn js_number(value: f64) -> String {
    ryu_js::Buffer::new().format(value).to_owned()
}

/// Formats a number as JavaScript's `x.toFixed(digits)` does for the values messages print:
/// `digits` decimals, but `String(x)` (exponent form) from 1e21 up, so a huge figure reads the
/// same from both backends rather than as a 300-digit integer.
pub fn js_fixed(value: f64, digits: usize) -> String {
    if !value.is_finite() || value.abs() >= 1e21 {
        js_number(value)
    } else {
        format!("{value:.digits$}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_figures_print_as_in_javascript() {
        assert_eq!(js_fixed(9.31e298, 2), "9.31e+298");
        assert_eq!(js_fixed(1e21, 2), "1e+21");
        assert_eq!(js_fixed(12.5, 2), "12.50");
        assert_eq!(
            js_fixed(999999999999999900000.0, 2),
            "999999999999999868928.00"
        );
    }

    #[test]
    fn integers_in_range_pass() {
        assert_eq!(integer_in_range("n", 0.0, 10), Ok(0));
        assert_eq!(integer_in_range("n", 10.0, 10), Ok(10));
        assert_eq!(
            integer_in_range("seed", 9007199254740991.0, (1 << 53) - 1),
            Ok((1 << 53) - 1)
        );
    }

    #[test]
    fn numbers_print_as_in_javascript() {
        for (v, js) in [
            (2.5, "2.5"),
            (-1.0, "-1"),
            (-0.0, "0"),
            (1152921504606846976.0, "1152921504606847000"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (0.1, "0.1"),
            (1770534592294054.2, "1770534592294054.2"),
            (f64::NAN, "NaN"),
        ] {
            assert_eq!(js_number(v), js, "{v}");
        }
    }

    #[test]
    fn bad_numbers_are_range_errors_with_a_message() {
        for (value, text) in [
            (f64::NAN, "n must be an integer, got NaN"),
            (2.5, "n must be an integer, got 2.5"),
            (-1.0, "n must be between 0 and 10, got -1"),
            (11.0, "n must be between 0 and 10, got 11"),
            (f64::INFINITY, "n must be an integer, got Infinity"),
        ] {
            let err = integer_in_range("n", value, 10).unwrap_err();
            assert_eq!(err.code(), "ERR_OMNIBAL_OUT_OF_RANGE");
            assert_eq!(err.class(), ErrorClass::Range);
            assert_eq!(err.to_string(), text);
        }
    }
}
