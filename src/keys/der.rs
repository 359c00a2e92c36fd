//! Reading the four DER structures keys arrive in: PKCS#1 RSAPrivateKey and RSAPublicKey,
//! PKCS#8 PrivateKeyInfo and X.509 SubjectPublicKeyInfo. A small definite-length TLV reader
//! of our own rather than the RustCrypto `pkcs1`/`pkcs8` crates, whose release candidates
//! other crates in the graph pin to mutually incompatible versions (russh pins
//! `pkcs1 = "=0.8.0-rc.4"`). Returns borrowed big-endian magnitudes; the callers validate
//! the numbers.

use super::KeyError;
use super::wire::trim_leading_zeros;

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// A cursor over DER content; `what` names the structure in errors.
struct Der<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Der<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }

    fn error(&self, reason: String) -> KeyError {
        KeyError::Malformed {
            what: self.what,
            reason,
        }
    }

    /// One TLV with the given tag; returns its content.
    fn expect(&mut self, tag: u8, field: &str) -> Result<&'a [u8], KeyError> {
        let (&found, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.error(format!("truncated before {field}")))?;
        if found != tag {
            return Err(self.error(format!(
                "{field}: expected tag 0x{tag:02x}, found 0x{found:02x}"
            )));
        }
        let (&first, mut rest) = rest
            .split_first()
            .ok_or_else(|| self.error(format!("{field}: truncated length")))?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || count > rest.len() {
                return Err(self.error(format!("{field}: unsupported length encoding")));
            }
            let (len_bytes, after) = rest.split_at(count);
            rest = after;
            len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
        };
        if len > rest.len() {
            return Err(self.error(format!(
                "{field}: claims {len} bytes but only {} remain",
                rest.len()
            )));
        }
        let (content, after) = rest.split_at(len);
        self.buf = after;
        Ok(content)
    }

    fn sequence(&mut self, field: &str) -> Result<Der<'a>, KeyError> {
        Ok(Der::new(self.expect(TAG_SEQUENCE, field)?, self.what))
    }

    /// A non-negative INTEGER, as its magnitude without leading zeros.
    fn uint(&mut self, field: &str) -> Result<&'a [u8], KeyError> {
        let content = self.expect(TAG_INTEGER, field)?;
        if content.first().is_none_or(|b| b & 0x80 != 0) {
            return Err(self.error(format!("{field} is empty or negative")));
        }
        Ok(trim_leading_zeros(content))
    }

    /// A small INTEGER such as a version number.
    fn small_uint(&mut self, field: &str) -> Result<u64, KeyError> {
        let magnitude = self.uint(field)?;
        if magnitude.len() > 8 {
            return Err(self.error(format!("{field} is too large")));
        }
        Ok(magnitude
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// AlgorithmIdentifier: the OID's content bytes (parameters are not needed).
    fn algorithm(&mut self) -> Result<&'a [u8], KeyError> {
        self.sequence("algorithm identifier")?
            .expect(TAG_OID, "algorithm oid")
    }

    fn finish(&self) -> Result<(), KeyError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("{} unexpected trailing bytes", self.buf.len())))
        }
    }
}

/// The top-level SEQUENCE, with nothing after it.
fn outer<'a>(der: &'a [u8], what: &'static str) -> Result<Der<'a>, KeyError> {
    let mut top = Der::new(der, what);
    let seq = top.sequence(what)?;
    top.finish()?;
    Ok(seq)
}

/// n, e, d, p, q of a PKCS#1 RSAPrivateKey (the CRT values are recomputed by the caller).
pub(crate) struct RsaPrivateDer<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
}

pub(crate) fn pkcs1_private(der: &[u8]) -> Result<RsaPrivateDer<'_>, KeyError> {
    let mut seq = outer(der, "pkcs#1 rsa private key")?;
    if seq.small_uint("version")? != 0 {
        return Err(KeyError::UnsupportedAlgorithm {
            algorithm: "multi-prime rsa".to_string(),
        });
    }
    let key = RsaPrivateDer {
        n: seq.uint("modulus")?,
        e: seq.uint("public exponent")?,
        d: seq.uint("private exponent")?,
        p: seq.uint("prime1")?,
        q: seq.uint("prime2")?,
    };
    for field in ["exponent1", "exponent2", "coefficient"] {
        seq.uint(field)?;
    }
    seq.finish()?;
    Ok(key)
}

/// (n, e) of a PKCS#1 RSAPublicKey.
pub(crate) fn pkcs1_public(der: &[u8]) -> Result<(&[u8], &[u8]), KeyError> {
    let mut seq = outer(der, "pkcs#1 rsa public key")?;
    let n = seq.uint("modulus")?;
    let e = seq.uint("public exponent")?;
    seq.finish()?;
    Ok((n, e))
}

