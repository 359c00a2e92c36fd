//! Key pairs for the lab: generating RSA/Ed25519 user keys and instance host keys, reading
//! and writing them in every format a student meets (PKCS#1 and PKCS#8 PEM, OpenSSH,
//! PuTTY `.ppk` v2/v3, authorized_keys, RFC 4716, SubjectPublicKeyInfo), and the exact
//! fingerprints EC2 reports. Pure computation: no files, no sockets, no clock.
//!
//! Map of the module:
//! - [`generate`](generate()) / [`generate_host_key`] make keys (`generate.rs`);
//! - [`PrivateKey`] holds one private key and dispatches to the codecs (`private.rs`);
//!   [`PrivateKey::from_any`] detects PPK first, then PEM (PKCS#1, PKCS#8, OpenSSH);
//! - `pem.rs` encodes/decodes the PEM and OpenSSH private formats, [`ppk`] the PuTTY format;
//! - [`PublicKey`] (`public.rs`) and [`PublicKey::parse_import`] (`import.rs`) handle public
//!   material; `fingerprint.rs` computes AWS and `ssh-keygen -l` fingerprints;
//! - `wire.rs` (SSH wire encoding), `asn1.rs` (DER/PEM writing, PEM reading) and `der.rs`
//!   (DER reading) are shared plumbing.

mod asn1;
mod der;
mod error;
mod fingerprint;
mod generate;
mod import;
mod pem;
pub mod ppk;
mod private;
mod public;
mod wire;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod openssh_tests;
#[cfg(test)]
mod putty_tests;
#[cfg(test)]
mod testutil;

use std::fmt;
use std::str::FromStr;

pub use error::KeyError;
pub use fingerprint::fingerprint_line;
pub use generate::{HostKeyType, generate, generate_host_key};
pub use private::PrivateKey;
pub use public::PublicKey;

/// The key types EC2 `CreateKeyPair`/`ImportKeyPair` accept (wire values `rsa`, `ed25519`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Rsa,
    Ed25519,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }

    /// The SSH algorithm name (`ssh-rsa`, `ssh-ed25519`).
    pub fn ssh_name(self) -> &'static str {
        match self {
            KeyType::Rsa => "ssh-rsa",
            KeyType::Ed25519 => "ssh-ed25519",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "rsa" => Ok(KeyType::Rsa),
            "ed25519" => Ok(KeyType::Ed25519),
            _ => Err(KeyError::UnknownKeyType {
                value: s.to_string(),
            }),
        }
    }
}

/// PuTTY key file version: v3 (PuTTY ≥ 0.75, Argon2 + HMAC-SHA-256) or v2 (every PuTTY
/// since 0.52, SHA-1 based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PpkVersion {
    V2,
    #[default]
    V3,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_type_round_trips() {
        for kind in [KeyType::Rsa, KeyType::Ed25519] {
            assert_eq!(kind.to_string().parse::<KeyType>().unwrap(), kind);
        }
        let err = "dsa".parse::<KeyType>().unwrap_err().to_string();
        assert!(err.contains("\"dsa\""), "{err}");
        assert!("RSA".parse::<KeyType>().is_err());
        assert_eq!(PpkVersion::default(), PpkVersion::V3);
    }
}
