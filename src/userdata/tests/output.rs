//! Console output (host key block), validation and the boot context.

use super::{ED25519_FP, ED25519_PUB, Inst, RSA_FP_SUFFIX, RSA_PUB};
use crate::userdata::fingerprints::{fingerprint_line, logger_prefix, parse_pub};
use crate::userdata::{BootContext, MAX_RAW, UserDataError, boot_with, validate};

#[test]
fn host_key_block_on_console() {
    let inst = Inst::new(None);
    let console = inst.boot();
    let lines: Vec<&str> = console.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.ends_with("-----BEGIN SSH HOST KEY FINGERPRINTS-----"))
        .expect(&console);
    let prefixed = &lines[start - 1..start + 5];
    let prefix_re = |l: &str| {
        // <14>Mon DD HH:MM:SS ec2: …
        let rest = l.strip_prefix("<14>").unwrap();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields[3] == "ec2:" && fields[2].len() == 8 && fields[0].len() == 3
    };
    assert!(prefixed.iter().all(|l| prefix_re(l)), "{prefixed:?}");
    assert!(
        prefixed[0]
            .ends_with(" ec2: #############################################################")
    );
    assert!(
        prefixed[2].ends_with(&format!(" ec2: {ED25519_FP}")),
        "{}",
        prefixed[2]
    );
    assert!(
        prefixed[3].ends_with(&format!(
            " ec2: 2048 {RSA_FP_SUFFIX} root@ip-172-31-1-5 (RSA)"
        )),
        "{}",
        prefixed[3]
    );
    assert!(prefixed[4].ends_with("-----END SSH HOST KEY FINGERPRINTS-----"));
    assert!(prefixed[5].ends_with("#####"));
    assert_eq!(
        &lines[start + 5..start + 9],
        &[
            "-----BEGIN SSH HOST KEY KEYS-----",
            ED25519_PUB,
            RSA_PUB,
            "-----END SSH HOST KEY KEYS-----"
        ]
    );
    // The scraping recipe from the reference: the 6th field is the fingerprint.
    let sixth: Vec<&str> = lines[start + 1..start + 3]
        .iter()
        .map(|l| l.split_whitespace().nth(5).unwrap())
        .collect();
    assert_eq!(sixth[1], RSA_FP_SUFFIX);
    assert!(
        inst.output_log()
            .contains("-----BEGIN SSH HOST KEY KEYS-----")
    );
}

#[test]
fn blacklists_hide_key_types() {
    let inst = Inst::new(Some(
        b"#cloud-config\nssh_fp_console_blacklist: [ssh-rsa]\nssh_key_console_blacklist: [ssh-ed25519]\n",
    ));
    let console = inst.boot();
    assert!(!console.contains("(RSA)"));
    assert!(console.contains("(ED25519)"));
    assert!(!console.contains(ED25519_PUB) && console.contains(RSA_PUB));
}

#[test]
fn logger_prefix_pads_the_day() {
    let t = time::macros::datetime!(2026-04-09 22:06:30 UTC);
    assert_eq!(logger_prefix(t), "<14>Apr  9 22:06:30 ec2: ");
}

#[test]
fn fingerprints_match_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (kind, bits) in [
        ("ed25519", None),
        ("ecdsa", Some("384")),
        ("rsa", Some("3072")),
    ] {
        let key = dir.path().join(kind);
        let mut cmd = std::process::Command::new("ssh-keygen");
        cmd.args(["-q", "-N", "", "-C", "c@h", "-t", kind, "-f"])
            .arg(&key);
        if let Some(b) = bits {
            cmd.args(["-b", b]);
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            _ => {
                // `fingerprint_vectors` still checks every key type with fixed vectors.
                println!("skipping ssh-keygen comparison: ssh-keygen is not available");
                return;
            }
        }
        let pub_path = key.with_extension("pub");
        let expected = std::process::Command::new("ssh-keygen")
            .arg("-l")
            .arg("-f")
            .arg(&pub_path)
            .output()
            .unwrap();
        let expected = String::from_utf8(expected.stdout).unwrap();
        let line = std::fs::read_to_string(&pub_path).unwrap();
        let ours = fingerprint_line(&parse_pub(&line).unwrap(), "unused");
        assert_eq!(ours, expected.trim(), "{kind}");
        checked += 1;
    }
    assert_eq!(checked, 3);
}

#[test]
fn fingerprint_vectors() {
    // Lines from `ssh-keygen -l -f` for keys made by OpenSSH 9.2.
    let cases = [
        (ED25519_PUB, ED25519_FP.to_string()),
        (RSA_PUB, format!("2048 {RSA_FP_SUFFIX} no comment (RSA)")),
        (
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBN1FMInx3ag9dc9jmgvzGCVKCMDyIM4Jl2gKtZCTCe6Z89mrjafz7002tTn6mzv2NdLJ688BxvTX1HwY0vOqYPc= root@ip-10-0-0-1",
            "256 SHA256:eW3VmVUM3MpNHW+cvKZCl/V4oNUTMlRyDO5/IBKPSL0 root@ip-10-0-0-1 (ECDSA)"
                .into(),
        ),
        (
            "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBABY25fZigfqaXLsT8uW3mUHBkGshIYLfqbVuJOZ8jbnf3u+nT/Osj7/E5TwrVAQVWikHxNL5Ji7gNsHvVDOQCmFlgBnWiRYUYFhSFLjiNNA3prjJcua2BAjqVqptauNZU30a4Mna0OauiQqtCg37IpZe/lEypGX+O4MOrl8uqr8/fktYw== k",
            "521 SHA256:sI4qf/HqOA8mdJQV1zhuWzfeWw4071usoTXEi6FE1nQ k (ECDSA)".into(),
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(
            fingerprint_line(&parse_pub(line).unwrap(), "no comment"),
            expected
        );
    }
    assert!(parse_pub("ssh-ed25519 !!!").is_none());
}

#[test]
fn validate_size() {
    assert!(validate(&vec![b'a'; MAX_RAW]).is_ok());
    let err = validate(&vec![b'a'; MAX_RAW + 1]).unwrap_err();
    assert!(matches!(
        err,
        UserDataError::TooLarge {
            size: 16385,
            max: 16384
        }
    ));
    assert_eq!(
        err.to_string(),
        "user data is 16385 bytes, more than the limit of 16384 bytes"
    );
}

#[test]
fn boot_context_round_trips_and_hides_user_data() {
    let inst = Inst::new(Some(b"#!/bin/sh\necho secret\n"));
    let path = inst.root().join("run/ec2lab/boot.json");
    inst.ctx.save(&path).unwrap();
    let json = std::fs::read_to_string(&path).unwrap();
    assert!(
        json.contains("\"user_data\": \"IyEvYmluL3NoCmVjaG8gc2VjcmV0Cg==\""),
        "{json}"
    );
    assert_eq!(BootContext::load(&path).unwrap(), inst.ctx);
    assert!(!format!("{:?}", inst.ctx).contains("secret"));
    assert!(BootContext::load(&inst.root().join("nope.json")).is_err());
}

#[test]
fn rejects_unsafe_instance_ids() {
    let mut inst = Inst::new(None);
    inst.ctx.instance_id = "../etc".into();
    let err = boot_with(inst.root(), &inst.ctx, &mut Vec::new()).unwrap_err();
    assert!(matches!(err, UserDataError::InvalidInstanceId(_)));
}