/// (algorithm OID, privateKey octets) of a PKCS#8 PrivateKeyInfo / OneAsymmetricKey;
/// attributes and the optional public key are ignored.
pub(crate) fn pkcs8(der: &[u8]) -> Result<(&[u8], &[u8]), KeyError> {
    let mut seq = outer(der, "pkcs#8 private key")?;
    let version = seq.small_uint("version")?;
    if version > 1 {
        return Err(seq.error(format!("unknown version {version}")));
    }
    let oid = seq.algorithm()?;
    let key = seq.expect(TAG_OCTET_STRING, "private key")?;
    Ok((oid, key))
}

/// The 32-byte seed inside a PKCS#8 Ed25519 privateKey (`OCTET STRING` of the seed).
pub(crate) fn ed25519_seed(octets: &[u8]) -> Result<[u8; 32], KeyError> {
    let mut inner = Der::new(octets, "pkcs#8 ed25519 private key");
    let seed = inner.expect(TAG_OCTET_STRING, "seed")?;
    inner.finish()?;
    seed.try_into()
        .map_err(|_| inner.error(format!("seed is {} bytes, want 32", seed.len())))
}

/// (algorithm OID, subjectPublicKey bits) of a SubjectPublicKeyInfo.
pub(crate) fn spki(der: &[u8]) -> Result<(&[u8], &[u8]), KeyError> {
    let mut seq = outer(der, "subjectpublickeyinfo")?;
    let oid = seq.algorithm()?;
    let bits = seq.expect(TAG_BIT_STRING, "subject public key")?;
    seq.finish()?;
    match bits.split_first() {
        Some((0, key)) => Ok((oid, key)),
        _ => Err(seq.error("subject public key has unused bits".to_string())),
    }
}

/// A readable name for an algorithm OID (content bytes): `rsa`, `ed25519`, `ecdsa`, `dsa`,
/// else the dotted form.
pub(crate) fn oid_name(oid: &[u8]) -> String {
    use super::asn1::{OID_ED25519, OID_RSA};
    const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const OID_DSA: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
    match oid {
        OID_RSA => return "rsa".to_string(),
        OID_ED25519 => return "ed25519".to_string(),
        OID_EC => return "ecdsa".to_string(),
        OID_DSA => return "dsa".to_string(),
        _ => {}
    }
    let mut arcs: Vec<u64> = Vec::new();
    let mut value = 0u64;
    for &b in oid {
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.extend([first, value - first * 40]);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    let dotted: Vec<String> = arcs.iter().map(u64::to_string).collect();
    format!("oid {}", dotted.join("."))
}

#[cfg(test)]
mod tests {
    use super::super::asn1::{self, OID_RSA};
    use super::*;

    #[test]
    fn reads_what_asn1_writes() {
        let n = [0xc3; 256];
        let rsa_public = asn1::sequence(&[&asn1::uint(&n), &asn1::uint(&[1, 0, 1])]);
        assert_eq!(
            pkcs1_public(&rsa_public).unwrap(),
            (&n[..], &[1u8, 0, 1][..])
        );
        let spki_der = asn1::spki(OID_RSA, true, &rsa_public);
        assert_eq!(spki(&spki_der).unwrap(), (OID_RSA, &rsa_public[..]));
        let p8 = asn1::pkcs8(OID_RSA, true, b"inner");
        assert_eq!(pkcs8(&p8).unwrap(), (OID_RSA, &b"inner"[..]));
    }

    #[test]
    fn rejects_bad_encodings() {
        let good = asn1::sequence(&[&asn1::uint(&[0x41; 64]), &asn1::uint(&[3])]);
        assert!(pkcs1_public(&good[..good.len() - 1]).is_err(), "truncated");
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(pkcs1_public(&trailing).is_err(), "trailing");
        let negative = asn1::sequence(&[&asn1::tlv(0x02, &[0x80]), &asn1::uint(&[3])]);
        assert!(pkcs1_public(&negative).is_err(), "negative");
        assert!(
            pkcs1_public(&[0x30, 0x80, 0, 0]).is_err(),
            "indefinite length"
        );
        assert!(pkcs1_public(&[]).is_err(), "empty");
        let err = pkcs1_public(&[0x04, 0]).unwrap_err().to_string();
        assert!(err.contains("expected tag 0x30"), "{err}");
    }

    #[test]
    fn oid_names() {
        assert_eq!(oid_name(OID_RSA), "rsa");
        assert_eq!(oid_name(&[0x2b, 0x65, 0x71]), "oid 1.3.101.113");
        assert_eq!(
            oid_name(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            "ecdsa"
        );
    }
}
