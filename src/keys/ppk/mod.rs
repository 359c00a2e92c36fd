//! PuTTY private key files (`.ppk`), versions 2 and 3, written and read by us (the `ssh-key`
//! reader mis-reads Ed25519 seeds that start with a zero byte, reference §1.8).
//!
//! Writing: public blob → private blob (RSA `mpint d, p, q, iqmp`; Ed25519 `uint32 32` ‖
//! seed) → (if encrypted: SHA-1 padding, KDF) → MAC over the plaintext → (encrypt) → text with
//! 64-character base64 lines, LF endings and a final LF.
//! Reading is the reverse and accepts what puttygen 0.78 writes: LF, CRLF or CR endings,
//! v2/v3, `none`/`aes256-cbc`, Argon2d/i/id, short little-endian Ed25519 values. The MAC is
//! checked before the private blob is parsed; a mismatch is a wrong passphrase when the file
//! is encrypted and [`KeyError::MacMismatch`] otherwise.

mod crypto;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

pub use crypto::{Argon2Flavour, Argon2Params};

use super::asn1::wrap_base64;
use super::private::KeyView;
use super::wire::{Reader, put_mpint, put_string};
use super::{KeyError, KeyType, PpkVersion, PrivateKey, PublicKey};
use crypto::MacInput;

/// Every PPK file starts with this.
pub(crate) const MAGIC: &[u8] = b"PuTTY-User-Key-File-";
const WHAT: &str = "ppk file";
const LINE: usize = 64;

/// Writes a PPK file with fresh Argon2 parameters (v3) — see [`write_with`].
pub fn write(
    key: &PrivateKey,
    version: PpkVersion,
    comment: &str,
    passphrase: Option<&[u8]>,
) -> String {
    write_with(
        key,
        version,
        comment,
        passphrase,
        &Argon2Params::new_random(),
    )
    .expect("default argon2 parameters are valid")
}

/// Writes a PPK file. `passphrase` `None` or empty means `Encryption: none`; `argon2` is
/// used only for v3 encrypted files. CR and LF in `comment` become spaces (the format is
/// line based). Fails only on Argon2 parameters the KDF rejects.
pub fn write_with(
    key: &PrivateKey,
    version: PpkVersion,
    comment: &str,
    passphrase: Option<&[u8]>,
    argon2: &Argon2Params,
) -> Result<String, KeyError> {
    let blobs = Blobs {
        algorithm: key.key_type().ssh_name(),
        public: key.public_key().wire_blob(),
        private: Zeroizing::new(private_blob(key)),
    };
    assemble(
        version,
        &comment.replace(['\r', '\n'], " "),
        blobs,
        passphrase,
        argon2,
    )
}

/// The algorithm name and the two blobs of a file (private unpadded, in plaintext).
struct Blobs {
    algorithm: &'static str,
    public: Vec<u8>,
    private: Zeroizing<Vec<u8>>,
}

/// Pads, MACs, encrypts and formats already-encoded blobs.
fn assemble(
    version: PpkVersion,
    comment: &str,
    blobs: Blobs,
    passphrase: Option<&[u8]>,
    argon2: &Argon2Params,
) -> Result<String, KeyError> {
    let Blobs {
        algorithm,
        public,
        mut private,
    } = blobs;
    let passphrase = passphrase.filter(|p| !p.is_empty());
    let encryption = if passphrase.is_some() {
        crypto::pad_private(&mut private);
        "aes256-cbc"
    } else {
        "none"
    };
    let secrets = match version {
        PpkVersion::V2 => crypto::v2_secrets(passphrase.unwrap_or_default()),
        PpkVersion::V3 => crypto::v3_secrets(passphrase.map(|p| (p, argon2)))?,
    };
    let mac = crypto::mac(
        version,
        &secrets,
        &MacInput {
            algorithm: algorithm.as_bytes(),
            encryption: encryption.as_bytes(),
            comment: comment.as_bytes(),
            public_blob: &public,
            private_plain: &private,
        },
    );
    if passphrase.is_some() {
        crypto::encrypt(&secrets, &mut private);
    }

    let number = match version {
        PpkVersion::V2 => 2,
        PpkVersion::V3 => 3,
    };
    let mut out = format!(
        "PuTTY-User-Key-File-{number}: {algorithm}\nEncryption: {encryption}\nComment: {comment}\n"
    );
    push_base64_block(&mut out, "Public-Lines", &public);
    if version == PpkVersion::V3 && passphrase.is_some() {
        out.push_str(&format!(
            "Key-Derivation: {}\nArgon2-Memory: {}\nArgon2-Passes: {}\nArgon2-Parallelism: {}\nArgon2-Salt: {}\n",
            argon2.flavour.name(),
            argon2.memory_kib,
            argon2.passes,
            argon2.parallelism,
            hex::encode(&argon2.salt),
        ));
    }
    push_base64_block(&mut out, "Private-Lines", &private);
    out.push_str(&format!("Private-MAC: {}\n", hex::encode(mac)));
    Ok(out)
}

