//! Unit tests of the PPK writer's layout and the reader's tolerance and strictness.

use super::*;
use crate::keys::generate;
use crate::keys::testutil::ppk_private_blob;

/// Cheap Argon2 settings so encrypted round trips stay fast in debug builds.
fn quick_argon2(flavour: Argon2Flavour) -> Argon2Params {
    Argon2Params {
        flavour,
        memory_kib: 64,
        passes: 1,
        parallelism: 1,
        salt: vec![0x11; 16],
    }
}

#[test]
fn round_trips_every_version_encryption_and_type() {
    for kind in [KeyType::Rsa, KeyType::Ed25519] {
        let key = generate(kind);
        for version in [PpkVersion::V2, PpkVersion::V3] {
            for pass in [None, Some(b"s3cret".as_slice())] {
                let argon2 = quick_argon2(Argon2Flavour::Argon2id);
                let text = write_with(&key, version, "a comment", pass, &argon2).unwrap();
                let (back, comment) = read(text.as_bytes(), pass)
                    .unwrap_or_else(|e| panic!("{kind} {version:?} {pass:?}: {e}"));
                assert_eq!(back, key, "{kind} {version:?} {pass:?}");
                assert_eq!(comment, "a comment");
            }
        }
    }
}

#[test]
fn layout_follows_puttygen() {
    let key = generate(KeyType::Rsa);
    for (version, pass) in [
        (PpkVersion::V3, None),
        (PpkVersion::V3, Some(b"pw".as_slice())),
        (PpkVersion::V2, None),
        (PpkVersion::V2, Some(b"pw".as_slice())),
    ] {
        let text = write_with(
            &key,
            version,
            "c",
            pass,
            &quick_argon2(Argon2Flavour::Argon2id),
        )
        .unwrap();
        let label = format!("{version:?} {pass:?}");
        assert!(!text.contains('\r'), "{label}");
        assert!(text.ends_with('\n') && !text.ends_with("\n\n"), "{label}");
        assert!(
            text.lines()
                .all(|l| l.len() <= 64 || l.starts_with("Private-MAC"))
        );
        let headers: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once(": ").map(|(name, _)| name))
            .collect();
        let mut expected = vec![
            if version == PpkVersion::V2 {
                "PuTTY-User-Key-File-2"
            } else {
                "PuTTY-User-Key-File-3"
            },
            "Encryption",
            "Comment",
            "Public-Lines",
        ];
        if version == PpkVersion::V3 && pass.is_some() {
            expected.extend([
                "Key-Derivation",
                "Argon2-Memory",
                "Argon2-Passes",
                "Argon2-Parallelism",
                "Argon2-Salt",
            ]);
        }
        expected.extend(["Private-Lines", "Private-MAC"]);
        assert_eq!(headers, expected, "{label}");
        let mac_hex = text
            .lines()
            .last()
            .unwrap()
            .strip_prefix("Private-MAC: ")
            .unwrap();
        let mac_len = if version == PpkVersion::V2 { 40 } else { 64 };
        assert_eq!(mac_hex.len(), mac_len, "{label}");
        assert!(
            mac_hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
        let private = ppk_private_blob(&text);
        if pass.is_some() {
            assert_eq!(private.len() % 16, 0, "{label}");
        }
    }
}

#[test]
fn default_v3_encryption_uses_puttys_argon2_settings() {
    let key = generate(KeyType::Ed25519);
    let text = key.to_ppk(PpkVersion::V3, "c", Some(b"pw"));
    assert!(text.contains("Key-Derivation: Argon2id\nArgon2-Memory: 8192\n"));
    assert!(text.contains("Argon2-Passes: 13\nArgon2-Parallelism: 1\n"));
    let salt = text
        .lines()
        .find_map(|l| l.strip_prefix("Argon2-Salt: "))
        .unwrap();
    assert_eq!(salt.len(), 32);
    let again = key.to_ppk(PpkVersion::V3, "c", Some(b"pw"));
    assert_ne!(text, again, "salt is not random");
    assert_eq!(read(text.as_bytes(), Some(b"pw")).unwrap().0, key);
}

#[test]
fn empty_passphrase_means_unencrypted() {
    let key = generate(KeyType::Ed25519);
    let text = key.to_ppk(PpkVersion::V3, "c", Some(b""));
    assert!(text.contains("Encryption: none\n"));
    assert_eq!(text, key.to_ppk(PpkVersion::V3, "c", None));
}

