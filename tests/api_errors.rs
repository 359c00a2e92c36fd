//! Bad input gets AWS-shaped answers with a 4xx status, and the daemon keeps serving; state
//! survives restarts and crashes; the daemon refuses to run without root.

mod common;

use std::process::Command;

use common::*;

fn code_of(body: &str) -> String {
    body.split("<Code>")
        .nth(1)
        .and_then(|s| s.split("</Code>").next())
        .unwrap_or("")
        .to_string()
}

#[test]
fn client_mistakes_are_answered_with_aws_codes_and_4xx() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    d.aws_json(&["ec2", "create-key-pair", "--key-name", "dup"]);
    let e = d.aws_err(
        &["ec2", "create-key-pair", "--key-name", "dup"],
        "InvalidKeyPair.Duplicate",
    );
    assert!(e.contains("The keypair 'dup' already exists."), "{e}");
    let e = d.aws_err(
        &["ec2", "describe-key-pairs", "--key-names", "nope"],
        "InvalidKeyPair.NotFound",
    );
    assert!(e.contains("The key pair 'nope' does not exist"), "{e}");
    d.aws_err(
        &[
            "ec2",
            "create-key-pair",
            "--key-name",
            "k",
            "--key-type",
            "dsa",
        ],
        "InvalidParameterValue",
    );
    d.aws_err(
        &[
            "ec2",
            "create-key-pair",
            "--key-name",
            "k",
            "--key-format",
            "der",
        ],
        "InvalidParameterValue",
    );
    d.aws_err(
        &["ec2", "create-key-pair", "--key-name", " padded"],
        "InvalidParameterValue",
    );
    let e = d.aws_err(
        &["ec2", "create-key-pair", "--key-name", "dry", "--dry-run"],
        "DryRunOperation",
    );
    assert!(e.contains("Request would have succeeded"), "{e}");
    d.aws_err(
        &["ec2", "describe-key-pairs", "--key-names", "dry"],
        "InvalidKeyPair.NotFound",
    );
    // Deleting a key pair that does not exist succeeds, as on EC2.
    assert!(
        d.aws(&["ec2", "delete-key-pair", "--key-name", "never-was"])
            .status
            .success()
    );

    // Raw requests: each answered with the right code and a 4xx.
    let cases: Vec<(&str, u16, &str)> = vec![
        (
            "Action=CreateKeyPair&Version=2016-11-15",
            400,
            "MissingParameter",
        ),
        (
            "Action=LaunchRockets&Version=2016-11-15",
            400,
            "InvalidAction",
        ),
        ("Version=2016-11-15", 400, "MissingAction"),
        ("%%%=&&&=%zz", 400, "MissingAction"),
        ("{\"json\": true}", 400, "MissingAction"),
        (
            "Action=DescribeKeyPairs&Version=2016-11-15&IncludePublicKey=maybe",
            400,
            "InvalidParameterValue",
        ),
        (
            "Action=DescribeKeyPairs&Version=2016-11-15&Filter.1.Name=colour&Filter.1.Value.1=x",
            400,
            "InvalidParameterValue",
        ),
        (
            "Action=DescribeKeyPairs&Version=2016-11-15&DryRun=true",
            412,
            "DryRunOperation",
        ),
    ];
    for (body, status, code) in cases {
        let (s, b) = d.raw(body);
        assert_eq!((s, code_of(&b).as_str()), (status, code), "{body}: {b}");
        assert!(b.contains("<RequestID>"), "{b}");
    }

    // Unsigned, wrongly signed, unknown key: 401.
    let (s, b) = http_post(
        &d.endpoint(),
        &[],
        b"Action=DescribeKeyPairs&Version=2016-11-15",
    );
    assert_eq!(
        (s, code_of(&b).as_str()),
        (401, "MissingAuthenticationToken"),
        "{b}"
    );
    let (id, _) = d.creds();
    let (s, b) = d.raw_with(
        "Action=DescribeKeyPairs&Version=2016-11-15",
        &id,
        "wrong-secret",
    );
    assert_eq!((s, code_of(&b).as_str()), (401, "AuthFailure"), "{b}");
    let (s, b) = d.raw_with(
        "Action=DescribeKeyPairs&Version=2016-11-15",
        "AKIANOTTHELABKEY0000",
        "x",
    );
    assert_eq!((s, code_of(&b).as_str()), (401, "AuthFailure"), "{b}");
    let out = Command::new("aws")
        .args(["ec2", "describe-key-pairs", "--no-sign-request"])
        .envs(d.aws_env())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("MissingAuthenticationToken"));

    // A 1 MB body: 413, quickly, no retries needed.
    let big = format!(
        "Action=ImportKeyPair&Version=2016-11-15&KeyName=big&PublicKeyMaterial={}",
        "A".repeat(1 << 20)
    );
    let (s, b) = d.raw(&big);
    assert_eq!(
        (s, code_of(&b).as_str()),
        (413, "RequestEntityTooLarge"),
        "{b}"
    );

    // Still serving, and nothing half-made.
    let v = d.aws_json(&["ec2", "describe-key-pairs"]);
    let names: Vec<&str> = v["KeyPairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["KeyName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["dup"]);
    // A client hammering with bad signatures does not flood the log.
    for _ in 0..200 {
        d.raw_with("Action=DescribeKeyPairs&Version=2016-11-15", &id, "wrong");
    }
    let lines = d
        .log_text()
        .lines()
        .filter(|l| l.contains("rejected an API request"))
        .count();
    assert!(lines < 50, "{lines} log lines for 200 bad requests");
}

