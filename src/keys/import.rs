//! What `ImportKeyPair` accepts as `PublicKeyMaterial` (after the API layer has undone
//! botocore's base64): an authorized_keys line, RFC 4716 (`---- BEGIN SSH2 PUBLIC KEY ----`
//! with headers and continuation lines), PEM `BEGIN PUBLIC KEY` / `BEGIN RSA PUBLIC KEY`, or
//! bare base64 of a DER SubjectPublicKeyInfo. The format is detected from the first line;
//! then EC2's policy applies: RSA of 1024 to 4096 bits or Ed25519, nothing else.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::asn1::{self, OID_ED25519, OID_RSA};
use super::{KeyError, KeyType, PublicKey, der};

const RFC4716_BEGIN: &str = "---- BEGIN SSH2 PUBLIC KEY ----";
const RFC4716_END: &str = "---- END SSH2 PUBLIC KEY ----";

fn unknown(reason: impl Into<String>) -> KeyError {
    KeyError::UnknownPublicFormat {
        reason: reason.into(),
    }
}

impl PublicKey {
    /// Parses ImportKeyPair material in any accepted format and applies EC2's key policy.
    pub fn parse_import(material: &[u8]) -> Result<PublicKey, KeyError> {
        let text = std::str::from_utf8(material).map_err(|_| unknown("material is not text"))?;
        let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if text.is_empty() {
            return Err(unknown("material is empty"));
        }
        let key = if text.starts_with(RFC4716_BEGIN) {
            parse_rfc4716(text)?
        } else if text.starts_with("-----BEGIN ") {
            parse_pem(text)?
        } else if looks_like_key_type(text) {
            PublicKey::from_openssh(text)?
        } else {
            // Base64 of DER, possibly wrapped over several lines.
            let compact: String = text.split_ascii_whitespace().collect();
            let der = STANDARD
                .decode(compact)
                .map_err(|e| unknown(format!("not an authorized_keys line nor base64 der: {e}")))?;
            parse_spki(&der)?
        };
        check_policy(&key)?;
        Ok(key)
    }
}

/// Whether the first word is an SSH key type name (`ssh-rsa`, `ecdsa-sha2-nistp256`,
/// `sk-ssh-ed25519@openssh.com`, ...), i.e. the text is an authorized_keys line.
fn looks_like_key_type(text: &str) -> bool {
    let first = text.split_ascii_whitespace().next().unwrap_or_default();
    ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|p| first.starts_with(p))
        || first.contains('@')
}

/// RSA 1024..=4096 bits; Ed25519 always.
fn check_policy(key: &PublicKey) -> Result<(), KeyError> {
    match key.key_type() {
        KeyType::Rsa if !(1024..=4096).contains(&key.bits()) => {
            Err(KeyError::RsaKeySize { bits: key.bits() })
        }
        _ => Ok(()),
    }
}

/// RFC 4716 §3: BEGIN line, headers `Tag: value` (a trailing `\` continues a header on the
/// next line), base64 body, END line.
fn parse_rfc4716(text: &str) -> Result<PublicKey, KeyError> {
    let mut lines = text.lines().map(str::trim).skip(1);
    let mut body = String::new();
    let mut continuing = false;
    let mut ended = false;
    for line in lines.by_ref() {
        if line == RFC4716_END {
            ended = true;
            break;
        }
        if continuing || line.contains(':') {
            // a header (base64 has no ':'), or the continuation of one
            continuing = line.ends_with('\\');
        } else {
            body.push_str(line);
        }
    }
    if !ended {
        return Err(unknown(format!(
            "rfc 4716 block has no {RFC4716_END:?} line"
        )));
    }
    let blob = STANDARD
        .decode(body.as_bytes())
        .map_err(|e| unknown(format!("bad base64 in rfc 4716 body: {e}")))?;
    PublicKey::from_wire_blob(&blob)
}

