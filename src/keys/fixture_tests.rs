//! Tests against the shared fixtures made by puttygen 0.78, ssh-keygen and openssl: every
//! file reads, the AWS fingerprints in FINGERPRINTS.txt come out exactly, all encodings of
//! one key agree, and our writers reproduce the deterministic fixtures byte for byte.

use super::ppk::{self, Argon2Flavour, Argon2Params};
use super::testutil::{FIXTURE_PASS, fixture, fixture_str, fixtures_dir, key_fields};
use super::{KeyError, KeyType, PpkVersion, PrivateKey, PublicKey};

fn read_private(name: &str) -> PrivateKey {
    let pass = name.contains("_pass").then_some(FIXTURE_PASS);
    PrivateKey::from_any(&fixture(name), pass).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_fixture_file_reads() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut read = 0;
    for name in &names {
        if name.ends_with(".md") || name.ends_with(".txt") {
            continue;
        }
        if name.ends_with(".pub") {
            let text = fixture(name);
            let key = PublicKey::parse_import(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            let line = String::from_utf8(text).unwrap();
            assert_eq!(key.to_openssh(), key_fields(&line), "{name}");
        } else {
            let key = read_private(name);
            assert!(format!("{key:?}").contains("***"));
        }
        read += 1;
    }
    assert!(read >= 14, "only {read} fixtures found in {names:?}");
}

#[test]
fn fingerprints_match_fingerprints_txt() {
    let text = fixture_str("FINGERPRINTS.txt");
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (label, expected) = line.rsplit_once(": ").expect("`label: value` line");
        let file = label.split_whitespace().next().unwrap();
        let actual = if label.contains("created-fingerprint") {
            read_private(file).aws_created_fingerprint()
        } else if label.contains("imported-fingerprint") {
            PublicKey::parse_import(&fixture(file))
                .unwrap()
                .aws_imported_fingerprint()
        } else {
            let created = read_private(file).aws_created_fingerprint();
            let imported = PublicKey::parse_import(&fixture(&format!("{file}.pub")))
                .unwrap()
                .aws_imported_fingerprint();
            assert_eq!(created, imported, "{file}: created and imported differ");
            created
        };
        assert_eq!(actual, expected.trim(), "{line}");
        checked += 1;
    }
    assert_eq!(checked, 3, "FINGERPRINTS.txt changed shape");
    // Pinned too, so an edited FINGERPRINTS.txt cannot silently weaken the test.
    assert_eq!(
        read_private("rsa2048.pem").aws_created_fingerprint(),
        "5e:69:5e:0b:35:79:e6:8d:89:9c:f8:a9:e0:4b:5c:01:91:6d:58:13"
    );
    assert_eq!(
        read_private("ed25519").aws_created_fingerprint(),
        "KhG9/UWafclfZeHx3bOTXrw47OE83Iec3A90ShM0JpY="
    );
}

#[test]
fn ppk_keys_equal_the_pem_and_openssh_keys() {
    for (reference, public, ppks) in [
        (
            "rsa2048.pem",
            "rsa2048.pub",
            [
                "rsa2048_v2.ppk",
                "rsa2048_v2_pass.ppk",
                "rsa2048_v3.ppk",
                "rsa2048_v3_pass.ppk",
            ],
        ),
        (
            "ed25519",
            "ed25519.pub",
            [
                "ed25519_v2.ppk",
                "ed25519_v2_pass.ppk",
                "ed25519_v3.ppk",
                "ed25519_v3_pass.ppk",
            ],
        ),
    ] {
        let expected = read_private(reference);
        let public = PublicKey::from_openssh(&fixture_str(public)).unwrap();
        assert_eq!(expected.public_key(), public, "{reference}");
        for name in ppks {
            let (key, comment) = ppk::read(&fixture(name), Some(FIXTURE_PASS))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key, expected, "{name} differs from {reference}");
            assert_eq!(comment, reference.trim_end_matches(".pem"), "{name}");
        }
    }
}

#[test]
fn leading_zero_ed25519_reads_and_matches_its_openssh_export() {
    let from_ppk = read_private("ed25519_leading_zero_v3.ppk");
    let from_openssh = read_private("ed25519_leading_zero.openssh");
    assert_eq!(from_ppk, from_openssh);
    let super::private::KeyView::Ed25519 { seed, .. } = from_ppk.view() else {
        panic!("not ed25519")
    };
    assert_eq!(seed[0], 0x00);
    assert!(
        seed[1] < 0x80,
        "fixture no longer exercises the ssh-key mpint bug"
    );
    // The writer keeps the fixed 32-byte form, leading zero included.
    let ours = from_ppk.to_ppk(PpkVersion::V3, "", None);
    assert_eq!(ours, fixture_str("ed25519_leading_zero_v3.ppk"));
}

