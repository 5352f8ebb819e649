//! Strict CBOR (RFC 8949) for CTAP2, on `ciborium`'s [`Value`]: one item,
//! no trailing bytes, maps with unique keys, each field of the type it must
//! have. Requests are written in CTAP2 canonical form (CTAP 2.1, section
//! 8 "Message Encoding": integer keys ascending, text keys by length then
//! bytes, shortest integer encodings), which `ciborium` does for the maps we
//! build in that order.

use ciborium::Value;

use crate::error::ProtocolError;

/// Encodes one value.
pub(crate) fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; a Value always serialises.
    if ciborium::ser::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Decodes exactly one item from `bytes`.
///
/// # Errors
/// [`ProtocolError::Malformed`] for bytes that are not CBOR (or nest too
/// deep), [`ProtocolError::TrailingBytes`] for bytes after the item.
pub(crate) fn decode_one(bytes: &[u8], what: &'static str) -> Result<Value, ProtocolError> {
    let (value, used) = decode_prefix(bytes, what)?;
    if used != bytes.len() {
        return Err(ProtocolError::TrailingBytes {
            what,
            extra: bytes.len() - used,
        });
    }
    Ok(value)
}

/// Decodes the first item of `bytes` and says how many bytes it took (a
/// COSE key inside authenticator data is followed by more fields).
///
/// # Errors
/// [`ProtocolError::Malformed`] for bytes that are not CBOR.
pub(crate) fn decode_prefix(
    bytes: &[u8],
    what: &'static str,
) -> Result<(Value, usize), ProtocolError> {
    let mut rest = bytes;
    let value: Value =
        ciborium::de::from_reader(&mut rest).map_err(|_| ProtocolError::Malformed {
            what,
            reason: "not well-formed CBOR",
        })?;
    Ok((value, bytes.len() - rest.len()))
}

fn malformed(what: &'static str, reason: &'static str) -> ProtocolError {
    ProtocolError::Malformed { what, reason }
}

/// A CBOR map whose keys are unique, read field by field.
#[derive(Debug)]
pub(crate) struct Map {
    what: &'static str,
    entries: Vec<(Value, Value)>,
}

impl Map {
    /// `value` must be a map with no key twice.
    pub(crate) fn new(value: Value, what: &'static str) -> Result<Map, ProtocolError> {
        let Value::Map(entries) = value else {
            return Err(malformed(what, "not a CBOR map"));
        };
        for (i, (k, _)) in entries.iter().enumerate() {
            if entries[..i].iter().any(|(other, _)| other == k) {
                return Err(malformed(what, "a map key appears twice"));
            }
        }
        Ok(Map { what, entries })
    }

    fn find(&self, key: &Value) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The value under integer `key`, if any.
    pub(crate) fn int_key(&self, key: i64) -> Option<&Value> {
        self.find(&Value::Integer(key.into()))
    }

    /// The value under text `key`, if any.
    pub(crate) fn text_key(&self, key: &str) -> Option<&Value> {
        self.find(&Value::Text(key.to_string()))
    }

    /// The value under integer `key`, which must be there.
    pub(crate) fn required(&self, key: i64, reason: &'static str) -> Result<&Value, ProtocolError> {
        self.int_key(key).ok_or(malformed(self.what, reason))
    }

    /// All entries, in the order sent.
    pub(crate) fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }
}

/// `v` as a byte string.
pub(crate) fn bytes<'a>(
    v: &'a Value,
    what: &'static str,
    reason: &'static str,
) -> Result<&'a [u8], ProtocolError> {
    v.as_bytes()
        .map(Vec::as_slice)
        .ok_or(malformed(what, reason))
}

/// `v` as a text string.
pub(crate) fn text<'a>(
    v: &'a Value,
    what: &'static str,
    reason: &'static str,
) -> Result<&'a str, ProtocolError> {
    v.as_text().ok_or(malformed(what, reason))
}

/// `v` as an integer that fits an `i64`.
pub(crate) fn int(
    v: &Value,
    what: &'static str,
    reason: &'static str,
) -> Result<i64, ProtocolError> {
    v.as_integer()
        .and_then(|i| i64::try_from(i).ok())
        .ok_or(malformed(what, reason))
}

/// `v` as an array.
pub(crate) fn array<'a>(
    v: &'a Value,
    what: &'static str,
    reason: &'static str,
) -> Result<&'a [Value], ProtocolError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or(malformed(what, reason))
}

/// `v` as a boolean.
pub(crate) fn boolean(
    v: &Value,
    what: &'static str,
    reason: &'static str,
) -> Result<bool, ProtocolError> {
    v.as_bool().ok_or(malformed(what, reason))
}

/// A map from entries already in canonical order.
pub(crate) fn map(entries: Vec<(Value, Value)>) -> Value {
    Value::Map(entries)
}

/// An integer key or value.
pub(crate) fn i(n: i64) -> Value {
    Value::Integer(n.into())
}

/// A text key or value.
pub(crate) fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// A byte string.
pub(crate) fn b(bytes: &[u8]) -> Value {
    Value::Bytes(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn canonical_encoding_of_what_we_build() {
        let v = map(vec![
            (i(1), b(&[0xAA])),
            (i(2), map(vec![(t("id"), t("x"))])),
            (i(-1), i(-8)),
            (i(24), i(500)),
        ]);
        assert_eq!(
            encode(&v),
            vec![
                0xA4, 0x01, 0x41, 0xAA, 0x02, 0xA1, 0x62, b'i', b'd', 0x61, b'x', 0x20, 0x27, 0x18,
                0x18, 0x19, 0x01, 0xF4
            ]
        );
    }

    #[test]
    fn trailing_bytes_duplicates_and_garbage_are_refused() {
        assert_eq!(
            decode_one(&[0xA0, 0x00], "x"),
            Err(ProtocolError::TrailingBytes {
                what: "x",
                extra: 1
            })
        );
        assert!(decode_one(&[0xA1, 0x01], "x").is_err()); // truncated
        assert!(decode_one(&[0xFF], "x").is_err()); // break outside indefinite item
        assert!(decode_one(&[], "x").is_err());
        let dup = decode_one(&[0xA2, 0x01, 0x01, 0x01, 0x02], "x").unwrap();
        assert!(Map::new(dup, "x").is_err());
        let (v, used) = decode_prefix(&[0x01, 0x02], "x").unwrap();
        assert_eq!((v, used), (i(1), 1));
    }
}
