//! [`PrivateKey`]: one RSA or Ed25519 private key, held as validated raw components so that
//! every encoder is infallible and deterministic. Construction is the only place that can
//! fail: RSA components go through the `rsa` crate's consistency check (p·q = n, d·e ≡ 1);
//! Ed25519 keys are a 32-byte seed with the public point derived from it.
//! `from_any` tries PuTTY first (its header is unambiguous), then PEM armor.

use std::fmt;

use rsa::BoxedUint;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use ssh_key::private::Ed25519Keypair;
use zeroize::{Zeroize, Zeroizing};

use super::{KeyError, KeyType, PpkVersion, PublicKey, pem, ppk};

/// An RSA or Ed25519 private key. `Debug` prints the public fingerprint, never the key.
#[derive(Clone)]
pub struct PrivateKey {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Rsa(Box<RsaParts>),
    Ed25519 {
        seed: Zeroizing<[u8; 32]>,
        public: [u8; 32],
    },
}

/// Borrowed raw components of a [`PrivateKey`].
pub(crate) enum KeyView<'a> {
    Rsa(&'a RsaParts),
    Ed25519 {
        seed: &'a [u8; 32],
        public: &'a [u8; 32],
    },
}

/// Big-endian magnitudes (no leading zeros) of a validated two-prime RSA key, in PKCS#1
/// order. Zeroed on drop.
#[derive(Clone)]
pub(crate) struct RsaParts {
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub d: Vec<u8>,
    pub p: Vec<u8>,
    pub q: Vec<u8>,
    /// d mod (p-1)
    pub dp: Vec<u8>,
    /// d mod (q-1)
    pub dq: Vec<u8>,
    /// q⁻¹ mod p
    pub iqmp: Vec<u8>,
}

impl Drop for RsaParts {
    fn drop(&mut self) {
        for v in [
            &mut self.d,
            &mut self.p,
            &mut self.q,
            &mut self.dp,
            &mut self.dq,
            &mut self.iqmp,
        ] {
            v.zeroize();
        }
    }
}

impl RsaParts {
    fn from_rsa(key: &rsa::RsaPrivateKey) -> Result<Self, KeyError> {
        let invalid = |reason: &str| KeyError::Malformed {
            what: "rsa key",
            reason: reason.to_string(),
        };
        let [p, q] = key.primes() else {
            return Err(KeyError::UnsupportedAlgorithm {
                algorithm: format!("rsa with {} primes", key.primes().len()),
            });
        };
        let dp = key
            .dp()
            .ok_or_else(|| invalid("cannot compute d mod (p-1)"))?;
        let dq = key
            .dq()
            .ok_or_else(|| invalid("cannot compute d mod (q-1)"))?;
        let iqmp = key
            .crt_coefficient()
            .ok_or_else(|| invalid("q has no inverse mod p"))?;
        let bytes = |v: &BoxedUint| v.to_be_bytes_trimmed_vartime().into_vec();
        Ok(Self {
            n: key.n_bytes().into_vec(),
            e: key.e_bytes().into_vec(),
            d: bytes(key.d()),
            p: bytes(p),
            q: bytes(q),
            dp: bytes(dp),
            dq: bytes(dq),
            iqmp: bytes(&iqmp),
        })
    }
}

impl PrivateKey {
    pub(crate) fn from_rsa(key: &rsa::RsaPrivateKey) -> Result<Self, KeyError> {
        Ok(Self {
            inner: Inner::Rsa(Box::new(RsaParts::from_rsa(key)?)),
        })
    }

    /// Builds and validates an RSA key from big-endian n, e, d, p, q (CRT values recomputed).
    pub(crate) fn from_rsa_components(
        n: &[u8],
        e: &[u8],
        d: &[u8],
        p: &[u8],
        q: &[u8],
    ) -> Result<Self, KeyError> {
        let int = BoxedUint::from_be_slice_vartime;
        let key = rsa::RsaPrivateKey::from_components(int(n), int(e), int(d), vec![int(p), int(q)])
            .map_err(|err| KeyError::Malformed {
                what: "rsa key",
                reason: format!("inconsistent components: {err}"),
            })?;
        Self::from_rsa(&key)
    }

    pub(crate) fn from_ed25519_seed(seed: &[u8; 32]) -> Self {
        let pair = Ed25519Keypair::from_seed(seed);
        Self {
            inner: Inner::Ed25519 {
                seed: Zeroizing::new(*seed),
                public: pair.public.0,
            },
        }
    }