#[test]
fn unencrypted_and_v2_encrypted_fixtures_are_reproduced_byte_for_byte() {
    for (source, comment) in [("rsa2048.pem", "rsa2048"), ("ed25519", "ed25519")] {
        let key = read_private(source);
        let stem = source.trim_end_matches(".pem");
        assert_eq!(
            key.to_ppk(PpkVersion::V3, comment, None),
            fixture_str(&format!("{stem}_v3.ppk"))
        );
        assert_eq!(
            key.to_ppk(PpkVersion::V2, comment, None),
            fixture_str(&format!("{stem}_v2.ppk"))
        );
        // v2 encryption is deterministic (zero IV, SHA-1 padding, no salt).
        assert_eq!(
            key.to_ppk(PpkVersion::V2, comment, Some(FIXTURE_PASS)),
            fixture_str(&format!("{stem}_v2_pass.ppk"))
        );
    }
}

#[test]
fn v3_encrypted_fixtures_are_reproduced_with_their_argon2_salt() {
    for (source, comment, passes) in [("rsa2048.pem", "rsa2048", 21), ("ed25519", "ed25519", 13)] {
        let stem = source.trim_end_matches(".pem");
        let expected = fixture_str(&format!("{stem}_v3_pass.ppk"));
        let salt_hex = expected
            .lines()
            .find_map(|l| l.strip_prefix("Argon2-Salt: "))
            .unwrap();
        let params = Argon2Params {
            flavour: Argon2Flavour::Argon2id,
            memory_kib: 8192,
            passes,
            parallelism: 1,
            salt: hex::decode(salt_hex).unwrap(),
        };
        let key = read_private(source);
        let ours =
            ppk::write_with(&key, PpkVersion::V3, comment, Some(FIXTURE_PASS), &params).unwrap();
        assert_eq!(ours, expected, "{stem}");
    }
}

#[test]
fn rsa_pem_is_reproduced_byte_for_byte() {
    let key = read_private("rsa2048.pem");
    assert_eq!(key.to_pem(), fixture_str("rsa2048.pem"));
    assert_eq!(key.key_type(), KeyType::Rsa);
    assert_eq!(key.public_key().bits(), 2048);
}

#[test]
fn passphrase_errors_are_distinct() {
    for name in [
        "rsa2048_v2_pass.ppk",
        "rsa2048_v3_pass.ppk",
        "ed25519_v2_pass.ppk",
        "ed25519_v3_pass.ppk",
    ] {
        let text = fixture(name);
        let wrong = PrivateKey::from_any(&text, Some(b"not-the-pass")).unwrap_err();
        assert!(
            matches!(wrong, KeyError::WrongPassphrase { .. }),
            "{name}: {wrong}"
        );
        let missing = PrivateKey::from_any(&text, None).unwrap_err();
        assert!(
            matches!(missing, KeyError::PassphraseRequired { .. }),
            "{name}: {missing}"
        );
    }
}

#[test]
fn every_line_ending_reads_the_same_key() {
    for name in [
        "rsa2048_v3.ppk",
        "ed25519_v2_pass.ppk",
        "ed25519_leading_zero_v3.ppk",
    ] {
        let lf = fixture_str(name);
        let expected = read_private(name);
        for (ending, text) in [
            ("crlf", lf.replace('\n', "\r\n")),
            ("cr", lf.replace('\n', "\r")),
        ] {
            let key = PrivateKey::from_any(text.as_bytes(), Some(FIXTURE_PASS))
                .unwrap_or_else(|e| panic!("{name} {ending}: {e}"));
            assert_eq!(key, expected, "{name} {ending}");
        }
        let no_final_newline = lf.trim_end();
        assert!(PrivateKey::from_any(no_final_newline.as_bytes(), Some(FIXTURE_PASS)).is_ok());
    }
}

#[test]
fn tampering_is_detected_by_the_mac() {
    let original = fixture_str("ed25519_v3.ppk");
    let tampered_comment = original.replace("Comment: ed25519", "Comment: ed25518");
    let err = PrivateKey::from_any(tampered_comment.as_bytes(), None).unwrap_err();
    assert!(matches!(err, KeyError::MacMismatch), "{err}");

    let mac_line = original
        .lines()
        .find(|l| l.starts_with("Private-MAC"))
        .unwrap();
    let mut bad_mac = mac_line.to_string();
    let last = bad_mac.pop().unwrap();
    bad_mac.push(if last == '0' { '1' } else { '0' });
    let tampered_mac = original.replace(mac_line, &bad_mac);
    let err = PrivateKey::from_any(tampered_mac.as_bytes(), None).unwrap_err();
    assert!(matches!(err, KeyError::MacMismatch), "{err}");

    // The v2 MAC covers the encryption header too.
    let v2 = fixture_str("rsa2048_v2.ppk").replace("Comment: rsa2048", "Comment: x");
    assert!(matches!(
        PrivateKey::from_any(v2.as_bytes(), None),
        Err(KeyError::MacMismatch)
    ));
}

#[test]
fn public_fixture_lines_round_trip() {
    for name in ["ed25519.pub", "rsa2048.pub"] {
        let line = fixture_str(name);
        let key = PublicKey::from_openssh(&line).unwrap();
        assert_eq!(key.to_openssh(), key_fields(&line));
        assert_eq!(
            PublicKey::from_wire_blob(&key.wire_blob()).unwrap(),
            key,
            "{name}"
        );
    }
}
