//! [`PublicKey`]: an RSA or Ed25519 public key in canonical form (RSA n and e as big-endian
//! magnitudes without leading zeros), so derived equality means "same key". Owns the SSH
//! wire blob and the authorized_keys line in both directions; the lenient multi-format
//! import lives in `import.rs`, fingerprints in `fingerprint.rs`.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::wire::{self, Reader, trim_leading_zeros};
use super::{KeyError, KeyType};

/// An RSA or Ed25519 public key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicKey {
    inner: Inner,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Inner {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ed25519([u8; 32]),
}

impl PublicKey {
    pub(crate) fn from_rsa_parts(n: &[u8], e: &[u8]) -> Self {
        Self {
            inner: Inner::Rsa {
                n: trim_leading_zeros(n).to_vec(),
                e: trim_leading_zeros(e).to_vec(),
            },
        }
    }

    pub(crate) fn from_ed25519(point: [u8; 32]) -> Self {
        Self {
            inner: Inner::Ed25519(point),
        }
    }

    /// RSA (n, e) as big-endian magnitudes, or `None` for Ed25519.
    pub(crate) fn rsa_components(&self) -> Option<(&[u8], &[u8])> {
        match &self.inner {
            Inner::Rsa { n, e } => Some((n, e)),
            Inner::Ed25519(_) => None,
        }
    }

    /// Parses an SSH wire public key blob (`ssh-rsa` or `ssh-ed25519`).
    pub fn from_wire_blob(blob: &[u8]) -> Result<PublicKey, KeyError> {
        let mut r = Reader::new(blob, "ssh public key blob");
        let algorithm = r.string("algorithm name")?;
        let key = match algorithm {
            b"ssh-rsa" => {
                let e = r.mpint("rsa e")?;
                let n = r.mpint("rsa n")?;
                check_rsa(n, e)?;
                Self::from_rsa_parts(n, e)
            }
            b"ssh-ed25519" => {
                let point = r.string("ed25519 public key")?;
                let point: [u8; 32] = point.try_into().map_err(|_| KeyError::Malformed {
                    what: "ssh public key blob",
                    reason: format!("ed25519 public key is {} bytes, want 32", point.len()),
                })?;
                Self::from_ed25519(point)
            }
            other => {
                return Err(KeyError::UnsupportedAlgorithm {
                    algorithm: String::from_utf8_lossy(other).into_owned(),
                });
            }
        };
        r.finish()?;
        Ok(key)
    }

    /// Parses an authorized_keys line `<type> <base64> [comment]` (no leading options).
    pub fn from_openssh(line: &str) -> Result<PublicKey, KeyError> {
        let (algorithm, blob) = split_openssh_line(line)?;
        let key = Self::from_wire_blob(&blob)?;
        if key.key_type().ssh_name() != algorithm {
            return Err(KeyError::Malformed {
                what: "authorized_keys line",
                reason: format!(
                    "type field {algorithm:?} does not match the key's {:?}",
                    key.key_type().ssh_name()
                ),
            });
        }
        Ok(key)
    }

    pub fn key_type(&self) -> KeyType {
        match self.inner {
            Inner::Rsa { .. } => KeyType::Rsa,
            Inner::Ed25519(_) => KeyType::Ed25519,
        }
    }

    /// `ssh-ed25519 AAAA...` without a comment.
    pub fn to_openssh(&self) -> String {
        format!(
            "{} {}",
            self.key_type().ssh_name(),
            STANDARD.encode(self.wire_blob())
        )
    }

    /// The SSH wire encoding (RFC 4253 §6.6 / RFC 8709).
    pub fn wire_blob(&self) -> Vec<u8> {
        let mut out = Vec::new();
        wire::put_string(&mut out, self.key_type().ssh_name().as_bytes());
        match &self.inner {
            Inner::Rsa { n, e } => {
                wire::put_mpint(&mut out, e);
                wire::put_mpint(&mut out, n);
            }
            Inner::Ed25519(point) => wire::put_string(&mut out, point),
        }
        out
    }

