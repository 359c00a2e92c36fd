//! Key pairs through the real aws CLI and the ec2lab CLI, checked with ssh-keygen, puttygen and
//! the openssl pipelines AWS documents for fingerprints.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::*;
use sha2::Digest;

/// `ssh-keygen -y` on a private key file: its public key line without comment.
fn ssh_public_of(path: &Path) -> String {
    let out = run_ok(Command::new("ssh-keygen").arg("-y").arg("-f").arg(path));
    strip_comment(&out)
}

/// `puttygen -L` on a .ppk: the OpenSSH public key line without comment.
fn putty_public_of(path: &Path, passphrase: Option<&Path>) -> String {
    let mut cmd = Command::new("puttygen");
    cmd.arg(path).arg("-L");
    if let Some(p) = passphrase {
        cmd.arg("--old-passphrase").arg(p);
    }
    strip_comment(&run_ok(&mut cmd))
}

/// `puttygen -O private-openssh`: loads the private half (checks the MAC and the passphrase).
fn putty_private_loads(path: &Path, passphrase: Option<&Path>, out: &Path) {
    let mut cmd = Command::new("puttygen");
    cmd.arg(path).args(["-O", "private-openssh", "-o"]).arg(out);
    if let Some(p) = passphrase {
        cmd.arg("--old-passphrase").arg(p);
    }
    run_ok(&mut cmd);
}

fn strip_comment(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn described_public_key(d: &Daemon, name: &str) -> String {
    let v = d.aws_json(&[
        "ec2",
        "describe-key-pairs",
        "--key-names",
        name,
        "--include-public-key",
    ]);
    strip_comment(v["KeyPairs"][0]["PublicKey"].as_str().unwrap())
}

fn save(d: &Daemon, args: &[&str], path: &Path) {
    let out = d.aws(args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::write(path, &out.stdout).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).unwrap();
}

/// openssl's `-c` digest output (`SHA1(stdin)= 5e:69:…`) → the colon hex.
fn openssl_colon_digest(pipeline: &str) -> String {
    let out = run_ok(Command::new("sh").args(["-c", pipeline]));
    out.trim().rsplit(' ').next().unwrap().to_string()
}

#[test]
fn created_keys_load_in_ssh_keygen_and_puttygen_with_aws_fingerprints() {
    if !prerequisites(&["aws", "ssh-keygen", "puttygen", "openssl"]) {
        return;
    }
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();

    // RSA, pem: PKCS#1, ssh-keygen reads it, fingerprint = SHA-1 over the PKCS#8 DER.
    let pem = tmp.path().join("web-rsa.pem");
    save(
        &d,
        &[
            "ec2",
            "create-key-pair",
            "--key-name",
            "web-rsa",
            "--query",
            "KeyMaterial",
            "--output",
            "text",
        ],
        &pem,
    );
    let text = fs::read_to_string(&pem).unwrap();
    assert!(
        text.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{text}"
    );
    assert_eq!(ssh_public_of(&pem), described_public_key(&d, "web-rsa"));
    let expected = openssl_colon_digest(&format!(
        "openssl pkcs8 -in {} -inform PEM -outform DER -topk8 -nocrypt | openssl sha1 -c",
        pem.display()
    ));
    let v = d.aws_json(&["ec2", "describe-key-pairs", "--key-names", "web-rsa"]);
    assert_eq!(v["KeyPairs"][0]["KeyFingerprint"], expected.as_str());
    assert_eq!(v["KeyPairs"][0]["KeyType"], "rsa");
    assert!(
        v["KeyPairs"][0]["KeyPairId"]
            .as_str()
            .unwrap()
            .starts_with("key-")
    );
    let bits = run_ok(Command::new("ssh-keygen").arg("-l").arg("-f").arg(&pem));
    assert!(bits.starts_with("2048 "), "{bits}");

    // Ed25519, pem: OpenSSH format; fingerprint = padded base64 SHA-256 of the public blob.
    let ed = tmp.path().join("web-ed.pem");
    save(
        &d,
        &[
            "ec2",
            "create-key-pair",
            "--key-name",
            "web-ed",
            "--key-type",
            "ed25519",
            "--query",
            "KeyMaterial",
            "--output",
            "text",
        ],
        &ed,
    );
    assert!(
        fs::read_to_string(&ed)
            .unwrap()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    let public = ssh_public_of(&ed);
    assert_eq!(public, described_public_key(&d, "web-ed"));
    let blob = base64::engine::general_purpose::STANDARD
        .decode(public.split(' ').nth(1).unwrap())
        .unwrap();
    let fp = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&blob));
    let v = d.aws_json(&["ec2", "describe-key-pairs", "--key-names", "web-ed"]);
    assert_eq!(v["KeyPairs"][0]["KeyFingerprint"], fp.as_str());
    assert!(fp.ends_with('='));

    // ppk (v3) for both types: puttygen loads the private half and prints the described key.
    for (name, kt) in [("web-rsa-ppk", "rsa"), ("web-ed-ppk", "ed25519")] {
        let ppk = tmp.path().join(format!("{name}.ppk"));
        save(
            &d,
            &[
                "ec2",
                "create-key-pair",
                "--key-name",
                name,
                "--key-type",
                kt,
                "--key-format",
                "ppk",
                "--query",
                "KeyMaterial",
                "--output",
                "text",
            ],
            &ppk,
        );
        assert!(
            fs::read_to_string(&ppk)
                .unwrap()
                .starts_with("PuTTY-User-Key-File-3: ")
        );
        assert_eq!(putty_public_of(&ppk, None), described_public_key(&d, name));
        putty_private_loads(&ppk, None, &tmp.path().join(format!("{name}.out")));
    }
}

