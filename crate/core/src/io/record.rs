//! One record of a length file: a JSON sample object, or a CSV record, checked strictly.
//!
//! Messages never quote the file's content: they say where (the caller adds file and line) and
//! what was wrong ("vit_num must be a number, got a string"). `src/io/record.ts` is the
//! TypeScript twin; both word every message alike.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// The largest value a vision or text field may hold.
pub const MAX_VALUE: u32 = u32::MAX;

/// What is wrong with a record: malformed syntax (`ERR_OMNIBAL_PARSE`) or a bad value
/// (`ERR_OMNIBAL_INVALID_SAMPLE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    Syntax(String),
    Value(String),
}

/// JSON whitespace (RFC 8259): space, tab, line feed, carriage return.
pub fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

enum Key {
    VitNum,
    Vision,
    TokenNum,
    Text,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "vit_num" => Key::VitNum,
                    "vision" => Key::Vision,
                    "token_num" => Key::TokenNum,
                    "text" => Key::Text,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// The raw values of the four keys a sample may use; a repeated key keeps its last value, as
/// `JSON.parse` does.
#[derive(Default)]
struct Fields<'a> {
    vit_num: Option<&'a RawValue>,
    vision: Option<&'a RawValue>,
    token_num: Option<&'a RawValue>,
    text: Option<&'a RawValue>,
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::VitNum => f.vit_num = Some(map.next_value()?),
                Key::Vision => f.vision = Some(map.next_value()?),
                Key::TokenNum => f.token_num = Some(map.next_value()?),
                Key::Text => f.text = Some(map.next_value()?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(f)
    }
}

/// The JSON type of a value, from its first byte, as messages name it.
fn json_kind(first: u8) -> &'static str {
    match first {
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'[' => "an array",
        b'{' => "an object",
        _ => "a number",
    }
}

/// Checks one JSON value: a number whose double value is an integer in `min..=2^32 - 1`.
fn json_value(name: &str, raw: &RawValue, min: u32) -> Result<u32, RecordError> {
    let s = raw.get();
    let first = s.as_bytes()[0];
    if first == b'-' || first.is_ascii_digit() {
        // The same correctly rounded double JSON.parse makes (1e400 is infinite).
        let x: f64 = s.parse().unwrap_or(f64::NAN);
        if x.is_finite() && x.fract() == 0.0 && x >= min as f64 && x <= MAX_VALUE as f64 {
            return Ok(x as u32);
        }
        return Err(RecordError::Value(format!(
            "{name} must be an integer between {min} and {MAX_VALUE}"
        )));
    }
    Err(RecordError::Value(format!(
        "{name} must be a number, got {}",
        json_kind(first)
    )))
}

/// The byte-level fast path for the common record `{"vit_num": 1, "token_num": 358, ...}`:
/// ASCII keys without escapes, every value a plain non-negative integer. Returns `None` for anything
/// else (or any bad value), and the strict path decides.
fn fast_object(b: &[u8]) -> Option<(u32, u32)> {
    let n = b.len();
    let skip = |i: &mut usize| {
        while *i < n && is_json_space(b[*i]) {
            *i += 1;
        }
    };
    let mut i = 0;
    skip(&mut i);
    if i >= n || b[i] != b'{' {
        return None;
    }
    i += 1;
    // vit_num, vision, token_num, text; a repeated key keeps its last value.
    let mut slots = [u64::MAX; 4];
    loop {
        skip(&mut i);
        if i >= n || b[i] != b'"' {
            return None;
        }
        let k0 = i + 1;
        let k1 = k0 + memchr::memchr(b'"', &b[k0..])?;
        i = k1 + 1;
        skip(&mut i);
        if i >= n || b[i] != b':' {
            return None;
        }
        i += 1;
        skip(&mut i);
        let d0 = i;
        let mut value = 0u64;
        while i < n && b[i].is_ascii_digit() {
            value = value * 10 + (b[i] - b'0') as u64;
            i += 1;
            if i - d0 > 10 {
                return None;
            }
        }
        if i == d0 || (i - d0 > 1 && b[d0] == b'0') {
            return None;
        }
        if i < n && matches!(b[i], b'.' | b'e' | b'E') {
            return None;
        }
        match &b[k0..k1] {
            b"vit_num" => slots[0] = value,
            b"vision" => slots[1] = value,
            b"token_num" => slots[2] = value,
            b"text" => slots[3] = value,
            key => {
                if key
                    .iter()
                    .any(|&c| c == b'\\' || !(0x20..0x80).contains(&c))
                {
                    return None;
                }
            }
        }
        skip(&mut i);
        if i >= n {
            return None;
        }
        match b[i] {
            b',' => i += 1,
            b'}' => {
                i += 1;
                break;
            }
            _ => return None,
        }
    }
    skip(&mut i);
    if i != n {
        return None;
    }
    let pick = |a: u64, b: u64| if a != u64::MAX { a } else { b };
    let (v, t) = (pick(slots[0], slots[1]), pick(slots[2], slots[3]));
    (v <= MAX_VALUE as u64 && (1..=MAX_VALUE as u64).contains(&t)).then_some((v as u32, t as u32))
}

