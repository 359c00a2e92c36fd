//! Interop with OpenSSH's ssh-keygen and openssl: they read our PEM/OpenSSH keys, their
//! fingerprints and the openssl pipelines AWS documents match ours, and their export formats
//! import as the same key. Each test skips with a printed reason when its tool is missing,
//! and fails instead when `CI=true`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::testutil::{
    FIXTURE_PASS, fixture, key_fields, read_path, run, run_raw, tempdir, text, tool, write_file,
};
use super::{HostKeyType, KeyError, KeyType, PrivateKey, PublicKey};
use super::{fingerprint_line, generate, generate_host_key};

#[test]
fn ssh_keygen_reads_our_private_keys() {
    let Some(ssh_keygen) = tool("ssh-keygen", "openssh-client") else {
        return;
    };
    let dir = tempdir();
    for kind in [KeyType::Rsa, KeyType::Ed25519] {
        let key = generate(kind);
        let public = key.public_key().to_openssh();
        let pem = key.to_pem();
        let expected_label = match kind {
            KeyType::Rsa => "-----BEGIN RSA PRIVATE KEY-----\n",
            KeyType::Ed25519 => "-----BEGIN OPENSSH PRIVATE KEY-----\n",
        };
        assert!(pem.starts_with(expected_label), "{kind}");
        for (form, body) in [("pem", pem), ("openssh", key.to_openssh("lab"))] {
            let file = write_file(dir.path(), "id", body.as_bytes());
            let out = text(run(ssh_keygen, &["-y", "-f", &file], None));
            assert_eq!(key_fields(&out), public, "{kind} {form}");
        }
    }
}

#[test]
fn ssh_keygen_fingerprints_match_ours() {
    let Some(ssh_keygen) = tool("ssh-keygen", "openssh-client") else {
        return;
    };
    let dir = tempdir();
    let mut lines = Vec::new();
    for kind in [KeyType::Rsa, KeyType::Ed25519] {
        let key = generate(kind).public_key();
        lines.push((
            format!("{} lab@host", key.to_openssh()),
            "lab@host".to_string(),
        ));
        let file = write_file(dir.path(), "k.pub", lines[lines.len() - 1].0.as_bytes());
        let out = text(run(ssh_keygen, &["-l", "-f", &file], None));
        let field = out.split_whitespace().nth(1).unwrap();
        assert_eq!(field, key.sha256_fingerprint(), "{kind}");
        assert_eq!(
            out.split_whitespace().next().unwrap(),
            key.bits().to_string()
        );
    }
    for kind in HostKeyType::ALL {
        let (private, public) = generate_host_key(kind);
        let key_file = write_file(dir.path(), "host", private.as_bytes());
        let derived = text(run(ssh_keygen, &["-y", "-f", &key_file], None));
        assert_eq!(key_fields(&derived), public, "{kind:?}");
        lines.push((format!("{public} root@ip-172-31-22-24"), String::new()));
    }
    for (line, comment) in lines {
        let file = write_file(dir.path(), "k.pub", line.as_bytes());
        let expected = text(run(ssh_keygen, &["-l", "-f", &file], None));
        let public_only = key_fields(&line);
        let comment = if comment.is_empty() {
            "root@ip-172-31-22-24"
        } else {
            &comment
        };
        assert_eq!(
            fingerprint_line(&public_only, comment).unwrap(),
            expected.trim_end()
        );
        assert_eq!(fingerprint_line(&line, "").unwrap(), expected.trim_end());
    }
}

/// `first | second`, returning what `second` prints.
fn pipe(first: (&str, &[&str]), second: (&str, &[&str])) -> String {
    let middle = run(first.0, first.1, None);
    text(run(second.0, second.1, Some(&middle)))
}

/// The value after `= ` in `SHA1(stdin)= aa:bb:...`.
fn openssl_digest(output: &str) -> String {
    output.trim().rsplit("= ").next().unwrap().to_string()
}

#[test]
fn aws_documented_openssl_pipelines_give_our_fingerprints() {
    let Some(openssl) = tool("openssl", "openssl") else {
        return;
    };
    let dir = tempdir();
    let generated = generate(KeyType::Rsa);
    let fixture_key = PrivateKey::from_any(&fixture("rsa2048.pem"), None).unwrap();
    for key in [generated, fixture_key] {
        let pem = write_file(dir.path(), "k.pem", key.to_pem().as_bytes());
        let created = pipe(
            (
                openssl,
                &[
                    "pkcs8", "-topk8", "-nocrypt", "-in", &pem, "-outform", "DER",
                ],
            ),
            (openssl, &["sha1", "-c"]),
        );
        assert_eq!(openssl_digest(&created), key.aws_created_fingerprint());
        let imported = pipe(
            (openssl, &["rsa", "-in", &pem, "-pubout", "-outform", "DER"]),
            (openssl, &["md5", "-c"]),
        );
        assert_eq!(
            openssl_digest(&imported),
            key.public_key().aws_imported_fingerprint()
        );
        // Our PKCS#8 and SPKI DER are openssl's, byte for byte.
        let pkcs8 = run(
            openssl,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", &pem, "-outform", "DER",
            ],
            None,
        );
        assert_eq!(pkcs8, super::pem::pkcs8_der(&key));
        let spki = run(
            openssl,
            &["rsa", "-in", &pem, "-pubout", "-outform", "DER"],
            None,
        );
        assert_eq!(spki, key.public_key().spki_der());
    }
    // Ed25519: openssl reads our PKCS#8 and derives the same SubjectPublicKeyInfo.
    let key = generate(KeyType::Ed25519);
    let file = write_file(dir.path(), "ed.pem", key.to_pem_pkcs8().as_bytes());
    let spki = run(
        openssl,
        &["pkey", "-in", &file, "-pubout", "-outform", "DER"],
        None,
    );
    assert_eq!(spki, key.public_key().spki_der());
    let spki_pem = text(run(openssl, &["pkey", "-in", &file, "-pubout"], None));
    assert_eq!(
        PublicKey::parse_import(spki_pem.as_bytes()).unwrap(),
        key.public_key()
    );
}