    /// The key's raw components, for the encoders.
    pub(crate) fn view(&self) -> KeyView<'_> {
        match &self.inner {
            Inner::Rsa(parts) => KeyView::Rsa(parts),
            Inner::Ed25519 { seed, public } => KeyView::Ed25519 { seed, public },
        }
    }

    pub fn key_type(&self) -> KeyType {
        match self.inner {
            Inner::Rsa(_) => KeyType::Rsa,
            Inner::Ed25519 { .. } => KeyType::Ed25519,
        }
    }

    pub fn public_key(&self) -> PublicKey {
        match &self.inner {
            Inner::Rsa(parts) => PublicKey::from_rsa_parts(&parts.n, &parts.e),
            Inner::Ed25519 { public, .. } => PublicKey::from_ed25519(*public),
        }
    }

    /// What EC2 returns as `keyMaterial` for `KeyFormat=pem`: RSA as PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`), Ed25519 as unencrypted OpenSSH with an empty comment.
    pub fn to_pem(&self) -> String {
        match &self.inner {
            Inner::Rsa(parts) => pem::rsa_pkcs1_pem(parts),
            Inner::Ed25519 { .. } => pem::openssh_private(self, ""),
        }
    }

    /// PKCS#8 `BEGIN PRIVATE KEY` (unencrypted) for either type.
    pub fn to_pem_pkcs8(&self) -> String {
        pem::pkcs8_pem(self)
    }

    /// Unencrypted OpenSSH private key (`BEGIN OPENSSH PRIVATE KEY`) for either type.
    pub fn to_openssh(&self, comment: &str) -> String {
        pem::openssh_private(self, comment)
    }

    /// A PuTTY key file; `passphrase` of `None` or empty means unencrypted.
    pub fn to_ppk(&self, version: PpkVersion, comment: &str, passphrase: Option<&[u8]>) -> String {
        ppk::write(self, version, comment, passphrase)
    }

    /// Reads a private key in any format we know: PuTTY v2/v3 (plain or encrypted), PKCS#1
    /// PEM, PKCS#8 PEM, OpenSSH (plain or encrypted). A wrong passphrase gives
    /// [`KeyError::WrongPassphrase`]; a missing one [`KeyError::PassphraseRequired`].
    pub fn from_any(text: &[u8], passphrase: Option<&[u8]>) -> Result<PrivateKey, KeyError> {
        let start = text
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(text.len());
        let text = &text[start..];
        if text.starts_with(ppk::MAGIC) {
            return ppk::read(text, passphrase).map(|(key, _comment)| key);
        }
        if text.starts_with(b"-----BEGIN ") {
            let text = std::str::from_utf8(text).map_err(|_| KeyError::Malformed {
                what: "pem",
                reason: "not ascii text".to_string(),
            })?;
            return pem::decode_private(text, passphrase);
        }
        // Only the first few characters of the first line, so no key material leaks.
        let first_line = text.split(|&b| b == b'\n' || b == b'\r').next();
        let start: String = String::from_utf8_lossy(first_line.unwrap_or_default())
            .chars()
            .take(24)
            .collect();
        Err(KeyError::UnknownPrivateFormat { start })
    }
}

/// `a < b` for big-endian magnitudes without leading zeros.
pub(crate) fn magnitude_less(a: &[u8], b: &[u8]) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// Same key material: for RSA the same n, e, d and the same two primes in either order
/// (PuTTY reorders them so that p > q).
impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        match (&self.inner, &other.inner) {
            (Inner::Rsa(a), Inner::Rsa(b)) => {
                (&a.n, &a.e, &a.d) == (&b.n, &b.e, &b.d)
                    && ((&a.p, &a.q) == (&b.p, &b.q) || (&a.p, &a.q) == (&b.q, &b.p))
            }
            (Inner::Ed25519 { seed: a, .. }, Inner::Ed25519 { seed: b, .. }) => a == b,
            _ => false,
        }
    }
}

impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let public = self.public_key();
        f.debug_struct("PrivateKey")
            .field("type", &self.key_type())
            .field("bits", &public.bits())
            .field("public", &public.sha256_fingerprint())
            .field("private", &"***")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::generate;

    #[test]
    fn debug_hides_material() {
        let key = PrivateKey::from_ed25519_seed(&[0x5a; 32]);
        let debug = format!("{key:?}");
        assert!(
            debug.contains("***") && debug.contains("SHA256:"),
            "{debug}"
        );
        assert!(
            !debug.contains("5a5a") && !debug.contains("90, 90"),
            "{debug}"
        );
        let rsa = generate(KeyType::Rsa);
        let debug = format!("{rsa:?}");
        let KeyView::Rsa(parts) = rsa.view() else {
            panic!("generated rsa key is not rsa")
        };
        let d_hex = hex::encode(&parts.d[..8]);
        assert!(!debug.contains(&d_hex) && debug.contains("2048"), "{debug}");
    }

    #[test]
    fn from_any_rejects_unknown_text_without_echoing_it() {
        let err = PrivateKey::from_any(b"  hello world this is not a key at all", None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unrecognised private key format"), "{err}");
        assert!(!err.contains("at all"), "{err}");
        assert!(PrivateKey::from_any(b"", None).is_err());
    }

    #[test]
    fn inconsistent_rsa_components_are_rejected() {
        let key = generate(KeyType::Rsa);
        let KeyView::Rsa(p) = key.view() else {
            panic!("generated rsa key is not rsa")
        };
        let mut d = p.d.clone();
        let last = d.len() - 1;
        d[last] ^= 2;
        assert!(PrivateKey::from_rsa_components(&p.n, &p.e, &d, &p.p, &p.q).is_err());
        let back = PrivateKey::from_rsa_components(&p.n, &p.e, &p.d, &p.p, &p.q).unwrap();
        assert_eq!(back, key);
    }
}