/// Reads one sample from a JSON text (a JSON Lines line or one element of a list): valid UTF-8,
/// valid JSON, an object with `vit_num` and `token_num` (or `vision` and `text`), integer
/// values in range (text at least 1).
pub fn json_sample(bytes: &[u8]) -> Result<(u32, u32), RecordError> {
    match fast_object(bytes) {
        Some(s) => Ok(s),
        None => strict_sample(bytes),
    }
}

/// [`json_sample`] through serde_json alone (what the fast path must agree with).
fn strict_sample(bytes: &[u8]) -> Result<(u32, u32), RecordError> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(RecordError::Syntax("not valid UTF-8".into()));
    };
    let first = text.bytes().find(|&b| !is_json_space(b)).unwrap_or(b' ');
    if first != b'{' {
        return match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Err(RecordError::Value(format!(
                "a sample must be a JSON object, got {}",
                json_kind(first)
            ))),
            Err(_) => Err(RecordError::Syntax("not valid JSON".into())),
        };
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de
        .deserialize_map(FieldsVisitor)
        .and_then(|f| de.end().map(|_| f))
        .map_err(|_| RecordError::Syntax("not valid JSON".into()))?;
    let vision = fields
        .vit_num
        .map(|r| ("vit_num", r))
        .or(fields.vision.map(|r| ("vision", r)));
    let text = fields
        .token_num
        .map(|r| ("token_num", r))
        .or(fields.text.map(|r| ("text", r)));
    let (Some((vk, vr)), Some((tk, tr))) = (vision, text) else {
        return Err(RecordError::Value(
            "a sample needs vit_num and token_num (or vision and text)".into(),
        ));
    };
    Ok((json_value(vk, vr, 0)?, json_value(tk, tr, 1)?))
}

/// Splits one CSV record (no line terminator) into its fields' byte ranges, RFC 4180 strictly:
/// a field is quoted (`"..."`, a quote inside doubled) or holds no quote at all; after a
/// closing quote comes a comma or the end of the record. A quoted field's range is its content
/// between the quotes, doubled quotes left doubled.
pub fn csv_fields(r: &[u8], out: &mut Vec<(usize, usize)>) -> Result<(), RecordError> {
    out.clear();
    let n = r.len();
    let mut i = 0;
    loop {
        let k = out.len() + 1;
        if i < n && r[i] == b'"' {
            let mut j = i + 1;
            let close = loop {
                match memchr::memchr(b'"', &r[j..]) {
                    None => {
                        return Err(RecordError::Syntax(format!(
                            "field {k}: a quoted field is not closed"
                        )))
                    }
                    Some(q) if j + q + 1 < n && r[j + q + 1] == b'"' => j += q + 2,
                    Some(q) => break j + q,
                }
            };
            out.push((i + 1, close));
            i = close + 1;
            if i == n {
                return Ok(());
            }
            if r[i] != b',' {
                return Err(RecordError::Syntax(format!("field {k}: malformed quoting")));
            }
            i += 1;
        } else {
            let end = memchr::memchr(b',', &r[i..]).map_or(n, |p| i + p);
            if memchr::memchr(b'"', &r[i..end]).is_some() {
                return Err(RecordError::Syntax(format!("field {k}: malformed quoting")));
            }
            out.push((i, end));
            if end == n {
                return Ok(());
            }
            i = end + 1;
        }
    }
}

