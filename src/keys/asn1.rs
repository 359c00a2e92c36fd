//! The small amount of DER and PEM this module writes itself (RSA PKCS#1, PKCS#8 and
//! SubjectPublicKeyInfo; Ed25519 PKCS#8), written by hand so that the bytes AWS fingerprints
//! are computed over are deterministic and encoding cannot fail; plus a lenient PEM armor
//! reader (LF/CRLF, any line width, RFC 1421 headers reported) used by every PEM decoder.
//! DER reading is in `der.rs`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use zeroize::Zeroizing;

use super::KeyError;
use super::wire::trim_leading_zeros;

/// rsaEncryption, 1.2.840.113549.1.1.1 (DER content bytes).
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-Ed25519, 1.3.101.112 (DER content bytes).
pub(crate) const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// One DER TLV with a definite, minimal length.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let len_bytes = len.to_be_bytes();
        let len_bytes = trim_leading_zeros(&len_bytes);
        out.push(0x80 | len_bytes.len() as u8);
        out.extend_from_slice(len_bytes);
    }
    out.extend_from_slice(content);
    out
}

pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(TAG_SEQUENCE, &parts.concat())
}

/// A non-negative INTEGER from its big-endian magnitude.
pub(crate) fn uint(magnitude: &[u8]) -> Vec<u8> {
    let trimmed = trim_leading_zeros(magnitude);
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(TAG_INTEGER, &content)
}

pub(crate) fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(TAG_OCTET_STRING, content)
}

fn algorithm_identifier(oid: &[u8], null_params: bool) -> Vec<u8> {
    let oid = tlv(TAG_OID, oid);
    if null_params {
        sequence(&[&oid, &[TAG_NULL, 0]])
    } else {
        sequence(&[&oid])
    }
}

/// PKCS#8 v1 PrivateKeyInfo (RFC 5208): version 0, algorithm, key; no attributes.
pub(crate) fn pkcs8(oid: &[u8], null_params: bool, private_key: &[u8]) -> Vec<u8> {
    sequence(&[
        &uint(&[0]),
        &algorithm_identifier(oid, null_params),
        &octet_string(private_key),
    ])
}

/// X.509 SubjectPublicKeyInfo (RFC 5280).
pub(crate) fn spki(oid: &[u8], null_params: bool, public_key: &[u8]) -> Vec<u8> {
    let mut bits = Vec::with_capacity(public_key.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(public_key);
    sequence(&[
        &algorithm_identifier(oid, null_params),
        &tlv(TAG_BIT_STRING, &bits),
    ])
}

/// Base64 (standard alphabet, padded) broken into lines of at most `width` characters, each
/// ending in LF. Zeroized on drop since it often encodes private keys.
pub(crate) fn wrap_base64(data: &[u8], width: usize) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(data));
    let mut out = Zeroizing::new(String::with_capacity(b64.len() + b64.len() / width + 1));
    for line in b64.as_bytes().chunks(width) {
        // base64 output is ASCII, so every chunk is valid UTF-8
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// PEM armor with `width`-character base64 lines and LF line endings (64 for RFC 7468
/// PEM, 70 for OpenSSH keys as ssh-keygen writes them).
pub(crate) fn pem_encode(label: &str, der: &[u8], width: usize) -> String {
    format!(
        "-----BEGIN {label}-----\n{}-----END {label}-----\n",
        wrap_base64(der, width).as_str()
    )
}

/// A decoded PEM block.
pub(crate) struct Pem {
    pub label: String,
    /// RFC 1421 header lines such as `Proc-Type: 4,ENCRYPTED` (legacy OpenSSL encryption).
    pub headers: Vec<String>,
    pub der: Vec<u8>,
}

/// Decodes the first PEM block in `text`: tolerates CRLF, surrounding whitespace and any
/// base64 line width; requires matching BEGIN/END labels.
pub(crate) fn pem_decode(text: &str) -> Result<Pem, KeyError> {
    let malformed = |reason: String| KeyError::Malformed {
        what: "pem",
        reason,
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let label = first
        .strip_prefix("-----BEGIN ")
        .and_then(|l| l.strip_suffix("-----"))
        .ok_or_else(|| malformed(format!("expected a BEGIN line, found {first:?}")))?
        .to_string();
    let end = format!("-----END {label}-----");
    let mut headers = Vec::new();
    let mut body = String::new();
    let mut ended = false;
    for line in lines {
        if line == end {
            ended = true;
            break;
        }
        if line.starts_with("-----") {
            return Err(malformed(format!("expected {end:?}, found {line:?}")));
        }
        if body.is_empty() && line.contains(':') {
            headers.push(line.to_string());
        } else {
            body.push_str(line);
        }
    }
    if !ended {
        return Err(malformed(format!("missing {end:?}")));
    }
    let der = STANDARD
        .decode(body.as_bytes())
        .map_err(|e| malformed(format!("bad base64 in {label:?} block: {e}")))?;
    Ok(Pem {
        label,
        headers,
        der,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_integers() {
        assert_eq!(uint(&[0x00, 0x01]), [0x02, 0x01, 0x01]);
        assert_eq!(uint(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(uint(&[]), [0x02, 0x01, 0x00]);
        let long = tlv(0x04, &[7u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(&tlv(0x04, &[7u8; 200])[..3], &[0x04, 0x81, 200]);
    }

    #[test]
    fn pem_round_trip_crlf_and_headers() {
        let pem = pem_encode("TEST THING", &[1u8; 100], 64);
        assert!(pem.lines().all(|l| l.len() <= 64));
        let crlf = pem.replace('\n', "\r\n");
        let decoded = pem_decode(&format!("\n  {crlf}\n")).unwrap();
        assert_eq!(decoded.label, "TEST THING");
        assert_eq!(decoded.der, vec![1u8; 100]);

        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,00\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(pem_decode(legacy).unwrap().headers.len(), 2);
        assert!(pem_decode("-----BEGIN X-----\nAAAA\n-----END Y-----\n").is_err());
        assert!(pem_decode("-----BEGIN X-----\nAAAA\n").is_err());
        assert!(pem_decode("-----BEGIN X-----\n!!!!\n-----END X-----").is_err());
    }
}
