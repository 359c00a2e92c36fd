//! Key generation: user key pairs as EC2 makes them (RSA 2048 with e = 65537, or Ed25519)
//! and instance host keys (Ed25519, ECDSA P-256, RSA 3072, the set sshd creates on first
//! boot). Randomness comes from `rand`'s thread-local CSPRNG, bridged to the `rand_core`
//! 0.10 traits the RustCrypto crates expect.

use std::convert::Infallible;

use rand::RngCore as _;
use rsa::rand_core::{TryCryptoRng, TryRng};
use ssh_key::{Algorithm, EcdsaCurve, LineEnding};

use super::private::{KeyView, magnitude_less};
use super::{KeyType, PrivateKey};

/// `rand::rng()` (ChaCha reseeded from the OS) seen through the `rand_core` 0.10 traits.
pub(crate) struct LabRng;

impl TryRng for LabRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(rand::rng().next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(rand::rng().next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        rand::rng().fill_bytes(dst);
        Ok(())
    }
}

// `rand::rng()` is a CSPRNG (rand's `ThreadRng` implements `CryptoRng`).
impl TryCryptoRng for LabRng {}

/// An RSA key with e = 65537 and, like OpenSSL and PuTTY keys, p > q (PuTTY swaps the
/// primes on load otherwise, so exports would not match byte for byte).
fn rsa_key(bits: usize) -> PrivateKey {
    let key = rsa::RsaPrivateKey::new(&mut LabRng, bits).expect("rsa generation cannot fail");
    let key = PrivateKey::from_rsa(&key).expect("a freshly generated rsa key is consistent");
    match key.view() {
        KeyView::Rsa(p) if magnitude_less(&p.p, &p.q) => {
            PrivateKey::from_rsa_components(&p.n, &p.e, &p.d, &p.q, &p.p)
                .expect("swapping the primes keeps the key consistent")
        }
        _ => key,
    }
}

/// A new key pair as CreateKeyPair makes it: RSA is always 2048-bit with e = 65537.
pub fn generate(kind: KeyType) -> PrivateKey {
    match kind {
        KeyType::Rsa => rsa_key(2048),
        KeyType::Ed25519 => {
            let seed = zeroize::Zeroizing::new(rand::random::<[u8; 32]>());
            PrivateKey::from_ed25519_seed(&seed)
        }
    }
}

/// The host key types sshd generates on first boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKeyType {
    Ed25519,
    EcdsaP256,
    Rsa3072,
}

impl HostKeyType {
    pub const ALL: [HostKeyType; 3] = [
        HostKeyType::EcdsaP256,
        HostKeyType::Ed25519,
        HostKeyType::Rsa3072,
    ];

    /// The file name sshd uses, e.g. `ssh_host_ed25519_key`.
    pub fn file_name(self) -> &'static str {
        match self {
            HostKeyType::Ed25519 => "ssh_host_ed25519_key",
            HostKeyType::EcdsaP256 => "ssh_host_ecdsa_key",
            HostKeyType::Rsa3072 => "ssh_host_rsa_key",
        }
    }
}

/// A new host key: (unencrypted OpenSSH private key PEM, public authorized_keys-style line
/// without comment).
pub fn generate_host_key(kind: HostKeyType) -> (String, String) {
    let key = match kind {
        HostKeyType::Ed25519 => generate(KeyType::Ed25519),
        HostKeyType::Rsa3072 => rsa_key(3072),
        HostKeyType::EcdsaP256 => {
            let algorithm = Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            };
            let key = ssh_key::PrivateKey::random(&mut LabRng, algorithm)
                .expect("p-256 generation cannot fail");
            let pem = key
                .to_openssh(LineEnding::LF)
                .expect("a fresh p-256 key encodes");
            let public = key
                .public_key()
                .to_openssh()
                .expect("a fresh p-256 key encodes");
            return (pem.to_string(), public);
        }
    };
    (key.to_openssh(""), key.public_key().to_openssh())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{PublicKey, fingerprint_line};

    #[test]
    fn generated_keys_have_ec2_shapes() {
        let rsa = generate(KeyType::Rsa);
        assert_eq!(rsa.key_type(), KeyType::Rsa);
        assert_eq!(rsa.public_key().bits(), 2048);
        let KeyView::Rsa(parts) = rsa.view() else {
            panic!("not rsa")
        };
        assert_eq!(parts.e, [1, 0, 1]);
        assert!(magnitude_less(&parts.q, &parts.p), "p < q");
        let ed = generate(KeyType::Ed25519);
        assert_eq!(ed.key_type(), KeyType::Ed25519);
        assert_eq!(ed.public_key().bits(), 256);
        assert_ne!(generate(KeyType::Ed25519), ed, "two ed25519 keys are equal");
    }

    #[test]
    fn host_keys_parse_and_fingerprint() {
        for (kind, prefix, bits, label) in [
            (HostKeyType::Ed25519, "ssh-ed25519 ", 256, "(ED25519)"),
            (
                HostKeyType::EcdsaP256,
                "ecdsa-sha2-nistp256 ",
                256,
                "(ECDSA)",
            ),
            (HostKeyType::Rsa3072, "ssh-rsa ", 3072, "(RSA)"),
        ] {
            let (pem, public) = generate_host_key(kind);
            assert!(
                pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"),
                "{kind:?}"
            );
            assert!(public.starts_with(prefix), "{kind:?}: {public}");
            let parsed = ssh_key::PrivateKey::from_openssh(&pem).unwrap();
            assert_eq!(
                parsed.public_key().to_openssh().unwrap(),
                public,
                "{kind:?}"
            );
            let line = fingerprint_line(&public, "root@ip-10-0-0-1").unwrap();
            assert!(line.starts_with(&format!("{bits} SHA256:")), "{line}");
            assert!(
                line.ends_with(&format!(" root@ip-10-0-0-1 {label}")),
                "{line}"
            );
        }
        let (_, public) = generate_host_key(HostKeyType::Ed25519);
        assert!(PublicKey::from_openssh(&public).is_ok());
    }
}

#[cfg(test)]
mod timing {
    /// Prints host-key generation times (run with --ignored --nocapture; no threshold).
    #[test]
    #[ignore]
    fn host_key_generation_time() {
        for kind in [super::HostKeyType::Ed25519, super::HostKeyType::EcdsaP256] {
            let t = std::time::Instant::now();
            for _ in 0..20 {
                let _ = super::generate_host_key(kind);
            }
            println!(
                "{kind:?}: {:.3} ms",
                t.elapsed().as_secs_f64() * 1000.0 / 20.0
            );
        }
    }
}
