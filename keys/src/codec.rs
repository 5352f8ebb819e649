//! The canonical binary encoding that licenses and certificates are signed in.
//!
//! Big-endian integers, length-prefixed byte strings, fixed-size arrays; no
//! optional fields, no alternatives, so one value has exactly one encoding.
//! The reader separates "too short" from "malformed" and refuses trailing bytes.
//! See `docs/formats.md`, "Canonical encoding".

use crate::{Error, Result};

/// Appends fields to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    pub(crate) buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.buf.extend_from_slice(v);
    }
    /// A string of at most 255 bytes, prefixed by its length (callers check the bound).
    pub(crate) fn str8(&mut self, v: &str) {
        self.buf.push(v.len() as u8);
        self.buf.extend_from_slice(v.as_bytes());
    }
    /// A list of short strings, prefixed by its count.
    pub(crate) fn list8(&mut self, v: &[String]) {
        self.buf.push(v.len() as u8);
        for s in v {
            self.str8(s);
        }
    }
}

/// Reads fields from a byte slice, naming the structure in every error.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    what: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, bytes: &'a [u8]) -> Self {
        Reader { what, rest: bytes }
    }

    pub(crate) fn malformed(&self, reason: &'static str) -> Error {
        Error::Malformed {
            what: self.what,
            reason,
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.rest.len() < n {
            return Err(self.malformed("truncated"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn str8(&mut self) -> Result<String> {
        let len = usize::from(self.u8()?);
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.malformed("string is not UTF-8"))
    }

    pub(crate) fn list8(&mut self) -> Result<Vec<String>> {
        let count = self.u8()?;
        (0..count).map(|_| self.str8()).collect()
    }

    /// How many bytes are left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Nothing may be left.
    pub(crate) fn end(self) -> Result<()> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes"))
        }
    }

    /// Everything that is left, which must be exactly `n` bytes.
    pub(crate) fn finish<const N: usize>(mut self) -> Result<[u8; N]> {
        let out = self.array::<N>()?;
        if !self.rest.is_empty() {
            return Err(self.malformed("trailing bytes"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_exact_bytes() {
        let mut w = Writer::default();
        w.u8(1);
        w.u32(0x0102_0304);
        w.u64(5);
        w.str8("ab");
        w.list8(&["x".into(), "yz".into()]);
        w.bytes(&[9; 2]);
        assert_eq!(
            w.buf,
            [
                1, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 5, 2, b'a', b'b', 2, 1, b'x', 2, b'y', b'z', 9,
                9
            ]
        );
        let mut r = Reader::new("test", &w.buf);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u32().unwrap(), 0x0102_0304);
        assert_eq!(r.u64().unwrap(), 5);
        assert_eq!(r.str8().unwrap(), "ab");
        assert_eq!(r.list8().unwrap(), vec!["x".to_string(), "yz".to_string()]);
        assert_eq!(r.finish::<2>().unwrap(), [9, 9]);
    }

    #[test]
    fn truncation_and_trailing_bytes_are_refused() {
        let mut r = Reader::new("test", &[3, b'a']);
        assert!(matches!(
            r.str8(),
            Err(Error::Malformed {
                reason: "truncated",
                ..
            })
        ));
        let r = Reader::new("test", &[1, 2, 3]);
        assert!(matches!(
            r.finish::<2>(),
            Err(Error::Malformed {
                reason: "trailing bytes",
                ..
            })
        ));
    }
}
