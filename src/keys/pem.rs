//! PEM-armored private keys. Writes PKCS#1 (`BEGIN RSA PRIVATE KEY`), PKCS#8
//! (`BEGIN PRIVATE KEY`) and unencrypted OpenSSH (`BEGIN OPENSSH PRIVATE KEY`, the layout of
//! OpenSSH's PROTOCOL.key) by hand; reads those three, with the DER parsed by `der.rs` and
//! OpenSSH (also bcrypt-encrypted) by `ssh-key`. Legacy
//! OpenSSL-encrypted PEM and encrypted PKCS#8 are reported as unsupported encryption.

use ssh_key::private::KeypairData;
use zeroize::{Zeroize as _, Zeroizing};

use super::asn1::{self, OID_ED25519, OID_RSA};
use super::private::{KeyView, RsaParts};
use super::wire::{put_mpint, put_string, put_u32};
use super::{KeyError, PrivateKey, der};

const OPENSSH_MAGIC: &[u8] = b"openssh-key-v1\0";

/// PKCS#1 RSAPrivateKey DER (RFC 8017 A.1.2, two-prime, version 0).
pub(crate) fn rsa_pkcs1_der(parts: &RsaParts) -> Vec<u8> {
    let fields = [
        &parts.n,
        &parts.e,
        &parts.d,
        &parts.p,
        &parts.q,
        &parts.dp,
        &parts.dq,
        &parts.iqmp,
    ];
    let mut ints = vec![asn1::uint(&[0])];
    ints.extend(fields.iter().map(|f| asn1::uint(f)));
    let refs: Vec<&[u8]> = ints.iter().map(Vec::as_slice).collect();
    asn1::sequence(&refs)
}

pub(crate) fn rsa_pkcs1_pem(parts: &RsaParts) -> String {
    asn1::pem_encode("RSA PRIVATE KEY", &rsa_pkcs1_der(parts), 64)
}

/// PKCS#8 PrivateKeyInfo DER: RSA wraps PKCS#1 with NULL parameters; Ed25519 (RFC 8410)
/// wraps `OCTET STRING(seed)` with absent parameters. This is the exact DER whose SHA-1 EC2
/// reports for created RSA keys.
pub(crate) fn pkcs8_der(key: &PrivateKey) -> Vec<u8> {
    match key.view() {
        KeyView::Rsa(parts) => asn1::pkcs8(OID_RSA, true, &rsa_pkcs1_der(parts)),
        KeyView::Ed25519 { seed, .. } => asn1::pkcs8(OID_ED25519, false, &asn1::octet_string(seed)),
    }
}

pub(crate) fn pkcs8_pem(key: &PrivateKey) -> String {
    asn1::pem_encode("PRIVATE KEY", &pkcs8_der(key), 64)
}

/// Unencrypted OpenSSH private key (PROTOCOL.key): cipher/kdf "none", one key, random
/// check integers, padding 1, 2, 3, ... to 8 bytes; 70-column base64 like ssh-keygen.
pub(crate) fn openssh_private(key: &PrivateKey, comment: &str) -> String {
    let public = key.public_key().wire_blob();
    let mut section = Vec::new();
    let check: u32 = rand::random();
    put_u32(&mut section, check);
    put_u32(&mut section, check);
    put_string(&mut section, key.key_type().ssh_name().as_bytes());
    match key.view() {
        KeyView::Rsa(p) => {
            for v in [&p.n, &p.e, &p.d, &p.iqmp, &p.p, &p.q] {
                put_mpint(&mut section, v);
            }
        }
        KeyView::Ed25519 { seed, public } => {
            put_string(&mut section, public);
            let mut pair = Zeroizing::new([0u8; 64]);
            pair[..32].copy_from_slice(seed);
            pair[32..].copy_from_slice(public);
            put_string(&mut section, pair.as_slice());
        }
    }
    put_string(&mut section, comment.as_bytes());
    let mut pad = 1u8;
    while section.len() % 8 != 0 {
        section.push(pad);
        pad += 1;
    }

    let mut body = OPENSSH_MAGIC.to_vec();
    put_string(&mut body, b"none");
    put_string(&mut body, b"none");
    put_string(&mut body, b"");
    put_u32(&mut body, 1);
    put_string(&mut body, &public);
    put_string(&mut body, &section);
    // Zeroize the plaintext private section copy as soon as it is encoded.
    section.zeroize();
    let pem = asn1::pem_encode("OPENSSH PRIVATE KEY", &body, 70);
    body.zeroize();
    pem
}

/// Decodes a PEM private key of any supported label.
pub(crate) fn decode_private(
    text: &str,
    passphrase: Option<&[u8]>,
) -> Result<PrivateKey, KeyError> {
    let pem = asn1::pem_decode(text)?;
    let encrypted = pem.headers.iter().any(|h| h.contains("ENCRYPTED"));
    match pem.label.as_str() {
        "RSA PRIVATE KEY" if encrypted => Err(KeyError::UnsupportedEncryption {
            what: "pkcs#1 pem",
            scheme: pem
                .headers
                .iter()
                .find_map(|h| h.strip_prefix("DEK-Info:"))
                .unwrap_or("legacy openssl")
                .trim()
                .to_string(),
        }),
        "RSA PRIVATE KEY" => decode_pkcs1(&pem.der),
        "PRIVATE KEY" => decode_pkcs8(&pem.der),
        "ENCRYPTED PRIVATE KEY" => Err(KeyError::UnsupportedEncryption {
            what: "pkcs#8 pem",
            scheme: "pbes2".to_string(),
        }),
        "OPENSSH PRIVATE KEY" => decode_openssh(&pem.der, passphrase),
        "EC PRIVATE KEY" => Err(KeyError::UnsupportedAlgorithm {
            algorithm: "ecdsa".to_string(),
        }),
        "DSA PRIVATE KEY" => Err(KeyError::UnsupportedAlgorithm {
            algorithm: "dsa".to_string(),
        }),
        other => Err(KeyError::UnknownPrivateFormat {
            start: format!("-----BEGIN {other}-----"),
        }),
    }
}

