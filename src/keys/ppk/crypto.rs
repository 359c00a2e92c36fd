//! The cryptography of PuTTY key files (reference §1.4–1.6): key derivation (v2: SHA-1 of
//! counter ‖ passphrase; v3: Argon2 → 80 bytes = AES key ‖ IV ‖ MAC key), AES-256-CBC
//! without a padding scheme, the SHA-1-prefix padding of encrypted blobs, and the MAC over
//! the five SSH strings (v2 HMAC-SHA-1, v3 HMAC-SHA-256), verified in constant time.

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use sha1::{Digest, Sha1};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::super::wire::put_string;
use super::super::{KeyError, PpkVersion};

/// AES block size, and the alignment of encrypted private blobs.
pub(crate) const BLOCK: usize = 16;

/// Upper bounds on Argon2 parameters read from a file, so a hostile file cannot make us
/// allocate or spin without limit. PuTTY's defaults are 8192 KiB and ~20 passes.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;
const MAX_PASSES: u32 = 1000;
const MAX_PARALLELISM: u32 = 64;

/// The three Argon2 flavours `Key-Derivation` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Argon2Flavour {
    Argon2d,
    Argon2i,
    Argon2id,
}

impl Argon2Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Argon2Flavour::Argon2d => "Argon2d",
            Argon2Flavour::Argon2i => "Argon2i",
            Argon2Flavour::Argon2id => "Argon2id",
        }
    }

    pub(crate) fn parse(value: &str) -> Result<Self, KeyError> {
        match value {
            "Argon2d" => Ok(Argon2Flavour::Argon2d),
            "Argon2i" => Ok(Argon2Flavour::Argon2i),
            "Argon2id" => Ok(Argon2Flavour::Argon2id),
            other => Err(KeyError::UnsupportedEncryption {
                what: "ppk key derivation",
                scheme: other.to_string(),
            }),
        }
    }
}

/// Argon2 parameters of a v3 encrypted file (the `Argon2-*` header lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argon2Params {
    pub flavour: Argon2Flavour,
    pub memory_kib: u32,
    pub passes: u32,
    pub parallelism: u32,
    pub salt: Vec<u8>,
}

impl Argon2Params {
    /// What we write: Argon2id, 8 MiB, 13 passes (≈100 ms optimised), 1 lane, random salt.
    pub fn new_random() -> Self {
        Self {
            flavour: Argon2Flavour::Argon2id,
            memory_kib: 8192,
            passes: 13,
            parallelism: 1,
            salt: rand::random::<[u8; 16]>().to_vec(),
        }
    }

    pub(crate) fn check_limits(&self) -> Result<(), KeyError> {
        for (name, value, max) in [
            ("argon2 memory", self.memory_kib, MAX_MEMORY_KIB),
            ("argon2 passes", self.passes, MAX_PASSES),
            ("argon2 parallelism", self.parallelism, MAX_PARALLELISM),
        ] {
            if value > max {
                return Err(KeyError::KdfLimit {
                    name,
                    value: value.into(),
                    max: max.into(),
                });
            }
        }
        Ok(())
    }
}

/// Cipher key, IV and MAC key for one file.
pub(crate) struct Secrets {
    cipher_key: Zeroizing<[u8; 32]>,
    iv: [u8; BLOCK],
    mac_key: Zeroizing<Vec<u8>>,
}

/// v2: AES key = (SHA1(0‖pw) ‖ SHA1(1‖pw))[..32], IV = 0, MAC key = SHA1("putty-private-
/// key-file-mac-key" ‖ pw); `passphrase` is empty for unencrypted files.
pub(crate) fn v2_secrets(passphrase: &[u8]) -> Secrets {
    let mut key = Zeroizing::new([0u8; 40]);
    for (counter, chunk) in key.chunks_mut(20).enumerate() {
        let mut h = Sha1::new();
        h.update((counter as u32).to_be_bytes());
        h.update(passphrase);
        chunk.copy_from_slice(&h.finalize());
    }
    let mut cipher_key = Zeroizing::new([0u8; 32]);
    cipher_key.copy_from_slice(&key[..32]);
    let mut h = Sha1::new();
    h.update(b"putty-private-key-file-mac-key");
    h.update(passphrase);
    Secrets {
        cipher_key,
        iv: [0; BLOCK],
        mac_key: Zeroizing::new(h.finalize().to_vec()),
    }
}

