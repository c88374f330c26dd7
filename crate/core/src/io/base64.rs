//! Binary arrays on the sidecar's wire: `{ "$base64": "...", "dtype": "u32" }` holds the
//! little-endian bytes of a `u32` array in standard, padded base64 (RFC 4648, section 4).
//! [`decode_u32`] checks the text strictly (alphabet, padding, whole 4-byte values) as the
//! TypeScript twin does, with the same messages.

use crate::Error;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

/// Standard alphabet, padding required; bits past the last byte are ignored (as Node's decoder
/// ignores them), so every text the twin accepts decodes here to the same bytes.
const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// The message for text that is not strict base64.
pub const NOT_BASE64: &str =
    "is not valid base64 (standard alphabet, padded to a multiple of 4 characters)";
/// The message for bytes that are not a whole number of `u32` values.
pub const NOT_WORDS: &str = "base64 data must be a whole number of 4-byte values";

/// Decodes argument `name`'s base64 `text` into little-endian `u32` values.
pub fn decode_u32(name: &str, text: &[u8]) -> Result<Vec<u32>, Error> {
    // Only the alphabet, then at most two '=' at the end: what the twin's pattern admits.
    let data = text.len()
        - text
            .iter()
            .rev()
            .take(2)
            .take_while(|&&c| c == b'=')
            .count();
    if !text.len().is_multiple_of(4) || text[..data].contains(&b'=') {
        return Err(Error::invalid_type(name, NOT_BASE64));
    }
    let bytes = ENGINE
        .decode(text)
        .map_err(|_| Error::invalid_type(name, NOT_BASE64))?;
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::invalid_type(name, NOT_WORDS));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(values: &[u32]) -> String {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn round_trips() {
        for values in [
            vec![],
            vec![7],
            vec![1, 2, 3],
            vec![u32::MAX, 0, 65_536, 12],
        ] {
            assert_eq!(decode_u32("x", encode(&values).as_bytes()).unwrap(), values);
        }
    }

    #[test]
    fn refuses_what_is_not_strict_base64() {
        for bad in [
            "AAAAAA=", "AAAA AAA", "AA=AAAAA", "A===", "====", "AAAAA===", "AA-_AAAA",
        ] {
            let e = decode_u32("vision", bad.as_bytes()).unwrap_err();
            assert_eq!(e.code(), "ERR_OMNIBAL_INVALID_TYPE");
            assert_eq!(e.to_string(), format!("vision {NOT_BASE64}"), "{bad}");
        }
        let e = decode_u32("text", b"AAA=").unwrap_err();
        assert_eq!(e.to_string(), format!("text {NOT_WORDS}"));
    }

    #[test]
    fn ignores_bits_past_the_last_byte_as_node_does() {
        // 4 bytes take 6 characters (36 bits): the last 4 bits are not data.
        assert_eq!(decode_u32("x", b"AQAAAB==").unwrap(), vec![1]);
        assert_eq!(decode_u32("x", b"AQAAAA==").unwrap(), vec![1]);
    }
}
