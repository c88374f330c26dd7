//! Buffers sized by a caller's argument (a length, ranks x micro-batches, steps), reserved up
//! front so that memory that cannot be had is an [`Error`] the caller can catch, never an abort
//! of the whole process (Rust's default on a failed allocation).

use crate::error::Error;

/// An empty `Vec` with room for exactly `n` items, or an `ERR_OMNIBAL_OUT_OF_RANGE` error for
/// argument `name`: "`n` `what` do not fit in memory".
pub fn vec_with_room<T>(name: &str, n: usize, what: &str) -> Result<Vec<T>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(n)
        .map_err(|_| Error::out_of_range(name, format!("{n} {what} do not fit in memory")))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impossible_size_is_an_error_not_an_abort() {
        let e = vec_with_room::<u64>("n", usize::MAX / 8, "values").unwrap_err();
        assert_eq!(e.code(), "ERR_OMNIBAL_OUT_OF_RANGE");
        assert!(e.to_string().contains("do not fit in memory"), "{e}");
        assert_eq!(
            vec_with_room::<u32>("n", 5, "values").unwrap().capacity(),
            5
        );
    }
}