/// v3: Argon2 output split into AES key, IV and MAC key; unencrypted files use an empty
/// MAC key (and no cipher).
pub(crate) fn v3_secrets(encryption: Option<(&[u8], &Argon2Params)>) -> Result<Secrets, KeyError> {
    let Some((passphrase, params)) = encryption else {
        return Ok(Secrets {
            cipher_key: Zeroizing::new([0; 32]),
            iv: [0; BLOCK],
            mac_key: Zeroizing::new(Vec::new()),
        });
    };
    params.check_limits()?;
    let kdf_error = |err: argon2::Error| KeyError::Malformed {
        what: "ppk argon2 parameters",
        reason: err.to_string(),
    };
    let algorithm = match params.flavour {
        Argon2Flavour::Argon2d => argon2::Algorithm::Argon2d,
        Argon2Flavour::Argon2i => argon2::Algorithm::Argon2i,
        Argon2Flavour::Argon2id => argon2::Algorithm::Argon2id,
    };
    let argon_params = argon2::Params::new(
        params.memory_kib,
        params.passes,
        params.parallelism,
        Some(80),
    )
    .map_err(kdf_error)?;
    let mut out = Zeroizing::new([0u8; 80]);
    argon2::Argon2::new(algorithm, argon2::Version::V0x13, argon_params)
        .hash_password_into(passphrase, &params.salt, out.as_mut_slice())
        .map_err(kdf_error)?;
    let mut cipher_key = Zeroizing::new([0u8; 32]);
    cipher_key.copy_from_slice(&out[..32]);
    let mut iv = [0u8; BLOCK];
    iv.copy_from_slice(&out[32..48]);
    Ok(Secrets {
        cipher_key,
        iv,
        mac_key: Zeroizing::new(out[48..].to_vec()),
    })
}

/// Pads an unencrypted private blob to the AES block size with the first bytes of its own
/// SHA-1, as PuTTY does (no padding when already aligned).
pub(crate) fn pad_private(blob: &mut Vec<u8>) {
    let pad = (BLOCK - blob.len() % BLOCK) % BLOCK;
    let digest = Sha1::digest(blob.as_slice());
    blob.extend_from_slice(&digest[..pad]);
}

/// AES-256-CBC in place; `data` must be block aligned (see [`pad_private`]).
pub(crate) fn encrypt(secrets: &Secrets, data: &mut [u8]) {
    let len = data.len();
    cbc::Encryptor::<Aes256>::new((&*secrets.cipher_key).into(), (&secrets.iv).into())
        .encrypt_padded::<NoPadding>(data, len)
        .expect("ppk private blob is block aligned");
}

pub(crate) fn decrypt(secrets: &Secrets, data: &mut [u8]) -> Result<(), KeyError> {
    if !data.len().is_multiple_of(BLOCK) {
        return Err(KeyError::Malformed {
            what: "ppk private blob",
            reason: format!(
                "{} encrypted bytes is not a multiple of {BLOCK}",
                data.len()
            ),
        });
    }
    cbc::Decryptor::<Aes256>::new((&*secrets.cipher_key).into(), (&secrets.iv).into())
        .decrypt_padded::<NoPadding>(data)
        .map_err(|_| KeyError::Malformed {
            what: "ppk private blob",
            reason: "cannot decrypt".to_string(),
        })?;
    Ok(())
}

