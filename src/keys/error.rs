//! The one error type of the keys module. Messages are lowercase, carry the failing value,
//! and never contain key material. The API layer maps any parse failure of imported public
//! key material to `InvalidKeyPair.Format`.

/// Why a key could not be read or is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Text that is none of the private key formats we read.
    #[error(
        "unrecognised private key format (want pkcs#1/pkcs#8 pem, openssh or putty ppk), starts with {start:?}"
    )]
    UnknownPrivateFormat { start: String },

    /// Public key material that is none of the formats ImportKeyPair accepts.
    #[error(
        "unrecognised public key format (want authorized_keys line, rfc 4716, pem or base64 der): {reason}"
    )]
    UnknownPublicFormat { reason: String },

    /// A recognised format whose content does not parse.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },

    /// A well-formed key of a type we do not handle (DSA, ECDSA, ...).
    #[error("unsupported key algorithm {algorithm:?} (only rsa and ed25519)")]
    UnsupportedAlgorithm { algorithm: String },

    /// An RSA key outside the sizes EC2 accepts.
    #[error("rsa key of {bits} bits is not supported (1024 to 4096 bits)")]
    RsaKeySize { bits: u32 },

    /// An encryption scheme or KDF we do not implement.
    #[error("unsupported {what} encryption {scheme:?}")]
    UnsupportedEncryption { what: &'static str, scheme: String },

    /// An encrypted key was given without a passphrase.
    #[error("{what} is encrypted: a passphrase is required")]
    PassphraseRequired { what: &'static str },

    /// The passphrase does not decrypt the key.
    #[error("wrong passphrase for {what}")]
    WrongPassphrase { what: &'static str },

    /// An unencrypted PPK file whose MAC does not match (the file was altered).
    #[error("ppk mac check failed: the file is corrupted or was modified")]
    MacMismatch,

    /// A key-derivation parameter beyond what we are willing to compute.
    #[error("ppk {name} {value} is out of range (max {max})")]
    KdfLimit {
        name: &'static str,
        value: u64,
        max: u64,
    },

    /// The key type string is not `rsa` or `ed25519`.
    #[error("unknown key type {value:?} (want rsa or ed25519)")]
    UnknownKeyType { value: String },
}
