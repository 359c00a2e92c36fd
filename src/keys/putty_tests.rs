//! Interop with PuTTY's puttygen 0.78 (putty-tools): it loads every PPK we write, we read
//! every PPK it writes (including the Ed25519 seed that starts with a zero byte). Each test
//! skips with a printed reason when puttygen is missing, and fails instead when `CI=true`.

use std::path::Path;

use super::testutil::{
    FIXTURE_PASS, key_fields, ppk_private_blob, read_path, run, run_raw, tempdir, text, tool,
    write_file,
};
use super::{KeyError, KeyType, PpkVersion, PrivateKey, generate};

/// `puttygen FILE -L`: the public key as an authorized_keys line (type and base64 only).
fn puttygen_public(puttygen: &str, file: &str) -> String {
    key_fields(&text(run(puttygen, &[file, "-L"], None)))
}

/// Loads the private half with puttygen (so it checks the MAC and decrypts) and exports it
/// unencrypted with `-O private-openssh` (PKCS#1 for RSA, OpenSSH for Ed25519), which we
/// read back.
fn puttygen_export(puttygen: &str, dir: &Path, file: &str, old_pass: &str) -> PrivateKey {
    let out = dir.join("export").to_string_lossy().into_owned();
    let _ = std::fs::remove_file(&out);
    run(
        puttygen,
        &[
            file,
            "-O",
            "private-openssh",
            "--old-passphrase",
            old_pass,
            "--new-passphrase",
            "/dev/null",
            "-o",
            &out,
        ],
        None,
    );
    PrivateKey::from_any(&read_path(&out), None).expect("read puttygen export")
}

#[test]
fn puttygen_loads_every_file_we_write() {
    let Some(puttygen) = tool("puttygen", "putty-tools") else {
        return;
    };
    let dir = tempdir();
    let pass_file = write_file(dir.path(), "pass", FIXTURE_PASS);
    for kind in [KeyType::Rsa, KeyType::Ed25519] {
        let key = generate(kind);
        let public = key.public_key().to_openssh();
        for version in [PpkVersion::V2, PpkVersion::V3] {
            for pass in [None, Some(FIXTURE_PASS)] {
                let label = format!("{kind} {version:?} encrypted={}", pass.is_some());
                let ppk = key.to_ppk(version, "made by ec2lab", pass);
                let file = write_file(dir.path(), "ours.ppk", ppk.as_bytes());
                assert_eq!(puttygen_public(puttygen, &file), public, "{label}");
                let old = if pass.is_some() {
                    pass_file.as_str()
                } else {
                    "/dev/null"
                };
                let exported = puttygen_export(puttygen, dir.path(), &file, old);
                assert_eq!(exported, key, "{label}");
            }
        }
    }
}

#[test]
fn puttygen_rejects_our_encrypted_file_with_a_wrong_passphrase() {
    let Some(puttygen) = tool("puttygen", "putty-tools") else {
        return;
    };
    let dir = tempdir();
    let key = generate(KeyType::Ed25519);
    let file = write_file(
        dir.path(),
        "k.ppk",
        key.to_ppk(PpkVersion::V3, "c", Some(b"right")).as_bytes(),
    );
    let wrong = write_file(dir.path(), "wrong", b"wrong");
    let out = run_raw(
        puttygen,
        &[
            &file,
            "-O",
            "private-openssh",
            "--old-passphrase",
            &wrong,
            "-o",
            "/dev/null",
        ],
        None,
    );
    assert!(
        !out.status.success(),
        "puttygen accepted a wrong passphrase"
    );
}