/// The MAC's input: five SSH strings (reference §1.6).
pub(crate) struct MacInput<'a> {
    pub algorithm: &'a [u8],
    pub encryption: &'a [u8],
    pub comment: &'a [u8],
    pub public_blob: &'a [u8],
    /// Plaintext private blob including padding.
    pub private_plain: &'a [u8],
}

impl MacInput<'_> {
    fn bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        for field in [
            self.algorithm,
            self.encryption,
            self.comment,
            self.public_blob,
            self.private_plain,
        ] {
            put_string(&mut out, field);
        }
        out
    }
}

pub(crate) fn mac(version: PpkVersion, secrets: &Secrets, input: &MacInput) -> Vec<u8> {
    let data = input.bytes();
    match version {
        PpkVersion::V2 => hmac_sha1(&secrets.mac_key, &data)
            .finalize()
            .into_bytes()
            .to_vec(),
        PpkVersion::V3 => hmac_sha256(&secrets.mac_key, &data)
            .finalize()
            .into_bytes()
            .to_vec(),
    }
}

/// Constant-time comparison of the file's MAC with the computed one.
pub(crate) fn verify_mac(
    version: PpkVersion,
    secrets: &Secrets,
    input: &MacInput,
    expected: &[u8],
) -> bool {
    let data = input.bytes();
    match version {
        PpkVersion::V2 => hmac_sha1(&secrets.mac_key, &data)
            .verify_slice(expected)
            .is_ok(),
        PpkVersion::V3 => hmac_sha256(&secrets.mac_key, &data)
            .verify_slice(expected)
            .is_ok(),
    }
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> Hmac<Sha1> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(data);
    mac
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(data);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_is_sha1_prefix() {
        let mut blob = vec![0xab; 37];
        let digest = Sha1::digest(&blob);
        pad_private(&mut blob);
        assert_eq!(blob.len(), 48);
        assert_eq!(&blob[37..], &digest[..11]);
        let mut aligned = vec![1u8; 32];
        pad_private(&mut aligned);
        assert_eq!(aligned.len(), 32);
    }

    #[test]
    fn v2_unencrypted_mac_key_is_sha1_of_label() {
        let secrets = v2_secrets(b"");
        assert_eq!(
            hex::encode(secrets.mac_key.as_slice()),
            hex::encode(Sha1::digest(b"putty-private-key-file-mac-key"))
        );
    }

    #[test]
    fn cbc_round_trip_and_misaligned_input() {
        let secrets = v2_secrets(b"pw");
        let mut data = vec![7u8; 32];
        encrypt(&secrets, &mut data);
        assert_ne!(data, vec![7u8; 32]);
        decrypt(&secrets, &mut data).unwrap();
        assert_eq!(data, vec![7u8; 32]);
        assert!(decrypt(&secrets, &mut [0u8; 15]).is_err());
    }

    #[test]
    fn argon2_limits_are_enforced() {
        let mut params = Argon2Params::new_random();
        params.memory_kib = MAX_MEMORY_KIB + 1;
        let err = v3_secrets(Some((b"pw", &params))).err().unwrap();
        assert!(err.to_string().contains("argon2 memory"), "{err}");
        params.memory_kib = 8192;
        params.passes = 0;
        assert!(v3_secrets(Some((b"pw", &params))).is_err());
    }

    #[test]
    fn mac_verification_detects_changes() {
        let secrets = v3_secrets(None).unwrap();
        let input = MacInput {
            algorithm: b"ssh-ed25519",
            encryption: b"none",
            comment: b"c",
            public_blob: b"pub",
            private_plain: b"priv",
        };
        let tag = mac(PpkVersion::V3, &secrets, &input);
        assert_eq!(tag.len(), 32);
        assert!(verify_mac(PpkVersion::V3, &secrets, &input, &tag));
        let changed = MacInput {
            comment: b"d",
            ..input
        };
        assert!(!verify_mac(PpkVersion::V3, &secrets, &changed, &tag));
        assert_eq!(mac(PpkVersion::V2, &v2_secrets(b""), &input).len(), 20);
    }
}
