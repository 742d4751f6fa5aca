//! Strict JSON reading and FHIRPath expression building.
//!
//! `serde_json::from_slice::<Value>` silently keeps the last of two equal
//! keys; FHIR JSON forbids duplicates and two readers disagreeing about which
//! value counts is how parser-differential attacks work. So the value is
//! built by our own visitor, which refuses a repeated key. Depth stays bounded
//! by serde_json's recursion limit (128), which is enforced by the
//! deserializer itself whatever the visitor.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Why strict parsing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrictError {
    /// serde_json rejected the text; `eof` when it ended too early.
    Syntax { line: usize, column: usize, eof: bool },
    /// An object repeats a key.
    DuplicateKey { line: usize, column: usize },
}

/// Parses one JSON value, refusing duplicate keys and trailing data.
pub(crate) fn parse_strict(input: &[u8]) -> Result<Value, StrictError> {
    let duplicate = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(input);
    let result = ValueSeed { duplicate: &duplicate }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    result.map_err(|e| {
        if duplicate.get() {
            StrictError::DuplicateKey { line: e.line(), column: e.column() }
        } else {
            StrictError::Syntax { line: e.line(), column: e.column(), eof: e.is_eof() }
        }
    })
}

struct ValueSeed<'a> {
    duplicate: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed { duplicate: self.duplicate })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.duplicate.set(true);
                return Err(de::Error::custom("duplicate object key"));
            }
            let v = map.next_value_seed(ValueSeed { duplicate: self.duplicate })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// `base.name`.
pub(crate) fn field(base: &str, name: &str) -> String {
    let mut s = String::with_capacity(base.len() + name.len() + 1);
    s.push_str(base);
    s.push('.');
    s.push_str(name);
    s
}

/// `base[i]`.
pub(crate) fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// Whether `s` may appear in an expression as an element name: FHIR element
/// names are ASCII letters and digits (`_` only as the primitive-extension
/// prefix). Keys that are not names are never echoed, since a key can carry
/// anything.
pub(crate) fn is_element_name(s: &str) -> bool {
    let body = s.strip_prefix('_').unwrap_or(s);
    !body.is_empty()
        && body.len() <= 64
        && body.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && body.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `s` is a resource type name (`Claim`, `CoverageEligibilityRequest`).
pub(crate) fn is_resource_type_name(s: &str) -> bool {
    s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_uppercase())
        && s.bytes().all(|b| b.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_like_serde_json() {
        let v = parse_strict(br#"{"a":[1,-2,3.5,"x",true,null,{"b":{}}]}"#);
        assert_eq!(v, Ok(json!({"a":[1,-2,3.5,"x",true,null,{"b":{}}]})));
    }

    #[test]
    fn refuses_duplicate_keys_with_position() {
        let v = parse_strict(b"{\"a\":1,\n\"a\":2}");
        assert!(matches!(v, Err(StrictError::DuplicateKey { line: 2, .. })), "{v:?}");
    }

    #[test]
    fn refuses_trailing_data_and_truncation() {
        assert!(matches!(parse_strict(b"{} {}"), Err(StrictError::Syntax { eof: false, .. })));
        assert!(matches!(parse_strict(b"{\"a\":"), Err(StrictError::Syntax { eof: true, .. })));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut s = "[".repeat(100_000);
        s.push_str(&"]".repeat(100_000));
        assert!(parse_strict(s.as_bytes()).is_err());
    }

    #[test]
    fn element_names() {
        assert!(is_element_name("status"));
        assert!(is_element_name("_status"));
        assert!(is_element_name("valueString"));
        assert!(!is_element_name("John Smith"));
        assert!(!is_element_name(""));
        assert!(!is_element_name("_"));
        assert!(!is_element_name("1abc"));
        assert!(is_resource_type_name("Claim"));
        assert!(!is_resource_type_name("claim"));
        assert!(!is_resource_type_name("Cla1m"));
    }
}