    /// Key size as `ssh-keygen -l` prints it: the modulus bit length for RSA, 256 for Ed25519.
    pub fn bits(&self) -> u32 {
        match &self.inner {
            Inner::Rsa { n, .. } => bit_length(n),
            Inner::Ed25519(_) => 256,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PublicKey({} {} {})",
            self.key_type(),
            self.bits(),
            self.sha256_fingerprint()
        )
    }
}

/// Bit length of a big-endian magnitude.
pub(crate) fn bit_length(magnitude: &[u8]) -> u32 {
    let m = trim_leading_zeros(magnitude);
    match m.first() {
        None => 0,
        Some(&top) => (m.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
    }
}

/// Minimal sanity of RSA public numbers: odd modulus, odd exponent ≥ 3 that fits 64 bits
/// and is below n.
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), KeyError> {
    let bad = |reason: String| KeyError::Malformed {
        what: "rsa public key",
        reason,
    };
    if n.last().is_none_or(|b| b & 1 == 0) {
        return Err(bad("modulus is zero or even".to_string()));
    }
    if e.len() > 8 || e.len() > n.len() {
        return Err(bad(format!(
            "public exponent of {} bytes is too large",
            e.len()
        )));
    }
    let mut buf = [0u8; 8];
    buf[8 - e.len()..].copy_from_slice(e);
    let e_value = u64::from_be_bytes(buf);
    if e_value < 3 || e_value % 2 == 0 {
        return Err(bad(format!(
            "public exponent {e_value} is not odd and at least 3"
        )));
    }
    Ok(())
}

/// Splits `<type> <base64> [comment]` and decodes the blob; returns the type and blob.
pub(crate) fn split_openssh_line(line: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let bad = |reason: String| KeyError::Malformed {
        what: "authorized_keys line",
        reason,
    };
    let mut fields = line.split_ascii_whitespace();
    let algorithm = fields.next().ok_or_else(|| bad("empty line".to_string()))?;
    let b64 = fields
        .next()
        .ok_or_else(|| bad(format!("no base64 key after {algorithm:?}")))?;
    let blob = STANDARD
        .decode(b64)
        .map_err(|e| bad(format!("bad base64 key after {algorithm:?}: {e}")))?;
    Ok((algorithm, blob))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §1.7: seed 00..1f.
    const VECTOR_LINE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4";

    #[test]
    fn openssh_line_round_trip() {
        let key = PublicKey::from_openssh(&format!("{VECTOR_LINE} some comment")).unwrap();
        assert_eq!(key.key_type(), KeyType::Ed25519);
        assert_eq!(key.to_openssh(), VECTOR_LINE);
        assert_eq!(key.bits(), 256);
        assert_eq!(PublicKey::from_wire_blob(&key.wire_blob()).unwrap(), key);
    }

    #[test]
    fn openssh_line_errors() {
        assert!(PublicKey::from_openssh("").is_err());
        assert!(PublicKey::from_openssh("ssh-ed25519").is_err());
        assert!(PublicKey::from_openssh("ssh-ed25519 !!!notbase64").is_err());
        let truncated = &VECTOR_LINE[..VECTOR_LINE.len() - 8];
        assert!(PublicKey::from_openssh(truncated).is_err());
        let mislabelled = VECTOR_LINE.replace("ssh-ed25519 ", "ssh-rsa ");
        let err = PublicKey::from_openssh(&mislabelled)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn rsa_blob_checks_and_bits() {
        let mut n = vec![0xc1; 256];
        n[255] = 0x01;
        let key = PublicKey::from_rsa_parts(&n, &[1, 0, 1]);
        assert_eq!(key.bits(), 2048);
        let back = PublicKey::from_wire_blob(&key.wire_blob()).unwrap();
        assert_eq!(back, key);

        let even = PublicKey::from_rsa_parts(&[0xc0; 128], &[1, 0, 1]);
        assert!(PublicKey::from_wire_blob(&even.wire_blob()).is_err());
        let e_two = PublicKey::from_rsa_parts(&n, &[2]);
        assert!(PublicKey::from_wire_blob(&e_two.wire_blob()).is_err());
        let mut trailing = key.wire_blob();
        trailing.push(0);
        assert!(PublicKey::from_wire_blob(&trailing).is_err());
        assert_eq!(bit_length(&[0, 0, 1]), 1);
        assert_eq!(bit_length(&[]), 0);
    }
}
