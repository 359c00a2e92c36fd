//! Fingerprints (reference §2.3 and §8.3). EC2's three formulas: created RSA = SHA-1 of the
//! PKCS#8 DER (colon hex), imported RSA = MD5 of the SubjectPublicKeyInfo DER (colon hex),
//! Ed25519 = padded base64 of SHA-256 of the SSH blob. Plus OpenSSH's `SHA256:` form and the
//! `ssh-keygen -l` line that cloud-init prints for host keys.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::asn1::{self, OID_ED25519, OID_RSA};
use super::public::{bit_length, split_openssh_line};
use super::wire::Reader;
use super::{KeyError, KeyType, PrivateKey, PublicKey, pem};

fn colon_hex(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl PrivateKey {
    /// `keyFingerprint` of CreateKeyPair.
    pub fn aws_created_fingerprint(&self) -> String {
        match self.key_type() {
            KeyType::Rsa => colon_hex(&Sha1::digest(pem::pkcs8_der(self))),
            KeyType::Ed25519 => self.public_key().aws_imported_fingerprint(),
        }
    }
}

impl PublicKey {
    /// `keyFingerprint` of ImportKeyPair (and DescribeKeyPairs for imported keys).
    pub fn aws_imported_fingerprint(&self) -> String {
        match self.key_type() {
            KeyType::Rsa => colon_hex(&Md5::digest(self.spki_der())),
            KeyType::Ed25519 => STANDARD.encode(Sha256::digest(self.wire_blob())),
        }
    }

    /// `SHA256:<unpadded base64>`, as `ssh-keygen -l` prints it.
    pub fn sha256_fingerprint(&self) -> String {
        sha256_of_blob(&self.wire_blob())
    }

    /// DER SubjectPublicKeyInfo (`BEGIN PUBLIC KEY`): RSA with NULL parameters (the form
    /// `openssl rsa -pubout` writes), Ed25519 per RFC 8410.
    pub fn spki_der(&self) -> Vec<u8> {
        match self.rsa_components() {
            Some((n, e)) => {
                let rsa_public = asn1::sequence(&[&asn1::uint(n), &asn1::uint(e)]);
                asn1::spki(OID_RSA, true, &rsa_public)
            }
            None => {
                let blob = self.wire_blob();
                asn1::spki(OID_ED25519, false, &blob[blob.len() - 32..])
            }
        }
    }
}

fn sha256_of_blob(blob: &[u8]) -> String {
    format!("SHA256:{}", STANDARD_NO_PAD.encode(Sha256::digest(blob)))
}

/// One line of `ssh-keygen -l -f key.pub`: `256 SHA256:<b64> root@host (ED25519)`.
/// Accepts any host key type sshd uses (RSA, ECDSA P-256/384/521, Ed25519, DSA). The
/// comment is `comment`, else the line's own comment, else `no comment` as ssh-keygen says.
pub fn fingerprint_line(public_line: &str, comment: &str) -> Result<String, KeyError> {
    let (_, blob) = split_openssh_line(public_line)?;
    let mut r = Reader::new(&blob, "ssh public key blob");
    let algorithm = r.string("algorithm name")?;
    let (bits, label) = match algorithm {
        b"ssh-rsa" => {
            r.mpint("rsa e")?;
            (bit_length(r.mpint("rsa n")?), "RSA")
        }
        b"ssh-dss" => (bit_length(r.mpint("dsa p")?), "DSA"),
        b"ssh-ed25519" => (256, "ED25519"),
        b"ecdsa-sha2-nistp256" => (256, "ECDSA"),
        b"ecdsa-sha2-nistp384" => (384, "ECDSA"),
        b"ecdsa-sha2-nistp521" => (521, "ECDSA"),
        other => {
            return Err(KeyError::UnsupportedAlgorithm {
                algorithm: String::from_utf8_lossy(other).into_owned(),
            });
        }
    };
    let line_comment = public_line
        .split_ascii_whitespace()
        .skip(2)
        .collect::<Vec<_>>()
        .join(" ");
    let comment = [comment.trim(), line_comment.as_str()]
        .into_iter()
        .find(|c| !c.is_empty())
        .unwrap_or("no comment");
    Ok(format!(
        "{bits} {} {comment} ({label})",
        sha256_of_blob(&blob)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §1.7 / §2.3: seed 00..1f.
    fn vector_key() -> PrivateKey {
        let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
        PrivateKey::from_ed25519_seed(&seed)
    }

    #[test]
    fn ed25519_vector_from_the_reference() {
        let key = vector_key();
        assert_eq!(
            key.public_key().to_openssh(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
        );
        assert_eq!(
            key.aws_created_fingerprint(),
            "lbmsoA0yIEcEiVDRnMWuzm+nV+3ZEEpVIURqFoeSspg="
        );
        assert_eq!(
            key.public_key().aws_imported_fingerprint(),
            key.aws_created_fingerprint()
        );
        assert_eq!(
            key.public_key().sha256_fingerprint(),
            "SHA256:lbmsoA0yIEcEiVDRnMWuzm+nV+3ZEEpVIURqFoeSspg"
        );
    }

    #[test]
    fn fingerprint_line_shapes() {
        let public = vector_key().public_key().to_openssh();
        assert_eq!(
            fingerprint_line(&public, "root@ip-172-31-22-24").unwrap(),
            "256 SHA256:lbmsoA0yIEcEiVDRnMWuzm+nV+3ZEEpVIURqFoeSspg root@ip-172-31-22-24 (ED25519)"
        );
        let with_own = format!("{public} me@there");
        assert!(
            fingerprint_line(&with_own, "")
                .unwrap()
                .ends_with(" me@there (ED25519)")
        );
        assert!(
            fingerprint_line(&public, "")
                .unwrap()
                .ends_with(" no comment (ED25519)")
        );
        assert!(fingerprint_line("ssh-ed25519 AAAA", "x").is_err());
        assert!(fingerprint_line("", "x").is_err());
    }

    #[test]
    fn colon_hex_shape() {
        assert_eq!(colon_hex(&[0x0a, 0xff, 0x00]), "0a:ff:00");
    }
}