/// `Name: N` followed by N lines of at most 64 base64 characters.
fn push_base64_block(out: &mut String, name: &str, data: &[u8]) {
    let lines = wrap_base64(data, LINE);
    out.push_str(&format!("{name}: {}\n", lines.lines().count()));
    out.push_str(&lines);
}

/// The plaintext private blob, unpadded (reference §1.3).
fn private_blob(key: &PrivateKey) -> Vec<u8> {
    let mut out = Vec::new();
    match key.view() {
        KeyView::Rsa(p) => {
            for v in [&p.d, &p.p, &p.q, &p.iqmp] {
                put_mpint(&mut out, v);
            }
        }
        KeyView::Ed25519 { seed, .. } => put_string(&mut out, seed),
    }
    out
}

/// Reads a PPK file; returns the key and its comment.
pub fn read(text: &[u8], passphrase: Option<&[u8]>) -> Result<(PrivateKey, String), KeyError> {
    let mut lines = Lines::new(text);
    let (name, algorithm) = lines.header_line()?;
    let version = match name {
        b"PuTTY-User-Key-File-2" => PpkVersion::V2,
        b"PuTTY-User-Key-File-3" => PpkVersion::V3,
        other => return Err(malformed(format!("unsupported header {:?}", lossy(other)))),
    };
    let encryption = lines.header("Encryption")?;
    let encrypted = match encryption {
        b"none" => false,
        b"aes256-cbc" => true,
        other => {
            return Err(KeyError::UnsupportedEncryption {
                what: WHAT,
                scheme: lossy(other),
            });
        }
    };
    let comment = lines.header("Comment")?;
    let public_blob = lines.base64_block("Public-Lines")?;
    let argon2 = if version == PpkVersion::V3 && encrypted {
        Some(lines.argon2_params()?)
    } else {
        None
    };
    let mut private = Zeroizing::new(lines.base64_block("Private-Lines")?);
    let mac_hex = lines.header("Private-MAC")?;
    let expected_mac =
        hex::decode(mac_hex).map_err(|e| malformed(format!("bad Private-MAC hex: {e}")))?;

    let public = PublicKey::from_wire_blob(&public_blob)?;
    if public.key_type().ssh_name().as_bytes() != algorithm {
        return Err(malformed(format!(
            "header says {:?} but the public key is {}",
            lossy(algorithm),
            public.key_type().ssh_name()
        )));
    }

    let passphrase = if encrypted {
        let given = passphrase.filter(|p| !p.is_empty());
        Some(given.ok_or(KeyError::PassphraseRequired { what: WHAT })?)
    } else {
        None
    };
    let secrets = match version {
        PpkVersion::V2 => crypto::v2_secrets(passphrase.unwrap_or_default()),
        PpkVersion::V3 => crypto::v3_secrets(passphrase.zip(argon2.as_ref()))?,
    };
    if encrypted {
        crypto::decrypt(&secrets, &mut private)?;
    }
    let input = MacInput {
        algorithm,
        encryption,
        comment,
        public_blob: &public_blob,
        private_plain: &private,
    };
    if !crypto::verify_mac(version, &secrets, &input, &expected_mac) {
        return Err(if encrypted {
            KeyError::WrongPassphrase { what: WHAT }
        } else {
            KeyError::MacMismatch
        });
    }
    let key = decode_private(&public, &private)?;
    Ok((key, lossy(comment)))
}