#[test]
fn ec2lab_key_create_writes_private_files_in_every_ppk_flavour() {
    if !prerequisites(&["puttygen", "ssh-keygen"]) {
        return;
    }
    let d = Daemon::start();
    let work = tempfile::tempdir().unwrap();
    let pass = work.path().join("pass.txt");
    fs::write(&pass, "lab-pass\n").unwrap();
    let pass_bare = work.path().join("pass-bare.txt");
    fs::write(&pass_bare, "lab-pass").unwrap();

    let out = d.ec2lab(
        work.path(),
        &["key", "create", "k-pem", "--type", "rsa", "--format", "pem"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = work.path().join("keys/k-pem.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&pem).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("keys/k-pem.pem"));
    let public = ssh_public_of(&pem);

    // The file exists now: a second create refuses before creating anything on the server.
    let again = d.ec2lab(work.path(), &["key", "create", "k-pem"]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    for (name, kt, version, with_pass) in [
        ("k-v2", "ed25519", "2", false),
        ("k-v2-pass", "rsa", "2", true),
        ("k-v3-pass", "ed25519", "3", true),
        ("k-v3", "rsa", "3", false),
    ] {
        let mut args = vec![
            "key",
            "create",
            name,
            "--type",
            kt,
            "--format",
            "ppk",
            "--ppk-version",
            version,
        ];
        let pf = pass.display().to_string();
        if with_pass {
            args.extend(["--passphrase-file", &pf]);
        }
        let out = d.ec2lab(work.path(), &args);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ppk = work.path().join(format!("keys/{name}.ppk"));
        let text = fs::read_to_string(&ppk).unwrap();
        assert!(
            text.starts_with(&format!("PuTTY-User-Key-File-{version}: ")),
            "{text}"
        );
        assert_eq!(text.contains("Encryption: aes256-cbc"), with_pass);
        let pw = with_pass.then_some(pass_bare.as_path());
        putty_private_loads(&ppk, pw, &work.path().join(format!("{name}.openssh")));
        let listed = d.ec2lab(
            work.path(),
            &["key", "list", "--public-key", "--output", "json"],
        );
        let v: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        let entry = v
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["Name"] == name)
            .unwrap()
            .clone();
        assert_eq!(
            putty_public_of(&ppk, pw),
            strip_comment(entry["PublicKey"].as_str().unwrap())
        );
    }

    // list (table) shows every key; delete removes one but keeps the local file.
    let table = String::from_utf8(d.ec2lab(work.path(), &["key", "list"]).stdout).unwrap();
    assert!(table.starts_with("NAME"), "{table}");
    assert_eq!(table.lines().count(), 6, "{table}");
    assert!(
        d.ec2lab(work.path(), &["key", "delete", "k-pem"])
            .status
            .success()
    );
    assert!(pem.exists());
    let table = String::from_utf8(d.ec2lab(work.path(), &["key", "ls"]).stdout).unwrap();
    assert!(!table.contains("k-pem"));

    // import from the private key file: only the public half is sent.
    let out = d.ec2lab(
        work.path(),
        &["key", "import", "k-back", pem.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = d.aws_json(&[
        "ec2",
        "describe-key-pairs",
        "--key-names",
        "k-back",
        "--include-public-key",
    ]);
    assert_eq!(
        strip_comment(v["KeyPairs"][0]["PublicKey"].as_str().unwrap()),
        public
    );
}

#[test]
fn key_convert_goes_between_pem_and_every_ppk_flavour_offline() {
    if !require(
        have_tool("puttygen") && have_tool("ssh-keygen"),
        "needs puttygen and ssh-keygen",
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let fx = fixtures();
    let pass = work.path().join("pass");
    fs::write(&pass, "lab-pass").unwrap();
    for src in ["rsa2048.pem", "ed25519"] {
        let input = work.path().join(src);
        fs::copy(fx.join(src), &input).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&input, fs::Permissions::from_mode(0o600)).unwrap();
        let public = ssh_public_of(&input);
        for version in ["2", "3"] {
            let out = work.path().join(format!("{src}-v{version}.ppk"));
            let r = Command::new(BIN)
                .args(["key", "convert"])
                .arg(&input)
                .args(["--to", "ppk", "--ppk-version", version, "--passphrase-file"])
                .arg(&pass)
                .arg("--out")
                .arg(&out)
                .output()
                .unwrap();
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            assert_eq!(putty_public_of(&out, Some(&pass)), public);
            putty_private_loads(&out, Some(&pass), &work.path().join("tmp.out"));
            // and back to pem, through the passphrase
            let back = work.path().join(format!("{src}-v{version}.pem"));
            let r = Command::new(BIN)
                .args(["key", "convert"])
                .arg(&out)
                .args(["--to", "pem", "--old-passphrase-file"])
                .arg(&pass)
                .arg("--out")
                .arg(&back)
                .output()
                .unwrap();
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            assert_eq!(ssh_public_of(&back), public);
            // a wrong passphrase is a clear one-line error
            let wrong = work.path().join("wrong");
            fs::write(&wrong, "nope").unwrap();
            let r = Command::new(BIN)
                .args(["key", "convert"])
                .arg(&out)
                .args(["--to", "pem", "--force", "--old-passphrase-file"])
                .arg(&wrong)
                .arg("--out")
                .arg(&back)
                .output()
                .unwrap();
            assert!(!r.status.success());
            let err = String::from_utf8_lossy(&r.stderr);
            assert_eq!(err.trim().lines().count(), 1, "{err}");
            assert!(err.contains("passphrase"), "{err}");
        }
    }
    // puttygen's own files (fixtures) convert to pem that ssh-keygen reads.
    for (ppk, pem) in [
        ("rsa2048_v2.ppk", "rsa2048.pem"),
        ("ed25519_v3_pass.ppk", "ed25519"),
        (
            "ed25519_leading_zero_v3.ppk",
            "ed25519_leading_zero.openssh",
        ),
    ] {
        let out = work.path().join(format!("{ppk}.pem"));
        let mut cmd = Command::new(BIN);
        cmd.args(["key", "convert"])
            .arg(fx.join(ppk))
            .args(["--to", "pem", "--out"])
            .arg(&out);
        if ppk.contains("pass") {
            cmd.arg("--old-passphrase-file").arg(&pass);
        }
        run_ok(&mut cmd);
        let want = work.path().join(pem);
        fs::copy(fx.join(pem), &want).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&want, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(ssh_public_of(&out), ssh_public_of(&want), "{ppk}");
    }
}

#[test]
fn import_accepts_openssh_rfc4716_and_der_with_aws_fingerprints() {
    if !prerequisites(&["aws", "ssh-keygen", "openssl"]) {
        return;
    }
    let d = Daemon::start();
    let fx = fixtures();
    let fps = fs::read_to_string(fx.join("FINGERPRINTS.txt")).unwrap();
    let want = |prefix: &str| {
        fps.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap()
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let tmp = tempfile::tempdir().unwrap();

    let rsa_pub = format!("fileb://{}", fx.join("rsa2048.pub").display());
    let v = d.aws_json(&[
        "ec2",
        "import-key-pair",
        "--key-name",
        "imp-rsa",
        "--public-key-material",
        &rsa_pub,
    ]);
    assert_eq!(v["KeyFingerprint"], want("rsa2048.pub").as_str());
    let ed_pub = format!("fileb://{}", fx.join("ed25519.pub").display());
    let v = d.aws_json(&[
        "ec2",
        "import-key-pair",
        "--key-name",
        "imp-ed",
        "--public-key-material",
        &ed_pub,
    ]);
    assert_eq!(v["KeyFingerprint"], want("ed25519 ").as_str());

    // RFC 4716 (ssh-keygen -e) and base64 DER SubjectPublicKeyInfo give the same key.
    let rfc = tmp.path().join("rsa.rfc4716");
    fs::write(
        &rfc,
        run_ok(
            Command::new("ssh-keygen")
                .args(["-e", "-f"])
                .arg(fx.join("rsa2048.pub")),
        ),
    )
    .unwrap();
    let v = d.aws_json(&[
        "ec2",
        "import-key-pair",
        "--key-name",
        "imp-rfc",
        "--public-key-material",
        &format!("fileb://{}", rfc.display()),
    ]);
    assert_eq!(v["KeyFingerprint"], want("rsa2048.pub").as_str());
    let der = tmp.path().join("rsa.der.b64");
    let b64 = run_ok(Command::new("sh").args([
        "-c",
        &format!(
            "openssl rsa -in {} -pubout -outform DER 2>/dev/null | base64 -w0",
            fx.join("rsa2048.pem").display()
        ),
    ]));
    fs::write(&der, b64).unwrap();
    let v = d.aws_json(&[
        "ec2",
        "import-key-pair",
        "--key-name",
        "imp-der",
        "--public-key-material",
        &format!("fileb://{}", der.display()),
    ]);
    assert_eq!(v["KeyFingerprint"], want("rsa2048.pub").as_str());
    // The documented openssl pipeline for imported keys agrees.
    let md5 = openssl_colon_digest(&format!(
        "openssl rsa -in {} -pubout -outform DER 2>/dev/null | openssl md5 -c",
        fx.join("rsa2048.pem").display()
    ));
    assert_eq!(md5, want("rsa2048.pub"));

    // Filters: by fingerprint, by name wildcard, by type.
    let v = d.aws_json(&[
        "ec2",
        "describe-key-pairs",
        "--filters",
        &format!("Name=fingerprint,Values={}", want("rsa2048.pub")),
    ]);
    let mut names: Vec<&str> = v["KeyPairs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["KeyName"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["imp-der", "imp-rfc", "imp-rsa"]);
    let v = d.aws_json(&[
        "ec2",
        "describe-key-pairs",
        "--filters",
        "Name=key-name,Values=imp-e*",
    ]);
    assert_eq!(v["KeyPairs"].as_array().unwrap().len(), 1);
    let v = d.aws_json(&[
        "ec2",
        "describe-key-pairs",
        "--filters",
        "Name=key-type,Values=ed25519",
    ]);
    assert_eq!(v["KeyPairs"][0]["KeyName"], "imp-ed");

    // Garbage and DSA keys are refused with InvalidKeyPair.Format.
    let junk = tmp.path().join("junk.pub");
    fs::write(&junk, "ssh-rsa AAAAnot-base64!! me").unwrap();
    d.aws_err(
        &[
            "ec2",
            "import-key-pair",
            "--key-name",
            "junk",
            "--public-key-material",
            &format!("fileb://{}", junk.display()),
        ],
        "InvalidKeyPair.Format",
    );
    let dsa = tmp.path().join("dsa.pub");
    fs::write(&dsa, "ssh-dss AAAAB3NzaC1kc3MAAACBAP1/U4EddRIpUt9KnC7s5Of2EbdSPO9EAMMeP4C2USZpRV1AIlH7WT2NWPq/xfW6MPbLm1Vs14E7gB00b/JmYLdrmVClpJ+f6AR7ECLCT7up1/63xhv4O1fnxqimFQ8E+4P208UewwI1VBNaFpEy9nXzrith1yrv8iIDGZ3RSAHHAAAAFQCXYFCPFSMLzLKSuYKi64QL8Fgc9QAAAIEA9+GghdabPd7LvKtcNrhXuXmUr7v6OuqC+VdMCz0HgmdRWVeOutRZT+ZxBxCBgLRJFnEj6EwoFhO3zwkyjMim4TwWeotUfI0o4KOuHiuzpnWRbqN/C/ohNWLx+2J6ASQ7zKTxvqhRkImog9/hWuWfBpKLZl6Ae1UlZAFMO/7PSSo= x").unwrap();
    d.aws_err(
        &[
            "ec2",
            "import-key-pair",
            "--key-name",
            "dsa",
            "--public-key-material",
            &format!("fileb://{}", dsa.display()),
        ],
        "InvalidKeyPair.Format",
    );
    // Duplicate name on import too.
    d.aws_err(
        &[
            "ec2",
            "import-key-pair",
            "--key-name",
            "imp-ed",
            "--public-key-material",
            &ed_pub,
        ],
        "InvalidKeyPair.Duplicate",
    );
}

#[test]
fn regions_zones_and_instance_types() {
    if !prerequisites(&["aws"]) {
        return;
    }
    let d = Daemon::start();
    let v = d.aws_json(&["ec2", "describe-regions"]);
    assert_eq!(v["Regions"][0]["RegionName"], "ap-northeast-2");
    let v = d.aws_json(&["ec2", "describe-availability-zones"]);
    let zones: Vec<&str> = v["AvailabilityZones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["ZoneName"].as_str().unwrap())
        .collect();
    assert_eq!(
        zones,
        [
            "ap-northeast-2a",
            "ap-northeast-2b",
            "ap-northeast-2c",
            "ap-northeast-2d"
        ]
    );
    assert_eq!(v["AvailabilityZones"][0]["State"], "available");
    assert_eq!(v["AvailabilityZones"][0]["ZoneId"], "apne2-az1");
    let v = d.aws_json(&[
        "ec2",
        "describe-instance-types",
        "--instance-types",
        "t2.micro",
        "c5.large",
    ]);
    let types = v["InstanceTypes"].as_array().unwrap();
    assert_eq!(types.len(), 2);
    let micro = types
        .iter()
        .find(|t| t["InstanceType"] == "t2.micro")
        .unwrap();
    assert_eq!(micro["VCpuInfo"]["DefaultVCpus"], 1);
    assert_eq!(micro["MemoryInfo"]["SizeInMiB"], 1024);
    assert_eq!(micro["FreeTierEligible"], true);
    assert_eq!(
        micro["ProcessorInfo"]["SupportedArchitectures"][0],
        "x86_64"
    );
    let v = d.aws_json(&["ec2", "describe-instance-types"]);
    let all: Vec<&str> = v["InstanceTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["InstanceType"].as_str().unwrap())
        .collect();
    for t in [
        "t2.nano",
        "t2.micro",
        "t2.small",
        "t2.medium",
        "t2.large",
        "t3.micro",
        "t3.small",
        "t3.medium",
        "m5.large",
        "c5.large",
    ] {
        assert!(all.contains(&t), "{t} missing from {all:?}");
    }
    let v = d.aws_json(&[
        "ec2",
        "describe-instance-types",
        "--filters",
        "Name=free-tier-eligible,Values=true",
    ]);
    assert_eq!(v["InstanceTypes"].as_array().unwrap().len(), 2);
    d.aws_err(
        &[
            "ec2",
            "describe-instance-types",
            "--instance-types",
            "t2.huge",
        ],
        "InvalidInstanceType",
    );
    d.aws_err(
        &[
            "ec2",
            "describe-availability-zones",
            "--zone-names",
            "ap-northeast-2z",
        ],
        "InvalidParameterValue",
    );
}

#[test]
fn env_points_the_plain_aws_cli_at_the_lab() {
    if !prerequisites(&["aws", "bash"]) {
        return;
    }
    let d = Daemon::start();
    let script = format!(
        "set -e; unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION AWS_ENDPOINT_URL; \
         export AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent; \
         eval \"$({BIN} env --data-dir {dd})\"; \
         aws ec2 create-key-pair --key-name via-env --query KeyName --output text",
        dd = d.data_dir.display()
    );
    let out = run_ok(Command::new("bash").args(["-c", &script]));
    assert_eq!(out.trim(), "via-env");
    // The profile files in the data dir work too (AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE).
    let out = run_ok(
        Command::new("aws")
            .args([
                "ec2",
                "describe-key-pairs",
                "--query",
                "KeyPairs[0].KeyName",
                "--output",
                "text",
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("HOME", d.dir.path())
            .env("AWS_CONFIG_FILE", d.data_dir.join("aws/config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                d.data_dir.join("aws/credentials"),
            ),
    );
    assert_eq!(out.trim(), "via-env");
}