fn decode_pkcs1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    let key = der::pkcs1_private(der)?;
    PrivateKey::from_rsa_components(key.n, key.e, key.d, key.p, key.q)
}

fn decode_pkcs8(der: &[u8]) -> Result<PrivateKey, KeyError> {
    match der::pkcs8(der)? {
        (OID_RSA, octets) => decode_pkcs1(octets),
        (OID_ED25519, octets) => Ok(PrivateKey::from_ed25519_seed(&Zeroizing::new(
            der::ed25519_seed(octets)?,
        ))),
        (oid, _) => Err(KeyError::UnsupportedAlgorithm {
            algorithm: der::oid_name(oid),
        }),
    }
}

fn decode_openssh(der: &[u8], passphrase: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
    const WHAT: &str = "openssh private key";
    let malformed = |err: ssh_key::Error| KeyError::Malformed {
        what: WHAT,
        reason: err.to_string(),
    };
    let mut key = ssh_key::PrivateKey::from_bytes(der).map_err(malformed)?;
    if key.is_encrypted() {
        let passphrase = passphrase
            .filter(|p| !p.is_empty())
            .ok_or(KeyError::PassphraseRequired { what: WHAT })?;
        key = key.decrypt(passphrase).map_err(|err| match err {
            // A wrong key fails the check integers (or yields undecodable garbage).
            ssh_key::Error::Crypto
            | ssh_key::Error::Encoding(_)
            | ssh_key::Error::FormatEncoding => KeyError::WrongPassphrase { what: WHAT },
            other => KeyError::UnsupportedEncryption {
                what: WHAT,
                scheme: format!("{} ({other})", key.cipher()),
            },
        })?;
    }
    match key.key_data() {
        KeypairData::Ed25519(pair) => Ok(PrivateKey::from_ed25519_seed(pair.private.as_ref())),
        KeypairData::Rsa(pair) => {
            fn int(m: &ssh_key::Mpint) -> Result<&[u8], KeyError> {
                m.as_positive_bytes().ok_or_else(|| KeyError::Malformed {
                    what: WHAT,
                    reason: "negative rsa component".to_string(),
                })
            }
            let (public, private) = (pair.public(), pair.private());
            PrivateKey::from_rsa_components(
                int(public.n())?,
                int(public.e())?,
                int(private.d())?,
                int(private.p())?,
                int(private.q())?,
            )
        }
        other => Err(KeyError::UnsupportedAlgorithm {
            algorithm: other
                .algorithm()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "unknown".to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyType;

    #[test]
    fn ed25519_pkcs8_matches_rfc8410_layout() {
        let key = PrivateKey::from_ed25519_seed(&[7; 32]);
        let der = pkcs8_der(&key);
        let prefix = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        assert_eq!(&der[..16], &prefix);
        assert_eq!(&der[16..], &[7; 32]);
        let back = PrivateKey::from_any(key.to_pem_pkcs8().as_bytes(), None).unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn every_pem_form_round_trips() {
        for kind in [KeyType::Rsa, KeyType::Ed25519] {
            let key = crate::keys::generate(kind);
            for text in [key.to_pem(), key.to_pem_pkcs8(), key.to_openssh("c")] {
                let back = PrivateKey::from_any(text.as_bytes(), None).unwrap();
                assert_eq!(back, key, "{kind} via {}", text.lines().next().unwrap());
                let crlf = text.replace('\n', "\r\n");
                assert_eq!(PrivateKey::from_any(crlf.as_bytes(), None).unwrap(), key);
            }
        }
    }

    #[test]
    fn openssh_layout_is_padded_and_labelled() {
        let key = PrivateKey::from_ed25519_seed(&[1; 32]);
        let text = key.to_openssh("lab");
        assert!(text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        assert!(text.lines().all(|l| l.len() <= 70));
        let parsed = ssh_key::PrivateKey::from_openssh(&text).unwrap();
        assert_eq!(parsed.comment().as_bytes(), b"lab");
        assert!(!parsed.is_encrypted());
    }

    #[test]
    fn unsupported_pem_kinds_say_why() {
        let legacy = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
                      DEK-Info: AES-128-CBC,0011\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        let err = PrivateKey::from_any(legacy.as_bytes(), None).unwrap_err();
        assert!(
            matches!(err, KeyError::UnsupportedEncryption { .. }),
            "{err}"
        );
        let ec = asn1::pem_encode("EC PRIVATE KEY", &[0x30, 0], 64);
        let err = PrivateKey::from_any(ec.as_bytes(), None).unwrap_err();
        assert!(
            matches!(err, KeyError::UnsupportedAlgorithm { .. }),
            "{err}"
        );
        let junk = asn1::pem_encode("RSA PRIVATE KEY", &[0x30, 3, 2, 1, 0], 64);
        let err = PrivateKey::from_any(junk.as_bytes(), None).unwrap_err();
        assert!(matches!(err, KeyError::Malformed { .. }), "{err}");
    }
}