#[test]
fn we_read_fresh_puttygen_keys() {
    let Some(puttygen) = tool("puttygen", "putty-tools") else {
        return;
    };
    let dir = tempdir();
    let pass_file = write_file(dir.path(), "pass", FIXTURE_PASS);
    let file = dir.path().join("pg.ppk").to_string_lossy().into_owned();
    // puttygen calibrates Argon2 to 100 ms of *its* (optimised) time, which costs seconds in
    // a debug build: one case keeps the defaults, the others pin a small pass count.
    let cases: &[(&[&str], bool)] = &[
        (&["-t", "ed25519"], false),
        (&["-t", "ed25519", "--ppk-param", "version=2"], false),
        (&["-t", "ed25519"], true),
        (&["-t", "ed25519", "--ppk-param", "version=2"], true),
        (
            &["-t", "ed25519", "--ppk-param", "kdf=argon2i,passes=2"],
            true,
        ),
        (
            &["-t", "ed25519", "--ppk-param", "kdf=argon2d,passes=2"],
            true,
        ),
        (&["-t", "rsa", "-b", "2048"], false),
        (
            &["-t", "rsa", "-b", "2048", "--ppk-param", "version=2"],
            true,
        ),
        (
            &["-t", "rsa", "-b", "2048", "--ppk-param", "passes=2"],
            true,
        ),
    ];
    for &(args, encrypted) in cases {
        let label = format!("{args:?} encrypted={encrypted}");
        let new_pass = if encrypted {
            pass_file.as_str()
        } else {
            "/dev/null"
        };
        let _ = std::fs::remove_file(&file);
        let mut argv = args.to_vec();
        argv.extend(["-o", &file, "--new-passphrase", new_pass]);
        run(puttygen, &argv, None);
        let ppk = read_path(&file);
        let pass = encrypted.then_some(FIXTURE_PASS);
        let ours = PrivateKey::from_any(&ppk, pass).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(
            ours.public_key().to_openssh(),
            puttygen_public(puttygen, &file),
            "{label}"
        );
        let exported = puttygen_export(puttygen, dir.path(), &file, new_pass);
        assert_eq!(ours, exported, "{label}");
        let cheap_kdf = args
            .iter()
            .any(|a| a.contains("version=2") || a.contains("passes=2"));
        if encrypted && cheap_kdf {
            let err = PrivateKey::from_any(&ppk, Some(b"nope")).unwrap_err();
            assert!(
                matches!(err, KeyError::WrongPassphrase { .. }),
                "{label}: {err}"
            );
        } else if !encrypted {
            // Unencrypted files are deterministic: our writer must give the same bytes.
            let (_, comment) = super::ppk::read(&ppk, None).unwrap();
            let version = if args.contains(&"version=2") {
                PpkVersion::V2
            } else {
                PpkVersion::V3
            };
            assert_eq!(
                ours.to_ppk(version, &comment, None).into_bytes(),
                ppk,
                "{label}"
            );
        }
    }
}

#[test]
fn we_read_a_puttygen_ed25519_key_whose_seed_starts_with_zero() {
    let Some(puttygen) = tool("puttygen", "putty-tools") else {
        return;
    };
    let dir = tempdir();
    let file = dir.path().join("z.ppk").to_string_lossy().into_owned();
    // P(seed[0] == 0) = 1/256, so 3000 tries miss with probability < 1e-5.
    let mut hit = None;
    for attempt in 1..=3000 {
        let _ = std::fs::remove_file(&file);
        run(
            puttygen,
            &[
                "-t",
                "ed25519",
                "-o",
                &file,
                "--new-passphrase",
                "/dev/null",
            ],
            None,
        );
        let ppk = text(read_path(&file));
        let private = ppk_private_blob(&ppk);
        if private.len() == 36 && private[4] == 0 {
            hit = Some((attempt, ppk));
            break;
        }
    }
    let (attempt, ppk) = hit.expect("no ed25519 seed starting with 0x00 in 3000 puttygen keys");
    eprintln!("leading-zero seed after {attempt} puttygen keys");
    let ours = PrivateKey::from_any(ppk.as_bytes(), None).expect("read leading-zero key");
    assert_eq!(
        ours.public_key().to_openssh(),
        puttygen_public(puttygen, &file)
    );
    assert_eq!(
        ours,
        puttygen_export(puttygen, dir.path(), &file, "/dev/null")
    );
    let (_, comment) = super::ppk::read(ppk.as_bytes(), None).unwrap();
    assert_eq!(ours.to_ppk(PpkVersion::V3, &comment, None), ppk);
}