fn parse_pem(text: &str) -> Result<PublicKey, KeyError> {
    let pem = asn1::pem_decode(text)?;
    match pem.label.as_str() {
        "PUBLIC KEY" => parse_spki(&pem.der),
        "RSA PUBLIC KEY" => parse_pkcs1_public(&pem.der),
        other => Err(unknown(format!("pem block {other:?} is not a public key"))),
    }
}

fn parse_pkcs1_public(der: &[u8]) -> Result<PublicKey, KeyError> {
    let (n, e) = der::pkcs1_public(der)?;
    // Route through the SSH blob so the same sanity checks apply to every format.
    PublicKey::from_wire_blob(&PublicKey::from_rsa_parts(n, e).wire_blob())
}

fn parse_spki(der: &[u8]) -> Result<PublicKey, KeyError> {
    match der::spki(der)? {
        (OID_RSA, key) => parse_pkcs1_public(key),
        (OID_ED25519, key) => {
            let point: [u8; 32] = key.try_into().map_err(|_| KeyError::Malformed {
                what: "subjectpublickeyinfo",
                reason: format!("ed25519 key is {} bytes, want 32", key.len()),
            })?;
            Ok(PublicKey::from_ed25519(point))
        }
        (oid, _) => Err(KeyError::UnsupportedAlgorithm {
            algorithm: der::oid_name(oid),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{KeyType, generate};

    fn all_forms(key: &PublicKey) -> Vec<(&'static str, String)> {
        let b64_der = STANDARD.encode(key.spki_der());
        let pem = asn1::pem_encode("PUBLIC KEY", &key.spki_der(), 64);
        let blob = STANDARD.encode(key.wire_blob());
        let mut rfc = format!(
            "{RFC4716_BEGIN}\nComment: \"2048-bit key, with a \\\n continuation\"\nx-extra: y\n"
        );
        for chunk in blob.as_bytes().chunks(70) {
            rfc.push_str(std::str::from_utf8(chunk).unwrap());
            rfc.push('\n');
        }
        rfc.push_str(RFC4716_END);
        let wrapped_der = asn1::wrap_base64(&key.spki_der(), 76).to_string();
        vec![
            ("openssh", key.to_openssh()),
            ("wrapped base64 der", wrapped_der),
            (
                "openssh+comment",
                format!("{} user@host\n", key.to_openssh()),
            ),
            ("base64 der", b64_der),
            ("pem spki", pem),
            (
                "pem crlf",
                asn1::pem_encode("PUBLIC KEY", &key.spki_der(), 64).replace('\n', "\r\n"),
            ),
            ("rfc4716", rfc),
        ]
    }

    #[test]
    fn every_accepted_format_gives_the_same_key() {
        for kind in [KeyType::Rsa, KeyType::Ed25519] {
            let key = generate(kind).public_key();
            for (name, text) in all_forms(&key) {
                let parsed = PublicKey::parse_import(text.as_bytes())
                    .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
                assert_eq!(parsed, key, "{kind} {name}");
            }
        }
    }

    #[test]
    fn rsa_public_key_pem_is_accepted() {
        let key = generate(KeyType::Rsa).public_key();
        let (n, e) = key.rsa_components().unwrap();
        let der = asn1::sequence(&[&asn1::uint(n), &asn1::uint(e)]);
        let pem = asn1::pem_encode("RSA PUBLIC KEY", &der, 64);
        assert_eq!(PublicKey::parse_import(pem.as_bytes()).unwrap(), key);
    }

    #[test]
    fn garbage_and_truncation_are_rejected() {
        let key = generate(KeyType::Ed25519).public_key();
        let line = key.to_openssh();
        let der = STANDARD.encode(key.spki_der());
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", b"".to_vec()),
            ("blank", b"  \n\t".to_vec()),
            ("binary", vec![0xff, 0xfe, 0x00]),
            ("words", b"hello world".to_vec()),
            (
                "truncated line",
                line.as_bytes()[..line.len() - 10].to_vec(),
            ),
            ("truncated der", der.as_bytes()[..der.len() - 8].to_vec()),
            ("bad base64", b"AAAA$$$$".to_vec()),
            (
                "private pem",
                generate(KeyType::Ed25519).to_pem_pkcs8().into_bytes(),
            ),
            (
                "rfc4716 no end",
                format!("{RFC4716_BEGIN}\nAAAA\n").into_bytes(),
            ),
        ];
        for (name, material) in cases {
            assert!(
                PublicKey::parse_import(&material).is_err(),
                "{name} accepted"
            );
        }
    }

    #[test]
    fn dsa_and_ecdsa_are_refused_in_every_format() {
        use crate::keys::wire::{put_mpint, put_string};
        let ecdsa = ssh_key::PrivateKey::random(
            &mut crate::keys::generate::LabRng,
            ssh_key::Algorithm::Ecdsa {
                curve: ssh_key::EcdsaCurve::NistP256,
            },
        )
        .unwrap();
        let ecdsa_blob = ecdsa.public_key().to_bytes().unwrap();
        let mut dsa_blob = Vec::new();
        put_string(&mut dsa_blob, b"ssh-dss");
        for v in [&[0xb1; 128][..], &[0x91; 20], &[0x21; 128], &[0x33; 128]] {
            put_mpint(&mut dsa_blob, v);
        }
        // id-ecPublicKey with prime256v1, and id-dsa, as SubjectPublicKeyInfo.
        let ec_oid = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
        let p256_oid = asn1::tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]);
        let ec_point = &ecdsa_blob[ecdsa_blob.len() - 65..];
        let ec_spki = asn1::sequence(&[
            &asn1::sequence(&[&asn1::tlv(0x06, &ec_oid), &p256_oid]),
            &asn1::tlv(0x03, &[&[0u8][..], ec_point].concat()),
        ]);
        let dsa_oid = [0x2a, 0x86, 0x48, 0xce, 0x38, 0x04, 0x01];
        let dsa_spki = asn1::sequence(&[
            &asn1::sequence(&[&asn1::tlv(0x06, &dsa_oid)]),
            &asn1::tlv(0x03, &[0, 0x02, 0x01, 0x05]),
        ]);
        for (name, blob, spki) in [("ecdsa", ecdsa_blob, ec_spki), ("dsa", dsa_blob, dsa_spki)] {
            let b64 = STANDARD.encode(&blob);
            let alg = if name == "dsa" {
                "ssh-dss"
            } else {
                "ecdsa-sha2-nistp256"
            };
            let forms = [
                format!("{alg} {b64} me@host"),
                format!("{RFC4716_BEGIN}\n{b64}\n{RFC4716_END}\n"),
                STANDARD.encode(&spki),
                asn1::pem_encode("PUBLIC KEY", &spki, 64),
            ];
            for form in forms {
                let err = PublicKey::parse_import(form.as_bytes()).unwrap_err();
                assert!(
                    matches!(&err, KeyError::UnsupportedAlgorithm { algorithm } if algorithm.contains(name) || algorithm.contains("dss")),
                    "{name}: {err}"
                );
            }
        }
    }

    #[test]
    fn rsa_sizes_outside_policy_are_rejected() {
        let mut n = vec![0xff; 64]; // 512 bits
        n[63] = 0x01;
        let small = PublicKey::from_rsa_parts(&n, &[1, 0, 1]).to_openssh();
        let err = PublicKey::parse_import(small.as_bytes()).unwrap_err();
        assert!(matches!(err, KeyError::RsaKeySize { bits: 512 }), "{err}");
        let mut n = vec![0xff; 1024]; // 8192 bits
        n[1023] = 0x01;
        let big = PublicKey::from_rsa_parts(&n, &[1, 0, 1]).to_openssh();
        assert!(PublicKey::parse_import(big.as_bytes()).is_err());
    }
}