/// Parses the plaintext private blob against the public key; trailing bytes (padding) are
/// ignored.
fn decode_private(public: &PublicKey, blob: &[u8]) -> Result<PrivateKey, KeyError> {
    let mut r = Reader::new(blob, "ppk private blob");
    match (public.key_type(), public.rsa_components()) {
        (KeyType::Rsa, Some((n, e))) => {
            let d = r.mpint("rsa d")?;
            let p = r.mpint("rsa p")?;
            let q = r.mpint("rsa q")?;
            r.mpint("rsa iqmp")?; // recomputed from p and q
            PrivateKey::from_rsa_components(n, e, d, p, q)
        }
        _ => {
            // Little-endian value, possibly shorter than 32 bytes: zero-extend at the end.
            let value = r.string("ed25519 private key")?;
            if value.len() > 32 {
                return Err(malformed(format!(
                    "ed25519 private key is {} bytes, want at most 32",
                    value.len()
                )));
            }
            let mut seed = Zeroizing::new([0u8; 32]);
            seed[..value.len()].copy_from_slice(value);
            let key = PrivateKey::from_ed25519_seed(&seed);
            if key.public_key() != *public {
                return Err(malformed(
                    "ed25519 private key does not match the public key".to_string(),
                ));
            }
            Ok(key)
        }
    }
}

fn malformed(reason: String) -> KeyError {
    KeyError::Malformed { what: WHAT, reason }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The file's non-empty lines, whatever the line endings.
struct Lines<'a> {
    iter: Box<dyn Iterator<Item = &'a [u8]> + 'a>,
    /// 1-based number of the last line returned (blank lines not counted).
    number: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a [u8]) -> Self {
        let iter = text
            .split(|&b| b == b'\n' || b == b'\r')
            .filter(|l| !l.is_empty());
        Self {
            iter: Box::new(iter),
            number: 0,
        }
    }

    fn next_line(&mut self, wanted: &str) -> Result<&'a [u8], KeyError> {
        self.number += 1;
        self.iter
            .next()
            .ok_or_else(|| malformed(format!("file ends before {wanted}")))
    }

    /// `Name: value` (colon and exactly one space, as PuTTY requires).
    fn header_line(&mut self) -> Result<(&'a [u8], &'a [u8]), KeyError> {
        let line = self.next_line("a header")?;
        let colon = line
            .windows(2)
            .position(|w| w == b": ")
            // The line may be key material: say where, not what.
            .ok_or_else(|| malformed(format!("line {} is not `Name: value`", self.number)))?;
        Ok((&line[..colon], &line[colon + 2..]))
    }

    fn header(&mut self, name: &str) -> Result<&'a [u8], KeyError> {
        let (found, value) = self.header_line()?;
        if found != name.as_bytes() {
            return Err(malformed(format!(
                "expected {name}, found {:?}",
                lossy(found)
            )));
        }
        Ok(value)
    }

    fn number(&mut self, name: &str) -> Result<u32, KeyError> {
        let value = self.header(name)?;
        std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| malformed(format!("{name} is not a number: {:?}", lossy(value))))
    }

    fn base64_block(&mut self, name: &str) -> Result<Vec<u8>, KeyError> {
        let count = self.number(name)?;
        let mut b64 = Zeroizing::new(Vec::new());
        for _ in 0..count {
            b64.extend_from_slice(self.next_line(name)?.trim_ascii());
        }
        STANDARD
            .decode(b64.as_slice())
            .map_err(|e| malformed(format!("bad base64 after {name}: {e}")))
    }

    fn argon2_params(&mut self) -> Result<Argon2Params, KeyError> {
        let flavour = Argon2Flavour::parse(&lossy(self.header("Key-Derivation")?))?;
        let memory_kib = self.number("Argon2-Memory")?;
        let passes = self.number("Argon2-Passes")?;
        let parallelism = self.number("Argon2-Parallelism")?;
        let salt = hex::decode(self.header("Argon2-Salt")?)
            .map_err(|e| malformed(format!("bad Argon2-Salt hex: {e}")))?;
        Ok(Argon2Params {
            flavour,
            memory_kib,
            passes,
            parallelism,
            salt,
        })
    }
}

#[cfg(test)]
mod tests;