#[test]
fn ed25519_private_blob_is_fixed_32_bytes_without_padding() {
    let mut seed = [0x42; 32];
    seed[0] = 0x00;
    seed[1] = 0x10;
    let key = PrivateKey::from_ed25519_seed(&seed);
    let text = key.to_ppk(PpkVersion::V3, "", None);
    let private = ppk_private_blob(&text);
    let mut expected = vec![0, 0, 0, 32];
    expected.extend_from_slice(&seed);
    assert_eq!(private, expected);
}

#[test]
fn unencrypted_rsa_has_no_padding() {
    let key = generate(KeyType::Rsa);
    let KeyView::Rsa(parts) = key.view() else {
        panic!("not rsa")
    };
    let mut expected = Vec::new();
    for v in [&parts.d, &parts.p, &parts.q, &parts.iqmp] {
        put_mpint(&mut expected, v);
    }
    let text = key.to_ppk(PpkVersion::V2, "", None);
    assert_eq!(ppk_private_blob(&text), expected);
}

#[test]
fn short_little_endian_ed25519_value_is_zero_extended_at_the_end() {
    // Old PuTTY wrote the seed as a minimal little-endian number: trailing zero bytes dropped.
    let mut seed = [0x5c; 32];
    seed[29..].fill(0);
    let key = PrivateKey::from_ed25519_seed(&seed);
    let mut short = Vec::new();
    put_string(&mut short, &seed[..29]);
    let blobs = Blobs {
        algorithm: "ssh-ed25519",
        public: key.public_key().wire_blob(),
        private: Zeroizing::new(short),
    };
    let text = assemble(
        PpkVersion::V2,
        "old",
        blobs,
        None,
        &quick_argon2(Argon2Flavour::Argon2id),
    )
    .unwrap();
    assert_eq!(read(text.as_bytes(), None).unwrap().0, key);
}

#[test]
fn argon2i_and_argon2d_files_read() {
    let key = generate(KeyType::Ed25519);
    for flavour in [Argon2Flavour::Argon2i, Argon2Flavour::Argon2d] {
        let text = write_with(
            &key,
            PpkVersion::V3,
            "c",
            Some(b"pw"),
            &quick_argon2(flavour),
        )
        .unwrap();
        assert!(text.contains(&format!("Key-Derivation: {}\n", flavour.name())));
        assert_eq!(read(text.as_bytes(), Some(b"pw")).unwrap().0, key);
        let as_id = text.replace(flavour.name(), "Argon2id");
        let err = read(as_id.as_bytes(), Some(b"pw")).unwrap_err();
        assert!(matches!(err, KeyError::WrongPassphrase { .. }), "{err}");
    }
}

#[test]
fn mismatched_public_and_private_halves_are_rejected() {
    let a = generate(KeyType::Ed25519);
    let b = generate(KeyType::Ed25519);
    let KeyView::Ed25519 { seed, .. } = a.view() else {
        panic!("not ed25519")
    };
    let mut private = Vec::new();
    put_string(&mut private, seed);
    let blobs = Blobs {
        algorithm: "ssh-ed25519",
        public: b.public_key().wire_blob(),
        private: Zeroizing::new(private),
    };
    let text = assemble(
        PpkVersion::V3,
        "",
        blobs,
        None,
        &quick_argon2(Argon2Flavour::Argon2id),
    )
    .unwrap();
    let err = read(text.as_bytes(), None).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
}

#[test]
fn structural_errors_name_the_problem() {
    let key = generate(KeyType::Ed25519);
    let good = key.to_ppk(PpkVersion::V3, "c", None);
    let cases = [
        (
            "version 1",
            good.replace("File-3", "File-1"),
            "unsupported header",
        ),
        (
            "cipher",
            good.replace("Encryption: none", "Encryption: aes128-cbc"),
            "aes128-cbc",
        ),
        (
            "algorithm",
            good.replace(": ssh-ed25519", ": ssh-rsa"),
            "header says",
        ),
        (
            "missing mac",
            good.lines().take(7).collect::<Vec<_>>().join("\n"),
            "ends before",
        ),
        (
            "bad count",
            good.replace("Public-Lines: 2", "Public-Lines: x"),
            "not a number",
        ),
        (
            "too many lines",
            good.replace("Private-Lines: 1", "Private-Lines: 2"),
            "bad base64",
        ),
        (
            "order",
            good.replace("Comment: c\n", ""),
            "expected Comment",
        ),
    ];
    for (name, text, needle) in cases {
        let err = read(text.as_bytes(), None).unwrap_err().to_string();
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn comments_are_kept_on_one_line() {
    let key = generate(KeyType::Ed25519);
    let text = key.to_ppk(PpkVersion::V3, "two\nlines\r", None);
    assert!(text.contains("Comment: two lines \n"));
    assert_eq!(read(text.as_bytes(), None).unwrap().1, "two lines ");
}