#[test]
fn key_pairs_survive_restart_and_crash() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let mut d = Daemon::start();
    let a = d.aws_json(&[
        "ec2",
        "create-key-pair",
        "--key-name",
        "before-restart",
        "--key-type",
        "ed25519",
    ]);
    let b = d.aws_json(&["ec2", "create-key-pair", "--key-name", "before-crash"]);
    let creds = d.creds();
    let status = d.stop();
    assert!(status.success(), "graceful stop: {status}");
    d.restart();
    assert_eq!(d.creds(), creds, "credentials are kept across restarts");
    let v = d.aws_json(&["ec2", "describe-key-pairs", "--key-names", "before-restart"]);
    assert_eq!(v["KeyPairs"][0]["KeyFingerprint"], a["KeyFingerprint"]);
    assert_eq!(v["KeyPairs"][0]["KeyPairId"], a["KeyPairId"]);
    d.kill9();
    d.restart();
    let v = d.aws_json(&["ec2", "describe-key-pairs", "--key-names", "before-crash"]);
    assert_eq!(v["KeyPairs"][0]["KeyFingerprint"], b["KeyFingerprint"]);
    // The daemon never stored the users' private keys: no line of the key material it returned
    // is anywhere in the data dir (which does hold instances' own SSH host keys).
    for created in [&a, &b] {
        let material = created["KeyMaterial"].as_str().unwrap();
        // The first base64 lines of every OpenSSH/PKCS#1 key are a shared header: skip them.
        let body: Vec<&str> = material
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        for line in body.iter().skip(2).filter(|l| l.len() > 40) {
            let out = Command::new("grep")
                .args(["-rlF", line])
                .arg(&d.data_dir)
                .output()
                .unwrap();
            assert!(
                out.stdout.is_empty(),
                "private key material found in {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }
}

#[test]
fn serve_refuses_without_root_in_one_line() {
    if !require(have_tool("setpriv"), "needs setpriv (util-linux)") {
        return;
    }
    if !require(is_root(), "needs root to drop to an unprivileged user") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "serve",
            "--data-dir",
        ])
        .arg(dir.path().join("d"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("needs root"), "{err}");
}

#[test]
fn bad_flags_are_one_line_errors() {
    if !require(is_root(), "needs root to get past the root check") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--public-cidr", "10.0.0.0/16", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not inside 127.0.0.0/8"), "{err}");
    // A client with no daemon: one line that says what to do.
    let out = Command::new(BIN)
        .args(["key", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("ec2lab serve"), "{err}");
}