#[test]
fn ssh_keygen_exports_import_as_the_same_key() {
    let (Some(ssh_keygen), Some(openssl)) = (
        tool("ssh-keygen", "openssh-client"),
        tool("openssl", "openssl"),
    ) else {
        return;
    };
    let dir = tempdir();
    for kind in [KeyType::Rsa, KeyType::Ed25519] {
        let key = generate(kind);
        let expected = key.public_key();
        let pub_file = write_file(
            dir.path(),
            "k.pub",
            format!("{} c@h\n", expected.to_openssh()).as_bytes(),
        );
        let mut forms = vec![
            ("openssh", read_path(&pub_file)),
            ("rfc4716", run(ssh_keygen, &["-e", "-f", &pub_file], None)),
        ];
        if kind == KeyType::Rsa {
            let spki_pem = run(ssh_keygen, &["-e", "-m", "PKCS8", "-f", &pub_file], None);
            let spki_file = write_file(dir.path(), "spki.pem", &spki_pem);
            let der = run(
                openssl,
                &["pkey", "-pubin", "-in", &spki_file, "-outform", "DER"],
                None,
            );
            forms.push(("pkcs8 pem", spki_pem));
            forms.push((
                "pkcs1 pem",
                run(ssh_keygen, &["-e", "-m", "PEM", "-f", &pub_file], None),
            ));
            forms.push(("base64 der", STANDARD.encode(der).into_bytes()));
        }
        for (form, material) in forms {
            let parsed =
                PublicKey::parse_import(&material).unwrap_or_else(|e| panic!("{kind} {form}: {e}"));
            assert_eq!(parsed, expected, "{kind} {form}");
        }
    }
}

#[test]
fn dsa_and_ecdsa_keys_are_refused_for_import() {
    let (Some(ssh_keygen), Some(openssl)) = (
        tool("ssh-keygen", "openssh-client"),
        tool("openssl", "openssl"),
    ) else {
        return;
    };
    let dir = tempdir();
    for (kind, bits) in [("ecdsa", "256"), ("dsa", "1024")] {
        let key = dir.path().join(kind).to_string_lossy().into_owned();
        let made = run_raw(
            ssh_keygen,
            &["-q", "-t", kind, "-b", bits, "-N", "", "-f", &key],
            None,
        );
        if !made.status.success() {
            // Newer OpenSSH builds drop DSA entirely; ECDSA must always work.
            assert_eq!(kind, "dsa", "ssh-keygen -t {kind} failed");
            eprintln!("skipping dsa: this ssh-keygen cannot make dsa keys");
            continue;
        }
        let pub_file = format!("{key}.pub");
        let mut forms = vec![
            ("openssh", read_path(&pub_file)),
            ("rfc4716", run(ssh_keygen, &["-e", "-f", &pub_file], None)),
        ];
        let spki = run_raw(ssh_keygen, &["-e", "-m", "PKCS8", "-f", &pub_file], None);
        if spki.status.success() {
            let spki_file = write_file(dir.path(), "spki.pem", &spki.stdout);
            let der = run(
                openssl,
                &["pkey", "-pubin", "-in", &spki_file, "-outform", "DER"],
                None,
            );
            forms.push(("base64 der", STANDARD.encode(der).into_bytes()));
            forms.push(("pem", spki.stdout));
        }
        for (form, material) in forms {
            let err = PublicKey::parse_import(&material).unwrap_err();
            assert!(
                matches!(err, KeyError::UnsupportedAlgorithm { .. }),
                "{kind} {form}: {err}"
            );
        }
    }
}

#[test]
fn we_read_encrypted_openssh_keys_from_ssh_keygen() {
    let Some(ssh_keygen) = tool("ssh-keygen", "openssh-client") else {
        return;
    };
    let dir = tempdir();
    for (kind, extra) in [("ed25519", &[][..]), ("rsa", &["-b", "2048"][..])] {
        let key = dir.path().join(kind).to_string_lossy().into_owned();
        let mut argv = vec!["-q", "-t", kind, "-N", "lab-pass", "-C", "c", "-f", &key];
        argv.extend(extra);
        run(ssh_keygen, &argv, None);
        let private = read_path(&key);
        let expected = key_fields(&text(read_path(&format!("{key}.pub"))));
        let ours = PrivateKey::from_any(&private, Some(FIXTURE_PASS))
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(ours.public_key().to_openssh(), expected, "{kind}");
        let wrong = PrivateKey::from_any(&private, Some(b"wrong")).unwrap_err();
        assert!(
            matches!(wrong, KeyError::WrongPassphrase { .. }),
            "{kind}: {wrong}"
        );
        let missing = PrivateKey::from_any(&private, None).unwrap_err();
        assert!(
            matches!(missing, KeyError::PassphraseRequired { .. }),
            "{kind}: {missing}"
        );
    }
}
