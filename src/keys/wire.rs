//! SSH wire encoding (RFC 4251 §5) shared by the OpenSSH, PPK and public-key codecs:
//! `uint32`, `string` and `mpint` writers, and a bounds-checked [`Reader`] whose every
//! error names what was being read and from which structure.

use super::KeyError;

/// Appends a big-endian `uint32`.
pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends an SSH `string`: `uint32` length, then the bytes.
pub(crate) fn put_string(out: &mut Vec<u8>, data: &[u8]) {
    let len = u32::try_from(data.len()).expect("ssh string longer than 4 GiB");
    put_u32(out, len);
    out.extend_from_slice(data);
}

/// Appends a non-negative SSH `mpint` given its big-endian magnitude: leading zero bytes are
/// dropped and one `0x00` is added when the top bit is set, so the encoding is canonical.
pub(crate) fn put_mpint(out: &mut Vec<u8>, magnitude: &[u8]) {
    let trimmed = trim_leading_zeros(magnitude);
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        let len = u32::try_from(trimmed.len() + 1).expect("mpint longer than 4 GiB");
        put_u32(out, len);
        out.push(0);
        out.extend_from_slice(trimmed);
    } else {
        put_string(out, trimmed);
    }
}

/// The bytes without leading zero bytes (an empty slice for zero).
pub(crate) fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// A cursor over SSH wire data. `what` names the structure in error messages
/// (e.g. "ppk private blob").
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn error(&self, reason: String) -> KeyError {
        KeyError::Malformed {
            what: self.what,
            reason,
        }
    }

    pub(crate) fn u32(&mut self, field: &str) -> Result<u32, KeyError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<4>()
            .ok_or_else(|| self.error(format!("truncated before {field}")))?;
        self.buf = rest;
        Ok(u32::from_be_bytes(*head))
    }

    pub(crate) fn string(&mut self, field: &str) -> Result<&'a [u8], KeyError> {
        let len = self.u32(field)? as usize;
        if len > self.buf.len() {
            return Err(self.error(format!(
                "{field} claims {len} bytes but only {} remain",
                self.buf.len()
            )));
        }
        let (value, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(value)
    }

    /// Reads a non-negative `mpint` and returns its magnitude without leading zeros.
    pub(crate) fn mpint(&mut self, field: &str) -> Result<&'a [u8], KeyError> {
        let raw = self.string(field)?;
        if raw.first().is_some_and(|b| b & 0x80 != 0) {
            return Err(self.error(format!("{field} is a negative mpint")));
        }
        Ok(trim_leading_zeros(raw))
    }

    /// Fails when bytes are left over (used where the structure must be exact).
    pub(crate) fn finish(&self) -> Result<(), KeyError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("{} unexpected trailing bytes", self.buf.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpint_is_canonical() {
        let mut out = Vec::new();
        put_mpint(&mut out, &[0x00, 0x00, 0x80, 0x01]);
        assert_eq!(out, [0, 0, 0, 3, 0x00, 0x80, 0x01]);
        out.clear();
        put_mpint(&mut out, &[0x00, 0x7f]);
        assert_eq!(out, [0, 0, 0, 1, 0x7f]);
        out.clear();
        put_mpint(&mut out, &[0, 0]);
        assert_eq!(out, [0, 0, 0, 0]);
    }

    #[test]
    fn reader_round_trip_and_errors() {
        let mut out = Vec::new();
        put_string(&mut out, b"ssh-rsa");
        put_mpint(&mut out, &[0x80]);
        let mut r = Reader::new(&out, "test blob");
        assert_eq!(r.string("name").unwrap(), b"ssh-rsa");
        assert_eq!(r.mpint("n").unwrap(), [0x80]);
        r.finish().unwrap();
        let err = r.string("comment").unwrap_err().to_string();
        assert!(
            err.contains("test blob") && err.contains("comment"),
            "{err}"
        );

        let mut r = Reader::new(&[0, 0, 0, 9, 1], "test blob");
        let err = r.string("seed").unwrap_err().to_string();
        assert!(err.contains("claims 9 bytes"), "{err}");

        let mut r = Reader::new(&[0, 0, 0, 1, 0x80], "test blob");
        assert!(r.mpint("e").is_err());
    }
}