/// A CSV field with spaces and tabs around it removed.
pub fn csv_trim(f: &[u8]) -> &[u8] {
    let is_blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = f.iter().position(|b| !is_blank(b)).unwrap_or(f.len());
    let end = f
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(start, |p| p + 1);
    &f[start..end]
}

/// A CSV value: decimal digits only (spaces and tabs around allowed), an integer in
/// `min..=2^32 - 1`.
pub fn csv_value(name: &str, column: usize, field: &[u8], min: u32) -> Result<u32, RecordError> {
    let d = csv_trim(field);
    let bad = || {
        RecordError::Value(format!(
            "{name} (field {}) must be an integer between {min} and {MAX_VALUE}",
            column + 1
        ))
    };
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let start = d.iter().position(|&b| b != b'0').unwrap_or(d.len());
    let d = &d[start..];
    if d.len() > 10 {
        return Err(bad());
    }
    let x = d.iter().fold(0u64, |acc, &b| acc * 10 + (b - b'0') as u64);
    if x < min as u64 || x > MAX_VALUE as u64 {
        return Err(bad());
    }
    Ok(x as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax(s: &str) -> RecordError {
        RecordError::Syntax(s.into())
    }
    fn value(s: &str) -> RecordError {
        RecordError::Value(s.into())
    }

    #[test]
    fn the_fast_path_takes_only_what_the_strict_path_reads_alike() {
        let keys = [
            "\"vit_num\"",
            "\"vision\"",
            "\"token_num\"",
            "\"text\"",
            "\"image_flags\"",
            "\"vit\\u005fnum\"",
            "\"a\\\"b\"",
            "\"\"",
        ];
        let values = [
            "0",
            "7",
            "01",
            "00",
            "-1",
            "-0",
            "1.0",
            "1e2",
            "4294967295",
            "4294967296",
            "9999999999",
            "10000000000",
            "\"5\"",
            "null",
            "[1]",
            "{}",
            " 12 ",
        ];
        let mut records = vec![
            "{}".to_string(),
            " { } ".into(),
            "{\"vit_num\":1,\"token_num\":2".into(),
            "{\"vit_num\":1,\"token_num\":2}}".into(),
            "{\"vit_num\":1 2,\"token_num\":2}".into(),
        ];
        // Every pair of keys with every pair of values, in a few spacings.
        for (a, k1) in keys.iter().enumerate() {
            for k2 in &keys[a..] {
                for v1 in values {
                    for (sep, v2) in [(",", "3"), (", ", "100"), ("\t,\r\n", v1), (",", "0")] {
                        records.push(format!("{{{k1}:{v1}{sep}{k2}: {v2}}}"));
                        records.push(format!(" {{ {k2} :{v2} , {k1}:{v1} , \"x\": 1 }}\t"));
                    }
                }
            }
        }
        let mut fast = 0;
        for r in &records {
            if let Some(x) = fast_object(r.as_bytes()) {
                fast += 1;
                assert_eq!(Ok(x), strict_sample(r.as_bytes()), "{r}");
            }
        }
        assert!(fast > 50, "{fast} of {}", records.len());
    }

    #[test]
    fn json_samples_fast_and_strict_agree() {
        for (text, want) in [
            (
                r#"{"vit_num": 1, "token_num": 358, "image_flags": 1}"#,
                Ok((1, 358)),
            ),
            (r#" {"vision":0,"text":5} "#, Ok((0, 5))),
            (r#"{"vision": 2, "text": 5, "vit_num": 3}"#, Ok((3, 5))),
            (r#"{"vit_num": 1.0, "token_num": 5e2}"#, Ok((1, 500))),
            (
                r#"{"vit\u005fnum": 2, "token_num": 7, "x": [1, {"y": null}]}"#,
                Ok((2, 7)),
            ),
            (
                r#"{"vit_num": -0, "token_num": 4294967295}"#,
                Ok((0, u32::MAX)),
            ),
            (
                r#"{"vit_num": 1, "vit_num": "a", "token_num": 5}"#,
                Err(value("vit_num must be a number, got a string")),
            ),
            (
                r#"{"vit_num": 1, "token_num": 4294967296}"#,
                Err(value(
                    "token_num must be an integer between 1 and 4294967295",
                )),
            ),
            (
                r#"{"vit_num": 1e400, "token_num": 5}"#,
                Err(value("vit_num must be an integer between 0 and 4294967295")),
            ),
            (
                r#"{"vit_num": 1, "token_num": 0}"#,
                Err(value(
                    "token_num must be an integer between 1 and 4294967295",
                )),
            ),
            (
                r#"{"vit_num": 1}"#,
                Err(value(
                    "a sample needs vit_num and token_num (or vision and text)",
                )),
            ),
            (
                r#"{"vit_num": 1, "token_num": 5,}"#,
                Err(syntax("not valid JSON")),
            ),
            (
                r#"{"vit_num": 1, "token_num": 5} x"#,
                Err(syntax("not valid JSON")),
            ),
            (
                "[1, 2]",
                Err(value("a sample must be a JSON object, got an array")),
            ),
            (
                "null",
                Err(value("a sample must be a JSON object, got null")),
            ),
            ("[1,]", Err(syntax("not valid JSON"))),
        ] {
            assert_eq!(json_sample(text.as_bytes()), want, "{text}");
        }
        assert_eq!(
            json_sample(b"{\"vit_num\": 1, \"token_num\": 5, \"a\": \"\xff\"}"),
            Err(syntax("not valid UTF-8"))
        );
    }

    #[test]
    fn the_fast_path_takes_the_common_record() {
        assert_eq!(
            fast_object(br#"{"vit_num": 3, "token_num": 1234, "image_flags": 3}"#),
            Some((3, 1234))
        );
        assert_eq!(fast_object(br#"{"vit_num": 3, "token_num": 1.5}"#), None);
        assert_eq!(
            fast_object(b"{\"\xffx\": 1, \"vit_num\": 3, \"token_num\": 4}"),
            None
        );
    }

    #[test]
    fn csv_records_follow_rfc_4180() {
        let mut f = Vec::new();
        let r = br#""x,4,500,y",1,200"#;
        csv_fields(r, &mut f).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(&r[f[0].0..f[0].1], b"x,4,500,y");
        let r = br#""2","500",,"a""b""#;
        csv_fields(r, &mut f).unwrap();
        assert_eq!(f.len(), 4);
        assert_eq!(csv_value("vision", 0, &r[f[0].0..f[0].1], 0), Ok(2));
        assert_eq!(&r[f[2].0..f[2].1], b"");
        assert_eq!(
            csv_fields(br#"a"b,1"#, &mut f),
            Err(syntax("field 1: malformed quoting"))
        );
        assert_eq!(
            csv_fields(br#"1,"a"b"#, &mut f),
            Err(syntax("field 2: malformed quoting"))
        );
        assert_eq!(
            csv_value("text", 1, b" 12.5", 1),
            Err(value(
                "text (field 2) must be an integer between 1 and 4294967295"
            ))
        );
        assert_eq!(csv_value("text", 1, b" 0004294967295 ", 1), Ok(u32::MAX));
        assert!(csv_value("text", 1, b"4294967296", 1).is_err());
    }
}
